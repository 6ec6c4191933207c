"""`payrail demo`: a short scripted scenario against a running payrail, with a summary.

It talks to the API over HTTP like any client. If nothing answers at the URL, it starts
the platform in this process (embedded PostgreSQL) for the length of the demo. Payments
go to the sandbox PSP that `payrail up` runs, or to one started here when none answers.
A webhook receiver of its own, on a loopback port, takes the payment and refund events
as a merchant's server would, and checks their signatures.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import psycopg
from rich.console import Console
from rich.table import Table

from payrail.billing import demo as business_demo
from payrail.clock import SystemClock
from payrail.config import Settings
from payrail.connectors.sandbox import SandboxConfig
from payrail.connectors.sandbox.config import DEFAULT_SECRET
from payrail.connectors.sandbox.server import run_sandbox
from payrail.db.migrate import upgrade
from payrail.events.webhooks.schemas import EVENT_TYPES
from payrail.events.webhooks.signing import verify_stripe_signature
from payrail.money import Money
from payrail.recon import demo as recon_demo
from payrail.runtime import database, serve_in_thread
from payrail.tenants.service import create_merchant
from payrail.vault.envelope import Vault
from payrail.vault.keyring import Keyring

# How long the sandbox sits on the in-doubt payment's answer after charging it: past the
# connector's 10 s timeout, so that payrail stops waiting and records the payment in doubt.
HANG_SECONDS = 12
# The first check of an attempt in doubt comes 15 s after payrail stopped waiting for it
# (payrail.payments.in_doubt.SCHEDULE); the rest is room for a busy machine.
SETTLE_TIMEOUT = 60.0
# The webhooks of the last payment follow it within about 2 s (the relay polls every
# 20 ms, the delivery worker every second); the rest is room for a busy machine.
WEBHOOK_TIMEOUT = 15.0
# The events the demo's receiver asks for: those of payments and refunds.
WEBHOOK_EVENTS = sorted(t for t in EVENT_TYPES if t.startswith(("payment_intent.", "refund.")))
ALLOW_PRIVATE = "PAYRAIL_WEBHOOKS_ALLOW_PRIVATE"
ENABLE_PRIVATE = f"{ALLOW_PRIVATE}=1 uv run payrail up"
PUBLISHED = re.compile(r"^payrail_relay_published_events_total(?:\{[^}]*\})? (\S+)$", re.MULTILINE)


@dataclass
class Step:
    what: str
    outcome: str


@dataclass
class Payment:
    what: str
    intent: dict[str, Any]
    refunded: int
    charges: int  # payments the sandbox made for the intent's latest charge


@dataclass
class Webhook:
    """One event as the demo's receiver got it."""

    event_type: str
    event_id: str
    verified: bool  # every copy received carried a valid signature
    attempts: int  # payrail's count for the delivery (GET /v1/webhook_deliveries)


@dataclass
class Outcome:
    steps: list[Step]
    balances: list[dict[str, Any]]
    payments: list[Payment]
    events: list[dict[str, Any]] = field(default_factory=list)  # newest first
    published: float | None = None  # the relay's counter at the end; None: not exposed
    webhooks: list[Webhook] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the user should know or do
    rejected: list[str] = field(default_factory=list)  # signatures that did not verify
    business: business_demo.Business | None = None  # the subscription business's months
    reconciled: recon_demo.Reconciled | None = None  # today's sandbox report reconciled


def _reachable(url: str, path: str = "/openapi.json") -> bool:
    try:
        httpx.get(f"{url}{path}", timeout=2)
    except httpx.HTTPError:
        return False
    return True


@contextmanager
def _sandbox(settings: Settings) -> Iterator[str]:
    """The sandbox PSP that `payrail up` runs when it answers; else one in this process,
    on a free port, for the length of the demo."""
    url = f"http://{settings.host}:{settings.sandbox_port}"
    if _reachable(url, "/health"):
        yield url
        return
    with run_sandbox(SandboxConfig(), SystemClock()) as local:
        yield local


