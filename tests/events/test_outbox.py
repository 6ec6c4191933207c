"""Every write path writes its event in the same transaction as its change; a request
that changes nothing writes none."""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.api.app import create_app
from payrail.api.context import Services
from payrail.billing.engine import Engine
from payrail.clock import ManualClock, unix
from payrail.connectors.sandbox import SandboxConfig
from payrail.connectors.sandbox.server import run_sandbox
from payrail.recon.runs import Source, reconcile_provider
from payrail.tenants.scope import Scope
from payrail.tenants.service import NewMerchant
from tests.connectors.accounts.helpers import SECRET, bearer, sandbox_account
from tests.events import shapes
from tests.events.webhooks.helpers import fan_out_events
from tests.payments.webhook_helpers import WEBHOOK_SECRET, deliver, provider_payment
from tests.routes import api_routes

# An invoice collected: the intent's capture and fee, then the payment applied to it.
COLLECTED = [
    "payment_intent.created",
    "ledger.transaction.posted",
    "ledger.transaction.posted",
    "payment_intent.succeeded",
    "ledger.transaction.posted",
    "invoice.paid",
    "invoice.payment_succeeded",
]
# Every state-changing route, and the event types one successful call of it writes.
WRITE_PATHS = {
    "/v1/ledger/accounts": ["ledger.account.created"],
    "/v1/ledger/transactions": ["ledger.transaction.posted"],
    "/v1/ledger/transactions/batch": ["ledger.transaction.posted", "ledger.transaction.posted"],
    "/v1/ledger/transactions/{transaction_id}/post": ["ledger.transaction.posted"],
    "/v1/ledger/transactions/{transaction_id}/void": ["ledger.transaction.voided"],
    "/v1/ledger/transactions/{transaction_id}/reverse": [
        "ledger.transaction.posted",
        "ledger.transaction.reversed",
    ],
    "/v1/payment_methods": ["payment_method.created"],
    "/v1/payment_methods/{payment_method_id}/attach": ["payment_method.attached"],
    "/v1/payment_methods/{payment_method_id}/detach": ["payment_method.detached"],
    "/v1/customers": ["customer.created"],
    "/v1/customers/{customer_id}": ["customer.updated"],
    "/v1/connector_accounts": ["connector_account.created"],
    "/v1/connector_accounts/{connector_account_id}": ["connector_account.updated"],
    "/v1/routing_rules": ["routing_rule.created"],
    "/v1/webhook_endpoints": ["webhook_endpoint.created"],
    "/v1/webhook_endpoints/{webhook_endpoint_id}": ["webhook_endpoint.updated"],
    # of a delivery the webhooks consumer made:
    "/v1/webhook_deliveries/{delivery_id}/retry": ["webhook_delivery.retry_scheduled"],
    # Payments, once the payments ledger accounts exist (their first use also writes
    # ledger.account.created for each); an intent without a payment method:
    "/v1/payment_intents": ["payment_intent.created"],
    "/v1/payment_intents/{intent_id}": ["payment_intent.updated"],
    # with manual capture, and a saved payment method:
    "/v1/payment_intents/{intent_id}/confirm": [
        "ledger.transaction.pending",
        "payment_intent.amount_capturable_updated",
    ],
    "/v1/payment_intents/{intent_id}/capture": [
        "ledger.transaction.posted",  # the authorization hold
        "ledger.transaction.posted",  # the processor's fee
        "payment_intent.succeeded",
    ],
    # of an authorized intent:
    "/v1/payment_intents/{intent_id}/cancel": [
        "ledger.transaction.voided",
        "payment_intent.canceled",
    ],
    "/v1/refunds": [
        "ledger.transaction.pending",
        "refund.created",
        "ledger.transaction.posted",
        "refund.updated",
    ],
    # a provider's dispute.created, delivered once:
    "/webhooks/{connector_account_id}": [
        "ledger.transaction.posted",  # the disputed amount withdrawn
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
    ],
    # Billing. The catalog, a merchant's dunning policy, test clocks:
    "/v1/products": ["product.created"],
    "/v1/products/{product_id}": ["product.updated"],
    "/v1/prices": ["price.created"],
    "/v1/prices/{price_id}": ["price.updated"],
    "/v1/dunning/policy": ["dunning_policy.updated"],
    "/v1/reconciliation_breaks/{break_id}/resolve": ["reconciliation.break.resolved"],
    "/v1/test_helpers/test_clocks": ["test_helpers.test_clock.created"],
    "/v1/test_helpers/test_clocks/{test_clock_id}/advance": ["test_helpers.test_clock.advancing"],
    # for a customer with a card, once billing's ledger accounts exist: the first invoice
    # made and finalized with the subscription, then collected through payments.
    "/v1/subscriptions": [
        "invoice.created",
        "ledger.transaction.posted",  # the invoice finalized: receivable, deferred revenue
        "invoice.finalized",
        "customer.subscription.created",
        *COLLECTED,
        "customer.subscription.updated",  # incomplete -> active
    ],
    "/v1/subscriptions/{subscription_id}": ["customer.subscription.updated"],
    # of a subscription paused at its trial's end, its customer's card since saved:
    "/v1/subscriptions/{subscription_id}/resume": [
        "invoice.created",
        "ledger.transaction.posted",
        "invoice.finalized",
        "customer.subscription.resumed",
        *COLLECTED,
    ],
    # of a subscription's first invoice left open (payment_behavior=default_incomplete):
    "/v1/invoices/{invoice_id}/pay": [*COLLECTED, "customer.subscription.updated"],
    "/v1/invoices/{invoice_id}/void": ["ledger.transaction.posted", "invoice.voided"],
    "/v1/invoices/{invoice_id}/mark_uncollectible": [
        "ledger.transaction.posted",  # the receivable written off as bad debt
        "invoice.marked_uncollectible",
    ],
    # of a draft (the subscription's collection paused with keep_as_draft):
    "/v1/invoices/{invoice_id}/finalize": ["ledger.transaction.posted", "invoice.finalized"],
    # of a paid invoice, credited to the customer's balance:
    "/v1/credit_notes": ["ledger.transaction.posted", "credit_note.created", "invoice.updated"],
    "/v1/credit_notes/{credit_note_id}/void": [
        "ledger.transaction.posted",
        "credit_note.voided",
        "invoice.updated",
    ],
}
# The first payment: its test card becomes a payment method, the payments ledger
# accounts are made, then the capture and the fee are posted.
FIRST_PAYMENT = [
    "payment_method.created",
    "payment_intent.created",
    *["ledger.account.created"] * 6,
    "ledger.transaction.posted",
    "ledger.transaction.posted",
    "payment_intent.succeeded",
]
# The first subscription: billing's ledger accounts are made as its invoice is finalized.
FIRST_SUBSCRIPTION = [
    "invoice.created",
    *["ledger.account.created"] * 5,
    *WRITE_PATHS["/v1/subscriptions"][1:],
]
Emitted = list[tuple[str, str, Any]]
EmittedBy = Callable[..., Awaitable[Emitted]]


