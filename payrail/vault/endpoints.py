"""/v1/payment_methods: cards in, brand and last 4 out."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from psycopg import sql

from payrail.api.auth import require_key
from payrail.api.context import RequestContext
from payrail.api.http import Conn, read, request_body, write
from payrail.api.pagination import ListParams, list_object, page_ids
from payrail.api.schemas import NoParams
from payrail.tenants.scope import Scope
from payrail.vault import service
from payrail.vault.schemas import PaymentMethodCreate

router = APIRouter(prefix="/v1/payment_methods", tags=["payment_methods"])
Ctx = Depends(require_key)


class PaymentMethodListParams(ListParams):
    customer: str | None = None
    type: Literal["card"] | None = None


@router.post("", openapi_extra=request_body(PaymentMethodCreate))
async def create_payment_method(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: PaymentMethodCreate) -> dict[str, Any]:
        services = ctx.services
        return await service.create_payment_method(
            conn, scope, services.clock, services.vault, params
        )

    return await write(request, ctx, PaymentMethodCreate, work)


@router.get("")
async def list_payment_methods(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: PaymentMethodListParams) -> dict[str, Any]:
        filters: list[tuple[sql.Composable, Any]] = []
        if params.customer:
            filters.append((sql.SQL("customer_id = %s"), params.customer))
        ids, more = await page_ids(conn, "payment_methods", scope, params, filters)
        data = await service.list_payment_methods(conn, scope, ids)
        return list_object(request.url.path, data, more)

    return await read(request, ctx, PaymentMethodListParams, work)


@router.get("/{payment_method_id}")
async def get_payment_method(
    payment_method_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: NoParams) -> dict[str, Any]:
        return await service.get_payment_method(conn, scope, payment_method_id)

    return await read(request, ctx, NoParams, work)
