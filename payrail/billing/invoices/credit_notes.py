"""Credit notes: Stripe's way to lower a finalized invoice.

On an open invoice a credit note lowers what is due (`pre_payment`); one that leaves
nothing due pays the invoice. On a paid invoice (`post_payment`) it gives back what was
paid: to the card (a refund through payments), to the customer's balance (used first by
their next invoice), or outside payrail (recorded only). As Stripe, only open and paid
invoices take credit notes.

A credit note with a refund commits in the refund's own transaction (payments'
checkpoint), before the provider is asked, so that neither exists without the other; the
provider's answer then comes as for any refund, the janitor resending it until one comes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from payrail.api.context import Services
from payrail.api.idempotency import Recovery
from payrail.billing import postings
from payrail.billing import repository as repo
from payrail.billing.invoices import numbering
from payrail.billing.invoices import service as invoices
from payrail.billing.invoices.credit_note_schemas import CreditNoteCreate
from payrail.billing.invoices.objects import credit_note_object, publish
from payrail.billing.repository import Conn
from payrail.billing.subscriptions import service as subscriptions
from payrail.clock import Clock
from payrail.errors import InvalidRequest, NotFound
from payrail.ids import new_id
from payrail.ledger.purposes import movement
from payrail.ledger.schemas import TransactionCreate
from payrail.payments import refunds
from payrail.payments.schemas import RefundCreate, RefundReason
from payrail.payments.service import Connect
from payrail.tenants.scope import Scope

PARTS = ("credit_amount", "refund_amount", "out_of_band_amount")
# A refund's reason from its credit note's: Stripe's refunds know fewer reasons.
_REFUND_REASONS: dict[str, RefundReason] = {"duplicate": "duplicate", "fraudulent": "fraudulent"}


@dataclass(frozen=True, slots=True)
class Split:
    """Where a credit note's amount goes."""

    type: Literal["pre_payment", "post_payment"]
    credit_amount: int = 0
    refund_amount: int = 0
    out_of_band_amount: int = 0


def split(invoice: dict[str, Any], params: CreditNoteCreate) -> Split:
    """Stripe's rules for crediting `params.amount` of the invoice as it now is."""
    status = invoice["status"]
    amount = params.amount
    given = {name: getattr(params, name) for name in PARTS}
    if status not in ("open", "paid"):
        raise InvalidRequest(
            f"This invoice is {status}; credit notes can be issued for open and paid"
            " invoices only.",
            param="invoice",
            code="invoice_not_creditable",
        )
    if status == "open":
        if invoice["payment_intent_id"] is not None:
            raise InvalidRequest(
                "A payment of this invoice is under way; retry once it has an outcome.",
                param="invoice",
                code="invoice_payment_in_progress",
            )
        for name, value in given.items():
            if value:
                raise InvalidRequest(
                    f"This invoice is open: a credit note lowers what is due on it, and"
                    f" {name} applies only to a paid invoice.",
                    param=name,
                    code="parameter_invalid",
                )
        if amount > invoice["amount_remaining"]:
            raise InvalidRequest(
                f"The credit note's amount ({amount}) is more than the invoice's"
                f" amount_remaining ({invoice['amount_remaining']}).",
                param="amount",
                code="amount_too_large",
            )
        return Split("pre_payment")
    creditable = invoice["amount_paid"] - invoice["post_payment_credit_notes_amount"]
    if amount > creditable:
        raise InvalidRequest(
            f"The credit note's amount ({amount}) is more than what was paid on this invoice"
            f" and not yet credited ({creditable}).",
            param="amount",
            code="amount_too_large",
        )
    if all(value is None for value in given.values()):
        return Split("post_payment", credit_amount=amount)
    parts = Split("post_payment", *(given[name] or 0 for name in PARTS))
    total = parts.credit_amount + parts.refund_amount + parts.out_of_band_amount
    if total != amount:
        raise InvalidRequest(
            f"credit_amount, refund_amount and out_of_band_amount sum to {total}; they must"
            f" sum to the credit note's amount ({amount}).",
            # Short: what is settled outside payrail is the part left to name.
            param="out_of_band_amount" if total < amount else "amount",
            code="parameter_invalid",
        )
    return parts


