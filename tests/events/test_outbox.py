"""Every write path writes its event in the same transaction as its change; a request
that changes nothing writes none."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.api.app import create_app
from payrail.api.context import Services
from payrail.clock import ManualClock
from payrail.connectors.sandbox import SandboxConfig
from payrail.connectors.sandbox.server import run_sandbox
from payrail.tenants.service import NewMerchant
from tests.connectors.accounts.helpers import SECRET, bearer, sandbox_account
from tests.events import shapes
from tests.events.webhooks.helpers import fan_out_events
from tests.payments.webhook_helpers import WEBHOOK_SECRET, deliver, provider_payment
from tests.routes import api_routes

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
}
# The first payment: its test card becomes a payment method, the payments ledger
# accounts are made, then the capture and the fee are posted.
FIRST_PAYMENT = [
    "payment_method.created",
    "payment_intent.created",
    *["ledger.account.created"] * 5,
    "ledger.transaction.posted",
    "ledger.transaction.posted",
    "payment_intent.succeeded",
]


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
) -> None:
    async def emitted_by(
        path: str, data: dict[str, Any], expected: list[str] | None = None
    ) -> list[tuple[str, str, Any]]:
        before = len(await events(pool, merchant.id))
        reply = await client.post(path, headers=auth, json=data)
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
    await emitted_by(
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
    held = await emitted_by(
        f"/v1/payment_intents/{manual_id}/confirm", {"payment_method": saved_card}
    )
    assert held[1][2]["status"] == "requires_capture"
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


def _matches(template: str, path: str) -> bool:
    parts, actual = template.split("/"), path.split("/")
    return len(parts) == len(actual) and all(
        p.startswith("{") or p == a for p, a in zip(parts, actual, strict=True)
    )
