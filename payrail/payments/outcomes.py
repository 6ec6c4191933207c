"""What a provider's answer about a charge does to the charge, its intent and the ledger.

The same answer may arrive from the API call that asked, from the janitor that asked
again, and from a webhook, in any order and more than once. Each recorder locks the
intent, then the charge (always in that order, so two recorders cannot deadlock), and
acts only while the charge still waits for that answer: the first to arrive records it,
later ones change nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog

from payrail.clock import Clock
from payrail.connectors.base import ProviderPayment
from payrail.connectors.declines import UNKNOWN_DECLINE, Classification, Decision
from payrail.ledger.schemas import TransactionCreate
from payrail.ops import metrics
from payrail.payments import in_doubt, postings, settlement, states
from payrail.payments import repository as repo
from payrail.payments.objects import intent_object, intent_state, publish
from payrail.payments.repository import Conn
from payrail.tenants.scope import Scope

log = structlog.get_logger(__name__)

UNDECIDED = frozenset({"sending", "in_doubt"})

# Stripe's error `code` for these declines; every other decline is `card_declined`.
_OWN_CODES = frozenset({"expired_card", "incorrect_cvc", "incorrect_number", "processing_error"})

_INTENT_EVENTS: dict[str, str] = {
    "succeeded": "payment_intent.succeeded",
    "requires_capture": "payment_intent.amount_capturable_updated",
    "requires_payment_method": "payment_intent.payment_failed",
    "requires_action": "payment_intent.requires_action",
    "canceled": "payment_intent.canceled",
}


def payment_error(charge: dict[str, Any], reason: Classification) -> dict[str, Any]:
    """`last_payment_error` as Stripe shows it."""
    if reason.decision is Decision.TECHNICAL:
        return {
            "type": "api_error",
            "code": reason.code,
            "message": reason.message,
            "charge": charge["id"],
        }
    return {
        "type": "card_error",
        "code": reason.code if reason.code in _OWN_CODES else "card_declined",
        "decline_code": reason.code,
        "message": reason.message,
        "charge": charge["id"],
        "payment_method": {"id": charge["payment_method_id"], "object": "payment_method"},
    }


async def locked(conn: Conn, scope: Scope, charge_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The charge and its intent, both locked, intent first."""
    intent = await repo.lock_intent_of(conn, scope, charge_id)
    if intent is None:
        raise LookupError(f"no charge {charge_id}")
    charge = await repo.fetch_one(conn, "charges", scope, charge_id, lock=True)
    assert charge is not None
    return intent, charge


def _reference(
    charge: dict[str, Any], provider_id: str | None, invoice: str | None = None
) -> postings.Reference:
    return postings.Reference(
        charge["payment_intent_id"],
        charge["id"],
        charge["connector_account_id"],
        provider_id,
        invoice,
    )


async def _accounts(
    conn: Conn, scope: Scope, clock: Clock, charge: dict[str, Any]
) -> postings.Accounts:
    return await postings.accounts(
        conn, scope, clock, charge["currency"], charge["connector_account_id"]
    )


def _fees(
    accounts: postings.Accounts, ref: postings.Reference, answer: ProviderPayment
) -> list[TransactionCreate]:
    """The processor's fee on what it captured, if it charged one."""
    return [postings.processor_fee(accounts, ref, answer.fee)] if answer.fee > 0 else []


async def _fee(
    conn: Conn, scope: Scope, clock: Clock, charge: dict[str, Any], answer: ProviderPayment
) -> None:
    if answer.fee > 0:
        accounts = await _accounts(conn, scope, clock, charge)
        ref = _reference(charge, answer.provider_id)
        await postings.post(conn, scope, clock, *_fees(accounts, ref, answer))


async def _apply(
    conn: Conn,
    scope: Scope,
    clock: Clock,
    intent_row: dict[str, Any],
    after: states.Intent,
    changes: dict[str, Any],
) -> dict[str, Any]:
    now = clock.now()
    row = {
        **intent_row,
        "status": after.status,
        "amount_capturable": after.amount_capturable,
        "amount_received": after.amount_received,
        "amount_refunded": after.amount_refunded,
        "updated_at": now,
        **changes,
    }
    if after.status == "canceled" and row["canceled_at"] is None:
        row["canceled_at"] = now
    await repo.update(
        conn,
        "payment_intents",
        row["id"],
        {
            k: row[k]
            for k in (
                "status",
                "amount_capturable",
                "amount_received",
                "amount_refunded",
                "updated_at",
                "canceled_at",
                *changes,
            )
        },
    )
    if after.status != intent_row["status"] and after.status in _INTENT_EVENTS:
        await publish(conn, scope, clock, (_INTENT_EVENTS[after.status], intent_object(row)))
    return row


