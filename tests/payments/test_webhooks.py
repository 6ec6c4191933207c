"""Provider webhooks at /webhooks/{connector account}: verified, stored once, applied once,
in any order; over real HTTP from the sandbox, and delivered by hand where a test needs
one event at a time."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.connectors.sandbox_connector import DEFAULT_WEBHOOK_SECRET
from payrail.payments.webhooks import is_stale
from tests.connectors.accounts.helpers import create_account, send
from tests.payments.conftest import HANG, charged
from tests.payments.test_intents_api import ledger_lines
from tests.payments.webhook_helpers import (
    NOW,
    WEBHOOK_SECRET,
    deliver,
    emitted,
    ledger_balanced,
    provider_payment,
    sandbox_events,
    stored,
    webhook_account,
)

Json = dict[str, Any]


def test_an_event_no_newer_than_the_last_applied_is_stale() -> None:
    assert not is_stale(0, 1)
    assert not is_stale(1, 2)
    assert is_stale(2, 2)
    assert is_stale(2, 1)


async def intent(client: httpx.AsyncClient, auth: dict[str, str], **fields: Any) -> Json:
    body = {"amount": 3000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    reply = await send(client, auth, "/v1/payment_intents", {**body, **fields})
    assert reply.status_code == 200, reply.text
    created: Json = reply.json()
    return created


async def faults(psp: httpx.AsyncClient, **settings: Any) -> None:
    base = {"rate": 0, "seed": 0, "hang_seconds": HANG, "webhook_secret": WEBHOOK_SECRET}
    assert (await psp.post("/sandbox/faults", json={**base, **settings})).status_code == 200


async def event_count(pool: AsyncConnectionPool) -> int:
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT count(*) FROM events")).fetchone()
    assert row is not None
    return int(row[0])


async def test_a_delivery_that_does_not_check_out_is_400_alike_and_stores_nothing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    psp: httpx.AsyncClient,
    psp_url: str,
    pool: AsyncConnectionPool,
) -> None:
    await faults(psp)
    account = (await webhook_account(client, auth, psp_url))["id"]
    paid = await intent(client, auth)
    payment = await provider_payment(psp, paid["latest_charge"])
    [event] = await sandbox_events(psp, payment["id"])
    # A test-mode account without a webhook secret of its own takes the sandbox's default
    # (there are no live sandbox accounts to take it).
    default_test = (await create_account(client, auth, base_url=psp_url))["id"]
    not_sandbox = (
        await create_account(client, auth, provider="stripe", base_url=None, currencies=["usd"])
    )["id"]
    before = await event_count(pool)
    body = b'{"id": "sbxevt_1"}'
    refused = [
        await deliver(client, account, event, secret="whsec_someone_else"),
        await deliver(client, account, event, at=NOW - 301),
        await deliver(client, account, event, at=NOW + 301),
        await client.post(f"/webhooks/{account}", content=body),
        await client.post(f"/webhooks/{account}", content=body, headers={"Sandbox-Signature": "x"}),
        await deliver(client, "ca_" + "Z" * 24, event),
        await deliver(client, "ca_" + "Z" * 200, event),
        await deliver(client, not_sandbox, event),
    ]
    for reply in refused:
        assert reply.status_code == 400, reply.text
        assert reply.json() == refused[0].json()
    assert refused[0].json()["error"]["code"] == "webhook_rejected"
    assert await stored(pool, account) == []
    assert await event_count(pool) == before
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT count(*) FROM provider_events")).fetchone()
    assert row == (0,)
    # Signed with the right secret, the same event checks out (and changes nothing new:
    # the API already recorded that payment).
    reply = await deliver(client, default_test, event, secret=DEFAULT_WEBHOOK_SECRET)
    assert reply.status_code == 200, reply.text
    assert await stored(pool, default_test) == [(event["id"], "payment.captured", "unmatched")]
    reply = await deliver(client, account, event, at=NOW - 299)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"received": True}
    assert await stored(pool, account) == [(event["id"], "payment.captured", "no_change")]


async def test_a_capture_whose_answer_was_lost_is_settled_by_its_webhook_once_in_any_order(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    psp: httpx.AsyncClient,
    psp_url: str,
    pool: AsyncConnectionPool,
) -> None:
    await faults(psp)
    account = (await webhook_account(client, auth, psp_url))["id"]
    held = await intent(client, auth, capture_method="manual")
    assert held["status"] == "requires_capture"
    # The capture happens at the provider, and its answer is lost: in doubt.
    await faults(psp, rate=1, kinds=["error_after"])
    reply = await send(client, auth, f"/v1/payment_intents/{held['id']}/capture", {})
    await faults(psp)
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "requires_capture"
    payment = await provider_payment(psp, held["latest_charge"])
    authorized, captured = await sandbox_events(psp, payment["id"])
    assert (authorized["sequence"], captured["sequence"]) == (1, 2)
    assert captured["type"] == "payment.captured"

    # The newer event first, twice; then the older one.
    for event in (captured, captured, authorized):
        reply = await deliver(client, account, event)
        assert reply.status_code == 200, reply.text
    assert await stored(pool, account) == sorted(
        [
            (captured["id"], "payment.captured", "applied"),
            (authorized["id"], "payment.authorized", "stale"),
        ]
    )
    final = (await client.get(f"/v1/payment_intents/{held['id']}", headers=auth)).json()
    assert final["status"] == "succeeded" and final["amount_received"] == 3000
    assert await emitted(pool, held["id"]) == [
        "payment_intent.created",
        "payment_intent.amount_capturable_updated",
        "payment_intent.succeeded",
    ]
    lines = await ledger_lines(pool, held["id"])
    assert ("authorization", "posted", 3000) in lines and ("fee", "posted", 117) in lines
    assert len(lines) == 2
    made = await charged(psp, [held["latest_charge"]])
    assert [p["status"] for p in made[held["latest_charge"]]] == ["captured"]
    assert await ledger_balanced(pool)
    # The API's own retry of the capture finds it done.
    again = await send(client, auth, f"/v1/payment_intents/{held['id']}/capture", {})
    assert again.status_code == 400, again.text
    assert await ledger_lines(pool, held["id"]) == lines


async def test_an_authorization_in_doubt_is_settled_by_its_webhook(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    psp: httpx.AsyncClient,
    psp_url: str,
    pool: AsyncConnectionPool,
) -> None:
    account = (await webhook_account(client, auth, psp_url))["id"]
    await faults(psp, rate=1, kinds=["error_after"])
    lost = await intent(client, auth)
    await faults(psp)
    assert lost["status"] == "processing"
    payment = await provider_payment(psp, lost["latest_charge"])
    # payrail never learnt the provider's id: the event's `reference` finds the charge.
    [event] = await sandbox_events(psp, payment["id"])
    for _ in range(2):
        assert (await deliver(client, account, event)).status_code == 200
    assert await stored(pool, account) == [(event["id"], "payment.captured", "applied")]
    final = (await client.get(f"/v1/payment_intents/{lost['id']}", headers=auth)).json()
    assert final["status"] == "succeeded"
    assert sorted(await ledger_lines(pool, lost["id"])) == [
        ("capture", "posted", 3000),
        ("fee", "posted", 117),
    ]
    assert (await emitted(pool, lost["id"])).count("payment_intent.succeeded") == 1
    assert await ledger_balanced(pool)


async def test_a_refund_is_settled_by_its_webhook_once(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    psp: httpx.AsyncClient,
    psp_url: str,
    pool: AsyncConnectionPool,
) -> None:
    await faults(psp)
    account = (await webhook_account(client, auth, psp_url))["id"]
    paid = await intent(client, auth)
    await faults(psp, rate=1, kinds=["error_after"])
    reply = await send(client, auth, "/v1/refunds", {"payment_intent": paid["id"], "amount": 700})
    await faults(psp)
    assert reply.status_code == 200, reply.text
    refund = reply.json()
    assert refund["status"] == "pending"
    payment = await provider_payment(psp, paid["latest_charge"])
    [made] = payment["refunds"]
    [event] = await sandbox_events(psp, made["id"])
    for _ in range(2):
        assert (await deliver(client, account, event)).status_code == 200
    assert await stored(pool, account) == [(event["id"], "refund.succeeded", "applied")]
    final = (await client.get(f"/v1/refunds/{refund['id']}", headers=auth)).json()
    assert final["status"] == "succeeded"
    assert await emitted(pool, refund["id"]) == ["refund.created", "refund.updated"]
    assert (refund["id"], "posted", 700) in await ledger_lines(pool, paid["id"])
    assert await ledger_balanced(pool)


async def wait_for_deliveries(psp: httpx.AsyncClient, since: int, copies: int) -> list[Json]:
    """The sandbox's events from the `since`-th on, once each copy of each was delivered
    (answered 2xx)."""
    for _ in range(300):
        record = (await psp.get("/sandbox/record")).json()
        events: list[Json] = record["events"][since:]
        done = {(d["event"], d["copy"]) for d in record["deliveries"] if d["status"] == 200}
        if all((e["id"], copy) in done for e in events for copy in range(1, copies + 1)):
            return events
        await asyncio.sleep(0.05)
    raise AssertionError("the sandbox did not deliver every event")


@pytest.mark.parametrize("delay_ms", [0, 300])
async def test_sandbox_webhooks_over_http_duplicated_and_out_of_order(
    live_server: str,
    auth: dict[str, str],
    psp: httpx.AsyncClient,
    psp_url: str,
    pool: AsyncConnectionPool,
    delay_ms: int,
) -> None:
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as api:
        account = (await webhook_account(api, auth, psp_url))["id"]
        since = len((await psp.get("/sandbox/record")).json()["events"])
        await faults(
            psp,
            webhook_url=f"{live_server}/webhooks/{account}",
            webhook_duplicate_rate=1.0,
            webhook_delay_ms=delay_ms,
        )
        automatic = [await intent(api, auth) for _ in range(4)]
        held = await intent(api, auth, capture_method="manual")
        captured = await send(api, auth, f"/v1/payment_intents/{held['id']}/capture", {})
        assert captured.json()["status"] == "succeeded", captured.text
        voided = await intent(api, auth, capture_method="manual")
        canceled = await send(api, auth, f"/v1/payment_intents/{voided['id']}/cancel", {})
        assert canceled.json()["status"] == "canceled", canceled.text
        refunded = await send(
            api, auth, "/v1/refunds", {"payment_intent": automatic[0]["id"], "amount": 500}
        )
        assert refunded.json()["status"] == "succeeded", refunded.text
        disputed = await provider_payment(psp, automatic[1]["latest_charge"])
        opened = await psp.post("/sandbox/disputes", json={"payment": disputed["id"]})
        assert opened.status_code == 200, opened.text
        events = await wait_for_deliveries(psp, since, copies=2)
        await faults(psp, webhook_url=None)

        rows = await stored(pool, account)
        assert sorted(r[0] for r in rows) == sorted(e["id"] for e in events)
        assert {r[2] for r in rows} <= {"applied", "no_change", "stale"}
        [dispute] = (await api.get("/v1/disputes", headers=auth)).json()["data"]
    assert (dispute["payment_intent"], dispute["amount"]) == (automatic[1]["id"], 3000)
    assert dispute["status"] == "needs_response"
    assert await emitted(pool, dispute["id"]) == [
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
    ]
    assert ("withdrawal", "posted", 3000) in await ledger_lines(pool, automatic[1]["id"])
    made = await charged(psp, [i["latest_charge"] for i in [*automatic, held, voided]])
    assert all(len(payments) == 1 for payments in made.values()), made
    assert await ledger_balanced(pool)


async def test_an_authorization_the_provider_voids_on_its_own_cancels_the_intent(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    psp: httpx.AsyncClient,
    psp_url: str,
    pool: AsyncConnectionPool,
) -> None:
    """An authorization expiring at the provider arrives as payment.voided, with no void
    asked for: the intent is canceled (reason automatic) and the hold released."""
    account = (await webhook_account(client, auth, psp_url))["id"]
    body = {
        "amount": 1800,
        "currency": "usd",
        "payment_method": "pm_card_visa",
        "capture_method": "manual",
        "confirm": True,
    }
    held = (await send(client, auth, "/v1/payment_intents", body)).json()
    assert held["status"] == "requires_capture"
    payment = await provider_payment(psp, held["latest_charge"])
    voided = await psp.post(
        f"/v1/payments/{payment['id']}/void", json={}, headers={"Idempotency-Key": "expiry"}
    )
    assert voided.json()["status"] == "voided"
    [_, void_event] = await sandbox_events(psp, payment["id"])
    assert (await deliver(client, account, void_event)).status_code == 200
    found = (await client.get(f"/v1/payment_intents/{held['id']}", headers=auth)).json()
    assert (found["status"], found["cancellation_reason"]) == ("canceled", "automatic")
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT status FROM ledger_transactions WHERE external_id = %s",
            (f"charge:{held['latest_charge']}:authorization",),
        )
        assert await cur.fetchone() == ("voided",)
    assert await ledger_balanced(pool)
