"""Invoices: drafted from a subscription's period and its pending items, finalized (numbered,
customer credit applied, posted to the ledger), then paid, voided or written off.

Every step locks the invoice and acts only from the status it expects, so a step run
twice (a retried worker, a replayed request) changes nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from payrail.billing import postings
from payrail.billing import repository as repo
from payrail.billing.invoices import numbering
from payrail.billing.invoices.objects import invoice_object, publish
from payrail.billing.repository import Conn
from payrail.clock import Clock
from payrail.errors import InvalidRequest, NotFound
from payrail.ids import new_id
from payrail.tenants.scope import Scope


@dataclass(frozen=True, slots=True)
class LineDraft:
    """A subscription line: the price for the period it bills."""

    price_id: str
    quantity: int
    amount: int
    description: str
    period_start: datetime
    period_end: datetime
    proration: bool = False


@dataclass(frozen=True, slots=True)
class InvoiceDraft:
    customer_id: str
    subscription_id: str | None
    test_clock_id: str | None
    currency: str
    billing_reason: str
    billing_key: str
    period_start: datetime
    period_end: datetime
    collection_method: str
    default_payment_method_id: str | None
    lines: tuple[LineDraft, ...]
    description: str | None = None


async def lines_of(conn: Conn, invoice_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {i: [] for i in invoice_ids}
    rows = await repo.select(
        conn, "SELECT * FROM invoice_lines WHERE invoice_id = ANY(%s) ORDER BY seq", (invoice_ids,)
    )
    for row in rows:
        found[row["invoice_id"]].append(row)
    return found


async def render(conn: Conn, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = [r["id"] for r in rows]
    lines = await lines_of(conn, ids)
    # Stripe's invoice.payment_intent: the intent of its latest attempt, under way or not.
    latest = {
        a["invoice_id"]: a["payment_intent_id"]
        for a in await repo.select(
            conn,
            "SELECT DISTINCT ON (invoice_id) invoice_id, payment_intent_id"
            " FROM invoice_payment_attempts WHERE invoice_id = ANY(%s)"
            " ORDER BY invoice_id, attempt DESC",
            (ids,),
        )
    }
    return [invoice_object(r, lines[r["id"]], latest.get(r["id"])) for r in rows]


async def invoice(
    conn: Conn, scope: Scope, invoice_id: str, *, lock: bool = False
) -> dict[str, Any]:
    row = await repo.fetch_one(conn, "invoices", scope, invoice_id, lock=lock)
    if row is None:
        raise NotFound("invoice", invoice_id)
    return row


async def locked(conn: Conn, scope: Scope, invoice_id: str) -> dict[str, Any]:
    """The invoice locked, after its subscription: every path that locks both takes the
    subscription first (the engine's steps do), so two of them never deadlock."""
    found = await repo.select(
        conn,
        "SELECT subscription_id FROM invoices WHERE id = %s AND merchant_id = %s AND livemode = %s",
        (invoice_id, scope.merchant_id, scope.livemode),
    )
    if found and found[0]["subscription_id"] is not None:
        await conn.execute(
            "SELECT 1 FROM subscriptions WHERE id = %s FOR UPDATE", (found[0]["subscription_id"],)
        )
    return await invoice(conn, scope, invoice_id, lock=True)


async def stop_collection(conn: Conn, subscription_id: str) -> None:
    """Its subscription ended: its open invoices are no longer collected by themselves
    (as Stripe stops automatic collection); paying one stays possible."""
    await conn.execute(
        "UPDATE invoices SET next_payment_attempt = NULL, final_action_at = NULL,"
        " auto_advance = false WHERE subscription_id = %s AND status IN ('open', 'uncollectible')",
        (subscription_id,),
    )


async def get(conn: Conn, scope: Scope, invoice_id: str) -> dict[str, Any]:
    return (await render(conn, [await invoice(conn, scope, invoice_id)]))[0]


async def draft(
    conn: Conn, scope: Scope, clock: Clock, billed_at: datetime, spec: InvoiceDraft
) -> tuple[dict[str, Any], bool]:
    """The invoice `spec.billing_key` names: made now with its lines and the
    subscription's pending items, or the one an earlier run made (False)."""
    invoice_id = new_id("in")
    made = await repo.insert_returning(
        conn,
        "invoices",
        scope,
        {
            "id": invoice_id,
            "customer_id": spec.customer_id,
            "subscription_id": spec.subscription_id,
            "test_clock_id": spec.test_clock_id,
            "billing_key": spec.billing_key,
            "billing_reason": spec.billing_reason,
            "status": "draft",
            "currency": spec.currency,
            "collection_method": spec.collection_method,
            "default_payment_method_id": spec.default_payment_method_id,
            "period_start": spec.period_start,
            "period_end": spec.period_end,
            "subtotal": 0,
            "total": 0,
            "amount_due": 0,
            "amount_remaining": 0,
            "description": spec.description,
            "metadata": {},
            "created_at": billed_at,
            "updated_at": clock.now(),
        },
        "merchant_id, livemode, billing_key",
    )
    if not made:
        rows = await repo.select(
            conn,
            "SELECT * FROM invoices WHERE merchant_id = %s AND livemode = %s AND billing_key = %s",
            (scope.merchant_id, scope.livemode, spec.billing_key),
        )
        return rows[0], False
    for line in spec.lines:
        await repo.insert(
            conn,
            "invoice_lines",
            scope,
            {
                "id": new_id("il"),
                "invoice_id": invoice_id,
                "type": "subscription",
                "subscription_id": spec.subscription_id,
                "price_id": line.price_id,
                "currency": spec.currency,
                "amount": line.amount,
                "quantity": line.quantity,
                "description": line.description,
                "proration": line.proration,
                "period_start": line.period_start,
                "period_end": line.period_end,
            },
        )
    if spec.subscription_id is not None:
        # The subscription's pending items (prorations) ride on its next invoice.
        await conn.execute(
            """
            WITH taken AS (
                UPDATE invoice_items SET invoice_id = %(invoice)s
                WHERE subscription_id = %(sub)s AND invoice_id IS NULL AND currency = %(currency)s
                RETURNING *
            )
            INSERT INTO invoice_lines (id, merchant_id, livemode, invoice_id, type,
                subscription_id, invoice_item_id, price_id, currency, amount, quantity,
                description, proration, period_start, period_end)
            SELECT 'il_' || substr(md5(taken.id), 1, 24), merchant_id, livemode, %(invoice)s,
                'invoiceitem', subscription_id, id, price_id, currency, amount, quantity,
                description, proration, period_start, period_end
            FROM taken ORDER BY seq
            """,
            {"invoice": invoice_id, "sub": spec.subscription_id, "currency": spec.currency},
        )
    total = await _total(conn, invoice_id)
    await repo.update(conn, "invoices", invoice_id, {"subtotal": total, "total": total})
    row = await invoice(conn, scope, invoice_id)
    await publish(conn, scope, clock.now(), ("invoice.created", (await render(conn, [row]))[0]))
    return row, True


async def _total(conn: Conn, invoice_id: str) -> int:
    cur = await conn.execute(
        "SELECT coalesce(sum(amount), 0) FROM invoice_lines WHERE invoice_id = %s", (invoice_id,)
    )
    found = await cur.fetchone()
    assert found is not None
    return int(found[0])


async def _apply_credit(
    conn: Conn, scope: Scope, clock: Clock, row: dict[str, Any]
) -> tuple[int, int, int]:
    """Use the customer's credit against a positive total, or add a negative total to it.
    Returns (starting balance, ending balance, credit used)."""
    cur = await conn.execute(
        "INSERT INTO customer_balances (merchant_id, livemode, customer_id, currency, balance)"
        " VALUES (%s, %s, %s, %s, 0) ON CONFLICT (customer_id, currency)"
        " DO UPDATE SET balance = customer_balances.balance RETURNING balance",
        (scope.merchant_id, scope.livemode, row["customer_id"], row["currency"]),
    )
    found = await cur.fetchone()
    assert found is not None
    starting = int(found[0])
    total = row["total"]
    used = min(-starting, total) if starting < 0 and total > 0 else 0
    change = used if total > 0 else total
    if change != 0:
        await adjust_balance(
            conn,
            scope,
            clock,
            row["customer_id"],
            row["currency"],
            change,
            kind="applied_to_invoice",
            source_key=f"invoice:{row['id']}:balance",
            invoice_id=row["id"],
        )
    return starting, starting + change, used


async def adjust_balance(
    conn: Conn,
    scope: Scope,
    clock: Clock,
    customer_id: str,
    currency: str,
    amount: int,
    *,
    kind: str,
    source_key: str,
    invoice_id: str | None = None,
    credit_note_id: str | None = None,
) -> None:
    """Move the customer's balance (negative: credit) once per `source_key`."""
    cur = await conn.execute(
        "UPDATE customer_balances SET balance = balance + %s WHERE customer_id = %s"
        " AND currency = %s RETURNING balance",
        (amount, customer_id, currency),
    )
    found = await cur.fetchone()
    if found is None:
        await conn.execute(
            "INSERT INTO customer_balances (merchant_id, livemode, customer_id, currency, balance)"
            " VALUES (%s, %s, %s, %s, %s)",
            (scope.merchant_id, scope.livemode, customer_id, currency, amount),
        )
        ending = amount
    else:
        ending = int(found[0])
    await conn.execute(
        "INSERT INTO customer_balance_transactions (id, merchant_id, livemode, customer_id,"
        " currency, amount, ending_balance, type, invoice_id, credit_note_id, source_key,"
        " created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            new_id("cbtxn"),
            scope.merchant_id,
            scope.livemode,
            customer_id,
            currency,
            amount,
            ending,
            kind,
            invoice_id,
            credit_note_id,
            source_key,
            clock.now(),
        ),
    )


