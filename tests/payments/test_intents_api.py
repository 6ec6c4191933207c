"""Payment intents over the API against a real sandbox PSP: Stripe's flows, and the
ledger postings each makes."""

from __future__ import annotations

from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool

from tests.connectors.accounts.helpers import send
from tests.payments.conftest import charged

Json = dict[str, Any]


async def post(
    client: httpx.AsyncClient, auth: dict[str, str], path: str, data: Json
) -> httpx.Response:
    return await send(client, auth, path, data)


async def ledger_lines(pool: AsyncConnectionPool, intent_id: str) -> list[tuple[str, str, int]]:
    """(kind, status, posted amount) of the intent's ledger transactions; the kind is the
    external id's last part (a refund's is its id)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT t.external_id, t.status,"
            " coalesce(sum(e.amount) FILTER (WHERE e.phase = 'posted'), 0)::bigint"
            " FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id"
            " WHERE t.metadata->>'payment_intent' = %s AND e.direction = 'debit'"
            " GROUP BY t.external_id, t.status ORDER BY t.external_id",
            (intent_id,),
        )
        return [(r[0].split(":")[-1], r[1], r[2]) for r in await cur.fetchall()]


async def test_automatic_capture_charges_once_and_posts_capture_and_fee(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
    psp: httpx.AsyncClient,
    pool: AsyncConnectionPool,
) -> None:
    reply = await post(
        client,
        auth,
        "/v1/payment_intents",
        {
            "amount": 2000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
        },
    )
    assert reply.status_code == 200, reply.text
    intent = reply.json()
    assert intent["status"] == "succeeded" and intent["amount_received"] == 2000
    made = await charged(psp, [intent["latest_charge"]])
    assert [p["status"] for p in made[intent["latest_charge"]]] == ["captured"]
    lines = await ledger_lines(pool, intent["id"])
    assert ("capture", "posted", 2000) in lines and ("fee", "posted", 88) in lines


async def test_manual_capture_partial_then_refunds(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
    psp: httpx.AsyncClient,
    pool: AsyncConnectionPool,
) -> None:
    intent = (
        await post(
            client,
            auth,
            "/v1/payment_intents",
            {
                "amount": 5000,
                "currency": "eur",
                "payment_method": "pm_card_visa",
                "capture_method": "manual",
            },
        )
    ).json()
    assert intent["status"] == "requires_confirmation"
    confirmed = await post(client, auth, f"/v1/payment_intents/{intent['id']}/confirm", {})
    assert confirmed.json()["status"] == "requires_capture", confirmed.text
    assert confirmed.json()["amount_capturable"] == 5000
    captured = await post(
        client, auth, f"/v1/payment_intents/{intent['id']}/capture", {"amount_to_capture": 3000}
    )
    assert captured.status_code == 200, captured.text
    assert captured.json()["status"] == "succeeded" and captured.json()["amount_received"] == 3000
    first = await post(
        client, auth, "/v1/refunds", {"payment_intent": intent["id"], "amount": 1000}
    )
    assert first.json()["status"] == "succeeded", first.text
    second = await post(client, auth, "/v1/refunds", {"payment_intent": intent["id"]})
    assert second.json()["amount"] == 2000 and second.json()["status"] == "succeeded"
    third = await post(client, auth, "/v1/refunds", {"payment_intent": intent["id"], "amount": 1})
    assert third.status_code == 400 and third.json()["error"]["code"] == "charge_already_refunded"
    lines = await ledger_lines(pool, intent["id"])
    assert ("authorization", "posted", 3000) in lines
    refunds = sorted(a for k, status, a in lines if k.startswith("re_") and status == "posted")
    assert refunds == [1000, 2000]


async def test_declined_card_is_402_with_the_intent(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
) -> None:
    reply = await post(
        client,
        auth,
        "/v1/payment_intents",
        {
            "amount": 700,
            "currency": "usd",
            "payment_method": "pm_card_chargeDeclinedInsufficientFunds",
            "confirm": True,
        },
    )
    assert reply.status_code == 402, reply.text
    error = reply.json()["error"]
    assert error["decline_code"] == "insufficient_funds"
    assert error["payment_intent"]["status"] == "requires_payment_method"


async def test_cancel_voids_an_authorization(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
    pool: AsyncConnectionPool,
) -> None:
    intent = (
        await post(
            client,
            auth,
            "/v1/payment_intents",
            {
                "amount": 900,
                "currency": "usd",
                "payment_method": "pm_card_visa",
                "capture_method": "manual",
                "confirm": True,
            },
        )
    ).json()
    assert intent["status"] == "requires_capture"
    canceled = await post(
        client,
        auth,
        f"/v1/payment_intents/{intent['id']}/cancel",
        {"cancellation_reason": "requested_by_customer"},
    )
    assert canceled.json()["status"] == "canceled", canceled.text
    assert await ledger_lines(pool, intent["id"]) == [("authorization", "voided", 0)]
    again = await post(client, auth, f"/v1/payment_intents/{intent['id']}/capture", {})
    assert again.status_code == 400
