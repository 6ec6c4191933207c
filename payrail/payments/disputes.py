"""Disputes: a cardholder's challenge of a captured payment, learnt from the provider's
webhooks (docs/payments.md).

A provider reports a dispute's status, in Stripe's words. Reports may repeat and arrive
out of order, so a dispute only moves forward: an inquiry (`warning_needs_response`)
may become a dispute, a dispute goes under review, and it closes won or lost, for good.
The funds leave the provider balance when a dispute (not an inquiry) opens, and come back
when it is won, as Stripe moves them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from payrail.clock import Clock
from payrail.connectors.base import ProviderEvent
from payrail.errors import NotFound
from payrail.ids import new_id
from payrail.ledger.schemas import TransactionCreate
from payrail.payments import outcomes, postings, settlement
from payrail.payments import repository as repo
from payrail.payments.objects import dispute_object, publish
from payrail.payments.repository import Conn
from payrail.tenants.scope import Scope

DisputeStatus = Literal["warning_needs_response", "needs_response", "under_review", "won", "lost"]
STATUSES: tuple[str, ...] = get_args(DisputeStatus)

# How far along each status is; a report never moves a dispute to one not further along.
_STAGE: dict[str, int] = {
    "warning_needs_response": 0,
    "needs_response": 1,
    "under_review": 2,
    "won": 3,
    "lost": 3,
}
CLOSED = frozenset({"won", "lost"})


@dataclass(frozen=True, slots=True)
class Transition:
    status: DisputeStatus
    withdraw: bool  # post the dispute's amount out of the provider balance
    reinstate: bool  # post it back
    events: tuple[str, ...]  # in the order they happen


def transition(current: DisputeStatus | None, reported: DisputeStatus) -> Transition | None:
    """What a report of `reported` does to a dispute now at `current` (None: not known
    yet). None when it does nothing: the same status again, an earlier one (a report
    overtaken by a later one), anything after the dispute closed."""
    if current is not None and _STAGE[reported] <= _STAGE[current]:
        return None
    withdrawn_before = current is not None and current != "warning_needs_response"
    withdraw = reported != "warning_needs_response" and not withdrawn_before
    reinstate = reported == "won"
    events: list[str] = ["charge.dispute.created"] if current is None else []
    if withdraw:
        events.append("charge.dispute.funds_withdrawn")
    if reinstate:
        events.append("charge.dispute.funds_reinstated")
    if reported in CLOSED:
        events.append("charge.dispute.closed")
    elif current is not None:
        events.append("charge.dispute.updated")
    return Transition(reported, withdraw, reinstate, tuple(events))


@dataclass(frozen=True, slots=True)
class Report:
    """A provider's dispute as payrail reads it."""

    provider_id: str
    payment_provider_id: str
    amount: int
    reason: str
    status: DisputeStatus


def report(event: ProviderEvent) -> Report | None:
    """The dispute in a sandbox event (Stripe's field names and statuses); None when it
    is not one payrail can read."""
    payload = event.payload
    payment, amount = payload.get("payment"), payload.get("amount")
    reason, status = payload.get("reason"), payload.get("status")
    if (
        not isinstance(payment, str)
        or type(amount) is not int
        or amount <= 0
        or not isinstance(reason, str)
        or status not in STATUSES
    ):
        return None
    return Report(event.object_id, payment, amount, reason, status)


async def record(
    conn: Conn, scope: Scope, clock: Clock, connector_account_id: str, event: ProviderEvent
) -> str:
    """Apply a dispute event from the account's provider; returns what came of it."""
    found = report(event)
    if found is None:
        return "unreadable"
    charge = await repo.by_provider_id(
        conn, "charges", connector_account_id, found.payment_provider_id
    )
    if charge is None:
        return "unmatched"
    # Every event about this dispute locks its intent first: they apply one at a time,
    # and in the order every other recorder of this charge locks.
    intent, charge = await outcomes.locked(conn, scope, charge["id"])
    dispute = await repo.by_provider_id(conn, "disputes", connector_account_id, found.provider_id)
    if dispute is not None and event.sequence <= dispute["last_event_sequence"]:
        return "stale"
    now = clock.now()
    change = transition(dispute["status"] if dispute is not None else None, found.status)
    if dispute is None:
        assert change is not None  # a first report always creates
        dispute = {
            "id": new_id("dp"),
            "payment_intent_id": intent["id"],
            "charge_id": charge["id"],
            "connector_account_id": connector_account_id,
            "provider_id": found.provider_id,
            "amount": found.amount,
            "currency": charge["currency"],
            "status": change.status,
            "reason": found.reason,
            "last_event_sequence": event.sequence,
            "created_at": now,
            "updated_at": now,
        }
        await repo.insert(conn, "disputes", scope, dispute)
        dispute = {**dispute, "merchant_id": scope.merchant_id, "livemode": scope.livemode}
    else:
        changes: dict[str, Any] = {"last_event_sequence": event.sequence, "updated_at": now}
        if change is not None:
            changes["status"] = change.status
        await repo.update(conn, "disputes", dispute["id"], changes)
        dispute = {**dispute, **changes}
    if change is None:
        return "no_change"
    accounts = await postings.accounts(conn, scope, clock, charge["currency"], connector_account_id)
    ref = postings.Reference(
        intent["id"], charge["id"], connector_account_id, charge["provider_id"]
    )
    money: list[TransactionCreate] = []
    if change.withdraw:
        money.append(postings.dispute_withdrawal(accounts, ref, dispute["id"], dispute["amount"]))
    if change.reinstate:
        money.append(
            postings.dispute_reinstatement(accounts, ref, dispute["id"], dispute["amount"])
        )
    if money:
        await postings.post(conn, scope, clock, *money)
        expected = [settlement.dispute(charge, dispute, withdrawn=True)] if change.withdraw else []
        if change.reinstate:
            expected.append(settlement.dispute(charge, dispute, withdrawn=False))
        await settlement.expect(conn, scope, clock, *expected)
    obj = dispute_object(dispute)
    await publish(conn, scope, clock, *((kind, obj) for kind in change.events))
    return "applied"


async def get(conn: Conn, scope: Scope, dispute_id: str) -> dict[str, Any]:
    row = await repo.fetch_one(conn, "disputes", scope, dispute_id)
    if row is None:
        raise NotFound("dispute", dispute_id)
    return dispute_object(row)


async def list_disputes(conn: Conn, scope: Scope, ids: Sequence[str]) -> list[dict[str, Any]]:
    return [dispute_object(r) for r in await repo.fetch(conn, "disputes", scope, ids)]
