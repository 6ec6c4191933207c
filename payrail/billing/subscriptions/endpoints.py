"""/v1/subscriptions.

A create, a price change that invoices at once, and a resume run in two steps: the
subscription and its invoice commit first (with the request's Idempotency-Key recovery
point), then the invoice is collected. A retry of the same request after a crash finds
the subscription made and only collects what is still due.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from psycopg import sql

from payrail.api.auth import require_key
from payrail.api.context import RequestContext, Services
from payrail.api.http import Conn, read, request_body, write, write_steps
from payrail.api.idempotency import Recovery
from payrail.api.pagination import list_object, page_ids
from payrail.billing import collection
from payrail.billing import repository as repo
from payrail.billing.subscriptions import service
from payrail.billing.subscriptions.schemas import (
    SubscriptionCancel,
    SubscriptionCreate,
    SubscriptionListParams,
    SubscriptionResume,
    SubscriptionUpdate,
)
from payrail.payments.schemas import RetrieveParams
from payrail.tenants.scope import Scope

router = APIRouter(tags=["subscriptions"])
Ctx = Depends(require_key)
Connect = Callable[[], Any]


async def _collected(
    connect: Connect, scope: Scope, services: Services, sub_id: str, invoice: dict[str, Any] | None
) -> dict[str, Any]:
    """Collect the invoice just made (if it is due now), then answer the subscription."""
    if invoice is not None and invoice["next_payment_attempt"] is not None:
        await collection.collect(connect, scope, services, invoice["id"], due_only=True)
    async with connect() as conn:
        return await service.get(conn, scope, sub_id)


async def _resumed(
    connect: Connect, scope: Scope, services: Services, sub_id: str
) -> dict[str, Any]:
    """An earlier run of this request committed the subscription: collect what it left."""
    async with connect() as conn:
        row = await service.subscription(conn, scope, sub_id)
        found = await conn.execute(
            "SELECT id, next_payment_attempt FROM invoices WHERE id = %s",
            (row["latest_invoice_id"],),
        )
        latest = await found.fetchone()
    invoice = {"id": latest[0], "next_payment_attempt": latest[1]} if latest else None
    return await _collected(connect, scope, services, sub_id, invoice)


@router.post("/v1/subscriptions", openapi_extra=request_body(SubscriptionCreate))
async def create_subscription(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(
        connect: Connect, scope: Scope, params: SubscriptionCreate, recovery: Recovery
    ) -> dict[str, Any]:
        s = ctx.services
        if recovery.resume_from is not None:
            return await _resumed(connect, scope, s, recovery.resume_from)
        async with connect() as conn, conn.transaction():
            row, invoice = await service.create(conn, scope, s.clock, params)
            await recovery.checkpoint(conn, row["id"])
        return await _collected(connect, scope, s, row["id"], invoice)

    return await write_steps(request, ctx, SubscriptionCreate, work)


@router.get("/v1/subscriptions")
async def list_subscriptions(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: SubscriptionListParams) -> dict[str, Any]:
        filters: list[tuple[sql.Composable, Any]] = []
        if params.customer:
            filters.append((sql.SQL("customer_id = %s"), params.customer))
        if params.price:
            filters.append((sql.SQL("price_id = %s"), params.price))
        if params.test_clock:
            filters.append((sql.SQL("test_clock_id = %s"), params.test_clock))
        condition: sql.Composable | None = None
        if params.status is None:
            # Stripe's default: every subscription that has not been canceled.
            condition = sql.SQL("status <> 'canceled'")
        elif params.status == "ended":
            condition = sql.SQL("status IN ('canceled', 'incomplete_expired')")
        elif params.status != "all":
            filters.append((sql.SQL("status = %s"), params.status))
        ids, more = await page_ids(
            conn, "subscriptions", scope, params, filters, condition=condition
        )
        rows = await repo.fetch(conn, "subscriptions", scope, ids)
        return list_object(request.url.path, await service.render(conn, scope, rows), more)

    return await read(request, ctx, SubscriptionListParams, work)


@router.get("/v1/subscriptions/{subscription_id}")
async def get_subscription(
    subscription_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: RetrieveParams) -> dict[str, Any]:
        return await service.get(conn, scope, subscription_id)

    return await read(request, ctx, RetrieveParams, work)


@router.post("/v1/subscriptions/{subscription_id}", openapi_extra=request_body(SubscriptionUpdate))
async def update_subscription(
    subscription_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(
        connect: Connect, scope: Scope, params: SubscriptionUpdate, recovery: Recovery
    ) -> dict[str, Any]:
        s = ctx.services
        if recovery.resume_from is not None:
            return await _resumed(connect, scope, s, subscription_id)
        async with connect() as conn, conn.transaction():
            _, invoice = await service.update(conn, scope, s.clock, subscription_id, params)
            await recovery.checkpoint(conn, subscription_id)
        return await _collected(connect, scope, s, subscription_id, invoice)

    return await write_steps(request, ctx, SubscriptionUpdate, work)


@router.delete("/v1/subscriptions/{subscription_id}")
async def cancel_subscription(
    subscription_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: SubscriptionCancel) -> dict[str, Any]:
        row = await service.cancel(conn, scope, ctx.services.clock, subscription_id, params)
        return (await service.render(conn, scope, [row]))[0]

    return await write(request, ctx, SubscriptionCancel, work)


@router.post(
    "/v1/subscriptions/{subscription_id}/resume", openapi_extra=request_body(SubscriptionResume)
)
async def resume_subscription(
    subscription_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(
        connect: Connect, scope: Scope, params: SubscriptionResume, recovery: Recovery
    ) -> dict[str, Any]:
        s = ctx.services
        if recovery.resume_from is not None:
            return await _resumed(connect, scope, s, subscription_id)
        async with connect() as conn, conn.transaction():
            _, invoice = await service.resume(conn, scope, s.clock, subscription_id, params)
            await recovery.checkpoint(conn, subscription_id)
        return await _collected(connect, scope, s, subscription_id, invoice)

    return await write_steps(request, ctx, SubscriptionResume, work)