@pytest.fixture(scope="module")
def psp_url() -> Iterator[str]:
    with run_sandbox(SandboxConfig(secret=SECRET), ManualClock(), grace_seconds=1) as url:
        yield url


async def events(pool: AsyncConnectionPool, merchant_id: str) -> list[tuple[str, str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT type, aggregate_id, payload FROM events WHERE merchant_id = %s ORDER BY seq",
            (merchant_id,),
        )
        return list(await cur.fetchall())


def test_every_write_route_is_covered(services: Services) -> None:
    routes = {path for method, path in api_routes(create_app(services).routes) if method == "POST"}
    assert routes == set(WRITE_PATHS), "a new write path needs its events asserted here"


async def test_merchant_creation_emits_one_event_per_mode(
    pool: AsyncConnectionPool, merchant: NewMerchant
) -> None:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT type, livemode, aggregate_id FROM events WHERE merchant_id = %s ORDER BY seq",
            (merchant.id,),
        )
        rows = await cur.fetchall()
    assert rows == [
        ("merchant.created", False, merchant.id),
        ("merchant.created", True, merchant.id),
    ]


async def test_each_write_path_emits_its_events_and_nothing_else(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    merchant: NewMerchant,
    psp_url: str,
    clock: ManualClock,
    services: Services,
) -> None:
    async def emitted_by(
        path: str, data: dict[str, Any], expected: list[str] | None = None, key: str | None = None
    ) -> Emitted:
        before = len(await events(pool, merchant.id))
        headers = auth if key is None else {**auth, "Idempotency-Key": key}
        reply = await client.post(path, headers=headers, json=data)
        assert reply.status_code == 200, reply.text
        new = (await events(pool, merchant.id))[before:]
        template = next(p for p in WRITE_PATHS if _matches(p, path))
        wanted = WRITE_PATHS[template] if expected is None else expected
        assert [event_type for event_type, _, _ in new] == wanted, path
        return new

    [(_, cash, account)] = await emitted_by(
        "/v1/ledger/accounts", {"name": "Cash", "type": "asset", "currency": "usd"}
    )
    assert account["id"] == cash and account["object"] == "ledger_account"
    [(_, revenue, _)] = await emitted_by(
        "/v1/ledger/accounts", {"name": "Revenue", "type": "revenue", "currency": "usd"}
    )

    def transfer(external_id: str, amount: int, **extra: Any) -> dict[str, Any]:
        return {
            "external_id": external_id,
            "entries": [
                {"account": cash, "direction": "debit", "amount": amount},
                {"account": revenue, "direction": "credit", "amount": amount},
            ],
            **extra,
        }

    [(_, posted_id, payload)] = await emitted_by("/v1/ledger/transactions", transfer("t1", 100))
    reply = await client.get(f"/v1/ledger/transactions/{posted_id}", headers=auth)
    assert payload == reply.json(), "the payload is the API object"

    batch = await emitted_by(
        "/v1/ledger/transactions/batch", {"transactions": [transfer("b1", 5), transfer("b2", 6)]}
    )
    assert len({aggregate for _, aggregate, _ in batch}) == 2

    held = await client.post(
        "/v1/ledger/transactions", headers=auth, json=transfer("h1", 50, pending=True)
    )
    assert held.status_code == 200
    await emitted_by(f"/v1/ledger/transactions/{held.json()['id']}/post", {"amount": 20})
    held2 = await client.post(
        "/v1/ledger/transactions", headers=auth, json=transfer("h2", 50, pending=True)
    )
    await emitted_by(f"/v1/ledger/transactions/{held2.json()['id']}/void", {})
    reversal = await emitted_by(f"/v1/ledger/transactions/{posted_id}/reverse", {})
    assert [aggregate for _, aggregate, _ in reversal][1] == posted_id
    [(_, card_id, card)] = await emitted_by(
        "/v1/payment_methods", {"type": "card", "card": {"token": "tok_visa"}}
    )
    assert card == (await client.get(f"/v1/payment_methods/{card_id}", headers=auth)).json()
    [(_, customer_id, _)] = await emitted_by("/v1/customers", {"email": "jo@example.com"})
    await emitted_by(f"/v1/customers/{customer_id}", {"name": "Jo"})
    [(_, _, attached)] = await emitted_by(
        f"/v1/payment_methods/{card_id}/attach", {"customer": customer_id}
    )
    assert attached["customer"] == customer_id
    [(_, _, detached)] = await emitted_by(f"/v1/payment_methods/{card_id}/detach", {})
    assert detached["customer"] is None

    # Webhooks: an endpoint, the consumer's delivery of an event to it, resent by hand.
    [(_, endpoint_id, endpoint)] = await emitted_by(
        "/v1/webhook_endpoints",
        {"url": "https://hooks.example.com/", "enabled_events": ["customer.created"]},
    )
    assert "secret" not in endpoint
    await emitted_by(f"/v1/webhook_endpoints/{endpoint_id}", {"description": "orders"})
    await emitted_by("/v1/customers", {"email": "hooked@example.com"})
    await fan_out_events(pool, clock, merchant.id)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id FROM webhook_deliveries WHERE endpoint_id = %s", (endpoint_id,)
        )
        [(delivery_id,), *_] = await cur.fetchall()
    await emitted_by(f"/v1/webhook_deliveries/{delivery_id}/retry", {})

    [(_, connector_account_id, connector_account)] = await emitted_by(
        "/v1/connector_accounts",
        {"provider": "stripe", "credentials": {"secret": "sk_test_outbox_4242"}},
    )
    retrieved = await client.get(f"/v1/connector_accounts/{connector_account_id}", headers=auth)
    assert connector_account == retrieved.json()
    await emitted_by(f"/v1/connector_accounts/{connector_account_id}", {"enabled": False})
    [(_, routing_rule_id, _)] = await emitted_by(
        "/v1/routing_rules", {"priority": 1, "connector_accounts": [connector_account_id]}
    )

    # Payments, at a sandbox PSP (the stripe account above is disabled: it takes none).
    credentials = {"secret": SECRET, "webhook_secret": WEBHOOK_SECRET}
    [(_, sandbox_id, _)] = await emitted_by(
        "/v1/connector_accounts", sandbox_account(psp_url, credentials=credentials)
    )
    first = {"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa"}
    paid = await emitted_by("/v1/payment_intents", {**first, "confirm": True}, FIRST_PAYMENT)
    intent_id = paid[1][1]
    assert paid[-1][1] == intent_id and paid[-1][2]["status"] == "succeeded"
    [(_, manual_id, created)] = await emitted_by(
        "/v1/payment_intents", {"amount": 5000, "currency": "usd", "capture_method": "manual"}
    )
    assert created["status"] == "requires_payment_method"
    [(_, _, updated)] = await emitted_by(
        f"/v1/payment_intents/{manual_id}", {"metadata": {"order": "42"}}
    )
    assert updated["metadata"] == {"order": "42"}
    [(_, saved_card, _)] = await emitted_by(
        "/v1/payment_methods", {"type": "card", "card": {"token": "tok_visa"}}
    )
    confirmed = await emitted_by(
        f"/v1/payment_intents/{manual_id}/confirm", {"payment_method": saved_card}
    )
    assert confirmed[1][2]["status"] == "requires_capture"
    captured = await emitted_by(
        f"/v1/payment_intents/{manual_id}/capture", {"amount_to_capture": 3000}
    )
    assert captured[-1][2]["amount_received"] == 3000
    refunded = await emitted_by("/v1/refunds", {"payment_intent": intent_id, "amount": 500})
    assert [obj["status"] for kind, _, obj in refunded if kind.startswith("refund.")] == [
        "pending",
        "succeeded",
    ]
    # A provider's webhook: a dispute of the first payment.
    async with httpx.AsyncClient(base_url=psp_url, headers=bearer(SECRET)) as psp:
        payment = await provider_payment(psp, paid[-1][2]["latest_charge"])
        opened = await psp.post("/sandbox/disputes", json={"payment": payment["id"], "amount": 700})
        assert opened.status_code == 200, opened.text
        record = (await psp.get("/sandbox/record")).json()
    [dispute_event] = [
        e for e in record["events"] if e["data"]["object"]["id"] == opened.json()["id"]
    ]
    before = len(await events(pool, merchant.id))
    delivered = await deliver(client, sandbox_id, dispute_event)
    assert delivered.status_code == 200, delivered.text
    new = [kind for kind, _, _ in (await events(pool, merchant.id))[before:]]
    assert new == WRITE_PATHS["/webhooks/{connector_account_id}"]
    authorized = await client.post(
        "/v1/payment_intents",
        headers=auth,
        json={**first, "payment_method": saved_card, "capture_method": "manual", "confirm": True},
    )
    assert authorized.json()["status"] == "requires_capture", authorized.text
    await emitted_by(f"/v1/payment_intents/{authorized.json()['id']}/cancel", {})
    # Nothing is held at the provider for an intent never confirmed: canceled at once.
    [(_, unconfirmed_id, _)] = await emitted_by(
        "/v1/payment_intents", {"amount": 100, "currency": "usd"}
    )
    await emitted_by(
        f"/v1/payment_intents/{unconfirmed_id}/cancel", {}, ["payment_intent.canceled"]
    )
    # A declined confirm is a 402 whose one event says the payment failed.
    before = len(await events(pool, merchant.id))
    declined = await client.post(
        "/v1/payment_intents",
        headers=auth,
        json={**first, "payment_method": "pm_card_chargeDeclined", "confirm": True},
    )
    assert declined.status_code == 402, declined.text
    assert [kind for kind, _, _ in (await events(pool, merchant.id))[before:]] == [
        "payment_method.created",
        "payment_intent.created",
        "payment_intent.payment_failed",
    ]

    await _billing(client, auth, pool, merchant, services, clock, emitted_by)
    await _reconciliation(pool, merchant, clock, sandbox_id, emitted_by)
    for path, kinds in (
        (f"/v1/customers/{customer_id}", ["customer.deleted"]),
        (f"/v1/routing_rules/{routing_rule_id}", ["routing_rule.deleted"]),
        (f"/v1/webhook_endpoints/{endpoint_id}", ["webhook_endpoint.deleted"]),
    ):
        before = len(await events(pool, merchant.id))
        reply = await client.delete(path, headers=auth)
        assert reply.status_code == 200, reply.text
        assert [kind for kind, _, _ in (await events(pool, merchant.id))[before:]] == kinds, path

    # A replay, an idempotent repeat and a refused request write no event.
    count = len(await events(pool, merchant.id))
    assert (
        await client.post("/v1/ledger/transactions", headers=auth, json=transfer("t1", 100))
    ).status_code == 200
    assert (
        await client.post(
            f"/v1/ledger/transactions/{held2.json()['id']}/void", headers=auth, json={}
        )
    ).status_code == 200
    refused = await client.post(
        "/v1/ledger/transactions", headers=auth, json=transfer("t2", 10**9, pending="maybe")
    )
    assert refused.status_code == 400
    assert len(await events(pool, merchant.id)) == count

    # Every event written above keeps the compatibility rule against the shapes recorded.
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT event_envelope(e)::json FROM events e WHERE merchant_id = %s", (merchant.id,)
        )
        shapes.check(row[0] for row in await cur.fetchall())


