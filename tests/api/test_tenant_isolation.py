"""One merchant can never see or touch another's objects, on any route.

The route test walks the application's own routing table, so a new /v1 route taking an
object id fails it until this file learns how to make an object for that route.
"""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.api.app import create_app
from payrail.api.context import Services
from payrail.billing.engine import Engine
from payrail.clock import ManualClock
from payrail.connectors.sandbox import SandboxConfig
from payrail.connectors.sandbox.server import run_sandbox
from payrail.recon.runs import Source, reconcile_provider
from payrail.tenants.scope import Scope
from payrail.tenants.service import NewMerchant
from tests.conftest import new_merchant
from tests.connectors.accounts.helpers import SECRET, bearer, sandbox_account
from tests.events.webhooks.helpers import fan_out_events
from tests.payments.webhook_helpers import make_dispute
from tests.routes import api_routes
from tests.vaults import fixed_vault

Json = dict[str, Any]

ACCOUNTS = "/v1/ledger/accounts"
TRANSACTIONS = "/v1/ledger/transactions"
PAYMENT_METHODS = "/v1/payment_methods"
CUSTOMERS = "/v1/customers"
CONNECTOR_ACCOUNTS = "/v1/connector_accounts"
ROUTING_RULES = "/v1/routing_rules"
PAYMENT_INTENTS = "/v1/payment_intents"
REFUNDS = "/v1/refunds"
WEBHOOK_ENDPOINTS = "/v1/webhook_endpoints"
PRODUCTS = "/v1/products"
PRICES = "/v1/prices"
CLOCKS = "/v1/test_helpers/test_clocks"
SUBSCRIPTIONS = "/v1/subscriptions"
INVOICES = "/v1/invoices"
CREDIT_NOTES = "/v1/credit_notes"
# id prefix -> route
KINDS = {
    "lacc": ACCOUNTS,
    "ltx": TRANSACTIONS,
    "pm": PAYMENT_METHODS,
    "cus": CUSTOMERS,
    "ca": CONNECTOR_ACCOUNTS,
    "rr": ROUTING_RULES,
    "pi": PAYMENT_INTENTS,
    "re": REFUNDS,
    "dp": "/v1/disputes",
    "evt": "/v1/events",
    "we": "/v1/webhook_endpoints",
    "whdel": "/v1/webhook_deliveries",
    "prod": PRODUCTS,
    "price": PRICES,
    "clock": CLOCKS,
    "sub": SUBSCRIPTIONS,
    "in": INVOICES,
    "cn": CREDIT_NOTES,
    "rcr": "/v1/reconciliation_runs",
    "rbk": "/v1/reconciliation_breaks",
}
# Test clocks start at 2026-01-01 and are advanced a day, by owner and intruder alike.
FROZEN_TIME = 1_767_225_600
DAY = 86_400
ADVANCE = {"frozen_time": FROZEN_TIME + DAY}


@pytest.fixture(scope="module")
def psp_url() -> Iterator[str]:
    """A sandbox PSP the owner's payments go to, so that the owner's own calls succeed."""
    with run_sandbox(SandboxConfig(secret=SECRET), ManualClock(), grace_seconds=1) as url:
        yield url


@dataclass(frozen=True)
class Tenant:
    http: httpx.AsyncClient
    headers: dict[str, str]
    psp_url: str | None = None  # a sandbox PSP its payments go to
    pool: AsyncConnectionPool | None = None  # for work no route does (webhook fan-out)
    services: Services | None = None  # for the billing engine

    async def post(self, path: str, body: Json | None = None) -> Json:
        reply = await self.http.post(path, json=body or {}, headers=self.headers)
        assert reply.status_code == 200, reply.text
        obj: Json = reply.json()
        return obj

    async def get(self, path: str, **params: Any) -> Json:
        reply = await self.http.get(path, params=params, headers=self.headers)
        assert reply.status_code == 200, reply.text
        obj: Json = reply.json()
        return obj

    async def account(self, name: str = "cash", type_: str = "asset") -> str:
        obj = await self.post(ACCOUNTS, {"name": name, "type": type_, "currency": "usd"})
        account_id: str = obj["id"]
        return account_id

    async def transaction(self, external_id: str, *, pending: bool = False) -> str:
        cash = await self.account(f"cash for {external_id}")
        revenue = await self.account(f"revenue for {external_id}", "revenue")
        obj = await self.post(
            TRANSACTIONS,
            {
                "external_id": external_id,
                "entries": [
                    {"account": cash, "direction": "debit", "amount": 700},
                    {"account": revenue, "direction": "credit", "amount": 700},
                ],
                "pending": pending,
                "metadata": {"owner": "b"},
            },
        )
        transaction_id: str = obj["id"]
        return transaction_id


