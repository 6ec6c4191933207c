"""Invoices, their lines and credit notes in Stripe's shapes, and their events."""

from __future__ import annotations

from typing import Any

from payrail.billing.repository import Conn
from payrail.clock import unix
from payrail.events.outbox import OutboxEvent, emit
from payrail.tenants.scope import Scope


def _ts(moment: Any) -> int | None:
    return unix(moment) if moment is not None else None


def line_object(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "line_item",
        "amount": row["amount"],
        "currency": row["currency"].lower(),
        "description": row["description"],
        "discountable": True,
        "invoice": row["invoice_id"],
        "invoice_item": row["invoice_item_id"],
        "livemode": row["livemode"],
        "metadata": {},
        "period": {"start": unix(row["period_start"]), "end": unix(row["period_end"])},
        "price": row["price_id"],
        "proration": row["proration"],
        "quantity": row["quantity"],
        "subscription": row["subscription_id"],
        "type": row["type"],
    }


def invoice_object(
    row: dict[str, Any], lines: list[dict[str, Any]], payment_intent: str | None
) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "invoice",
        "amount_due": row["amount_due"],
        "amount_paid": row["amount_paid"],
        "amount_remaining": row["amount_remaining"],
        "attempt_count": row["attempt_count"],
        "attempted": row["attempt_count"] > 0,
        "auto_advance": row["auto_advance"],
        "billing_reason": row["billing_reason"],
        "collection_method": row["collection_method"],
        "created": unix(row["created_at"]),
        "currency": row["currency"].lower(),
        "customer": row["customer_id"],
        "default_payment_method": row["default_payment_method_id"],
        "description": row["description"],
        "due_date": _ts(row["due_date"]),
        "ending_balance": row["ending_balance"],
        "hosted_invoice_url": None,
        "lines": {
            "object": "list",
            "data": [line_object(line) for line in lines],
            "has_more": False,
            "total_count": len(lines),
            "url": f"/v1/invoices/{row['id']}/lines",
        },
        "livemode": row["livemode"],
        "metadata": row["metadata"],
        "next_payment_attempt": _ts(row["next_payment_attempt"]),
        "number": row["number"],
        "paid": row["status"] == "paid",
        "payment_intent": payment_intent,
        "period_end": unix(row["period_end"]),
        "period_start": unix(row["period_start"]),
        "post_payment_credit_notes_amount": row["post_payment_credit_notes_amount"],
        "pre_payment_credit_notes_amount": row["pre_payment_credit_notes_amount"],
        "starting_balance": row["starting_balance"],
        "status": row["status"],
        "status_transitions": {
            "finalized_at": _ts(row["finalized_at"]),
            "marked_uncollectible_at": _ts(row["marked_uncollectible_at"]),
            "paid_at": _ts(row["paid_at"]),
            "voided_at": _ts(row["voided_at"]),
        },
        "subscription": row["subscription_id"],
        "subtotal": row["subtotal"],
        "test_clock": row["test_clock_id"],
        "total": row["total"],
    }


def credit_note_object(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "credit_note",
        "amount": row["amount"],
        "created": unix(row["created_at"]),
        "credit_amount": row["credit_amount"],
        "currency": row["currency"].lower(),
        "customer": row["customer_id"],
        "invoice": row["invoice_id"],
        "livemode": row["livemode"],
        "memo": row["memo"],
        "metadata": row["metadata"],
        "number": row["number"],
        "out_of_band_amount": row["out_of_band_amount"],
        "reason": row["reason"],
        "refund": row["refund_id"],
        "refund_amount": row["refund_amount"],
        "status": row["status"],
        "type": row["type"],
        "voided_at": _ts(row["voided_at"]),
    }


async def publish(conn: Conn, scope: Scope, now: Any, *changes: tuple[str, dict[str, Any]]) -> None:
    """Outbox events for changed objects: (`invoice.paid`, the invoice), ..."""
    await emit(
        conn,
        scope,
        now,
        [OutboxEvent(kind, obj["object"], obj["id"], obj) for kind, obj in changes],
    )