async def _reconciliation(
    pool: AsyncConnectionPool,
    merchant: NewMerchant,
    clock: ManualClock,
    connector_account_id: str,
    emitted_by: EmittedBy,
) -> None:
    """A run (from a file, not a route) with one row payrail never made: its events, then
    the break it opened resolved through the API. Of a day before the payments above, so
    that they are not waited for."""
    before = len(await events(pool, merchant.id))
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "report.csv"
        path.write_text(
            "balance_transaction_id,created_utc,currency,gross,fee,net,reporting_category,"
            "source_id\ntxn_1,2025-12-01 10:00:00,usd,10.00,0.00,10.00,charge,ch_unknown\n"
        )
        async with pool.connection() as conn, conn.transaction():
            run, _ = await reconcile_provider(
                conn,
                Scope(merchant.id, False),
                clock,
                connector_account_id,
                Source(path, "stripe", path.name),
                date(2025, 12, 1),
            )
    new = (await events(pool, merchant.id))[before:]
    assert [kind for kind, _, _ in new] == [
        *["ledger.account.created"] * 2,  # suspense, payouts in transit
        "ledger.transaction.posted",
        "reconciliation.break.opened",
        "reconciliation.run.completed",
    ]
    assert new[-1][1] == run["id"]
    await emitted_by(f"/v1/reconciliation_breaks/{new[-2][1]}/resolve", {"note": "a test charge"})