async def _new_key(url: str) -> str:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    async with conn:
        merchant = await create_merchant(conn, SystemClock(), "Demo Streaming Co")
    return merchant.test_secret


def _scenario(api: httpx.Client) -> tuple[list[Step], list[dict[str, Any]]]:
    steps: list[Step] = []

    def account(name: str, kind: str, **extra: Any) -> str:
        reply = api.post(
            "/v1/ledger/accounts", data={"name": name, "type": kind, "currency": "usd", **extra}
        )
        reply.raise_for_status()
        return str(reply.json()["id"])

    def transfer(
        external_id: str,
        debit: str,
        credit: str,
        amount: int,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, str] | None = None,
    ) -> httpx.Response:
        return api.post(
            "/v1/ledger/transactions",
            headers=headers,
            data={
                "external_id": external_id,
                "entries[0][account]": debit,
                "entries[0][direction]": "debit",
                "entries[0][amount]": amount,
                "entries[1][account]": credit,
                "entries[1][direction]": "credit",
                "entries[1][amount]": amount,
                **(extra or {}),
            },
        )

    cash = account("Cash at processor", "asset")
    wallet = account("Customer wallet", "liability", non_negative="true")
    revenue = account("Subscription revenue", "revenue", balance_shards=8)
    steps.append(
        Step(
            "create accounts",
            "cash (asset), wallet (liability, never negative), revenue (revenue, 8 balance shards)",
        )
    )

    top_up = transfer("top-up-1", cash, wallet, 5000, extra={"metadata[source]": "card"})
    steps.append(
        Step(
            "top up the wallet",
            f"{top_up.json()['id']}: {Money(5000, 'USD').to_decimal_string()} USD posted",
        )
    )

    hold = transfer("order-1", wallet, revenue, 1999, extra={"pending": "true"})
    hold_id = hold.json()["id"]
    steps.append(Step("authorize an order (pending hold)", f"{hold_id}: 19.99 USD held"))
    posted = api.post(f"/v1/ledger/transactions/{hold_id}/post", data={"amount": 1500})
    steps.append(Step("capture part of it", f"{posted.json()['status']}: 15.00 of 19.99 USD"))

    overdraw = transfer("order-2", wallet, revenue, 999_999)
    steps.append(
        Step(
            "try to overdraw the wallet",
            f"HTTP {overdraw.status_code} {overdraw.json()['error']['code']}",
        )
    )

    key = {"Idempotency-Key": "demo-order-3"}
    first = transfer("order-3", wallet, revenue, 500, headers=key)
    again = transfer("order-3", wallet, revenue, 500, headers=key)
    replayed = again.headers.get("idempotent-replayed") == "true"
    steps.append(
        Step(
            "retry a request with the same Idempotency-Key",
            f"same transaction {again.json()['id']}, replayed={replayed}",
        )
    )

    reversal = api.post(f"/v1/ledger/transactions/{first.json()['id']}/reverse")
    steps.append(
        Step(
            "refund it by reversal (entries are never edited)",
            f"{reversal.json()['id']} reverses {reversal.json()['reverses']}",
        )
    )

    balances = [api.get(f"/v1/ledger/accounts/{a}").json() for a in (cash, wallet, revenue)]
    return steps, balances


def _usd(amount: int) -> str:
    return Money(amount, "USD").to_decimal_string()


def _ok(reply: httpx.Response) -> dict[str, Any]:
    reply.raise_for_status()
    body: dict[str, Any] = reply.json()
    return body