Factory = Callable[[Tenant, str], Awaitable[str]]  # (owner, a unique tag) -> object id


async def any_account(owner: Tenant, tag: str) -> str:
    return await owner.account(f"account for {tag}")


async def posted_transaction(owner: Tenant, tag: str) -> str:
    return await owner.transaction(f"posted for {tag}")


async def pending_transaction(owner: Tenant, tag: str) -> str:
    return await owner.transaction(f"pending for {tag}", pending=True)


async def card(owner: Tenant, tag: str) -> str:
    obj = await owner.post(PAYMENT_METHODS, {"type": "card", "card": {"token": "tok_visa"}})
    payment_method_id: str = obj["id"]
    return payment_method_id


async def customer(owner: Tenant, tag: str) -> str:
    obj = await owner.post(CUSTOMERS, {"email": "jo@example.com", "metadata": {"tag": tag[:40]}})
    customer_id: str = obj["id"]
    return customer_id


async def attached_card(owner: Tenant, tag: str) -> str:
    payment_method_id = await card(owner, tag)
    body = {"customer": await customer(owner, tag)}
    await owner.post(f"{PAYMENT_METHODS}/{payment_method_id}/attach", body)
    return payment_method_id


async def connector_account(owner: Tenant, tag: str) -> str:
    body = {"provider": "stripe", "credentials": {"secret": "sk_test_isolation_4242"}}
    obj = await owner.post(CONNECTOR_ACCOUNTS, {**body, "metadata": {"tag": tag[:500]}})
    connector_account_id: str = obj["id"]
    return connector_account_id


async def routing_rule(owner: Tenant, tag: str) -> str:
    chain = [await connector_account(owner, tag)]
    obj = await owner.post(ROUTING_RULES, {"priority": 1, "connector_accounts": chain})
    routing_rule_id: str = obj["id"]
    return routing_rule_id


async def sandbox_route(owner: Tenant) -> None:
    """A sandbox account at the owner's PSP, first in the routing (priority 0) of usd, so
    that connector accounts other factories make for other providers never take a usd
    payment, whichever factory runs first (the dispute's jpy has a sandbox of its own)."""
    assert owner.psp_url is not None, "this owner has no sandbox PSP"
    account = await owner.post(CONNECTOR_ACCOUNTS, sandbox_account(owner.psp_url))
    rule = {"priority": 0, "connector_accounts": [account["id"]]}
    await owner.post(ROUTING_RULES, {**rule, "conditions": {"currencies": ["usd"]}})


async def unconfirmed_intent(owner: Tenant, tag: str) -> str:
    """An intent in requires_confirmation that a confirm would charge."""
    await sandbox_route(owner)
    body = {"amount": 1500, "currency": "usd", "payment_method": "pm_card_visa"}
    obj = await owner.post(PAYMENT_INTENTS, {**body, "metadata": {"tag": tag[:500]}})
    assert obj["status"] == "requires_confirmation", obj
    intent_id: str = obj["id"]
    return intent_id


async def authorized_intent(owner: Tenant, tag: str) -> str:
    """An intent in requires_capture: its card is authorized at the sandbox."""
    await sandbox_route(owner)
    obj = await owner.post(
        PAYMENT_INTENTS,
        {
            "amount": 1500,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "capture_method": "manual",
            "confirm": True,
        },
    )
    assert obj["status"] == "requires_capture", obj
    intent_id: str = obj["id"]
    return intent_id


