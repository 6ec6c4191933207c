"""/v1/payment_intents and /v1/refunds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from psycopg import sql

from payrail.api.auth import require_key
from payrail.api.context import RequestContext
from payrail.api.http import Conn, read, request_body, write, write_steps
from payrail.api.idempotency import Recovery
from payrail.api.pagination import list_object, page_ids
from payrail.payments import janitor, refunds, service
from payrail.payments.schemas import (
    PaymentIntentCancel,
    PaymentIntentCapture,
    PaymentIntentConfirm,
    PaymentIntentCreate,
    PaymentIntentListParams,
    PaymentIntentUpdate,
    RefundCreate,
    RefundListParams,
    RetrieveParams,
)
from payrail.tenants.scope import Scope

router = APIRouter(tags=["payments"])
Ctx = Depends(require_key)


@router.post("/v1/payment_intents", openapi_extra=request_body(PaymentIntentCreate))
async def create_payment_intent(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(
        connect: Callable[[], Any], scope: Scope, params: PaymentIntentCreate, recovery: Recovery
    ) -> dict[str, Any]:
        return await service.create(connect, scope, ctx.services, params, recovery)

    return await write_steps(request, ctx, PaymentIntentCreate, work)


@router.get("/v1/payment_intents")
async def list_payment_intents(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: PaymentIntentListParams) -> dict[str, Any]:
        filters: list[tuple[sql.Composable, Any]] = []
        if params.customer:
            filters.append((sql.SQL("customer_id = %s"), params.customer))
        ids, more = await page_ids(conn, "payment_intents", scope, params, filters)
        return list_object(request.url.path, await service.list_intents(conn, scope, ids), more)

    return await read(request, ctx, PaymentIntentListParams, work)


@router.get("/v1/payment_intents/{intent_id}")
async def get_payment_intent(
    intent_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: RetrieveParams) -> dict[str, Any]:
        return await service.get(conn, scope, intent_id)

    # A charge whose check is due is asked about now, so a client polling its intent sees
    # it settle without waiting for the janitor's next batch. Before the read, which
    # holds a connection: a provider call must never sit on one.
    await janitor.check_intent(ctx.services, ctx.scope, intent_id)
    return await read(request, ctx, RetrieveParams, work)


@router.post("/v1/payment_intents/{intent_id}", openapi_extra=request_body(PaymentIntentUpdate))
async def update_payment_intent(
    intent_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: PaymentIntentUpdate) -> dict[str, Any]:
        return await service.update(conn, scope, ctx.services, intent_id, params)

    return await write(request, ctx, PaymentIntentUpdate, work)


@router.post(
    "/v1/payment_intents/{intent_id}/confirm", openapi_extra=request_body(PaymentIntentConfirm)
)
async def confirm_payment_intent(
    intent_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(
        connect: Callable[[], Any], scope: Scope, params: PaymentIntentConfirm, recovery: Recovery
    ) -> dict[str, Any]:
        return await service.confirm(connect, scope, ctx.services, intent_id, params, recovery)

    return await write_steps(request, ctx, PaymentIntentConfirm, work)


@router.post(
    "/v1/payment_intents/{intent_id}/capture", openapi_extra=request_body(PaymentIntentCapture)
)
async def capture_payment_intent(
    intent_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(
        connect: Callable[[], Any], scope: Scope, params: PaymentIntentCapture, recovery: Recovery
    ) -> dict[str, Any]:
        return await service.capture(connect, scope, ctx.services, intent_id, params, recovery)

    return await write_steps(request, ctx, PaymentIntentCapture, work)


@router.post(
    "/v1/payment_intents/{intent_id}/cancel", openapi_extra=request_body(PaymentIntentCancel)
)
async def cancel_payment_intent(
    intent_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(
        connect: Callable[[], Any], scope: Scope, params: PaymentIntentCancel, recovery: Recovery
    ) -> dict[str, Any]:
        return await service.cancel(connect, scope, ctx.services, intent_id, params, recovery)

    return await write_steps(request, ctx, PaymentIntentCancel, work)


@router.post("/v1/refunds", openapi_extra=request_body(RefundCreate))
async def create_refund(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(
        connect: Callable[[], Any], scope: Scope, params: RefundCreate, recovery: Recovery
    ) -> dict[str, Any]:
        return await refunds.create(connect, scope, ctx.services, params, recovery)

    return await write_steps(request, ctx, RefundCreate, work)


@router.get("/v1/refunds")
async def list_refunds(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: RefundListParams) -> dict[str, Any]:
        filters: list[tuple[sql.Composable, Any]] = []
        if params.payment_intent:
            filters.append((sql.SQL("payment_intent_id = %s"), params.payment_intent))
        if params.charge:
            filters.append((sql.SQL("charge_id = %s"), params.charge))
        ids, more = await page_ids(conn, "refunds", scope, params, filters)
        return list_object(request.url.path, await refunds.list_refunds(conn, scope, ids), more)

    return await read(request, ctx, RefundListParams, work)


@router.get("/v1/refunds/{refund_id}")
async def get_refund(refund_id: str, request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: RetrieveParams) -> dict[str, Any]:
        return await refunds.get(conn, scope, refund_id)

    return await read(request, ctx, RetrieveParams, work)
