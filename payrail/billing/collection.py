"""Collecting an invoice: an off-session payment with the customer's saved card, through
payments, and what its outcome does to the invoice, the subscription and dunning.

Never two charges for one attempt: the payment intent and the invoice's claim on it
commit in one transaction (`InvoiceAttempt.checkpoint`, run by payments inside the
transaction that creates the intent). A second collector — another worker, a replayed
request — finds the claim taken and its own intent rolled back, and a collector that dies
after that commit leaves an intent the next one follows instead of making another.

An attempt in doubt (payments has not heard from the provider) stays on the invoice until
the payments janitor settles the intent; the invoice's lease passing brings a collector
back to look (`settle`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from payrail.api.context import Services
from payrail.api.idempotency import Recovery
from payrail.billing import repository as repo
from payrail.billing.invoices import service as invoices
from payrail.billing.invoices.objects import publish
from payrail.billing.repository import Conn
from payrail.billing.subscriptions import service as subscriptions
from payrail.connectors.declines import Decision
from payrail.dunning import policy as dunning
from payrail.dunning.service import load_policy
from payrail.errors import CardError, InvalidRequest, NotFound, ProviderUnavailable
from payrail.payments import service as payments
from payrail.payments.schemas import PaymentIntentConfirm, PaymentIntentCreate
from payrail.tenants.scope import Scope

log = structlog.get_logger(__name__)

Connect = Callable[[], AbstractAsyncContextManager[Conn]]
COLLECTABLE = frozenset({"open", "uncollectible"})
# How long an attempt's maker has to record its outcome before the engine looks at it.
ATTEMPT_LEASE = timedelta(seconds=60)


class AttemptSuperseded(Exception):
    """Another collector attached its intent to the invoice first."""


@dataclass(frozen=True)
class InvoiceAttempt(Recovery):
    """Payments' checkpoint, used to tie the intent to the invoice in its transaction."""

    invoice_id: str = ""
    attempt: int = 0
    amount: int = 0
    attempted_at: datetime | None = None
    # Real time until which the engine leaves the attempt to its maker.
    lease_until: datetime | None = None

    @property
    def resume_from(self) -> str | None:
        return None

    async def checkpoint(self, conn: Conn, object_id: str) -> None:
        cur = await conn.execute(
            "UPDATE invoices SET payment_intent_id = %s, attempt_count = %s,"
            " next_payment_attempt = NULL, lease_expires_at = greatest(lease_expires_at, %s)"
            " WHERE id = %s AND payment_intent_id IS NULL"
            " AND attempt_count = %s AND status IN ('open', 'uncollectible')"
            # A credit note since the amount was read would make it charge too much.
            " AND amount_remaining = %s",
            (
                object_id,
                self.attempt,
                self.lease_until,
                self.invoice_id,
                self.attempt - 1,
                self.amount,
            ),
        )
        if cur.rowcount != 1:
            raise AttemptSuperseded(self.invoice_id)
        cur = await conn.execute(
            "UPDATE payment_intents SET invoice_id = %s WHERE id = %s"
            " RETURNING merchant_id, livemode, amount, currency",
            (self.invoice_id, object_id),
        )
        intent = await cur.fetchone()
        assert intent is not None
        await conn.execute(
            "INSERT INTO invoice_payment_attempts (invoice_id, attempt, merchant_id, livemode,"
            " payment_intent_id, amount, currency, outcome, attempted_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, 'pending', %s)",
            (self.invoice_id, self.attempt, *intent[:2], object_id, *intent[2:], self.attempted_at),
        )


async def _payment_method(conn: Conn, scope: Scope, row: dict[str, Any]) -> str | None:
    """The card to charge: the invoice's, else its subscription's, else the customer's —
    the first of them still attached to the customer (a detached card is never charged)."""
    found = await repo.select(
        conn,
        """
        SELECT pm.id FROM (VALUES (1, %(invoice)s::text), (2, %(sub)s), (3, %(customer)s)) AS
            c (rank, id)
        JOIN payment_methods pm ON pm.id = c.id AND pm.customer_id = %(customer_id)s
        ORDER BY c.rank LIMIT 1
        """,
        {
            "invoice": row["default_payment_method_id"],
            "sub": await _subscription_card(conn, row["subscription_id"]),
            "customer": await _customer_card(conn, row["customer_id"]),
            "customer_id": row["customer_id"],
        },
    )
    return str(found[0]["id"]) if found else None


async def _subscription_card(conn: Conn, subscription_id: str | None) -> str | None:
    if subscription_id is None:
        return None
    found = await repo.select(
        conn,
        "SELECT default_payment_method_id AS id FROM subscriptions WHERE id = %s",
        (subscription_id,),
    )
    return found[0]["id"] if found else None


async def _customer_card(conn: Conn, customer_id: str) -> str | None:
    found = await repo.select(
        conn,
        "SELECT default_payment_method_id AS id FROM customers WHERE id = %s",
        (customer_id,),
    )
    return found[0]["id"] if found else None