async def record_attempt(
    conn: Conn,
    scope: Scope,
    clock: Clock,
    charge_id: str,
    answer: ProviderPayment | Classification,
    *,
    presumed: bool = False,
) -> dict[str, Any]:
    """Record what came of an authorization; returns the intent row as it now is.

    `presumed`: the answer is the janitor's conclusion that a request the provider has no
    record of was never processed. The charge fails, and is asked about once more later
    (`in_doubt.LATE_CHECK`); should the provider have processed it after all, that late
    answer is still recorded here, money included."""
    intent_row, charge = await locked(conn, scope, charge_id)
    if charge["status"] not in UNDECIDED and not late_success(charge, answer):
        return intent_row
    now = clock.now()
    if isinstance(answer, Classification):
        if answer.decision is Decision.IN_DOUBT:
            if charge["status"] == "sending":
                await repo.update(
                    conn,
                    "charges",
                    charge_id,
                    {
                        "status": "in_doubt",
                        "next_check_at": in_doubt.next_check_at(now, 0),
                        "updated_at": now,
                    },
                )
            return intent_row
        reason: Classification | None = answer
        status = "failed" if answer.decision is Decision.TECHNICAL else "declined"
        if answer.decision is Decision.AUTHENTICATION_REQUIRED:
            status = "requires_authentication"
        outcome: states.AttemptOutcome = (
            "failed"
            if status == "failed"
            else "requires_authentication"
            if status == "requires_authentication"
            else "declined"
        )
        charge_changes: dict[str, Any] = {"status": status}
    else:
        reason = (answer.decline or UNKNOWN_DECLINE) if answer.status == "declined" else None
        outcome = "failed" if answer.status == "voided" else answer.status
        charge_changes = {
            "status": answer.status,
            "provider_id": answer.provider_id,
            "amount_captured": answer.amount_captured,
            "fee": answer.fee,
        }
    if reason is not None:
        charge_changes.update(
            failure_code=reason.code,
            failure_message=reason.message,
            failure_decision=reason.decision.value,
        )
    recheck = now + in_doubt.LATE_CHECK if presumed else None
    await repo.update(
        conn,
        "charges",
        charge_id,
        {**charge_changes, "next_check_at": recheck, "updated_at": now},
    )
    if isinstance(answer, ProviderPayment) and outcome in ("captured", "authorized"):
        accounts = await _accounts(conn, scope, clock, charge)
        # An invoice's payment is credited to clearing, for billing to apply.
        ref = _reference(charge, answer.provider_id, intent_row["invoice_id"])
        money = (
            postings.automatic_capture(accounts, ref, answer.amount_captured)
            if outcome == "captured"
            else postings.authorization_hold(accounts, ref, answer.amount)
        )
        # One statement for the capture (or hold) and its fee.
        await postings.post(conn, scope, clock, money, *_fees(accounts, ref, answer))
        if outcome == "captured":
            await settlement.expect(
                conn,
                scope,
                clock,
                settlement.capture(charge, answer, money.external_id),
            )
    if charge["status"] in UNDECIDED:
        # Not a late success: that attempt was counted when it was presumed failed.
        await _count_attempt(conn, charge, charge_changes["status"], reason)
    if intent_row["latest_charge_id"] != charge_id or intent_row["status"] != "processing":
        if outcome in ("captured", "authorized"):
            # Failover only follows a charge that certainly did not go through, and a
            # charge is presumed never processed only long after it was sent, so this
            # takes a provider breaking its word. The money is on the ledger and
            # reconciliation will show it; an operator must refund or void it.
            log.error(
                "charge went through for an intent that no longer follows it", charge=charge_id
            )
        return intent_row
    after = states.attempted(intent_state(intent_row), outcome)
    error = payment_error({**charge, **charge_changes}, reason) if reason is not None else None
    return await _apply(conn, scope, clock, intent_row, after, {"last_payment_error": error})


async def _count_attempt(
    conn: Conn, charge: dict[str, Any], status: str, reason: Classification | None
) -> None:
    """The attempt's outcome in `payrail_payment_attempts_total`, once: only the recorder
    that decides the charge gets here. It comes after the charge's and the ledger's
    writes, so that a recorder that fails on those counts nothing.

    `connector` is the account's provider, not its id: merchants' account ids are
    unbounded, and an outage is the provider's. payrail knows no card's issuing country
    (no BIN table) and customers carry no address, so `country` is the card's billing
    address country."""
    cur = await conn.execute(
        "SELECT a.provider, upper(m.billing_details #>> '{address,country}')"
        " FROM connector_accounts a, payment_methods m WHERE a.id = %s AND m.id = %s",
        (charge["connector_account_id"], charge["payment_method_id"]),
    )
    found = await cur.fetchone()
    assert found is not None
    provider, country = found
    metrics.payment_attempts.labels(
        connector=provider,
        currency=charge["currency"].lower(),
        country=country or "unknown",
        outcome=metrics.attempt_outcome(status),
        decline_code=reason.code if reason is not None else "",
        mode=metrics.mode(charge["livemode"]),
    ).inc()