def check_refund(refund_amount: int, intent: dict[str, Any] | None) -> None:
    """The invoice's card payment can give `refund_amount` back."""
    if intent is None:
        raise InvalidRequest(
            "Nothing was paid on this invoice by card, so nothing can be refunded; give the"
            " credit as credit_amount or out_of_band_amount.",
            param="refund_amount",
            code="parameter_invalid",
        )
    refundable = intent["amount_received"] - intent["amount_refunded"]
    if refund_amount > refundable:
        raise InvalidRequest(
            f"refund_amount ({refund_amount}) is more than the invoice's payment"
            f" {intent['id']} has left to refund ({refundable}).",
            param="refund_amount",
            code="amount_too_large",
        )


def check_voidable(
    note: dict[str, Any], invoice: dict[str, Any], refund_status: str | None, balance: int
) -> None:
    """Stripe voids a credit note while what it did can be undone."""
    if refund_status in ("pending", "succeeded"):
        raise InvalidRequest(
            f"This credit note refunded {note['refund_amount']} to the card ({refund_status});"
            " a refund cannot be taken back, so the credit note cannot be voided.",
            code="credit_note_refunded",
        )
    if note["type"] == "pre_payment":
        if invoice["status"] != "open":
            raise InvalidRequest(
                f"This credit note's invoice is {invoice['status']}; a credit note that"
                " lowered what was due can be voided only while its invoice is open.",
                code="invoice_not_open",
            )
        if invoice["payment_intent_id"] is not None:
            raise InvalidRequest(
                "A payment of this credit note's invoice is under way; retry once it has an"
                " outcome.",
                code="invoice_payment_in_progress",
            )
    elif note["credit_amount"] > -balance:
        raise InvalidRequest(
            f"The customer has used the {note['credit_amount']} of balance credit this credit"
            f" note gave (their balance is {balance}); it cannot be voided.",
            code="credit_note_credit_used",
        )


def invoice_changes(
    invoice: dict[str, Any], note: dict[str, Any], sign: int, at: datetime, now: datetime
) -> dict[str, Any]:
    """The invoice with a credit note issued (sign 1) or voided (-1): a pre-payment one
    moves what is due, and pays the invoice when it leaves nothing due."""
    amount = sign * note["amount"]
    if note["type"] == "post_payment":
        return {
            "post_payment_credit_notes_amount": invoice["post_payment_credit_notes_amount"]
            + amount,
            "updated_at": now,
        }
    changes: dict[str, Any] = {
        "amount_due": invoice["amount_due"] - amount,
        "amount_remaining": invoice["amount_remaining"] - amount,
        "pre_payment_credit_notes_amount": invoice["pre_payment_credit_notes_amount"] + amount,
        "updated_at": now,
    }
    if changes["amount_remaining"] == 0:
        changes.update(
            status="paid",
            paid_at=at,
            next_payment_attempt=None,
            final_action_at=None,
            lease_owner=None,
            lease_expires_at=None,
        )
    return changes


async def _invoice(conn: Conn, scope: Scope, invoice_id: str, *, lock: bool) -> dict[str, Any]:
    """The invoice; locked after its subscription (invoices.locked) when `lock`."""
    try:
        if lock:
            return await invoices.locked(conn, scope, invoice_id)
        return await invoices.invoice(conn, scope, invoice_id)
    except NotFound:
        raise NotFound("invoice", invoice_id, param="invoice") from None


async def _paid_by(conn: Conn, scope: Scope, invoice_id: str) -> dict[str, Any] | None:
    """The invoice's latest card payment."""
    rows = await repo.select(
        conn,
        "SELECT id, amount_received, amount_refunded FROM payment_intents"
        " WHERE invoice_id = %s AND merchant_id = %s AND livemode = %s AND status = 'succeeded'"
        " ORDER BY seq DESC LIMIT 1",
        (invoice_id, scope.merchant_id, scope.livemode),
    )
    return rows[0] if rows else None


