"""HTTP routes of dunning: the merchant's policy (a payrail extension of Stripe's API) and
the failed-payments report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from payrail.api.auth import require_key
from payrail.api.context import RequestContext
from payrail.api.http import Conn, read, request_body, write
from payrail.api.schemas import NoParams
from payrail.dunning import report, service
from payrail.dunning.schemas import FailedPaymentsParams, PolicyUpdate
from payrail.errors import InvalidRequest
from payrail.tenants.scope import Scope

router = APIRouter(tags=["dunning"])
Ctx = Depends(require_key)
POLICY = "/v1/dunning/policy"


@router.get(POLICY)
async def get_policy(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: NoParams) -> dict[str, Any]:
        return await service.get_policy(conn, scope)

    return await read(request, ctx, NoParams, work)


@router.post(POLICY, openapi_extra=request_body(PolicyUpdate))
async def update_policy(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: PolicyUpdate) -> dict[str, Any]:
        return await service.update_policy(conn, scope, ctx.services.clock, params)

    return await write(request, ctx, PolicyUpdate, work)


@router.get("/v1/reports/failed_payments")
async def failed_payments_report(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: FailedPaymentsParams) -> dict[str, Any]:
        since = datetime.fromtimestamp(params.since, UTC)
        if params.until is not None:
            until = datetime.fromtimestamp(params.until, UTC)
        else:
            until = ctx.services.clock.now()
            if until <= since:
                raise InvalidRequest(
                    "Invalid since: must be earlier than until, which defaults to now.",
                    param="since",
                    code="parameter_invalid",
                )
        return await report.failed_payments(conn, scope, since, until)

    return await read(request, ctx, FailedPaymentsParams, work)
