"""Payment intent flows over the API against a real sandbox PSP: lists and filters,
metadata updates, idempotent confirms, requires_action, declines and a retry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.api.context import Services
from payrail.clock import ManualClock
from payrail.connectors.accounts.service import Connectors
from tests.connectors.accounts.helpers import events_of, ok, send
from tests.payments.conftest import charged
from tests.vaults import fixed_vault

Json = dict[str, Any]

INTENTS = "/v1/payment_intents"
REFUNDS = "/v1/refunds"


@pytest.fixture
async def services(pool: AsyncConnectionPool, clock: ManualClock) -> AsyncIterator[Services]:
    """No faults here: a roomy timeout keeps a loaded machine from putting answers in doubt."""
    services = Services(
        pool=pool, clock=clock, vault=fixed_vault(), connectors=Connectors(timeout=20)
    )
    yield services
    await services.connectors.aclose()


async def post(client: httpx.AsyncClient, auth: dict[str, str], path: str, data: Json) -> Json:
    return await ok(await send(client, auth, path, data))


async def get(client: httpx.AsyncClient, auth: dict[str, str], path: str, **params: Any) -> Json:
    return await ok(await client.get(path, params=params, headers=auth))


async def charges_of(pool: AsyncConnectionPool, intent_id: str) -> list[tuple[str, str]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, status FROM charges WHERE payment_intent_id = %s ORDER BY seq",
            (intent_id,),
        )
        return [(r[0], r[1]) for r in await cur.fetchall()]


async def test_list_pages_and_filters_by_customer(
    client: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    jo = await post(client, auth, "/v1/customers", {"email": "jo@example.com"})
    made = []
    for n in range(5):
        body: Json = {"amount": 100 + n, "currency": "usd"}
        if n % 2 == 0:
            body["customer"] = jo["id"]
        made.append((await post(client, auth, INTENTS, body))["id"])
        clock.advance(timedelta(seconds=1))
    newest_first = made[::-1]
    page = await get(client, auth, INTENTS, limit=2)
    assert page["object"] == "list" and page["url"] == INTENTS
    assert [i["id"] for i in page["data"]] == newest_first[:2] and page["has_more"]
    page2 = await get(client, auth, INTENTS, limit=2, starting_after=page["data"][-1]["id"])
    assert [i["id"] for i in page2["data"]] == newest_first[2:4] and page2["has_more"]
    page3 = await get(client, auth, INTENTS, limit=2, starting_after=page2["data"][-1]["id"])
    assert [i["id"] for i in page3["data"]] == newest_first[4:] and not page3["has_more"]
    back = await get(client, auth, INTENTS, limit=2, ending_before=newest_first[4])
    assert [i["id"] for i in back["data"]] == newest_first[2:4]
    everything = await get(client, auth, INTENTS, limit=100)
    assert [i["id"] for i in everything["data"]] == newest_first
    assert everything["data"][0] == await get(client, auth, f"{INTENTS}/{newest_first[0]}")
    theirs = await get(client, auth, INTENTS, customer=jo["id"])
    assert [i["id"] for i in theirs["data"]] == [made[4], made[2], made[0]]
    assert all(i["customer"] == jo["id"] for i in theirs["data"])
    assert (await get(client, auth, INTENTS, customer="cus_nobody"))["data"] == []
    bad = await client.get(INTENTS, params={"limit": 0}, headers=auth)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"


async def test_refunds_list_filters_by_intent_and_charge(
    client: httpx.AsyncClient, auth: dict[str, str], account: Json, clock: ManualClock
) -> None:
    body = {"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    first = await post(client, auth, INTENTS, body)
    second = await post(client, auth, INTENTS, body)
    refunds: dict[str, list[str]] = {first["id"]: [], second["id"]: []}
    for intent in (first, second, first):
        refund = await post(client, auth, REFUNDS, {"payment_intent": intent["id"], "amount": 100})
        assert refund["charge"] == intent["latest_charge"]
        refunds[intent["id"]].append(refund["id"])
        clock.advance(timedelta(seconds=1))
    listed = await get(client, auth, REFUNDS, payment_intent=first["id"])
    assert [r["id"] for r in listed["data"]] == refunds[first["id"]][::-1]
    by_charge = await get(client, auth, REFUNDS, charge=second["latest_charge"])
    assert [r["id"] for r in by_charge["data"]] == refunds[second["id"]]
    both = await get(
        client, auth, REFUNDS, payment_intent=first["id"], charge=second["latest_charge"]
    )
    assert both["data"] == []
    everything = await get(client, auth, REFUNDS, limit=2)
    assert len(everything["data"]) == 2 and everything["has_more"]
    one = everything["data"][0]
    assert one == await get(client, auth, f"{REFUNDS}/{one['id']}")


async def test_update_merges_metadata_and_a_no_op_update_emits_nothing(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool
) -> None:
    intent = await post(
        client,
        auth,
        INTENTS,
        {"amount": 500, "currency": "usd", "metadata": {"a": "1", "b": "2"}},
    )
    path = f"{INTENTS}/{intent['id']}"
    updated = await post(client, auth, path, {"metadata": {"b": "", "c": "3"}})
    assert updated["metadata"] == {"a": "1", "c": "3"}
    updated = await post(client, auth, path, {"description": "Order 42"})
    assert updated["metadata"] == {"a": "1", "c": "3"} and updated["description"] == "Order 42"
    assert (await get(client, auth, path)) == updated
    kinds = [kind for kind, _ in await events_of(pool, intent["id"])]
    assert kinds == ["payment_intent.created", "payment_intent.updated", "payment_intent.updated"]
    # Sending what is already there changes nothing and emits no event.
    for same in (
        {"metadata": {"a": "1"}},
        {"description": "Order 42"},
        {"metadata": {"x": ""}},
        {},
    ):
        assert (await post(client, auth, path, same)) == updated
    assert len(await events_of(pool, intent["id"])) == 3
    cleared = await post(client, auth, path, {"description": "", "metadata": {"a": "", "c": ""}})
    assert cleared["description"] is None and cleared["metadata"] == {}


async def test_confirm_replays_under_its_idempotency_key(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
    psp: httpx.AsyncClient,
    pool: AsyncConnectionPool,
) -> None:
    intent = await post(
        client, auth, INTENTS, {"amount": 4200, "currency": "usd", "payment_method": "pm_card_visa"}
    )
    path = f"{INTENTS}/{intent['id']}/confirm"
    first = await send(client, auth, path, {}, key="confirm-once")
    again = await send(client, auth, path, {}, key="confirm-once")
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert again.content == first.content
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert first.json()["status"] == "succeeded"
    [(charge_id, status)] = await charges_of(pool, intent["id"])
    assert status == "captured" and first.json()["latest_charge"] == charge_id
    made = await charged(psp, [charge_id])
    assert [p["status"] for p in made[charge_id]] == ["captured"]
    # Another key is another request: the intent has succeeded, so it is refused.
    other = await send(client, auth, path, {}, key="confirm-twice")
    assert other.status_code == 400
    assert other.json()["error"]["code"] == "payment_intent_unexpected_state"
    # The same key with other parameters is an error, not a replay.
    mismatch = await send(client, auth, path, {"capture_method": "manual"}, key="confirm-once")
    assert mismatch.status_code == 400
    assert mismatch.json()["error"]["type"] == "idempotency_error"
    assert len(await charges_of(pool, intent["id"])) == 1


async def test_confirm_with_a_payment_method_given_at_confirm(
    client: httpx.AsyncClient, auth: dict[str, str], account: Json, psp: httpx.AsyncClient
) -> None:
    intent = await post(
        client, auth, INTENTS, {"amount": 800, "currency": "eur", "capture_method": "manual"}
    )
    assert intent["status"] == "requires_payment_method" and intent["payment_method"] is None
    confirmed = await post(
        client, auth, f"{INTENTS}/{intent['id']}/confirm", {"payment_method": "pm_card_mastercard"}
    )
    assert confirmed["status"] == "requires_capture" and confirmed["amount_capturable"] == 800
    card = await get(client, auth, f"/v1/payment_methods/{confirmed['payment_method']}")
    assert card["card"]["brand"] == "mastercard" and card["card"]["last4"] == "4444"
    made = await charged(psp, [confirmed["latest_charge"]])
    assert [(p["status"], p["amount"]) for p in made[confirmed["latest_charge"]]] == [
        ("authorized", 800)
    ]


async def test_cancel_of_an_unconfirmed_intent_calls_no_provider(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
    psp: httpx.AsyncClient,
    pool: AsyncConnectionPool,
) -> None:
    intent = await post(
        client, auth, INTENTS, {"amount": 300, "currency": "usd", "payment_method": "pm_card_visa"}
    )
    before = (await psp.get("/sandbox/record")).json()
    canceled = await post(
        client, auth, f"{INTENTS}/{intent['id']}/cancel", {"cancellation_reason": "abandoned"}
    )
    assert canceled["status"] == "canceled" and canceled["cancellation_reason"] == "abandoned"
    assert canceled["canceled_at"] is not None and canceled["latest_charge"] is None
    assert (await psp.get("/sandbox/record")).json() == before
    assert await charges_of(pool, intent["id"]) == []
    kinds = [kind for kind, _ in await events_of(pool, intent["id"])]
    assert kinds == ["payment_intent.created", "payment_intent.canceled"]


async def test_a_card_needing_authentication_requires_action(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
    psp: httpx.AsyncClient,
    pool: AsyncConnectionPool,
) -> None:
    reply = await send(
        client,
        auth,
        INTENTS,
        {
            "amount": 2500,
            "currency": "usd",
            "payment_method": "pm_card_authenticationRequired",
            "confirm": True,
        },
    )
    assert reply.status_code == 200, reply.text
    intent = reply.json()
    assert intent["status"] == "requires_action"
    assert intent["amount_received"] == 0 and intent["amount_capturable"] == 0
    made = await charged(psp, [intent["latest_charge"]])
    assert [p["status"] for p in made[intent["latest_charge"]]] == ["requires_authentication"]
    kinds = [kind for kind, _ in await events_of(pool, intent["id"])]
    assert kinds == ["payment_intent.created", "payment_intent.requires_action"]
    # Nothing was captured: it cannot be refunded, and it can be canceled.
    refund = await send(client, auth, REFUNDS, {"payment_intent": intent["id"]})
    assert refund.status_code == 400
    canceled = await post(client, auth, f"{INTENTS}/{intent['id']}/cancel", {})
    assert canceled["status"] == "canceled"


# Each declining Stripe test card: (error.code, error.decline_code) as Stripe answers.
DECLINES = {
    "pm_card_visa_chargeDeclined": ("card_declined", "generic_decline"),
    "pm_card_visa_chargeDeclinedInsufficientFunds": ("card_declined", "insufficient_funds"),
    "pm_card_visa_chargeDeclinedLostCard": ("card_declined", "lost_card"),
    "pm_card_visa_chargeDeclinedStolenCard": ("card_declined", "stolen_card"),
    "pm_card_chargeDeclinedExpiredCard": ("expired_card", "expired_card"),
    "pm_card_chargeDeclinedIncorrectCvc": ("incorrect_cvc", "incorrect_cvc"),
    "pm_card_chargeDeclinedProcessingError": ("processing_error", "processing_error"),
    "pm_card_chargeCustomerFail": ("card_declined", "generic_decline"),
}


@pytest.mark.parametrize("card", sorted(DECLINES))
async def test_a_decline_then_a_retry_with_another_card(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
    psp: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    card: str,
) -> None:
    code, decline_code = DECLINES[card]
    body = {"amount": 1999, "currency": "usd", "payment_method": card, "confirm": True}
    reply = await send(client, auth, INTENTS, body)
    assert reply.status_code == 402, reply.text
    error = reply.json()["error"]
    assert error["type"] == "card_error"
    assert (error["code"], error["decline_code"]) == (code, decline_code)
    assert error["message"]
    intent = error["payment_intent"]
    assert intent["status"] == "requires_payment_method"
    stored = await get(client, auth, f"{INTENTS}/{intent['id']}")
    assert stored == intent
    last = stored["last_payment_error"]
    assert (last["type"], last["code"], last["decline_code"]) == ("card_error", code, decline_code)
    assert last["charge"] == stored["latest_charge"]
    assert last["payment_method"]["id"] == stored["payment_method"]
    declined_charge = stored["latest_charge"]
    # Confirming the same declined card again is declined again; another card succeeds.
    retry = await send(client, auth, f"{INTENTS}/{intent['id']}/confirm", {})
    assert retry.status_code == 402 and retry.json()["error"]["decline_code"] == decline_code
    paid = await post(
        client, auth, f"{INTENTS}/{intent['id']}/confirm", {"payment_method": "pm_card_visa"}
    )
    assert paid["status"] == "succeeded" and paid["amount_received"] == 1999
    assert paid["last_payment_error"] is None and paid["latest_charge"] != declined_charge
    charges = await charges_of(pool, intent["id"])
    assert [status for _, status in charges] == ["declined", "declined", "captured"]
    made = await charged(psp, [c for c, _ in charges])
    assert [[p["status"] for p in made[c]] for c, _ in charges] == [
        ["declined"],
        ["declined"],
        ["captured"],
    ]
    assert [made[c][0]["decline_code"] for c, _ in charges[:2]] == [decline_code] * 2
    kinds = [kind for kind, _ in await events_of(pool, intent["id"])]
    assert kinds == [
        "payment_intent.created",
        "payment_intent.payment_failed",
        "payment_intent.payment_failed",
        "payment_intent.succeeded",
    ]