async def render(conn: Conn, scope: Scope, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # By source key, which is indexed: the balance credit each credit note gave.
    found = await repo.select(
        conn,
        "SELECT credit_note_id, id FROM customer_balance_transactions"
        " WHERE merchant_id = %s AND livemode = %s AND source_key = ANY(%s)",
        (scope.merchant_id, scope.livemode, [f"credit_note:{r['id']}" for r in rows]),
    )
    balance_txns = {t["credit_note_id"]: t["id"] for t in found}
    return [
        {
            **credit_note_object(row),
            "customer_balance_transaction": balance_txns.get(row["id"]),
            "pre_payment_amount": row["amount"] if row["type"] == "pre_payment" else 0,
            "post_payment_amount": row["amount"] if row["type"] == "post_payment" else 0,
            "subtotal": row["amount"],
            "total": row["amount"],
        }
        for row in rows
    ]


async def _note(
    conn: Conn, scope: Scope, credit_note_id: str, *, lock: bool = False
) -> dict[str, Any]:
    row = await repo.fetch_one(conn, "credit_notes", scope, credit_note_id, lock=lock)
    if row is None:
        raise NotFound("credit_note", credit_note_id)
    return row


async def get(conn: Conn, scope: Scope, credit_note_id: str) -> dict[str, Any]:
    return (await render(conn, scope, [await _note(conn, scope, credit_note_id)]))[0]


async def issue(
    conn: Conn,
    scope: Scope,
    clock: Clock,
    params: CreditNoteCreate,
    credit_note_id: str,
    refund_id: str | None = None,
) -> dict[str, Any]:
    """The credit note, numbered under its invoice's lock, with its effects: the invoice's
    amounts, the ledger, the customer's balance, and their events."""
    row = await _invoice(conn, scope, params.invoice, lock=True)
    parts = split(row, params)
    # The caller made the refund (in this transaction) exactly when one was asked for.
    assert (parts.refund_amount > 0) == (refund_id is not None)
    at = await subscriptions.billing_now(conn, clock, row["test_clock_id"])
    note: dict[str, Any] = {
        "id": credit_note_id,
        "invoice_id": row["id"],
        "customer_id": row["customer_id"],
        "number": await numbering.next_credit_note_number(conn, row["id"], row["number"]),
        "currency": row["currency"],
        "amount": params.amount,
        "type": parts.type,
        "credit_amount": parts.credit_amount,
        "refund_amount": parts.refund_amount,
        "out_of_band_amount": parts.out_of_band_amount,
        "refund_id": refund_id,
        "reason": params.reason,
        "memo": params.memo,
        "status": "issued",
        "metadata": params.metadata,
        "created_at": at,
    }
    await repo.insert(conn, "credit_notes", scope, note)
    accounts = await postings.accounts(conn, scope, clock, row["currency"])
    await postings.post(conn, scope, clock, _posting(accounts, note))
    if parts.credit_amount > 0:
        await invoices.adjust_balance(
            conn,
            scope,
            clock,
            row["customer_id"],
            row["currency"],
            -parts.credit_amount,
            kind="credit_note",
            source_key=f"credit_note:{credit_note_id}",
            invoice_id=row["id"],
            credit_note_id=credit_note_id,
        )
    changes = invoice_changes(row, note, 1, at, clock.now())
    await repo.update(conn, "invoices", row["id"], changes)
    paid = row["status"] == "open" and changes.get("status") == "paid"
    stored = await _note(conn, scope, credit_note_id)
    invoice_obj = (await invoices.render(conn, [{**row, **changes}]))[0]
    events = [
        ("credit_note.created", (await render(conn, scope, [stored]))[0]),
        ("invoice.updated", invoice_obj),
    ]
    if paid:
        events.append(("invoice.paid", invoice_obj))
    await publish(conn, scope, clock.now(), *events)
    if paid and row["subscription_id"] is not None:
        await subscriptions.after_invoice_paid(conn, scope, clock, row["subscription_id"])
    return stored


def _posting(accounts: postings.Accounts, note: dict[str, Any]) -> TransactionCreate | None:
    """Revenue taken back from what was owed (pre-payment) or into the customer's credit.
    A refund's money moves in payments' ledger (its refunds expense); an out-of-band
    credit moves nothing payrail holds."""
    return postings.credited(
        accounts,
        note["id"],
        note["invoice_id"],
        off_receivable=note["amount"] if note["type"] == "pre_payment" else 0,
        to_balance=note["credit_amount"],
    )


@dataclass(frozen=True)
class _IssuedWithRefund(Recovery):
    """Payments' checkpoint for the credit note's refund: the credit note is issued in the
    refund's transaction, and recorded as this request's work under its Idempotency-Key."""

    scope: Scope | None = None
    clock: Clock | None = None
    params: CreditNoteCreate | None = None
    credit_note_id: str = ""

    @property
    def resume_from(self) -> str | None:
        # The refund is always new: a resumed request returns its credit note instead.
        return None

    async def checkpoint(self, conn: Conn, object_id: str) -> None:
        assert self.scope is not None and self.clock is not None and self.params is not None
        await issue(conn, self.scope, self.clock, self.params, self.credit_note_id, object_id)
        await super().checkpoint(conn, self.credit_note_id)


async def create(
    connect: Connect,
    scope: Scope,
    services: Services,
    params: CreditNoteCreate,
    recovery: Recovery,
) -> dict[str, Any]:
    """Issue a credit note; one with a refund_amount asks the provider for the refund once
    both are committed. A request resumed under its Idempotency-Key returns the credit
    note its first run committed (a refund not yet answered is the janitor's to resend)."""
    if recovery.resume_from is not None:
        async with connect() as conn:
            return await get(conn, scope, recovery.resume_from)
    credit_note_id = new_id("cn")
    async with connect() as conn:
        # Checked before anything is written, for a clear error; issue checks it again
        # under the invoice's lock.
        parts = split(await _invoice(conn, scope, params.invoice, lock=False), params)
        intent = await _paid_by(conn, scope, params.invoice) if parts.refund_amount else None
    if parts.refund_amount == 0:
        async with connect() as conn, conn.transaction():
            await issue(conn, scope, services.clock, params, credit_note_id)
            await recovery.checkpoint(conn, credit_note_id)
    else:
        check_refund(parts.refund_amount, intent)
        assert intent is not None
        refund = RefundCreate(
            payment_intent=intent["id"],
            amount=parts.refund_amount,
            reason=_REFUND_REASONS.get(params.reason, "requested_by_customer")
            if params.reason
            else None,
            metadata={"credit_note": credit_note_id, "invoice": params.invoice},
        )
        checkpoint = _IssuedWithRefund(
            recovery.claimed, scope, services.clock, params, credit_note_id
        )
        await refunds.create(connect, scope, services, refund, checkpoint)
    async with connect() as conn:
        return await get(conn, scope, credit_note_id)


async def void(conn: Conn, scope: Scope, clock: Clock, credit_note_id: str) -> dict[str, Any]:
    """Issued → void: what the credit note did to the invoice, the ledger and the
    customer's balance is undone. Voiding a void credit note changes nothing."""
    invoice_id = (await _note(conn, scope, credit_note_id))["invoice_id"]
    # The invoice's lock first, as issue takes it: voids and issues of one invoice queue.
    row = await _invoice(conn, scope, invoice_id, lock=True)
    note = await _note(conn, scope, credit_note_id, lock=True)
    if note["status"] == "void":
        return note
    refund_status: str | None = None
    if note["refund_id"] is not None:
        found = await repo.select(
            conn, "SELECT status FROM refunds WHERE id = %s", (note["refund_id"],)
        )
        refund_status = found[0]["status"]
    cur = await conn.execute(
        "SELECT balance FROM customer_balances WHERE customer_id = %s AND currency = %s FOR UPDATE",
        (note["customer_id"], note["currency"]),
    )
    balance = await cur.fetchone()
    check_voidable(note, row, refund_status, int(balance[0]) if balance else 0)
    at = await subscriptions.billing_now(conn, clock, row["test_clock_id"])
    accounts = await postings.accounts(conn, scope, clock, note["currency"])
    issued = _posting(accounts, note)
    if issued is not None:
        await postings.post(conn, scope, clock, _reversal(issued, credit_note_id))
    if note["credit_amount"] > 0:
        await invoices.adjust_balance(
            conn,
            scope,
            clock,
            note["customer_id"],
            note["currency"],
            note["credit_amount"],
            kind="credit_note",
            source_key=f"credit_note:{credit_note_id}:void",
            invoice_id=invoice_id,
            credit_note_id=credit_note_id,
        )
    changes = invoice_changes(row, note, -1, at, clock.now())
    await repo.update(conn, "invoices", invoice_id, changes)
    await repo.update(conn, "credit_notes", credit_note_id, {"status": "void", "voided_at": at})
    note = await _note(conn, scope, credit_note_id)
    await publish(
        conn,
        scope,
        clock.now(),
        ("credit_note.voided", (await render(conn, scope, [note]))[0]),
        ("invoice.updated", (await invoices.render(conn, [{**row, **changes}]))[0]),
    )
    return note


def _reversal(issued: TransactionCreate, credit_note_id: str) -> TransactionCreate | None:
    """The credit note's posting the other way, under its own external id."""
    return movement(
        f"credit_note:{credit_note_id}:void",
        [(e.account, e.amount if e.direction == "credit" else -e.amount) for e in issued.entries],
        {**issued.metadata, "kind": "credit_note_void"},
    )