async def refund(owner: Tenant, tag: str) -> str:
    """A refund of part of a succeeded intent."""
    await sandbox_route(owner)
    body = {"amount": 1500, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    intent = await owner.post(PAYMENT_INTENTS, body)
    assert intent["status"] == "succeeded", intent
    obj = await owner.post(REFUNDS, {"payment_intent": intent["id"], "amount": 100})
    assert obj["status"] == "succeeded", obj
    refund_id: str = obj["id"]
    return refund_id


async def dispute(owner: Tenant, tag: str) -> str:
    return await make_dispute(owner.http, owner.headers)


async def reconciled(owner: Tenant, tag: str) -> str:
    """A run of a report of the owner's connector account with one row payrail never
    made: a run with a missing_internal break. Runs come from files, not the API."""
    assert owner.pool is not None and owner.services is not None
    connector = await connector_account(owner, tag)
    async with owner.pool.connection() as conn:
        found = await (
            await conn.execute(
                "SELECT merchant_id, livemode FROM connector_accounts WHERE id = %s", (connector,)
            )
        ).fetchone()
        assert found is not None
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "report.csv"
            path.write_text(
                "balance_transaction_id,created_utc,currency,gross,fee,net,reporting_category,"
                f"source_id\ntxn_{tag},2026-01-01 10:00:00,usd,10.00,0.00,10.00,charge,ch_{tag}\n"
            )
            async with conn.transaction():
                run, _ = await reconcile_provider(
                    conn,
                    Scope(*found),
                    owner.services.clock,
                    connector,
                    Source(path, "stripe", path.name),
                    date(2026, 1, 1),
                )
    run_id: str = run["id"]
    return run_id


async def reconciliation_break(owner: Tenant, tag: str) -> str:
    run_id = await reconciled(owner, tag)
    listed = await owner.get("/v1/reconciliation_breaks", run=run_id)
    break_id: str = listed["data"][0]["id"]
    return break_id


async def event(owner: Tenant, tag: str) -> str:
    """The owner's newest event: the one its customer's creation wrote."""
    await owner.post(CUSTOMERS, {"email": "events@example.com"})
    listed = await owner.get("/v1/events", limit=1)
    event_id: str = listed["data"][0]["id"]
    return event_id


async def webhook_endpoint(owner: Tenant, tag: str) -> str:
    body = {"url": "https://hooks.example.com/", "enabled_events": ["customer.created"]}
    obj = await owner.post(WEBHOOK_ENDPOINTS, {**body, "metadata": {"tag": tag[:500]}})
    endpoint_id: str = obj["id"]
    return endpoint_id


async def webhook_delivery(owner: Tenant, tag: str) -> str:
    """The delivery of a customer's creation to the owner's endpoint, as the webhooks
    consumer makes it."""
    assert owner.pool is not None, "this owner has no pool to run the consumer with"
    endpoint_id = await webhook_endpoint(owner, tag)
    created = await owner.post(CUSTOMERS, {"email": "hooks@example.com"})
    await fan_out_events(owner.pool, ManualClock(), aggregate_id=created["id"])
    listed = await owner.get("/v1/webhook_deliveries", webhook_endpoint=endpoint_id)
    delivery_id: str = listed["data"][0]["id"]
    return delivery_id


async def product(owner: Tenant, tag: str) -> str:
    """A product without prices: one that can be deleted."""
    obj = await owner.post(PRODUCTS, {"name": "Premium", "metadata": {"tag": tag[:500]}})
    product_id: str = obj["id"]
    return product_id


async def price(owner: Tenant, tag: str) -> str:
    """A monthly price of $10, of a product of its own."""
    obj = await owner.post(
        PRICES,
        {
            "product_data": {"name": "Premium"},
            "currency": "usd",
            "unit_amount": 1000,
            "recurring": {"interval": "month"},
            "metadata": {"tag": tag[:500]},
        },
    )
    price_id: str = obj["id"]
    return price_id


async def frozen_clock(owner: Tenant, tag: str) -> str:
    obj = await owner.post(CLOCKS, {"frozen_time": FROZEN_TIME, "name": tag[:300]})
    clock_id: str = obj["id"]
    return clock_id


async def subscribe(owner: Tenant, tag: str, **more: Any) -> Json:
    """A subscription of a customer whose card (pm_card_visa) is charged at the owner's
    sandbox PSP."""
    await sandbox_route(owner)
    card = "pm_card_visa"
    customer = await owner.post(
        CUSTOMERS,
        {
            "email": "jo@example.com",
            "payment_method": card,
            "invoice_settings": {"default_payment_method": card},
        },
    )
    body = {"customer": customer["id"], "items": [{"price": await price(owner, tag)}]}
    return await owner.post(SUBSCRIPTIONS, {**body, **more, "metadata": {"tag": tag[:500]}})


async def subscription(owner: Tenant, tag: str) -> str:
    """An active subscription, its first invoice paid."""
    obj = await subscribe(owner, tag)
    assert obj["status"] == "active", obj
    subscription_id: str = obj["id"]
    return subscription_id


async def paused_subscription(owner: Tenant, tag: str) -> str:
    """A subscription paused by the billing engine at the end of its trial (its customer,
    on a test clock, had no default card then), the card since made the default."""
    await sandbox_route(owner)
    assert owner.services is not None, "this owner has no services to run the engine with"
    clock_id = await frozen_clock(owner, tag)
    customer = await owner.post(
        CUSTOMERS,
        {"email": "jo@example.com", "test_clock": clock_id, "payment_method": "pm_card_visa"},
    )
    sub = await owner.post(
        SUBSCRIPTIONS,
        {
            "customer": customer["id"],
            "items": [{"price": await price(owner, tag)}],
            "trial_period_days": 1,
            "trial_settings": {"end_behavior": {"missing_payment_method": "pause"}},
        },
    )
    await owner.post(f"{CLOCKS}/{clock_id}/advance", {"frozen_time": FROZEN_TIME + 2 * DAY})
    await Engine(owner.services.pool, owner.services).run_once()
    paused = await owner.get(f"{SUBSCRIPTIONS}/{sub['id']}")
    assert paused["status"] == "paused", paused
    cards = await owner.get(f"{CUSTOMERS}/{customer['id']}/payment_methods")
    default = {"default_payment_method": cards["data"][0]["id"]}
    await owner.post(f"{CUSTOMERS}/{customer['id']}", {"invoice_settings": default})
    subscription_id: str = paused["id"]
    return subscription_id


async def open_invoice(owner: Tenant, tag: str) -> str:
    """A subscription's first invoice, left open for the customer to pay
    (payment_behavior=default_incomplete)."""
    sub = await subscribe(owner, tag, payment_behavior="default_incomplete")
    invoice = await owner.get(f"{INVOICES}/{sub['latest_invoice']}")
    assert (invoice["status"], invoice["amount_remaining"]) == ("open", 1000), invoice
    invoice_id: str = invoice["id"]
    return invoice_id


async def draft_invoice(owner: Tenant, tag: str) -> str:
    """A draft: a price change invoiced at once while the subscription's collection is
    paused with keep_as_draft."""
    sub = await owner.get(f"{SUBSCRIPTIONS}/{await subscription(owner, tag)}")
    product_id = sub["items"]["data"][0]["price"]["product"]
    recurring = {"currency": "usd", "recurring": {"interval": "month"}}
    dearer = await owner.post(PRICES, {"product": product_id, "unit_amount": 2000, **recurring})
    changed = await owner.post(
        f"{SUBSCRIPTIONS}/{sub['id']}",
        {
            "items": [{"price": dearer["id"]}],
            "proration_behavior": "always_invoice",
            "pause_collection": {"behavior": "keep_as_draft"},
        },
    )
    invoice = await owner.get(f"{INVOICES}/{changed['latest_invoice']}")
    assert invoice["status"] == "draft", invoice
    invoice_id: str = invoice["id"]
    return invoice_id


async def credit_note(owner: Tenant, tag: str) -> str:
    """A credit note lowering what is due on an open invoice."""
    body = {"invoice": await open_invoice(owner, tag), "amount": 100}
    obj = await owner.post(CREDIT_NOTES, {**body, "metadata": {"tag": tag[:500]}})
    credit_note_id: str = obj["id"]
    return credit_note_id


# Each route taking an id, and how to make an object of the owner's on which that route
# would succeed: only then does a 404 for someone else prove isolation, not a state error.
FACTORIES: dict[str, Factory] = {
    "/v1/ledger/accounts/{account_id}": any_account,
    "/v1/ledger/accounts/{account_id}/balances": any_account,
    "/v1/ledger/transactions/{transaction_id}": posted_transaction,
    "/v1/ledger/transactions/{transaction_id}/post": pending_transaction,
    "/v1/ledger/transactions/{transaction_id}/void": pending_transaction,
    "/v1/ledger/transactions/{transaction_id}/reverse": posted_transaction,
    "/v1/payment_methods/{payment_method_id}": card,
    "/v1/payment_methods/{payment_method_id}/attach": card,
    "/v1/payment_methods/{payment_method_id}/detach": attached_card,
    "/v1/customers/{customer_id}": customer,
    "/v1/customers/{customer_id}/payment_methods": customer,
    "/v1/connector_accounts/{connector_account_id}": connector_account,
    "/v1/routing_rules/{routing_rule_id}": routing_rule,
    "/v1/payment_intents/{intent_id}": unconfirmed_intent,
    "/v1/payment_intents/{intent_id}/confirm": unconfirmed_intent,
    "/v1/payment_intents/{intent_id}/capture": authorized_intent,
    "/v1/payment_intents/{intent_id}/cancel": authorized_intent,
    "/v1/refunds/{refund_id}": refund,
    "/v1/disputes/{dispute_id}": dispute,
    "/v1/events/{event_id}": event,
    "/v1/webhook_endpoints/{webhook_endpoint_id}": webhook_endpoint,
    "/v1/webhook_deliveries/{delivery_id}": webhook_delivery,
    "/v1/webhook_deliveries/{delivery_id}/attempts": webhook_delivery,
    "/v1/webhook_deliveries/{delivery_id}/retry": webhook_delivery,
    "/v1/products/{product_id}": product,
    "/v1/prices/{price_id}": price,
    "/v1/test_helpers/test_clocks/{test_clock_id}": frozen_clock,
    "/v1/test_helpers/test_clocks/{test_clock_id}/advance": frozen_clock,
    "/v1/subscriptions/{subscription_id}": subscription,
    "/v1/subscriptions/{subscription_id}/resume": paused_subscription,
    "/v1/invoices/{invoice_id}": open_invoice,
    "/v1/invoices/{invoice_id}/lines": open_invoice,
    "/v1/invoices/{invoice_id}/pay": open_invoice,
    "/v1/invoices/{invoice_id}/void": open_invoice,
    "/v1/invoices/{invoice_id}/mark_uncollectible": open_invoice,
    "/v1/invoices/{invoice_id}/finalize": draft_invoice,
    "/v1/credit_notes/{credit_note_id}": credit_note,
    "/v1/credit_notes/{credit_note_id}/void": credit_note,
    "/v1/reconciliation_runs/{run_id}": reconciled,
    "/v1/reconciliation_breaks/{break_id}": reconciliation_break,
    "/v1/reconciliation_breaks/{break_id}/resolve": reconciliation_break,
}
# Routes refusing an empty body before looking the object up, and a body they take, the
# same for owner and intruder.
BODIES: dict[str, Callable[[str], Json]] = {
    "/attach": lambda customer: {"customer": customer},
    "/advance": lambda customer: ADVANCE,
    "/resolve": lambda customer: {"note": "checked with the provider"},
}


def body_for(path: str, customer: str) -> Json | None:
    suffix = "/" + path.rsplit("/", 1)[-1]
    return BODIES[suffix](customer) if suffix in BODIES else None


def routes_with_ids(pool: AsyncConnectionPool, clock: ManualClock) -> list[tuple[str, str]]:
    app = create_app(Services(pool=pool, clock=clock, vault=fixed_vault()))
    found = sorted({(m, p) for m, p in api_routes(app.routes) if p.startswith("/v1") and "{" in p})
    # The walk must see what the app serves: cross-check against its OpenAPI paths.
    documented = sorted(
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/v1") and "{" in path
        for method in operations
    )
    assert found == documented
    return found


def fill(path: str, object_id: str) -> str:
    head, _, rest = path.partition("{")
    _, _, tail = rest.partition("}")
    assert "{" not in tail, f"{path}: more than one path parameter; teach this test"
    return f"{head}{object_id}{tail}"


async def test_every_route_with_an_id_is_404_for_another_merchant(
    client: httpx.AsyncClient,
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
    psp_url: str,
    services: Services,
) -> None:
    routes = routes_with_ids(pool, clock)
    assert routes, "no /v1 route with a path parameter found: the route walk is broken"
    assert {path for _, path in routes} == set(FACTORIES), (
        "routes with ids and the factories of this test differ; teach it the new route"
    )
    other = await new_merchant(pool, clock, "Globex")
    a = Tenant(client, {"Authorization": f"Bearer {merchant.test_secret}"})
    a_live = Tenant(client, {"Authorization": f"Bearer {merchant.live_secret}"})
    b = Tenant(client, {"Authorization": f"Bearer {other.test_secret}"}, psp_url, pool, services)
    await a.transaction("a-own")  # A has objects of its own too

    targets: dict[tuple[str, str], str] = {}
    for method, path in routes:
        targets[(method, path)] = await FACTORIES[path](b, f"{method} {path}")

    async def b_view() -> dict[str, Json]:
        view: dict[str, Json] = {}
        for object_id in set(targets.values()):
            kind = KINDS[object_id.split("_", 1)[0]]
            view[object_id] = await b.get(f"{kind}/{object_id}")
        for kind in KINDS.values():
            view[kind] = await b.get(kind, limit=100)
        # Nor does an intruder's call reach the owner's PSP.
        async with httpx.AsyncClient(base_url=psp_url, headers=bearer(SECRET)) as psp:
            view["sandbox"] = (await psp.get("/sandbox/record")).json()
        return view

    async def counts() -> tuple[int, ...]:
        async with pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT (SELECT count(*) FROM ledger_transactions),"
                    " (SELECT count(*) FROM ledger_entries), (SELECT count(*) FROM events),"
                    " (SELECT count(*) FROM ledger_accounts),"
                    " (SELECT count(*) FROM payment_methods), (SELECT count(*) FROM customers),"
                    " (SELECT count(*) FROM payment_methods WHERE customer_id IS NOT NULL),"
                    " (SELECT count(*) FROM payment_intents), (SELECT count(*) FROM charges),"
                    " (SELECT count(*) FROM refunds),"
                    " (SELECT count(*) FROM connector_accounts),"
                    " (SELECT count(*) FROM routing_rules),"
                    " (SELECT count(*) FROM webhook_endpoints),"
                    " (SELECT count(*) FROM webhook_deliveries),"
                    " (SELECT count(*) FROM products), (SELECT count(*) FROM prices),"
                    " (SELECT count(*) FROM test_clocks), (SELECT count(*) FROM subscriptions),"
                    " (SELECT count(*) FROM invoices), (SELECT count(*) FROM invoice_items),"
                    " (SELECT count(*) FROM credit_notes),"
                    " (SELECT count(*) FROM customer_balance_transactions),"
                    " (SELECT count(*) FROM invoice_payment_attempts)"
                )
            ).fetchone()
        assert row is not None
        return tuple(row)

    async def attempt(
        intruder: Tenant, method: str, path: str, object_id: str, body: Json | None, key: str
    ) -> httpx.Response:
        headers = dict(intruder.headers)
        if method == "POST":
            headers["Idempotency-Key"] = key
        return await client.request(method, fill(path, object_id), json=body, headers=headers)

    # Attaching needs a customer: each caller names one of its own.
    own_customer = {
        name: await customer(tenant, name)
        for name, tenant in (("test", a), ("live", a_live), ("owner", b))
    }
    before, before_counts = await b_view(), await counts()
    for (method, path), object_id in targets.items():
        prefix = object_id.split("_", 1)[0]
        bodies: list[Json | None] = [None]
        if method == "POST":
            bodies.append({})
        if path.endswith("/post"):
            bodies.append({"amount": 1})
        for intruder_name, intruder in (("test", a), ("live", a_live)):
            special = body_for(path, own_customer[intruder_name])
            if special is not None:
                bodies = [special]
            for number, body in enumerate(bodies):
                key = f"{intruder_name}-{method}-{path}-{number}"
                reply = await attempt(intruder, method, path, object_id, body, key)
                assert reply.status_code == 404, (method, path, reply.status_code, reply.text)
                error = reply.json()["error"]
                assert error["type"] == "invalid_request_error"
                assert error["code"] == "resource_missing", (method, path, error)
                assert error["param"] == "id"
                # Indistinguishable from an id that exists nowhere: no existence oracle.
                ghost = f"{prefix}_{'Z' * 24}"
                unknown = await attempt(intruder, method, path, ghost, body, f"{key}-ghost")
                assert unknown.status_code == 404
                assert unknown.json() == {
                    "error": {**error, "message": error["message"].replace(object_id, ghost)}
                }
    assert await b_view() == before
    assert await counts() == before_counts

    # The owner can use every one of those routes on the same objects.
    for (method, path), object_id in targets.items():
        body = body_for(path, own_customer["owner"])
        reply = await client.request(method, fill(path, object_id), json=body, headers=b.headers)
        assert reply.status_code == 200, (method, path, reply.text)


