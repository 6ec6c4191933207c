"""Disputes: the status rule as a plain function, then disputes opened at the sandbox and
reported by signed webhooks, with the ledger postings and events they make."""

from __future__ import annotations

from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool

from payrail.payments.disputes import STATUSES, Transition, transition
from tests.connectors.accounts.helpers import send
from tests.payments.test_intents_api import ledger_lines
from tests.payments.webhook_helpers import (
    deliver,
    emitted,
    ledger_balanced,
    provider_payment,
    sandbox_events,
    stored,
    webhook_account,
)

Json = dict[str, Any]


def test_a_new_dispute_withdraws_its_funds_and_an_inquiry_does_not() -> None:
    assert transition(None, "needs_response") == Transition(
        "needs_response",
        withdraw=True,
        reinstate=False,
        events=("charge.dispute.created", "charge.dispute.funds_withdrawn"),
    )
    assert transition(None, "warning_needs_response") == Transition(
        "warning_needs_response", False, False, ("charge.dispute.created",)
    )
    assert transition("warning_needs_response", "needs_response") == Transition(
        "needs_response", True, False, ("charge.dispute.funds_withdrawn", "charge.dispute.updated")
    )


def test_won_gives_the_funds_back_and_lost_keeps_them() -> None:
    assert transition("under_review", "won") == Transition(
        "won", False, True, ("charge.dispute.funds_reinstated", "charge.dispute.closed")
    )
    assert transition("needs_response", "lost") == Transition(
        "lost", False, False, ("charge.dispute.closed",)
    )
    # First heard of when already won: out, back, closed.
    assert transition(None, "won") == Transition(
        "won",
        True,
        True,
        (
            "charge.dispute.created",
            "charge.dispute.funds_withdrawn",
            "charge.dispute.funds_reinstated",
            "charge.dispute.closed",
        ),
    )


def test_a_dispute_never_goes_back_nor_reopens() -> None:
    assert transition("under_review", "needs_response") is None
    assert transition("needs_response", "needs_response") is None
    assert transition("won", "lost") is None
    assert transition("lost", "won") is None
    assert transition("won", "under_review") is None


@given(st.lists(st.sampled_from(STATUSES), min_size=1, max_size=8))
def test_any_order_of_reports_moves_money_out_at_most_once_and_back_only_if_won(
    reports: list[Any],
) -> None:
    status = None
    withdrawn = reinstated = 0
    for reported in reports:
        change = transition(status, reported)
        if change is None:
            continue
        status = change.status
        withdrawn += change.withdraw
        reinstated += change.reinstate
    assert withdrawn <= 1 and reinstated <= 1
    out = withdrawn - reinstated
    assert out == (0 if status in ("warning_needs_response", "won") else 1)


async def disputed(
    client: httpx.AsyncClient, auth: dict[str, str], psp: httpx.AsyncClient, psp_url: str
) -> tuple[str, Json, Json]:
    """(account id, the intent, the sandbox's dispute.created event) of a fresh dispute."""
    account = (await webhook_account(client, auth, psp_url))["id"]
    body = {"amount": 2500, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    intent = (await send(client, auth, "/v1/payment_intents", body)).json()
    payment = await provider_payment(psp, intent["latest_charge"])
    reply = await psp.post(
        "/sandbox/disputes", json={"payment": payment["id"], "amount": 2000, "reason": "fraudulent"}
    )
    assert reply.status_code == 200, reply.text
    [created] = await sandbox_events(psp, reply.json()["id"])
    return account, intent, created


def later(event: Json, sequence: int, status: str) -> Json:
    """A later event about the same dispute, as a provider that reports outcomes sends."""
    kind = "dispute.closed" if status in ("won", "lost") else "dispute.updated"
    dispute = {**event["data"]["object"], "status": status}
    return {
        **event,
        "id": f"{event['id']}_{sequence}",
        "type": kind,
        "sequence": sequence,
        "data": {"object": dispute},
    }


async def test_a_dispute_is_created_once_withdraws_once_and_is_served(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    psp: httpx.AsyncClient,
    psp_url: str,
    pool: AsyncConnectionPool,
) -> None:
    account, intent, created = await disputed(client, auth, psp, psp_url)
    for _ in range(2):
        assert (await deliver(client, account, created)).status_code == 200
    assert await stored(pool, account) == [(created["id"], "dispute.created", "applied")]
    listed = (await client.get("/v1/disputes", headers=auth)).json()
    [dispute] = listed["data"]
    assert listed["has_more"] is False
    assert dispute == {
        "id": dispute["id"],
        "object": "dispute",
        "amount": 2000,
        "charge": intent["latest_charge"],
        "created": dispute["created"],
        "currency": "usd",
        "livemode": False,
        "payment_intent": intent["id"],
        "reason": "fraudulent",
        "status": "needs_response",
    }
    assert dispute["id"].startswith("dp_")
    reply = await client.get(f"/v1/disputes/{dispute['id']}", headers=auth)
    assert reply.json() == dispute
    by_intent = await client.get(
        "/v1/disputes", params={"payment_intent": intent["id"]}, headers=auth
    )
    assert by_intent.json()["data"] == [dispute]
    other = await client.get("/v1/disputes", params={"charge": "ch_other"}, headers=auth)
    assert other.json()["data"] == []
    assert (await client.get("/v1/disputes/dp_missing", headers=auth)).status_code == 404
    assert await emitted(pool, dispute["id"]) == [
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
    ]
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT payload FROM events WHERE aggregate_id = %s AND type = %s",
            (dispute["id"], "charge.dispute.created"),
        )
        assert [row[0] for row in await cur.fetchall()] == [dispute]
    lines = await ledger_lines(pool, intent["id"])
    assert [line for line in lines if line[0] == "withdrawal"] == [("withdrawal", "posted", 2000)]
    assert await ledger_balanced(pool)


