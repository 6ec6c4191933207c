"""/v1/customers, and attaching cards to them (/v1/payment_methods/{id}/attach|detach)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from psycopg import sql

from payrail.api.auth import require_key
from payrail.api.context import RequestContext
from payrail.api.http import Conn, read, request_body, write
from payrail.api.pagination import ListParams, list_object, page_ids
from payrail.api.schemas import NoParams
from payrail.customers import service
from payrail.customers.schemas import (
    CustomerCreate,
    CustomerListParams,
    CustomerUpdate,
    PaymentMethodAttach,
)
from payrail.tenants.scope import Scope
from payrail.vault import service as vault_service

router = APIRouter(tags=["customers"])
Ctx = Depends(require_key)


@router.post("/v1/customers", openapi_extra=request_body(CustomerCreate))
async def create_customer(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: CustomerCreate) -> dict[str, Any]:
        s = ctx.services
        return await service.create_customer(conn, scope, s.clock, s.vault, params)

    return await write(request, ctx, CustomerCreate, work)


@router.get("/v1/customers")
async def list_customers(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: CustomerListParams) -> dict[str, Any]:
        filters: list[tuple[sql.Composable, Any]] = []
        if params.email:
            filters.append((sql.SQL("email = %s"), params.email))
        ids, more = await page_ids(
            conn, "customers", scope, params, filters, condition=sql.SQL("deleted_at IS NULL")
        )
        return list_object(request.url.path, await service.list_customers(conn, scope, ids), more)

    return await read(request, ctx, CustomerListParams, work)


@router.get("/v1/customers/{customer_id}")
async def get_customer(customer_id: str, request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: NoParams) -> dict[str, Any]:
        return await service.get_customer(conn, scope, customer_id)

    return await read(request, ctx, NoParams, work)


@router.post("/v1/customers/{customer_id}", openapi_extra=request_body(CustomerUpdate))
async def update_customer(
    customer_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: CustomerUpdate) -> dict[str, Any]:
        return await service.update_customer(conn, scope, ctx.services.clock, customer_id, params)

    return await write(request, ctx, CustomerUpdate, work)


@router.delete("/v1/customers/{customer_id}")
async def delete_customer(
    customer_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: NoParams) -> dict[str, Any]:
        return await service.delete_customer(conn, scope, ctx.services.clock, customer_id)

    return await write(request, ctx, NoParams, work)


@router.get("/v1/customers/{customer_id}/payment_methods")
async def list_customer_payment_methods(
    customer_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: ListParams) -> dict[str, Any]:
        await service.get_customer(conn, scope, customer_id)
        filters: list[tuple[sql.Composable, Any]] = [(sql.SQL("customer_id = %s"), customer_id)]
        ids, more = await page_ids(conn, "payment_methods", scope, params, filters)
        data = await vault_service.list_payment_methods(conn, scope, ids)
        return list_object(request.url.path, data, more)

    return await read(request, ctx, ListParams, work)


@router.post(
    "/v1/payment_methods/{payment_method_id}/attach",
    openapi_extra=request_body(PaymentMethodAttach),
)
async def attach_payment_method(
    payment_method_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: PaymentMethodAttach) -> dict[str, Any]:
        s = ctx.services
        return await service.attach(
            conn, scope, s.clock, s.vault, payment_method_id, params.customer
        )

    return await write(request, ctx, PaymentMethodAttach, work)


@router.post("/v1/payment_methods/{payment_method_id}/detach", openapi_extra=request_body(NoParams))
async def detach_payment_method(
    payment_method_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: NoParams) -> dict[str, Any]:
        return await service.detach(conn, scope, ctx.services.clock, payment_method_id)

    return await write(request, ctx, NoParams, work)