def _payments(
    api: httpx.Client, psp: httpx.Client, psp_url: str
) -> tuple[list[Step], list[Payment]]:
    steps: list[Step] = []
    account = _ok(
        api.post(
            "/v1/connector_accounts",
            data={
                "provider": "sandbox",
                "name": "Demo sandbox",
                "base_url": psp_url,
                "credentials[secret]": DEFAULT_SECRET,
            },
        )
    )
    steps.append(Step("connect the merchant to the sandbox PSP", f"{account['id']} at {psp_url}"))
    customer = _ok(api.post("/v1/customers", data={"name": "Ada", "email": "ada@example.com"}))
    card = _ok(api.post("/v1/payment_methods", data={"type": "card", "card[token]": "tok_visa"}))
    _ok(api.post(f"/v1/payment_methods/{card['id']}/attach", data={"customer": customer["id"]}))
    steps.append(
        Step(
            "a customer and a card",
            f"{customer['id']} with {card['card']['brand']} ending {card['card']['last4']}",
        )
    )

    def pay(amount: int, capture_method: str) -> dict[str, Any]:
        return _ok(
            api.post(
                "/v1/payment_intents",
                data={
                    "amount": amount,
                    "currency": "usd",
                    "customer": customer["id"],
                    "payment_method": card["id"],
                    "capture_method": capture_method,
                    "confirm": "true",
                },
            )
        )

    automatic = pay(2500, "automatic")
    steps.append(
        Step("pay 25.00 USD, captured at once", f"{automatic['id']}: {automatic['status']}")
    )
    manual = pay(4000, "manual")
    steps.append(
        Step(
            "authorize 40.00 USD, to capture later",
            f"{manual['id']}: {manual['status']}, {_usd(manual['amount_capturable'])} capturable",
        )
    )
    manual = _ok(
        api.post(f"/v1/payment_intents/{manual['id']}/capture", data={"amount_to_capture": 3000})
    )
    steps.append(
        Step(
            "capture 30.00 of it (the rest is released)",
            f"{manual['status']}, {_usd(manual['amount_received'])} received",
        )
    )
    refund = _ok(api.post("/v1/refunds", data={"payment_intent": automatic["id"], "amount": 1000}))
    steps.append(
        Step(
            "refund 10.00 of the first payment",
            f"{refund['id']}: {refund['status']}, {_usd(refund['amount'])}",
        )
    )

    # Every payment the sandbox takes now is charged, then its answer never comes back.
    before = _ok(psp.post("/sandbox/faults", json={}))
    _ok(
        psp.post(
            "/sandbox/faults",
            json={"rate": 1, "seed": 1, "kinds": ["timeout_after"], "hang_seconds": HANG_SECONDS},
        )
    )
    started = time.monotonic()
    try:
        doubtful = pay(1500, "automatic")
    finally:
        _ok(psp.post("/sandbox/faults", json=before))  # as it was, for other clients
    steps.append(
        Step(
            "pay 15.00 USD; the sandbox charges but its answer is lost",
            f"{doubtful['id']}: {doubtful['status']} after {time.monotonic() - started:.0f} s,"
            " in doubt: never sent again as a new charge",
        )
    )
    settled = _settle(api, doubtful["id"])
    record = _ok(psp.get("/sandbox/record"))

    def charges(intent: dict[str, Any]) -> int:
        return sum(p["reference"] == intent["latest_charge"] for p in record["payments"])

    steps.append(
        Step(
            "resolve it: payrail asks the sandbox by the charge's idempotency key",
            f"{settled['status']} after {time.monotonic() - started:.0f} s;"
            f" the sandbox charged it {charges(settled)} time(s)",
        )
    )
    return steps, [
        Payment("automatic capture", automatic, refund["amount"], charges(automatic)),
        Payment("manual, partial capture", manual, 0, charges(manual)),
        Payment("in doubt, resolved", settled, 0, charges(settled)),
    ]


def _settle(api: httpx.Client, intent_id: str) -> dict[str, Any]:
    """Poll the intent until it leaves `processing`: the janitor, or reading the intent
    once its check is due, asks the PSP what became of the charge."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        intent = _ok(api.get(f"/v1/payment_intents/{intent_id}"))
        if intent["status"] != "processing":
            return intent
        if time.monotonic() > deadline:
            raise RuntimeError(f"{intent_id} was still processing after {SETTLE_TIMEOUT:.0f} s")
        time.sleep(0.5)


@dataclass(frozen=True)
class Received:
    signature: str | None  # the Stripe-Signature header
    body: bytes
    at: int  # unix seconds when it arrived


class Receiver:
    """A merchant's webhook endpoint, as small as can be: it keeps what it is sent and
    answers 200. The demo checks the signatures afterwards, from the raw bodies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[Received] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                got = Received(self.headers.get("Stripe-Signature"), body, int(time.time()))
                with receiver._lock:
                    receiver._received.append(got)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # not on the demo's output

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}/hooks/payrail"

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    @contextmanager
    def running(self) -> Iterator[Receiver]:
        thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()