async def test_a_won_dispute_is_reinstated_and_late_reports_change_nothing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    psp: httpx.AsyncClient,
    psp_url: str,
    pool: AsyncConnectionPool,
) -> None:
    account, intent, created = await disputed(client, auth, psp, psp_url)
    review, won = later(created, 2, "under_review"), later(created, 3, "won")
    lost = later(created, 4, "lost")
    # Out of order: the outcome before the dispute itself, then the rest.
    for event in (won, created, review, lost, won):
        assert (await deliver(client, account, event)).status_code == 200, event["id"]
    assert await stored(pool, account) == sorted(
        [
            (created["id"], "dispute.created", "stale"),
            (review["id"], "dispute.updated", "stale"),
            (won["id"], "dispute.closed", "applied"),
            (lost["id"], "dispute.closed", "no_change"),
        ]
    )
    [dispute] = (await client.get("/v1/disputes", headers=auth)).json()["data"]
    assert dispute["status"] == "won"
    assert await emitted(pool, dispute["id"]) == [
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated",
        "charge.dispute.closed",
    ]
    lines = await ledger_lines(pool, intent["id"])
    assert ("withdrawal", "posted", 2000) in lines
    assert ("reinstatement", "posted", 2000) in lines
    assert await ledger_balanced(pool)


async def test_a_dispute_moves_forward_in_order_and_lost_keeps_the_funds_out(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    psp: httpx.AsyncClient,
    psp_url: str,
    pool: AsyncConnectionPool,
) -> None:
    account, intent, created = await disputed(client, auth, psp, psp_url)
    for event in (created, later(created, 2, "under_review"), later(created, 3, "lost")):
        assert (await deliver(client, account, event)).status_code == 200
    [dispute] = (await client.get("/v1/disputes", headers=auth)).json()["data"]
    assert dispute["status"] == "lost"
    assert await emitted(pool, dispute["id"]) == [
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.updated",
        "charge.dispute.closed",
    ]
    kinds = [line[0] for line in await ledger_lines(pool, intent["id"])]
    assert kinds.count("withdrawal") == 1 and "reinstatement" not in kinds
    assert await ledger_balanced(pool)


async def test_a_disputed_payment_is_not_refunded_until_the_dispute_is_won(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    psp: httpx.AsyncClient,
    psp_url: str,
    pool: AsyncConnectionPool,
) -> None:
    """The disputed money already left the provider balance: a refund too would pay the
    customer twice."""
    account, intent, created = await disputed(client, auth, psp, psp_url)
    assert (await deliver(client, account, created)).status_code == 200
    refund = {"payment_intent": intent["id"], "amount": 100}
    refused = await send(client, auth, "/v1/refunds", refund)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "charge_disputed"
    assert (await client.get("/v1/refunds", headers=auth)).json()["data"] == []
    await deliver(client, account, later(created, 2, "won"))
    allowed = await send(client, auth, "/v1/refunds", refund)
    assert allowed.json()["status"] == "succeeded", allowed.text
    assert await ledger_balanced(pool)


async def test_a_dispute_of_an_unknown_payment_is_stored_and_left_alone(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    psp: httpx.AsyncClient,
    psp_url: str,
    pool: AsyncConnectionPool,
) -> None:
    account, _, created = await disputed(client, auth, psp, psp_url)
    stranger = {
        **created,
        "id": "sbxevt_stranger",
        "data": {"object": {**created["data"]["object"], "payment": "sbxpay_unknown"}},
    }
    assert (await deliver(client, account, stranger)).status_code == 200
    assert await stored(pool, account) == [("sbxevt_stranger", "dispute.created", "unmatched")]
    assert (await client.get("/v1/disputes", headers=auth)).json()["data"] == []