def _matches(template: str, path: str) -> bool:
    parts, actual = template.split("/"), path.split("/")
    return len(parts) == len(actual) and all(
        p.startswith("{") or p == a for p, a in zip(parts, actual, strict=True)
    )


async def _billing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    merchant: NewMerchant,
    services: Services,
    clock: ManualClock,
    emitted_by: EmittedBy,
) -> None:
    """Every billing write route once, its invoices collected at the sandbox account the
    payments part made; then billing's DELETE routes, the engine's steps, and requests
    that change nothing."""

    async def written_since(before: int) -> list[str]:
        return [kind for kind, _, _ in (await events(pool, merchant.id))[before:]]

    async def latest_invoice(subscription_id: str) -> str:
        reply = await client.get(f"/v1/subscriptions/{subscription_id}", headers=auth)
        invoice_id: str = reply.json()["latest_invoice"]
        return invoice_id

    async def customer(email: str, **more: Any) -> str:
        """A customer with pm_card_visa saved: a payment method made, attached, then it."""
        body = {"email": email, "payment_method": "pm_card_visa", **more}
        made = await emitted_by(
            "/v1/customers",
            body,
            ["payment_method.created", "payment_method.attached", "customer.created"],
        )
        return made[-1][1]

    def created(emitted: Emitted) -> str:
        [subscription_id] = [a for kind, a, _ in emitted if kind == "customer.subscription.created"]
        return subscription_id

    [(_, product_id, _)] = await emitted_by("/v1/products", {"name": "Premium"})
    await emitted_by(f"/v1/products/{product_id}", {"description": "Films and series"})
    monthly = {"product": product_id, "currency": "usd", "recurring": {"interval": "month"}}
    [(_, price_id, _)] = await emitted_by("/v1/prices", {**monthly, "unit_amount": 1000})
    [(_, _, price)] = await emitted_by(f"/v1/prices/{price_id}", {"nickname": "monthly"})
    assert price["nickname"] == "monthly"
    await emitted_by("/v1/dunning/policy", {"final_action": "mark_unpaid"})

    card = {"invoice_settings": {"default_payment_method": "pm_card_visa"}}
    paying = await customer("paying@example.com", **card)
    items = {"customer": paying, "items": [{"price": price_id}]}
    first = await emitted_by("/v1/subscriptions", items, FIRST_SUBSCRIPTION, key="first-sub")
    sub_id = created(first)
    assert first[-1][1] == sub_id and first[-1][2]["status"] == "active"
    paid_invoice = await latest_invoice(sub_id)
    [(_, _, updated)] = await emitted_by(f"/v1/subscriptions/{sub_id}", {"metadata": {"a": "b"}})
    assert updated["metadata"] == {"a": "b"}
    credited = await emitted_by(
        "/v1/credit_notes", {"invoice": paid_invoice, "amount": 300, "credit_amount": 300}
    )
    credit_note_id = credited[1][1]
    assert credited[2][1] == paid_invoice
    await emitted_by(f"/v1/credit_notes/{credit_note_id}/void", {})

    # A test clock: a trial that ends without a card pauses; a card saved, it resumes.
    start = unix(clock.now())
    [(_, clock_id, _)] = await emitted_by("/v1/test_helpers/test_clocks", {"frozen_time": start})
    on_clock = await customer("trial@example.com", test_clock=clock_id)
    trial = await emitted_by(
        "/v1/subscriptions",
        {
            "customer": on_clock,
            "items": [{"price": price_id}],
            "trial_period_days": 1,
            "trial_settings": {"end_behavior": {"missing_payment_method": "pause"}},
        },
        # The trial's invoice, of nothing, is paid as it is finalized; nothing is posted.
        [
            "invoice.created",
            "invoice.finalized",
            "invoice.paid",
            "invoice.payment_succeeded",
            "customer.subscription.created",
        ],
    )
    trial_id = created(trial)
    await emitted_by(
        f"/v1/test_helpers/test_clocks/{clock_id}/advance", {"frozen_time": start + 2 * 86400}
    )
    before = len(await events(pool, merchant.id))
    await Engine(pool, services).run_once()
    stepped = await written_since(before)
    assert stepped[0] == "customer.subscription.paused", stepped
    assert stepped[-1] == "test_helpers.test_clock.ready", stepped
    reply = await client.get(f"/v1/customers/{on_clock}/payment_methods", headers=auth)
    saved = reply.json()["data"][0]["id"]
    await emitted_by(
        f"/v1/customers/{on_clock}", {"invoice_settings": {"default_payment_method": saved}}
    )
    await emitted_by(f"/v1/subscriptions/{trial_id}/resume", {})

    # A draft: a price change invoiced at once while collection keeps invoices as drafts.
    [(_, dearer, _)] = await emitted_by("/v1/prices", {**monthly, "unit_amount": 2000})
    await emitted_by(
        f"/v1/subscriptions/{sub_id}",
        {
            "items": [{"price": dearer}],
            "proration_behavior": "always_invoice",
            "pause_collection": {"behavior": "keep_as_draft"},
        },
        ["invoice.created", "customer.subscription.updated"],
    )
    draft = await latest_invoice(sub_id)
    [*_, (_, _, finalized)] = await emitted_by(f"/v1/invoices/{draft}/finalize", {})
    assert (finalized["id"], finalized["status"]) == (draft, "open")

    # First invoices left open for the customer to pay: paid, voided, written off.
    left_open = [
        "invoice.created",
        "ledger.transaction.posted",
        "invoice.finalized",
        "customer.subscription.created",
    ]
    acted: dict[str, str] = {}
    for action in ("pay", "void", "mark_uncollectible"):
        made = await emitted_by(
            "/v1/subscriptions", {**items, "payment_behavior": "default_incomplete"}, left_open
        )
        acted[action] = await latest_invoice(created(made))
        await emitted_by(f"/v1/invoices/{acted[action]}/{action}", {})

    # A card that declines: the subscription is made, incomplete, its invoice unpaid.
    failing = "pm_card_chargeCustomerFail"
    declined = await customer(
        "declined@example.com",
        payment_method=failing,
        invoice_settings={"default_payment_method": failing},
    )
    [*_, (_, _, failed_invoice)] = await emitted_by(
        "/v1/subscriptions",
        {"customer": declined, "items": [{"price": price_id}]},
        [
            *left_open,
            "payment_intent.created",
            "payment_intent.payment_failed",
            "invoice.payment_failed",
        ],
    )
    assert (failed_invoice["status"], failed_invoice["attempt_count"]) == ("open", 1)

    # The DELETE routes write their events too.
    [(_, bare, _)] = await emitted_by("/v1/products", {"name": "Bare"})
    for path, kind in (
        (f"/v1/subscriptions/{sub_id}", "customer.subscription.deleted"),
        (f"/v1/test_helpers/test_clocks/{clock_id}", "test_helpers.test_clock.deleted"),
        (f"/v1/products/{bare}", "product.deleted"),
    ):
        before = len(await events(pool, merchant.id))
        reply = await client.delete(path, headers=auth)
        assert reply.status_code == 200, reply.text
        assert await written_since(before) == [kind], path

    # Replays, repeats of what is done, and refusals write none.
    count = len(await events(pool, merchant.id))
    for path, body, status in (
        (f"/v1/products/{product_id}", {"description": "Films and series"}, 200),
        (f"/v1/prices/{price_id}", {"nickname": "monthly"}, 200),
        ("/v1/dunning/policy", {"final_action": "mark_unpaid"}, 200),
        (f"/v1/subscriptions/{trial_id}", {}, 200),
        (f"/v1/credit_notes/{credit_note_id}/void", {}, 200),
        (f"/v1/invoices/{acted['void']}/void", {}, 200),
        (f"/v1/invoices/{acted['mark_uncollectible']}/mark_uncollectible", {}, 200),
        (f"/v1/invoices/{acted['pay']}/pay", {}, 400),  # paid
        (f"/v1/invoices/{draft}/finalize", {}, 400),  # finalized
        (f"/v1/invoices/{acted['void']}/mark_uncollectible", {}, 400),
        (f"/v1/subscriptions/{sub_id}", {"metadata": {"c": "d"}}, 400),  # canceled
        ("/v1/subscriptions", {**items, "items": [{"price": "price_missing"}]}, 404),
        ("/v1/credit_notes", {"invoice": paid_invoice, "amount": 10**6}, 400),
        (f"/v1/test_helpers/test_clocks/{clock_id}/advance", {"frozen_time": start}, 404),
    ):
        reply = await client.post(path, headers=auth, json=body)
        assert reply.status_code == status, (path, reply.text)
    replayed = await client.post(
        "/v1/subscriptions", headers={**auth, "Idempotency-Key": "first-sub"}, json=items
    )
    assert replayed.status_code == 200 and replayed.json()["id"] == sub_id
    again = await client.delete(f"/v1/subscriptions/{sub_id}", headers=auth)
    assert again.status_code == 200 and again.json()["status"] == "canceled"
    assert len(await events(pool, merchant.id)) == count
