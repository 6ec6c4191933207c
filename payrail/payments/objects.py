"""The API objects of payments, in Stripe's shapes, and their events."""

from __future__ import annotations

from typing import Any

from payrail.clock import Clock, unix
from payrail.events.outbox import OutboxEvent, emit
from payrail.payments import states
from payrail.payments.repository import Conn
from payrail.tenants.scope import Scope


def intent_state(row: dict[str, Any]) -> states.Intent:
    return states.Intent(
        status=row["status"],
        amount=row["amount"],
        capture_method=row["capture_method"],
        payment_method=row["payment_method_id"],
        amount_capturable=row["amount_capturable"],
        amount_received=row["amount_received"],
        amount_refunded=row["amount_refunded"],
    )


def intent_object(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "payment_intent",
        "amount": row["amount"],
        "amount_capturable": row["amount_capturable"],
        "amount_received": row["amount_received"],
        "canceled_at": unix(row["canceled_at"]) if row["canceled_at"] else None,
        "cancellation_reason": row["cancellation_reason"],
        "capture_method": row["capture_method"],
        "confirmation_method": "automatic",
        "created": unix(row["created_at"]),
        "currency": row["currency"].lower(),
        "customer": row["customer_id"],
        "description": row["description"],
        "invoice": row["invoice_id"],
        "last_payment_error": row["last_payment_error"],
        "latest_charge": row["latest_charge_id"],
        "livemode": row["livemode"],
        "metadata": row["metadata"],
        "next_action": None,
        "payment_method": row["payment_method_id"],
        "payment_method_types": ["card"],
        "status": row["status"],
    }


def refund_object(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "refund",
        "amount": row["amount"],
        "charge": row["charge_id"],
        "created": unix(row["created_at"]),
        "currency": row["currency"].lower(),
        "failure_reason": row["failure_reason"],
        "metadata": row["metadata"],
        "payment_intent": row["payment_intent_id"],
        "reason": row["reason"],
        "status": row["status"],
    }


def dispute_object(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "dispute",
        "amount": row["amount"],
        "charge": row["charge_id"],
        "created": unix(row["created_at"]),
        "currency": row["currency"].lower(),
        "livemode": row["livemode"],
        "payment_intent": row["payment_intent_id"],
        "reason": row["reason"],
        "status": row["status"],
    }


async def publish(
    conn: Conn, scope: Scope, clock: Clock, *changes: tuple[str, dict[str, Any]]
) -> None:
    """Outbox events for changed objects: (`payment_intent.succeeded`, the intent), ..."""
    await emit(
        conn,
        scope,
        clock.now(),
        [OutboxEvent(kind, obj["object"], obj["id"], obj) for kind, obj in changes],
    )