async def finalize(
    conn: Conn, scope: Scope, clock: Clock, invoice_id: str, billed_at: datetime
) -> dict[str, Any]:
    """Draft → open: numbered, customer credit applied, posted; an invoice with nothing
    due is paid at once. Due for collection now when the customer is charged."""
    row = await invoice(conn, scope, invoice_id, lock=True)
    if row["status"] != "draft":
        return row
    starting, ending, used = await _apply_credit(conn, scope, clock, row)
    due = max(row["total"] - used, 0)
    changes: dict[str, Any] = {
        "status": "open" if due > 0 else "paid",
        "starting_balance": starting,
        "ending_balance": ending,
        "amount_due": due,
        "amount_remaining": due,
        "finalized_at": billed_at,
        "updated_at": clock.now(),
    }
    if due == 0:
        changes["paid_at"] = billed_at
    elif row["collection_method"] == "charge_automatically":
        changes["next_payment_attempt"] = billed_at
    accounts = await postings.accounts(conn, scope, clock, row["currency"])
    await postings.post(conn, scope, clock, postings.finalized(accounts, {**row, **changes}, used))
    await mark_prices_used(conn, invoice_id)
    # Last, so that the merchant's counter row is locked for as short a time as can be.
    changes["number"] = await numbering.next_invoice_number(conn, scope)
    await repo.update(conn, "invoices", invoice_id, changes)
    row = {**row, **changes}
    obj = (await render(conn, [row]))[0]
    events: list[tuple[str, dict[str, Any]]] = [("invoice.finalized", obj)]
    if due == 0:
        events += [("invoice.paid", obj), ("invoice.payment_succeeded", obj)]
    await publish(conn, scope, clock.now(), *events)
    return row