async def collect(
    connect: Connect, scope: Scope, services: Services, invoice_id: str, *, due_only: bool
) -> dict[str, Any]:
    """Try to collect the invoice now (or follow the attempt under way); returns the
    invoice as it then is. `due_only`: only if dunning has an attempt due by now (the
    engine, a replayed request), so that a late or stale collector never charges outside
    the schedule; the merchant's `pay` collects whenever asked."""
    async with connect() as conn, conn.transaction():
        row = await invoices.locked(conn, scope, invoice_id)
        if row["payment_intent_id"] is None:
            if row["status"] not in COLLECTABLE or row["amount_remaining"] == 0:
                return row
            now = await subscriptions.billing_now(conn, services.clock, row["test_clock_id"])
            due = row["next_payment_attempt"]
            if due_only and (due is None or due > now):
                return row
            card = await _payment_method(conn, scope, row)
            if card is None:
                return await _failed(conn, scope, services, row, None, now)
    if row["payment_intent_id"] is None:
        attempt = InvoiceAttempt(
            None,
            invoice_id,
            row["attempt_count"] + 1,
            row["amount_remaining"],
            now,
            services.clock.now() + ATTEMPT_LEASE,
        )
        params = PaymentIntentCreate(
            amount=row["amount_remaining"],
            currency=row["currency"],
            customer=row["customer_id"],
            payment_method=card,
            confirm=True,
            description=f"Invoice {row['number']}",
            metadata={"invoice": invoice_id},
        )
        try:
            await payments.create(connect, scope, services, params, attempt)
        except (CardError, ProviderUnavailable, AttemptSuperseded):
            pass  # a decline's outcome is on the intent (a lost race's, on the winner's)
        except (InvalidRequest, NotFound) as refused:
            # Refused before anything was sent (no connector account takes the currency,
            # the card is no longer usable): a failed attempt, for dunning to follow up.
            log.error("invoice payment refused by payments", invoice=invoice_id, error=str(refused))
            return await _refused(connect, scope, services, invoice_id)
    else:
        async with connect() as conn:
            found = await repo.select(
                conn,
                "SELECT status FROM payment_intents WHERE id = %s",
                (row["payment_intent_id"],),
            )
        if found and found[0]["status"] == "requires_confirmation":
            # A collector died between making the intent and confirming it.
            with suppress(CardError, ProviderUnavailable):
                await payments.confirm(
                    connect, scope, services, row["payment_intent_id"], PaymentIntentConfirm()
                )
    return await settle(connect, scope, services, invoice_id)


async def _refused(
    connect: Connect, scope: Scope, services: Services, invoice_id: str
) -> dict[str, Any]:
    async with connect() as conn, conn.transaction():
        row = await invoices.locked(conn, scope, invoice_id)
        if row["payment_intent_id"] is not None or row["status"] not in COLLECTABLE:
            return row
        now = await subscriptions.billing_now(conn, services.clock, row["test_clock_id"])
        return await _failed(conn, scope, services, row, None, now)


async def settle(
    connect: Connect, scope: Scope, services: Services, invoice_id: str
) -> dict[str, Any]:
    """Apply the outcome of the invoice's attempt under way, if it has one."""
    async with connect() as conn, conn.transaction():
        row = await invoices.locked(conn, scope, invoice_id)
        intent_id = row["payment_intent_id"]
        if intent_id is None:
            return row
        found = await repo.select(
            conn,
            "SELECT i.status, i.amount_received, c.failure_code, c.failure_decision,"
            " c.connector_account_id FROM payment_intents i"
            " LEFT JOIN charges c ON c.id = i.latest_charge_id WHERE i.id = %s",
            (intent_id,),
        )
        intent = found[0]
        now = await subscriptions.billing_now(conn, services.clock, row["test_clock_id"])
        if intent["status"] == "succeeded":
            return await _paid(conn, scope, services, row, intent, now)
        if intent["status"] in ("requires_payment_method", "canceled", "requires_action"):
            return await _failed(conn, scope, services, row, intent, now)
        return row  # processing: the janitor is asking the provider