def late_success(charge: dict[str, Any], answer: ProviderPayment | Classification) -> bool:
    """A provider reporting a charge made after payrail settled it as never processed."""
    return (
        charge["status"] == "failed"
        and charge["provider_id"] is None
        and isinstance(answer, ProviderPayment)
        and answer.status in ("captured", "authorized")
    )


def provider_refused(reason: Classification) -> bool:
    """The provider answered no for good (a decline, or a request it calls invalid), as
    opposed to no answer (in doubt) or an outage (technical): asking again won't help."""
    return reason.decision not in (Decision.IN_DOUBT, Decision.TECHNICAL) or (
        reason.code == "connector_request_invalid"
    )


async def still_in_doubt(conn: Conn, charge_id: str, checks_done: int, now: datetime) -> None:
    """The provider could not say yet: ask again on the schedule. A charge something
    else settled meanwhile (the API's answer, a webhook) is left alone."""
    await conn.execute(
        "UPDATE charges SET checks_done = %s, next_check_at = %s, updated_at = %s"
        " WHERE id = %s AND (status IN ('sending', 'in_doubt') OR pending_operation IS NOT NULL)",
        (checks_done, in_doubt.next_check_at(now, checks_done), now, charge_id),
    )


async def nothing_to_check(conn: Conn, charge_id: str) -> None:
    """A charge claimed with nothing left to ask about leaves the janitor's queue."""
    await conn.execute(
        "UPDATE charges SET next_check_at = NULL WHERE id = %s"
        " AND status NOT IN ('sending', 'in_doubt') AND pending_operation IS NULL",
        (charge_id,),
    )


async def record_operation(
    conn: Conn, scope: Scope, clock: Clock, charge_id: str, answer: ProviderPayment
) -> dict[str, Any]:
    """Record what came of a capture or void sent for an authorized charge, or one the
    provider made on its own (an authorization expiring, a capture in its dashboard)."""
    intent_row, charge = await locked(conn, scope, charge_id)
    if answer.status == "authorized" or charge["status"] != "authorized":
        # The provider has not acted on it yet (resent later), or it is recorded.
        return intent_row
    now = clock.now()
    done = {
        "pending_operation": None,
        "operation_amount": None,
        "next_check_at": None,
        "updated_at": now,
    }
    hold = f"charge:{charge_id}:authorization"
    intent = intent_state(intent_row)
    if answer.status == "captured":
        after = states.captured(intent, answer.amount_captured)
        await postings.settle_hold(conn, scope, clock, hold, answer.amount_captured)
        await repo.update(
            conn,
            "charges",
            charge_id,
            {
                **done,
                "status": "captured",
                "amount_captured": answer.amount_captured,
                "fee": answer.fee,
            },
        )
        await _fee(conn, scope, clock, charge, answer)
        await settlement.expect(
            conn,
            scope,
            clock,
            settlement.capture(charge, answer, hold),
        )
        return await _apply(conn, scope, clock, intent_row, after, {})
    if answer.status == "voided":
        after = states.canceled(intent)
        await postings.settle_hold(conn, scope, clock, hold, 0)
        await repo.update(conn, "charges", charge_id, {**done, "status": "voided"})
        # Voided with no cancel asked for: the authorization expired, as Stripe says.
        reason = intent_row["cancellation_reason"] or (
            None if charge["pending_operation"] == "void" else "automatic"
        )
        return await _apply(conn, scope, clock, intent_row, after, {"cancellation_reason": reason})
    log.error(
        "capture or void answered with an unexpected status", charge=charge_id, status=answer.status
    )
    await repo.update(conn, "charges", charge_id, done)
    return intent_row


async def operation_refused(
    conn: Conn, scope: Scope, clock: Clock, charge_id: str
) -> dict[str, Any]:
    """The provider certainly did not act on the capture or void: the intent is as it
    was, and the operation may be asked for again."""
    intent_row, charge = await locked(conn, scope, charge_id)
    if charge["pending_operation"] is None:
        return intent_row
    now = clock.now()
    await repo.update(
        conn,
        "charges",
        charge_id,
        {
            "pending_operation": None,
            "operation_amount": None,
            "next_check_at": None,
            "updated_at": now,
        },
    )
    if intent_row["cancellation_reason"] is not None and intent_row["status"] != "canceled":
        await repo.update(
            conn,
            "payment_intents",
            intent_row["id"],
            {"cancellation_reason": None, "updated_at": now},
        )
        intent_row = {**intent_row, "cancellation_reason": None, "updated_at": now}
    return intent_row