async def mark_prices_used(conn: Conn, invoice_id: str) -> None:
    await conn.execute(
        "UPDATE prices SET used = true WHERE NOT used AND id IN"
        " (SELECT price_id FROM invoice_lines WHERE invoice_id = %s AND price_id IS NOT NULL)",
        (invoice_id,),
    )


async def apply_payment(
    conn: Conn,
    scope: Scope,
    clock: Clock,
    row: dict[str, Any],
    intent_id: str,
    amount: int,
    paid_at: datetime,
) -> dict[str, Any]:
    """An intent's captured amount, applied to the (locked, open) invoice."""
    # The attempt was made for what remained (collection.InvoiceAttempt sees to it).
    if amount != row["amount_remaining"]:
        raise RuntimeError(
            f"invoice {row['id']}: paid {amount}, but {row['amount_remaining']} remained"
        )
    take = amount
    remaining = 0
    changes: dict[str, Any] = {
        "amount_paid": row["amount_paid"] + take,
        "amount_remaining": remaining,
        "payment_intent_id": None,
        "lease_owner": None,
        "lease_expires_at": None,
        "updated_at": clock.now(),
    }
    if remaining == 0:
        changes.update(status="paid", paid_at=paid_at, next_payment_attempt=None)
    await repo.update(conn, "invoices", row["id"], changes)
    accounts = await postings.accounts(conn, scope, clock, row["currency"])
    move = postings.payment_applied(
        accounts, row["id"], intent_id, amount, written_off=row["status"] == "uncollectible"
    )
    await postings.post(conn, scope, clock, move)
    return {**row, **changes}


def require_draft(row: dict[str, Any]) -> None:
    if row["status"] != "draft":
        raise InvalidRequest(
            f"This invoice is already {row['status']}; only a draft can be finalized.",
            code="invoice_not_draft",
        )


def require_payable(row: dict[str, Any]) -> None:
    """Stripe's pay: an open (or uncollectible) invoice with something left to pay."""
    if row["status"] not in ("open", "uncollectible") or row["amount_remaining"] == 0:
        raise InvalidRequest(
            f"This invoice is {row['status']} with nothing left to pay.",
            code="invoice_not_payable",
        )


def _require_open(row: dict[str, Any], action: str) -> None:
    if row["status"] != "open":
        raise InvalidRequest(
            f"This invoice is {row['status']}; only an open invoice can be {action}.",
            code="invoice_not_open",
        )
    if row["payment_intent_id"] is not None:
        raise InvalidRequest(
            "A payment of this invoice is under way; retry once it has an outcome.",
            code="invoice_payment_in_progress",
        )


