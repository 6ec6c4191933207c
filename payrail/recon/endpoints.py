"""/v1/reconciliation_runs and /v1/reconciliation_breaks: what the runs found, and
resolving a break with a note. Runs are made by `payrail recon run` and the recon worker,
not through the API: a report is a file on the operator's side."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from psycopg import sql

from payrail.api.auth import require_key
from payrail.api.context import RequestContext
from payrail.api.http import Conn, read, request_body, write
from payrail.api.pagination import list_object, page_ids
from payrail.api.schemas import NoParams
from payrail.recon import service
from payrail.recon.schemas import BreakList, BreakResolve, RunList
from payrail.tenants.scope import Scope

router = APIRouter(tags=["reconciliation"])
Ctx = Depends(require_key)

RUNS = "/v1/reconciliation_runs"
BREAKS = "/v1/reconciliation_breaks"


@router.get(RUNS)
async def list_reconciliation_runs(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: RunList) -> dict[str, Any]:
        filters: list[tuple[sql.Composable, Any]] = []
        if params.connector_account is not None:
            filters.append((sql.SQL("connector_account_id = %s"), params.connector_account))
        if params.kind is not None:
            filters.append((sql.SQL("kind = %s"), params.kind))
        ids, more = await page_ids(conn, "recon_runs", scope, params, filters)
        return list_object(request.url.path, await service.list_runs(conn, scope, ids), more)

    return await read(request, ctx, RunList, work)


@router.get(RUNS + "/{run_id}")
async def get_reconciliation_run(
    run_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: NoParams) -> dict[str, Any]:
        return await service.get_run(conn, scope, run_id)

    return await read(request, ctx, NoParams, work)


@router.get(BREAKS)
async def list_reconciliation_breaks(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: BreakList) -> dict[str, Any]:
        filters: list[tuple[sql.Composable, Any]] = []
        if params.status is not None:
            filters.append((sql.SQL("status = %s"), params.status))
        if params.type is not None:
            filters.append((sql.SQL("type = %s"), params.type))
        if params.run is not None:
            filters.append((sql.SQL("opened_run_id = %s"), params.run))
        ids, more = await page_ids(conn, "recon_breaks", scope, params, filters)
        return list_object(request.url.path, await service.list_breaks(conn, scope, ids), more)

    return await read(request, ctx, BreakList, work)


@router.get(BREAKS + "/{break_id}")
async def get_reconciliation_break(
    break_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: NoParams) -> dict[str, Any]:
        return await service.get_break(conn, scope, break_id)

    return await read(request, ctx, NoParams, work)


@router.post(BREAKS + "/{break_id}/resolve", openapi_extra=request_body(BreakResolve))
async def resolve_reconciliation_break(
    break_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: BreakResolve) -> dict[str, Any]:
        return await service.resolve_break(conn, scope, ctx.services.clock, break_id, params.note)

    return await write(request, ctx, BreakResolve, work)
