"""/v1/products and /v1/prices."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from psycopg import sql

from payrail.api.auth import require_key
from payrail.api.context import RequestContext
from payrail.api.http import Conn, read, request_body, write
from payrail.api.pagination import list_object, page_ids
from payrail.api.schemas import NoParams
from payrail.billing.catalog import service
from payrail.billing.catalog.schemas import (
    PriceCreate,
    PriceListParams,
    PriceUpdate,
    ProductCreate,
    ProductListParams,
    ProductUpdate,
)
from payrail.tenants.scope import Scope

router = APIRouter(tags=["catalog"])
Ctx = Depends(require_key)
Filters = list[tuple[sql.Composable, Any]]


@router.post("/v1/products", openapi_extra=request_body(ProductCreate))
async def create_product(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: ProductCreate) -> dict[str, Any]:
        return await service.create_product(conn, scope, ctx.services.clock, params)

    return await write(request, ctx, ProductCreate, work)


@router.get("/v1/products")
async def list_products(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: ProductListParams) -> dict[str, Any]:
        filters: Filters = []
        if params.active is not None:
            filters.append((sql.SQL("active = %s"), params.active))
        ids, more = await page_ids(conn, "products", scope, params, filters)
        return list_object(request.url.path, await service.list_products(conn, scope, ids), more)

    return await read(request, ctx, ProductListParams, work)


@router.get("/v1/products/{product_id}")
async def get_product(product_id: str, request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: NoParams) -> dict[str, Any]:
        return await service.get_product(conn, scope, product_id)

    return await read(request, ctx, NoParams, work)


@router.post("/v1/products/{product_id}", openapi_extra=request_body(ProductUpdate))
async def update_product(product_id: str, request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: ProductUpdate) -> dict[str, Any]:
        return await service.update_product(conn, scope, ctx.services.clock, product_id, params)

    return await write(request, ctx, ProductUpdate, work)


@router.delete("/v1/products/{product_id}")
async def delete_product(product_id: str, request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: NoParams) -> dict[str, Any]:
        return await service.delete_product(conn, scope, ctx.services.clock, product_id)

    return await write(request, ctx, NoParams, work)


@router.post("/v1/prices", openapi_extra=request_body(PriceCreate))
async def create_price(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: PriceCreate) -> dict[str, Any]:
        return await service.create_price(conn, scope, ctx.services.clock, params)

    return await write(request, ctx, PriceCreate, work)


def price_filters(params: PriceListParams) -> Filters:
    filters: Filters = []
    if params.active is not None:
        filters.append((sql.SQL("active = %s"), params.active))
    if params.product is not None:
        filters.append((sql.SQL("product_id = %s"), params.product))
    if params.type is not None:
        filters.append((sql.SQL("type = %s"), params.type))
    if params.currency is not None:
        filters.append((sql.SQL("currency = %s"), params.currency))
    if params.lookup_keys is not None:
        filters.append((sql.SQL("lookup_key = ANY(%s)"), params.lookup_keys))
    if params.recurring is not None and params.recurring.interval is not None:
        filters.append((sql.SQL("recurring_interval = %s"), params.recurring.interval))
    return filters


@router.get("/v1/prices")
async def list_prices(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: PriceListParams) -> dict[str, Any]:
        ids, more = await page_ids(conn, "prices", scope, params, price_filters(params))
        return list_object(request.url.path, await service.list_prices(conn, scope, ids), more)

    return await read(request, ctx, PriceListParams, work)


@router.get("/v1/prices/{price_id}")
async def get_price(price_id: str, request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: NoParams) -> dict[str, Any]:
        return await service.get_price(conn, scope, price_id)

    return await read(request, ctx, NoParams, work)


@router.post("/v1/prices/{price_id}", openapi_extra=request_body(PriceUpdate))
async def update_price(price_id: str, request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: PriceUpdate) -> dict[str, Any]:
        return await service.update_price(conn, scope, ctx.services.clock, price_id, params)

    return await write(request, ctx, PriceUpdate, work)