@contextmanager
def _private_webhooks_allowed() -> Iterator[None]:
    """Webhooks to loopback addresses allowed, for the API run in this process: its
    endpoint validation reads the variable (Settings.from_env) on every save, and the
    demo's receiver is on 127.0.0.1. Set in this process's environment only, for the
    length of the block, and restored after, so that nothing started later inherits it."""
    before = os.environ.get(ALLOW_PRIVATE)
    os.environ[ALLOW_PRIVATE] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ALLOW_PRIVATE, None)
        else:
            os.environ[ALLOW_PRIVATE] = before


def _all(api: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every object of a list endpoint, newest first, page by page."""
    objects: list[dict[str, Any]] = []
    while True:
        page = _ok(api.get(path, params={"limit": 100, **params}))
        objects += page["data"]
        if not page["has_more"]:
            return objects
        params["starting_after"] = objects[-1]["id"]


def _published(api: httpx.Client) -> float | None:
    """`payrail_relay_published_events_total` as the API's /metrics shows it, summed
    over transports; None if it is not there (the relay runs in another process)."""
    try:
        reply = api.get("/metrics")
    except httpx.HTTPError:
        return None
    found = PUBLISHED.findall(reply.text) if reply.status_code == 200 else []
    return sum(float(value) for value in found) if found else None


def _register(
    api: httpx.Client, receiver: Receiver, url: str
) -> tuple[dict[str, Any] | None, Step, str | None]:
    """The demo's endpoint, secret included (shown this once). If the API will not have
    it, None, and what to tell the user: the demo goes on without webhooks."""
    what = "register a webhook endpoint on this machine, for payment and refund events"
    reply = api.post(
        "/v1/webhook_endpoints",
        data={
            "url": receiver.url,
            "description": "payrail demo receiver",
            **{f"enabled_events[{i}]": kind for i, kind in enumerate(WEBHOOK_EVENTS)},
        },
    )
    if reply.status_code != 200:
        try:
            error = reply.json()["error"]
        except (ValueError, KeyError, TypeError):
            error = {"message": reply.text[:200]}
        if error.get("param") == "url":  # a loopback URL, and private addresses not allowed
            return (
                None,
                Step(what, f"refused: {error.get('message')}"),
                f"the API at {url} refuses webhooks to this machine; to see them delivered"
                f" and verified here, run: {ENABLE_PRIVATE}",
            )
        failed = f"HTTP {reply.status_code}: {error.get('message')}"
        return None, Step(what, failed), f"skipped: the API did not create the endpoint ({failed})"
    endpoint: dict[str, Any] = reply.json()
    return (
        endpoint,
        Step(
            what,
            f"{endpoint['id']} to {receiver.url}; its secret {endpoint['secret'][:10]}..."
            " is shown this once, and kept to verify the deliveries",
        ),
        None,
    )


def _await_webhooks(
    api: httpx.Client, receiver: Receiver, endpoint: dict[str, Any], events: list[dict[str, Any]]
) -> tuple[list[Webhook], Step, list[str], list[str]]:
    """Wait (up to WEBHOOK_TIMEOUT) for the endpoint's events to arrive and payrail to
    record their attempts; then check every signature against the secret and raw body."""
    wanted = {e["id"] for e in events if e["type"] in WEBHOOK_EVENTS}
    deadline = time.monotonic() + WEBHOOK_TIMEOUT
    while True:
        received = receiver.received()
        arrived = {_event_of(r)[0] for r in received}
        deliveries = {
            d["event"]: d
            for d in _all(api, "/v1/webhook_deliveries", webhook_endpoint=endpoint["id"])
        }
        recorded = {e for e, d in deliveries.items() if d["last_attempt"] is not None}
        if wanted <= arrived and wanted <= recorded:
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)

    notes: list[str] = []
    missing = wanted - arrived
    if missing:
        notes.append(
            f"waited {WEBHOOK_TIMEOUT:.0f} s: {len(wanted) - len(missing)} of {len(wanted)}"
            f" webhooks arrived. {_why_missing(api, deliveries, missing)}"
        )
    rejected: list[str] = []
    webhooks: dict[str, Webhook] = {}
    for copy in received:
        event_id, event_type = _event_of(copy)
        try:
            verify_stripe_signature(
                endpoint["secret"], copy.signature or "", copy.body, now=copy.at
            )
            verified = True
        except ValueError as exc:
            verified = False
            rejected.append(f"{event_type} {event_id}: {exc}")
        seen = webhooks.get(event_id)
        attempts = deliveries[event_id]["attempt_count"] if event_id in deliveries else 0
        webhooks[event_id] = Webhook(
            event_type, event_id, verified and (seen is None or seen.verified), attempts
        )
    good = sum(w.verified for w in webhooks.values())
    outcome = f"{len(webhooks)} received, {good} with a valid Stripe-Signature"
    if rejected:
        outcome += f"; REJECTED: {len(rejected)} did not verify"
    if missing:
        outcome += f"; {len(missing)} never arrived"
    step = Step("receive the payment and refund webhooks, check each signature", outcome)
    newest_first = {e["id"]: i for i, e in enumerate(events)}
    listed = sorted(webhooks.values(), key=lambda w: newest_first.get(w.event_id, len(events)))
    return listed, step, notes, rejected


def _event_of(copy: Received) -> tuple[str, str]:
    """The id and type of the event a delivery carries (read only to label it)."""
    try:
        event = json.loads(copy.body)
        return str(event["id"]), str(event["type"])
    except (ValueError, KeyError, TypeError):
        return "?", "?"


def _why_missing(api: httpx.Client, deliveries: dict[str, Any], missing: set[str]) -> str:
    """What payrail says of the last attempt of a webhook that did not arrive."""
    for event_id in missing:
        delivery = deliveries.get(event_id)
        if delivery is None:
            continue
        attempts = _ok(api.get(f"/v1/webhook_deliveries/{delivery['id']}/attempts"))["data"]
        if attempts:
            error = attempts[0]["error"] or f"HTTP {attempts[0]['status_code']}"
            hint = (
                f" The delivery workers need {ALLOW_PRIVATE}=1 too." if "refused" in error else ""
            )
            return f"payrail's last attempt: {error}.{hint}"
    return "payrail has not attempted them yet (is a webhooks worker running?)."


def run(settings: Settings, url: str) -> None:
    console = Console()
    with database(settings) as database_url, _sandbox(settings) as psp_url:
        upgrade(database_url)
        key = asyncio.run(_new_key(database_url))
        # The in-doubt payment alone takes about half a minute: say so while it runs.
        waiting = console.status("running the scenario (the in-doubt payment takes ~30 s)")
        if _reachable(url):
            with waiting:
                outcome = _run_against(url, key, psp_url, database_url)
        else:
            console.print(f"nothing answers at {url}; running the API in this process")
            vault = Vault(Keyring.from_env(settings.data_dir))
            # With the workers, as under `payrail up`: the janitor settles the payment in
            # doubt, the relay publishes the events, the webhooks workers deliver them.
            # Webhooks to the demo's loopback receiver are allowed for this API only.
            with (
                _private_webhooks_allowed(),
                serve_in_thread(
                    database_url, SystemClock(), vault, workers=True, webhooks_allow_private=True
                ) as local,
                waiting,
            ):
                outcome = _run_against(local, key, psp_url, database_url)
    _print(console, outcome, url)
    if outcome.business is not None:
        business_demo.show(console, outcome.business)  # exits 1 if a step of it failed
    if outcome.reconciled is not None:
        recon_demo.show(console, outcome.reconciled)
    if outcome.rejected:
        console.print("[red]webhook signatures that did not verify; the demo fails[/red]")
        raise SystemExit(1)


def _print(console: Console, outcome: Outcome, url: str) -> None:
    table = Table("step", "outcome", title="payrail demo: a merchant, a ledger, payments")
    for step in outcome.steps:
        table.add_row(step.what, step.outcome)
    console.print(table)
    summary = Table("account", "posted", "pending", "available", title="balances (USD)")
    for account in outcome.balances:
        b = account["balances"]
        summary.add_row(
            account["name"],
            *(_usd(b[kind]["amount"]) for kind in ("posted", "pending", "available")),
        )
    console.print(summary)
    # No ids here (the steps show them): the table stays within 80 columns.
    paid = Table("payment", "status", "received", "refunded", "PSP charges", title="payments (USD)")
    for payment in outcome.payments:
        paid.add_row(
            payment.what,
            payment.intent["status"],
            _usd(payment.intent["amount_received"]),
            _usd(payment.refunded),
            str(payment.charges),
        )
    console.print(paid)
    events = Table(title=f"events the scenario wrote ({len(outcome.events)}, newest first)")
    events.add_column("type (GET /v1/events)", overflow="fold")
    events.add_column("object", no_wrap=True)
    events.add_column("created", no_wrap=True)
    for event in outcome.events:
        created = time.strftime("%H:%M:%S", time.localtime(event["created"]))
        events.add_row(event["type"], event["data"]["object"].get("id", ""), created)
    console.print(events)
    if outcome.published is None:
        console.print(
            "published by the relay: not shown at /metrics here (the relay runs in another"
            " process: see that process's payrail_relay_published_events_total)"
        )
    else:
        console.print(
            f"published by the relay: {outcome.published:.0f} events since the API process"
            f" started, all merchants (payrail_relay_published_events_total at {url}/metrics)"
        )
    if outcome.webhooks:
        # Without edge padding a 24-character type and a whole event id fit in 80 columns.
        hooks = Table(
            title="webhooks received (Stripe-Signature checked with the secret)", pad_edge=False
        )
        hooks.add_column("event type", overflow="fold")
        hooks.add_column("event id", no_wrap=True)
        hooks.add_column("verified", no_wrap=True)
        hooks.add_column("attempts", no_wrap=True)
        for hook in outcome.webhooks:
            hooks.add_row(
                hook.event_type,
                hook.event_id,
                "yes" if hook.verified else "[red]NO[/red]",
                str(hook.attempts),
            )
        console.print(hooks)
    for note in outcome.notes:
        console.print(f"[yellow]webhooks:[/yellow] {note}")
    for rejected in outcome.rejected:
        console.print(f"[red]signature rejected:[/red] {rejected}")


def _run_against(url: str, key: str, psp_url: str, database_url: str) -> Outcome:
    with (
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as api,
        httpx.Client(
            base_url=psp_url, headers={"Authorization": f"Bearer {DEFAULT_SECRET}"}, timeout=30
        ) as psp,
        Receiver().running() as receiver,
    ):
        steps, balances = _scenario(api)
        endpoint, registered, note = _register(api, receiver, url)
        try:
            payment_steps, payments = _payments(api, psp, psp_url)
            outcome = Outcome([*steps, registered, *payment_steps], balances, payments)
            outcome.events = _all(api, "/v1/events")
            if note is not None:
                outcome.notes.append(note)
            if endpoint is not None:
                outcome.webhooks, received, outcome.notes, outcome.rejected = _await_webhooks(
                    api, receiver, endpoint, outcome.events
                )
                outcome.steps.append(received)
        finally:
            if endpoint is not None:
                # Nothing is left sending to a receiver that is about to stop.
                api.delete(f"/v1/webhook_endpoints/{endpoint['id']}")
        outcome.published = _published(api)
        outcome.business = business_demo.run(api)
        outcome.reconciled = recon_demo.run(api, psp, database_url)
        return outcome