async def test_lists_never_show_another_merchants_objects(
    client: httpx.AsyncClient,
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    other = await new_merchant(pool, clock, "Globex")
    a = Tenant(client, {"Authorization": f"Bearer {merchant.test_secret}"})
    b = Tenant(client, {"Authorization": f"Bearer {other.test_secret}"})
    b_tx = await b.transaction("shared-id")
    b_pending = await b.transaction("b-pending", pending=True)
    b_tx_obj = await b.get(f"{TRANSACTIONS}/{b_tx}")
    b_account = b_tx_obj["entries"][0]["account"]
    # The same external_id is A's own business: no conflict, no replay of B's transaction.
    a_tx = await a.transaction("shared-id")
    assert a_tx != b_tx
    a_accounts = {item["id"] for item in (await a.get(ACCOUNTS, limit=100))["data"]}
    a_transactions = {item["id"] for item in (await a.get(TRANSACTIONS, limit=100))["data"]}
    assert a_transactions == {a_tx}
    assert len(a_accounts) == 2
    assert b_account not in a_accounts

    for params in (
        {"account": b_account},
        {"external_id": "b-pending"},
        {"status": "pending"},
    ):
        assert (await a.get(TRANSACTIONS, **params))["data"] == [], params
    shared = (await a.get(TRANSACTIONS, external_id="shared-id"))["data"]
    assert [item["id"] for item in shared] == [a_tx]

    # A cursor naming B's object is as unknown as a made-up one, in either direction.
    for path, cursor in ((ACCOUNTS, b_account), (TRANSACTIONS, b_tx), (TRANSACTIONS, b_pending)):
        for param in ("starting_after", "ending_before"):
            reply = await client.get(path, params={param: cursor}, headers=a.headers)
            assert reply.status_code == 400, reply.text
            assert reply.json()["error"]["param"] == param

    # Nor can A move money through B's accounts.
    a_cash = next(iter(a_accounts))
    reply = await client.post(
        TRANSACTIONS,
        json={
            "external_id": "a-steal",
            "entries": [
                {"account": a_cash, "direction": "debit", "amount": 5},
                {"account": b_account, "direction": "credit", "amount": 5},
            ],
        },
        headers=a.headers,
    )
    assert reply.status_code == 404
    assert reply.json()["error"]["param"] == "entries[1][account]"
    reply = await client.post(
        f"{TRANSACTIONS}/batch",
        json={
            "transactions": [
                {
                    "external_id": "a-steal-batch",
                    "entries": [
                        {"account": b_account, "direction": "debit", "amount": 5},
                        {"account": a_cash, "direction": "credit", "amount": 5},
                    ],
                }
            ]
        },
        headers=a.headers,
    )
    assert reply.status_code == 404
    assert (await b.get(f"{TRANSACTIONS}/{b_tx}")) == b_tx_obj
    assert (await a.get(TRANSACTIONS, limit=100))["data"][0]["id"] == a_tx
    # B sees only its own, still.
    b_transactions = {item["id"] for item in (await b.get(TRANSACTIONS, limit=100))["data"]}
    assert b_transactions == {b_tx, b_pending}