async def _recognized(conn: Conn, invoice_id: str) -> int:
    """What of its lines is recognised, with the lines locked: a recognition run under
    way finishes first, and later ones skip them."""
    cur = await conn.execute(
        "SELECT coalesce(sum(recognized_amount), 0) FROM (SELECT recognized_amount"
        " FROM invoice_lines WHERE invoice_id = %s FOR UPDATE) lines",
        (invoice_id,),
    )
    found = await cur.fetchone()
    assert found is not None
    return int(found[0])


async def void(
    conn: Conn, scope: Scope, clock: Clock, invoice_id: str, at: datetime
) -> dict[str, Any]:
    """Open → void: what is owed is no longer, and its revenue is taken back. Lines stop
    being recognised (their recognised amount is frozen as taken back)."""
    row = await invoice(conn, scope, invoice_id, lock=True)
    if row["status"] == "void":
        return row
    _require_open(row, "voided")
    if row["amount_paid"] > 0:
        raise InvalidRequest(
            "This invoice is partly paid; issue a credit note instead of voiding it.",
            code="invoice_partly_paid",
        )
    # The customer's credit this invoice used (its balance rose toward zero by it).
    credit_used = max(row["ending_balance"] - row["starting_balance"], 0) if row["total"] > 0 else 0
    accounts = await postings.accounts(conn, scope, clock, row["currency"])
    move = postings.voided(
        accounts,
        invoice_id,
        owed=row["amount_remaining"],
        credit_used=credit_used,
        unrecognized=row["total"] - await _recognized(conn, invoice_id),
    )
    await postings.post(conn, scope, clock, move)
    if credit_used > 0:
        await adjust_balance(
            conn,
            scope,
            clock,
            row["customer_id"],
            row["currency"],
            -credit_used,
            kind="unapplied_from_invoice",
            source_key=f"invoice:{invoice_id}:void",
            invoice_id=invoice_id,
        )
    await conn.execute(
        "UPDATE invoice_lines SET recognized_amount = amount WHERE invoice_id = %s", (invoice_id,)
    )
    changes = {
        "status": "void",
        "amount_remaining": 0,
        "voided_at": at,
        "next_payment_attempt": None,
        "final_action_at": None,
        "updated_at": clock.now(),
    }
    await repo.update(conn, "invoices", invoice_id, changes)
    row = {**row, **changes}
    await publish(conn, scope, clock.now(), ("invoice.voided", (await render(conn, [row]))[0]))
    return row


async def mark_uncollectible(
    conn: Conn, scope: Scope, clock: Clock, invoice_id: str, at: datetime
) -> dict[str, Any]:
    """Open → uncollectible: what is owed is written off as bad debt. Stripe lets such an
    invoice still be paid later; payrail does too (collection treats it as open)."""
    row = await invoice(conn, scope, invoice_id, lock=True)
    if row["status"] == "uncollectible":
        return row
    _require_open(row, "marked uncollectible")
    accounts = await postings.accounts(conn, scope, clock, row["currency"])
    await postings.post(conn, scope, clock, postings.written_off(accounts, row))
    changes = {
        "status": "uncollectible",
        "marked_uncollectible_at": at,
        "next_payment_attempt": None,
        "final_action_at": None,
        "updated_at": clock.now(),
    }
    await repo.update(conn, "invoices", invoice_id, changes)
    row = {**row, **changes}
    obj = (await render(conn, [row]))[0]
    await publish(conn, scope, clock.now(), ("invoice.marked_uncollectible", obj))
    return row


async def retry_in_dunning(
    conn: Conn, scope: Scope, at: datetime, *, customer_id: str, subscription_id: str | None = None
) -> int:
    """A new card was saved: the customer's invoices in dunning (a retry or final action
    still ahead, nothing under way) are tried again at `at` (dunning's
    on_new_payment_method). Returns how many."""
    cur = await conn.execute(
        "UPDATE invoices SET next_payment_attempt = %s WHERE merchant_id = %s AND livemode = %s"
        " AND customer_id = %s AND (%s::text IS NULL OR subscription_id = %s)"
        " AND status = 'open' AND collection_method = 'charge_automatically'"
        " AND payment_intent_id IS NULL AND auto_advance"
        # In dunning: failed before (with a retry or the final action ahead), or failed
        # for want of a card (no attempt made, the final action ahead).
        " AND (final_action_at IS NOT NULL"
        "      OR attempt_count > 0 AND next_payment_attempt IS NOT NULL)",
        (at, scope.merchant_id, scope.livemode, customer_id, subscription_id, subscription_id),
    )
    return cur.rowcount
