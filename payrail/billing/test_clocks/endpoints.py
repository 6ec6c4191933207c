"""/v1/test_helpers/test_clocks: Stripe's test clocks (test mode only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from psycopg import sql

from payrail.api.auth import require_key
from payrail.api.context import RequestContext
from payrail.api.http import Conn, read, request_body, write
from payrail.api.pagination import ListParams, list_object, page_ids
from payrail.api.schemas import NoParams
from payrail.billing.test_clocks import service
from payrail.billing.test_clocks.schemas import ClockAdvance, ClockCreate
from payrail.tenants.scope import Scope

router = APIRouter(tags=["test_clocks"])
Ctx = Depends(require_key)

CLOCKS = "/v1/test_helpers/test_clocks"


@router.post(CLOCKS, openapi_extra=request_body(ClockCreate))
async def create_test_clock(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: ClockCreate) -> dict[str, Any]:
        return await service.create_clock(conn, scope, ctx.services.clock, params)

    return await write(request, ctx, ClockCreate, work)


@router.get(CLOCKS)
async def list_test_clocks(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: ListParams) -> dict[str, Any]:
        service.require_test_mode(scope)
        ids, more = await page_ids(
            conn, "test_clocks", scope, params, condition=sql.SQL("deleted_at IS NULL")
        )
        return list_object(request.url.path, await service.list_clocks(conn, scope, ids), more)

    return await read(request, ctx, ListParams, work)


@router.get(CLOCKS + "/{test_clock_id}")
async def get_test_clock(
    test_clock_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: NoParams) -> dict[str, Any]:
        return await service.get_clock(conn, scope, test_clock_id)

    return await read(request, ctx, NoParams, work)


@router.delete(CLOCKS + "/{test_clock_id}")
async def delete_test_clock(
    test_clock_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: NoParams) -> dict[str, Any]:
        return await service.delete_clock(conn, scope, ctx.services.clock, test_clock_id)

    return await write(request, ctx, NoParams, work)


@router.post(CLOCKS + "/{test_clock_id}/advance", openapi_extra=request_body(ClockAdvance))
async def advance_test_clock(
    test_clock_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: ClockAdvance) -> dict[str, Any]:
        return await service.advance_clock(conn, scope, ctx.services.clock, test_clock_id, params)

    return await write(request, ctx, ClockAdvance, work)
