"""`payrail demo`: a short scripted scenario against a running payrail, with a summary.

It talks to the API over HTTP like any client. If nothing answers at the URL, it starts
the platform in this process (embedded PostgreSQL) for the length of the demo. Payments
go to the sandbox PSP that `payrail up` runs, or to one started here when none answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
from rich.console import Console
from rich.table import Table

from payrail.clock import SystemClock
from payrail.config import Settings
from payrail.connectors.sandbox import SandboxConfig
from payrail.connectors.sandbox.config import DEFAULT_SECRET
from payrail.connectors.sandbox.server import run_sandbox
from payrail.db.migrate import upgrade
from payrail.money import Money
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
class Outcome:
    steps: list[Step]
    balances: list[dict[str, Any]]
    payments: list[Payment]


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


def run(settings: Settings, url: str) -> None:
    console = Console()
    with database(settings) as database_url, _sandbox(settings) as psp_url:
        upgrade(database_url)
        key = asyncio.run(_new_key(database_url))
        # The in-doubt payment alone takes about half a minute: say so while it runs.
        waiting = console.status("running the scenario (the in-doubt payment takes ~30 s)")
        if _reachable(url):
            with waiting:
                outcome = _run_against(url, key, psp_url)
        else:
            console.print(f"nothing answers at {url}; running the API in this process")
            vault = Vault(Keyring.from_env(settings.data_dir))
            # With the workers, as under `payrail up`: the janitor settles the payment in doubt.
            with (
                serve_in_thread(database_url, SystemClock(), vault, workers=True) as local,
                waiting,
            ):
                outcome = _run_against(local, key, psp_url)
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


def _run_against(url: str, key: str, psp_url: str) -> Outcome:
    with (
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as api,
        httpx.Client(
            base_url=psp_url, headers={"Authorization": f"Bearer {DEFAULT_SECRET}"}, timeout=30
        ) as psp,
    ):
        steps, balances = _scenario(api)
        payment_steps, payments = _payments(api, psp, psp_url)
        return Outcome(steps + payment_steps, balances, payments)