async def _paid(
    conn: Conn,
    scope: Scope,
    services: Services,
    row: dict[str, Any],
    intent: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    clock = services.clock
    intent_id = row["payment_intent_id"]
    row = await invoices.apply_payment(
        conn, scope, clock, row, intent_id, intent["amount_received"], now
    )
    row = await _clear_dunning(conn, row)
    await conn.execute(
        "UPDATE invoice_payment_attempts SET outcome = 'succeeded', decided_at = %s,"
        " connector_account_id = %s WHERE invoice_id = %s AND payment_intent_id = %s",
        (now, intent["connector_account_id"], row["id"], intent_id),
    )
    obj = (await invoices.render(conn, [row]))[0]
    events = [("invoice.payment_succeeded", obj)]
    if row["status"] == "paid":
        events.insert(0, ("invoice.paid", obj))
    await publish(conn, scope, clock.now(), *events)
    if row["subscription_id"] is not None and row["status"] == "paid":
        await subscriptions.after_invoice_paid(conn, scope, clock, row["subscription_id"])
    return row


async def _clear_dunning(conn: Conn, row: dict[str, Any]) -> dict[str, Any]:
    changes = {"final_action_at": None, "lease_owner": None, "lease_expires_at": None}
    if row["status"] == "paid":
        changes["next_payment_attempt"] = None
    await repo.update(conn, "invoices", row["id"], changes)
    return {**row, **changes}


async def _history(conn: Conn, invoice_id: str) -> tuple[int, int, datetime | None]:
    """(issuer-answered failures, technical failures ending the history, first failure)."""
    rows = await repo.select(
        conn,
        "SELECT decision, attempted_at FROM invoice_payment_attempts WHERE invoice_id = %s"
        " AND outcome = 'failed' ORDER BY attempt",
        (invoice_id,),
    )
    answered = sum(1 for r in rows if r["decision"] != Decision.TECHNICAL.value)
    in_a_row = 0
    for r in reversed(rows):
        if r["decision"] != Decision.TECHNICAL.value:
            break
        in_a_row += 1
    return answered, in_a_row, rows[0]["attempted_at"] if rows else None


async def _failed(
    conn: Conn,
    scope: Scope,
    services: Services,
    row: dict[str, Any],
    intent: dict[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    """A failed attempt (or none possible: no card): record it, ask dunning what next,
    and tell the subscription."""
    clock = services.clock
    decision = Decision.HARD_DECLINE
    if intent is not None:
        decision = Decision(intent["failure_decision"] or Decision.HARD_DECLINE.value)
        if intent["status"] == "requires_action":
            decision = Decision.AUTHENTICATION_REQUIRED
        await conn.execute(
            "UPDATE invoice_payment_attempts SET outcome = 'failed', decided_at = %s,"
            " decline_code = %s, decision = %s, connector_account_id = %s"
            " WHERE invoice_id = %s AND payment_intent_id = %s",
            (
                now,
                intent["failure_code"],
                decision.value,
                intent["connector_account_id"],
                row["id"],
                row["payment_intent_id"],
            ),
        )
    answered, in_a_row, first = await _history(conn, row["id"])
    policy = await load_policy(conn, scope)
    step = dunning.after_failure(
        policy,
        decision=decision,
        failed_attempts=answered,
        first_failed_at=first or now,
        failed_at=max(now, first or now),
        technical_retries_in_a_row=in_a_row,
    )
    changes: dict[str, Any] = {
        "payment_intent_id": None,
        "next_payment_attempt": None,
        "final_action_at": None,
        "lease_owner": None,
        "lease_expires_at": None,
        "updated_at": clock.now(),
    }
    # Dunning follows up only an invoice still collected automatically: not one written
    # off (paying it is the merchant's call), nor one of an ended subscription.
    automatic = row["status"] == "open" and row["auto_advance"]
    if not automatic:
        pass
    elif isinstance(step, dunning.Retry):
        changes["next_payment_attempt"] = step.at
    elif isinstance(step, dunning.AwaitPaymentMethod):
        changes["final_action_at"] = step.final_action_at
    else:
        changes["final_action_at"] = step.at
    await repo.update(conn, "invoices", row["id"], changes)
    row = {**row, **changes}
    obj = (await invoices.render(conn, [row]))[0]
    await publish(conn, scope, clock.now(), ("invoice.payment_failed", obj))
    if automatic and row["subscription_id"] is not None:
        await subscriptions.after_invoice_failed(
            conn, scope, clock, row["subscription_id"], row["billing_reason"]
        )
    log.info(
        "invoice payment failed",
        invoice=row["id"],
        decision=decision.value,
        next_attempt=str(changes["next_payment_attempt"]),
        final_action_at=str(changes["final_action_at"]),
    )
    return row


async def final_action(
    connect: Connect, scope: Scope, services: Services, invoice_id: str
) -> dict[str, Any]:
    """Dunning's final action on an invoice whose time has come."""
    clock = services.clock
    async with connect() as conn, conn.transaction():
        row = await invoices.locked(conn, scope, invoice_id)
        now = await subscriptions.billing_now(conn, clock, row["test_clock_id"])
        if row["final_action_at"] is None or row["final_action_at"] > now:
            return row
        if row["payment_intent_id"] is not None:
            return row  # an attempt under way decides first; the engine skips such rows
        if row["status"] not in COLLECTABLE:
            # Paid or voided meanwhile: nothing left to act on.
            await repo.update(conn, "invoices", invoice_id, {"final_action_at": None})
            return {**row, "final_action_at": None}
        policy = await load_policy(conn, scope)
        await repo.update(
            conn,
            "invoices",
            invoice_id,
            {"final_action_at": None, "lease_owner": None, "lease_expires_at": None},
        )
        row = {**row, "final_action_at": None}
        if row["subscription_id"] is not None:
            await subscriptions.final_action(
                conn, scope, clock, row["subscription_id"], policy.final_action, now
            )
        if policy.final_action == "cancel" and row["status"] == "open":
            # The period was partly served: its revenue stands, the debt is written off.
            row = await invoices.mark_uncollectible(conn, scope, clock, invoice_id, now)
        # unpaid and past due leave the invoice open, with no more attempts: a new card
        # or the merchant paying it explicitly collects it.
        return row
