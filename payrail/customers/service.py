"""Customers and the cards attached to them, as Stripe keeps them.

A customer may be attached to a test clock at creation (Stripe's `test_clock`; it cannot
move to another clock later), and has a `time_zone`, a payrail extension: the IANA zone
in which its billing periods are cut, "UTC" unless given (see customers/schemas.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from payrail.api.schemas import merge_metadata
from payrail.billing.invoices import service as invoices
from payrail.billing.subscriptions.service import billing_now
from payrail.billing.test_clocks import service as test_clocks
from payrail.clock import Clock, unix
from payrail.customers import repository as repo
from payrail.customers.schemas import CustomerCreate, CustomerUpdate
from payrail.errors import InvalidRequest, NotFound
from payrail.events.outbox import OutboxEvent, emit
from payrail.ids import new_id
from payrail.tenants.scope import Scope
from payrail.vault import service as vault_service
from payrail.vault.envelope import Vault

Conn = repo.Conn


def customer_object(row: dict[str, Any]) -> dict[str, Any]:
    if row["deleted_at"] is not None:
        return {"id": row["id"], "object": "customer", "deleted": True}
    return {
        "id": row["id"],
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": unix(row["created_at"]),
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": row["description"],
        "email": row["email"],
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": row["default_payment_method_id"],
            "footer": None,
            "rendering_options": None,
        },
        "livemode": row["livemode"],
        "metadata": row["metadata"],
        "name": row["name"],
        "phone": row["phone"],
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": row["test_clock_id"],
        # A payrail extension (not in Stripe's object): the zone billing periods are cut in.
        "time_zone": row["time_zone"],
    }


async def _emit(conn: Conn, scope: Scope, clock: Clock, kind: str, obj: dict[str, Any]) -> None:
    aggregate = obj["object"]
    await emit(conn, scope, clock.now(), [OutboxEvent(kind, aggregate, obj["id"], obj)])


async def _live_customer(
    conn: Conn, scope: Scope, customer_id: str, *, param: str = "id"
) -> dict[str, Any]:
    rows = await repo.fetch_customers(conn, scope, [customer_id], lock=True)
    if not rows or rows[0]["deleted_at"] is not None:
        raise NotFound("customer", customer_id, param=param)
    return rows[0]


async def create_customer(
    conn: Conn, scope: Scope, clock: Clock, vault: Vault, params: CustomerCreate
) -> dict[str, Any]:
    test_clock_id = None
    if params.test_clock is not None:
        test_clock_id = await test_clocks.attachable_clock(
            conn, scope, params.test_clock, param="test_clock"
        )
    customer_id = new_id("cus")
    await repo.insert_customer(
        conn,
        scope,
        {
            "id": customer_id,
            "email": params.email,
            "name": params.name,
            "phone": params.phone,
            "description": params.description,
            "metadata": params.metadata,
            "test_clock_id": test_clock_id,
            "time_zone": params.time_zone,
            "created_at": clock.now(),
        },
    )
    default = params.invoice_settings.default_payment_method
    if params.payment_method is not None:
        card = await attach(
            conn, scope, clock, vault, params.payment_method, customer_id, param="payment_method"
        )
        if default == params.payment_method:
            default = card["id"]  # a pm_card_* name stands for the card just made from it
    if default is not None:
        await _set_default(conn, scope, clock, customer_id, default)
    obj = customer_object((await repo.fetch_customers(conn, scope, [customer_id]))[0])
    await _emit(conn, scope, clock, "customer.created", obj)
    return obj


async def _set_default(
    conn: Conn, scope: Scope, clock: Clock, customer_id: str, payment_method_id: str
) -> None:
    param = "invoice_settings[default_payment_method]"
    if payment_method_id == "":
        await repo.update_customer(conn, customer_id, {"default_payment_method_id": None})
        return
    found = await vault_service.list_payment_methods(conn, scope, [payment_method_id])
    if not found:
        raise NotFound("payment_method", payment_method_id, param=param)
    if found[0]["customer"] != customer_id:
        raise InvalidRequest(
            "The default payment method must be attached to this customer first.",
            param=param,
            code="payment_method_not_attached",
        )
    await repo.update_customer(conn, customer_id, {"default_payment_method_id": payment_method_id})
    # Invoices waiting in dunning are tried again with it at once.
    found = await repo.fetch_customers(conn, scope, [customer_id])
    now = await billing_now(conn, clock, found[0]["test_clock_id"])
    await invoices.retry_in_dunning(conn, scope, now, customer_id=customer_id)


async def get_customer(conn: Conn, scope: Scope, customer_id: str) -> dict[str, Any]:
    rows = await repo.fetch_customers(conn, scope, [customer_id])
    if not rows:
        raise NotFound("customer", customer_id)
    return customer_object(rows[0])


async def list_customers(conn: Conn, scope: Scope, ids: Sequence[str]) -> list[dict[str, Any]]:
    return [customer_object(row) for row in await repo.fetch_customers(conn, scope, ids)]


async def update_customer(
    conn: Conn, scope: Scope, clock: Clock, customer_id: str, params: CustomerUpdate
) -> dict[str, Any]:
    row = await _live_customer(conn, scope, customer_id)
    changes: dict[str, Any] = {}
    for name in ("email", "name", "phone", "description"):
        value = getattr(params, name)
        if value is not None:
            changes[name] = value or None  # "" unsets, as in Stripe
    if params.metadata is not None:
        changes["metadata"] = merge_metadata(row["metadata"], params.metadata)
    if params.time_zone is not None:
        changes["time_zone"] = params.time_zone
    if changes:
        await repo.update_customer(conn, customer_id, changes)
    if params.invoice_settings is not None:
        default = params.invoice_settings.default_payment_method
        if default is not None:
            await _set_default(conn, scope, clock, customer_id, default)
    obj = customer_object((await repo.fetch_customers(conn, scope, [customer_id]))[0])
    await _emit(conn, scope, clock, "customer.updated", obj)
    return obj


async def delete_customer(
    conn: Conn, scope: Scope, clock: Clock, customer_id: str
) -> dict[str, Any]:
    await _live_customer(conn, scope, customer_id)
    await repo.mark_deleted(conn, customer_id, clock.now())
    obj = {"id": customer_id, "object": "customer", "deleted": True}
    await _emit(conn, scope, clock, "customer.deleted", obj)
    return obj


async def attach(
    conn: Conn,
    scope: Scope,
    clock: Clock,
    vault: Vault,
    payment_method_id: str,
    customer_id: str,
    *,
    param: str = "id",
) -> dict[str, Any]:
    """Attach a card to a customer; a pm_card_* name attaches a new card made from it.
    Attaching again to the same customer changes nothing."""
    await _live_customer(conn, scope, customer_id, param="customer")
    if vault_service.is_test_payment_method(payment_method_id) and not scope.livemode:
        made = await vault_service.create_test_payment_method(
            conn, scope, clock, vault, payment_method_id, param=param
        )
        payment_method_id = made["id"]
    before = await vault_service.list_payment_methods(conn, scope, [payment_method_id])
    if not before:
        raise NotFound("payment_method", payment_method_id, param=param)
    if before[0]["customer"] == customer_id:
        return before[0]
    await vault_service.verify_for_attach(conn, scope, vault, payment_method_id, param=param)
    if not await repo.attach(conn, scope, payment_method_id, customer_id):
        raise InvalidRequest(
            "The payment method you provided has already been attached to a customer.",
            param=param,
            code="payment_method_already_attached",
        )
    obj = await vault_service.get_payment_method(conn, scope, payment_method_id)
    await _emit(conn, scope, clock, "payment_method.attached", obj)
    return obj


async def detach(conn: Conn, scope: Scope, clock: Clock, payment_method_id: str) -> dict[str, Any]:
    customer_id = await repo.detach(conn, scope, payment_method_id)
    if customer_id is None:
        # Stripe answers a card that is not attached with an error, not a no-op.
        await vault_service.get_payment_method(conn, scope, payment_method_id)
        raise InvalidRequest(
            "The payment method you provided is not attached to a customer.",
            param="id",
            code="payment_method_not_attached",
        )
    [customer] = await repo.fetch_customers(conn, scope, [customer_id], lock=True)
    if customer["default_payment_method_id"] == payment_method_id:
        await repo.update_customer(conn, customer_id, {"default_payment_method_id": None})
    obj = await vault_service.get_payment_method(conn, scope, payment_method_id)
    await _emit(conn, scope, clock, "payment_method.detached", obj)
    return obj
