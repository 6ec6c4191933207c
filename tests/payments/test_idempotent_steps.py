"""An Idempotency-Key over a request that commits in steps (it calls a provider in
between): a retry that takes the key over after the first run died or outlived its
lease carries on with what that run made. It never charges or refunds a second time."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.api import idempotency
from payrail.clock import ManualClock
from tests.connectors.accounts.helpers import send
from tests.payments.conftest import charged

Json = dict[str, Any]


@pytest.fixture
def results_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first run's result is never stored, as when its process dies at the end."""

    async def lost(*args: object) -> bool:
        raise OSError("connection lost while storing the result")

    monkeypatch.setattr(idempotency, "_store", lost)


async def count(pool: AsyncConnectionPool, table: str) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute(f"SELECT count(*) FROM {table}")  # a fixed table name
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_create_and_confirm_retried_after_its_lease_charges_once(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
    psp: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    results_lost: None,
) -> None:
    body = {"amount": 1200, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    first = await send(client, auth, "/v1/payment_intents", body, key="order-77")
    assert first.json()["status"] == "succeeded", first.text
    # Within the lease a retry is told the first is still running, and runs nothing.
    busy = await send(client, auth, "/v1/payment_intents", body, key="order-77")
    assert busy.status_code == 409
    monkeypatch.undo()
    clock.advance(idempotency.LEASE * 2)
    retried = await send(client, auth, "/v1/payment_intents", body, key="order-77")
    assert retried.status_code == 200, retried.text
    assert retried.json()["id"] == first.json()["id"]
    assert retried.json()["status"] == "succeeded"
    assert await count(pool, "payment_intents") == 1
    made = await charged(psp, [first.json()["latest_charge"]])
    assert len(made[first.json()["latest_charge"]]) == 1
    # And now the result is stored: later replays are the same answer.
    replay = await send(client, auth, "/v1/payment_intents", body, key="order-77")
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json() == retried.json()


async def test_a_refund_retried_after_its_lease_refunds_once(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
    psp: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = {"amount": 3000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    paid = (await send(client, auth, "/v1/payment_intents", body)).json()

    async def lost(*args: object) -> bool:
        raise OSError("connection lost while storing the result")

    monkeypatch.setattr(idempotency, "_store", lost)
    refund = {"payment_intent": paid["id"], "amount": 2000}
    first = await send(client, auth, "/v1/refunds", refund, key="refund-9")
    assert first.json()["status"] == "succeeded", first.text
    monkeypatch.undo()
    clock.advance(idempotency.LEASE * 2)
    retried = await send(client, auth, "/v1/refunds", refund, key="refund-9")
    assert retried.json()["id"] == first.json()["id"], retried.text
    assert await count(pool, "refunds") == 1
    record = (await psp.get("/sandbox/record")).json()
    assert [r["amount"] for r in record["refunds"]] == [2000]


async def test_a_confirm_retried_after_its_lease_answers_the_intent_as_it_is(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
    psp: httpx.AsyncClient,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = {"amount": 800, "currency": "usd", "payment_method": "pm_card_visa"}
    intent = (await send(client, auth, "/v1/payment_intents", body)).json()
    path = f"/v1/payment_intents/{intent['id']}/confirm"

    async def lost(*args: object) -> bool:
        raise OSError("connection lost while storing the result")

    monkeypatch.setattr(idempotency, "_store", lost)
    first = await send(client, auth, path, {}, key="confirm-1")
    assert first.json()["status"] == "succeeded"
    monkeypatch.undo()
    clock.advance(idempotency.LEASE * 2)
    # Not a 400 "already succeeded": the same request, answered as it turned out.
    retried = await send(client, auth, path, {}, key="confirm-1")
    assert retried.status_code == 200 and retried.json() == first.json()
    made = await charged(psp, [first.json()["latest_charge"]])
    assert len(made[first.json()["latest_charge"]]) == 1
