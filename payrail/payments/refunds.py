"""Refunds: partial, several per payment, never more than was received.

A refund is committed `pending` with its amount counted against the intent (a CHECK
keeps the sum within what was received) and held in the ledger before the provider is
asked. The provider's answer posts the hold (succeeded) or voids it and gives the amount
back (failed). Until an answer comes, the janitor resends the refund with the same key,
which the provider processes at most once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from payrail.api.context import Services
from payrail.api.idempotency import NO_KEY, Recovery
from payrail.clock import Clock
from payrail.connectors.base import ConnectorError, ProviderRefund
from payrail.errors import InvalidRequest, NotFound
from payrail.ids import new_id
from payrail.payments import in_doubt, outcomes, postings, settlement, states
from payrail.payments import repository as repo
from payrail.payments.objects import intent_state, publish, refund_object
from payrail.payments.repository import Conn
from payrail.payments.schemas import RefundCreate
from payrail.payments.service import FIRST_CHECK, Connect, illegal
from payrail.tenants.scope import Scope


async def _target(conn: Conn, scope: Scope, params: RefundCreate) -> tuple[str, str | None]:
    """The intent to refund, and the charge if one was named."""
    if params.charge is not None:
        charge = await repo.fetch_one(conn, "charges", scope, params.charge)
        if charge is None:
            raise NotFound("charge", params.charge, param="charge")
        if params.payment_intent not in (None, charge["payment_intent_id"]):
            raise InvalidRequest(
                "The charge does not belong to that payment_intent.",
                param="charge",
                code="parameter_invalid",
            )
        return charge["payment_intent_id"], charge["id"]
    if params.payment_intent is None:
        raise InvalidRequest(
            "Missing required param: payment_intent.",
            param="payment_intent",
            code="parameter_missing",
        )
    return params.payment_intent, None


async def _start(
    conn: Conn, scope: Scope, clock: Clock, params: RefundCreate
) -> tuple[dict[str, Any], dict[str, Any]]:
    intent_id, named_charge = await _target(conn, scope, params)
    intent_row = await repo.fetch_one(conn, "payment_intents", scope, intent_id, lock=True)
    if intent_row is None:
        raise NotFound("payment_intent", intent_id, param="payment_intent")
    try:
        after, take = states.refunded(intent_state(intent_row), params.amount)
    except states.IllegalTransition as error:
        raise illegal(error) from None
    charge = await repo.fetch_one(conn, "charges", scope, intent_row["latest_charge_id"])
    assert charge is not None and charge["status"] == "captured"
    # As Stripe: the disputed money is already out of the provider balance, and
    # refunding it too would pay the customer twice. (An inquiry is not a dispute yet.)
    cur = await conn.execute(
        "SELECT 1 FROM disputes WHERE charge_id = %s"
        " AND status IN ('needs_response', 'under_review', 'lost')",
        (charge["id"],),
    )
    if await cur.fetchone() is not None:
        raise InvalidRequest(
            "This payment is disputed: it cannot be refunded while the dispute is open or"
            " after it was lost.",
            param="payment_intent",
            code="charge_disputed",
        )
    if named_charge not in (None, charge["id"]):
        raise InvalidRequest(
            f"Charge {named_charge} did not capture this payment; refund {charge['id']}.",
            param="charge",
            code="charge_not_refundable",
        )
    now = clock.now()
    refund = {
        "id": new_id("re"),
        "payment_intent_id": intent_id,
        "charge_id": charge["id"],
        "amount": take,
        "currency": intent_row["currency"],
        "status": "pending",
        "reason": params.reason,
        "metadata": params.metadata,
        "sent_at": now,
        "next_check_at": now + FIRST_CHECK,
        "created_at": now,
        "updated_at": now,
    }
    await repo.insert(conn, "refunds", scope, refund)
    await repo.update(
        conn,
        "payment_intents",
        intent_id,
        {"amount_refunded": after.amount_refunded, "updated_at": now},
    )
    accounts = await postings.accounts(
        conn, scope, clock, charge["currency"], charge["connector_account_id"]
    )
    ref = postings.Reference(
        intent_id, charge["id"], charge["connector_account_id"], charge["provider_id"]
    )
    await postings.post(conn, scope, clock, postings.refund_hold(accounts, ref, refund["id"], take))
    stored = await repo.fetch_one(conn, "refunds", scope, refund["id"])
    assert stored is not None
    await publish(conn, scope, clock, ("refund.created", refund_object(stored)))
    return stored, charge


async def create(
    connect: Connect,
    scope: Scope,
    services: Services,
    params: RefundCreate,
    recovery: Recovery = NO_KEY,
) -> dict[str, Any]:
    if recovery.resume_from is not None:
        # An earlier run under this Idempotency-Key made the refund: carry on with it
        # (a pending one is resent with its own key, which refunds at most once).
        async with connect() as conn:
            refund = await repo.fetch_one(conn, "refunds", scope, recovery.resume_from)
            assert refund is not None
            charge = await repo.fetch_one(conn, "charges", scope, refund["charge_id"])
            assert charge is not None
        if refund["status"] != "pending":
            return refund_object(refund)
        return await send(connect, scope, services, refund, charge)
    async with connect() as conn, conn.transaction():
        refund, charge = await _start(conn, scope, services.clock, params)
        await recovery.checkpoint(conn, refund["id"])
    return await send(connect, scope, services, refund, charge)


async def send(
    connect: Connect,
    scope: Scope,
    services: Services,
    refund: dict[str, Any],
    charge: dict[str, Any],
) -> dict[str, Any]:
    """Send (or resend, same key) a pending refund and record the answer."""
    clock = services.clock
    async with connect() as conn:
        connector = await services.connectors.get(
            conn, scope, services.vault, charge["connector_account_id"]
        )
    try:
        answer = await connector.refund(refund["id"], charge["provider_id"], refund["amount"])
    except ConnectorError as error:
        if not outcomes.provider_refused(error.classification):
            # Not answered: the janitor resends it. Pending is the truth until then.
            return refund_object(refund)
        async with connect() as conn, conn.transaction():
            return refund_object(
                await failed(conn, scope, clock, refund["id"], error.classification.code)
            )
    async with connect() as conn, conn.transaction():
        return refund_object(await record(conn, scope, clock, refund["id"], answer))


async def _locked(
    conn: Conn, scope: Scope, refund_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    found = await repo.fetch_one(conn, "refunds", scope, refund_id)
    if found is None:
        raise LookupError(f"no refund {refund_id}")
    intent = await repo.fetch_one(
        conn, "payment_intents", scope, found["payment_intent_id"], lock=True
    )
    refund = await repo.fetch_one(conn, "refunds", scope, refund_id, lock=True)
    assert intent is not None and refund is not None
    return intent, refund


async def record(
    conn: Conn, scope: Scope, clock: Clock, refund_id: str, answer: ProviderRefund
) -> dict[str, Any]:
    """What the provider said of a refund; a refund already decided stays as it is."""
    _, refund = await _locked(conn, scope, refund_id)
    if refund["status"] != "pending":
        return refund
    now = clock.now()
    if answer.status == "pending":
        changes: dict[str, Any] = {"provider_id": answer.provider_id, "updated_at": now}
        await repo.update(conn, "refunds", refund_id, changes)
        return {**refund, **changes}
    if answer.status == "failed":
        return await failed(conn, scope, clock, refund_id, "provider_refused")
    await postings.settle_hold(conn, scope, clock, f"refund:{refund_id}", refund["amount"])
    charge = await repo.fetch_one(conn, "charges", scope, refund["charge_id"])
    assert charge is not None
    await settlement.expect(
        conn, scope, clock, settlement.refund(charge, refund, answer.provider_id)
    )
    changes = {
        "status": "succeeded",
        "provider_id": answer.provider_id,
        "next_check_at": None,
        "updated_at": now,
    }
    await repo.update(conn, "refunds", refund_id, changes)
    done = {**refund, **changes}
    await publish(conn, scope, clock, ("refund.updated", refund_object(done)))
    return done


async def failed(
    conn: Conn, scope: Scope, clock: Clock, refund_id: str, reason: str
) -> dict[str, Any]:
    """The provider refused the refund: its amount may be refunded again."""
    intent_row, refund = await _locked(conn, scope, refund_id)
    if refund["status"] != "pending":
        return refund
    now = clock.now()
    await postings.settle_hold(conn, scope, clock, f"refund:{refund_id}", 0)
    after = states.refund_failed(intent_state(intent_row), refund["amount"])
    await repo.update(
        conn,
        "payment_intents",
        intent_row["id"],
        {"amount_refunded": after.amount_refunded, "updated_at": now},
    )
    changes = {
        "status": "failed",
        "failure_reason": reason,
        "next_check_at": None,
        "updated_at": now,
    }
    await repo.update(conn, "refunds", refund_id, changes)
    done = {**refund, **changes}
    await publish(conn, scope, clock, ("refund.failed", refund_object(done)))
    return done


async def still_pending(conn: Conn, refund_id: str, checks_done: int, now: datetime) -> None:
    """No answer yet: ask again on the schedule, unless something settled it meanwhile."""
    await conn.execute(
        "UPDATE refunds SET checks_done = %s, next_check_at = %s, updated_at = %s"
        " WHERE id = %s AND status = 'pending'",
        (checks_done, in_doubt.next_check_at(now, checks_done), now, refund_id),
    )


async def get(conn: Conn, scope: Scope, refund_id: str) -> dict[str, Any]:
    row = await repo.fetch_one(conn, "refunds", scope, refund_id)
    if row is None:
        raise NotFound("refund", refund_id)
    return refund_object(row)


async def list_refunds(conn: Conn, scope: Scope, ids: Sequence[str]) -> list[dict[str, Any]]:
    return [refund_object(r) for r in await repo.fetch(conn, "refunds", scope, ids)]
