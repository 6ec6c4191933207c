"""Every write path writes its event in the same transaction as its change; a request
that changes nothing writes none."""

from __future__ import annotations

from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool

from payrail.api.app import create_app
from payrail.api.context import Services
from payrail.tenants.service import NewMerchant
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
}


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
) -> None:
    async def emitted_by(path: str, data: dict[str, Any]) -> list[tuple[str, str, Any]]:
        before = len(await events(pool, merchant.id))
        reply = await client.post(path, headers=auth, json=data)
        assert reply.status_code == 200, reply.text
        new = (await events(pool, merchant.id))[before:]
        template = next(p for p in WRITE_PATHS if _matches(p, path))
        assert [event_type for event_type, _, _ in new] == WRITE_PATHS[template]
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


def _matches(template: str, path: str) -> bool:
    parts, actual = template.split("/"), path.split("/")
    return len(parts) == len(actual) and all(
        p.startswith("{") or p == a for p, a in zip(parts, actual, strict=True)
    )
