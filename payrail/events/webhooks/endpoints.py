"""/v1/webhook_endpoints, and /v1/webhook_deliveries: what was sent, how each attempt went,
and sending again."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from psycopg import sql

from payrail.api.auth import require_key
from payrail.api.context import RequestContext
from payrail.api.http import Conn, json_response, read, request_body, write
from payrail.api.pagination import ListParams, list_object, page_ids
from payrail.api.schemas import Params
from payrail.config import Settings
from payrail.events.webhooks import service
from payrail.events.webhooks.schemas import DeliveryListParams, EndpointCreate, EndpointUpdate
from payrail.tenants.scope import Scope

router = APIRouter(tags=["webhooks"])
Ctx = Depends(require_key)


class NoParams(Params):
    pass


def _allow_private() -> bool:
    return Settings.from_env().webhooks_allow_private


async def _with_secret(ctx: RequestContext, response: Response) -> Response:
    """The created endpoint with its `secret`. The secret is not in the stored result of
    the request (idempotency_keys keeps that in clear): it is opened from the sealed copy
    here, for the first answer and for a replay of the same request alike."""
    if response.status_code != 200:
        return response
    obj = orjson.loads(response.body)
    async with ctx.services.pool.connection() as conn:
        secret = await service.reveal_secret(conn, ctx.scope, ctx.services.vault, obj["id"])
    if secret is None:  # deleted since: its secret is gone with it
        return response
    replayed = response.headers.get("idempotent-replayed") == "true"
    return json_response(200, orjson.dumps({**obj, "secret": secret}), replayed=replayed)


@router.post("/v1/webhook_endpoints", openapi_extra=request_body(EndpointCreate))
async def create_webhook_endpoint(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: EndpointCreate) -> dict[str, Any]:
        s = ctx.services
        return await service.create_endpoint(
            conn, scope, s.clock, s.vault, params, allow_private=_allow_private()
        )

    return await _with_secret(ctx, await write(request, ctx, EndpointCreate, work))


@router.get("/v1/webhook_endpoints")
async def list_webhook_endpoints(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: ListParams) -> dict[str, Any]:
        ids, more = await page_ids(
            conn, "webhook_endpoints", scope, params, condition=sql.SQL("deleted_at IS NULL")
        )
        return list_object(request.url.path, await service.list_endpoints(conn, scope, ids), more)

    return await read(request, ctx, ListParams, work)


@router.get("/v1/webhook_endpoints/{webhook_endpoint_id}")
async def get_webhook_endpoint(
    webhook_endpoint_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: NoParams) -> dict[str, Any]:
        return await service.get_endpoint(conn, scope, webhook_endpoint_id)

    return await read(request, ctx, NoParams, work)


@router.post(
    "/v1/webhook_endpoints/{webhook_endpoint_id}", openapi_extra=request_body(EndpointUpdate)
)
async def update_webhook_endpoint(
    webhook_endpoint_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: EndpointUpdate) -> dict[str, Any]:
        return await service.update_endpoint(
            conn,
            scope,
            ctx.services.clock,
            webhook_endpoint_id,
            params,
            allow_private=_allow_private(),
        )

    return await write(request, ctx, EndpointUpdate, work)


@router.delete("/v1/webhook_endpoints/{webhook_endpoint_id}")
async def delete_webhook_endpoint(
    webhook_endpoint_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: NoParams) -> dict[str, Any]:
        return await service.delete_endpoint(conn, scope, ctx.services.clock, webhook_endpoint_id)

    return await write(request, ctx, NoParams, work)


@router.get("/v1/webhook_deliveries")
async def list_webhook_deliveries(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: DeliveryListParams) -> dict[str, Any]:
        filters: list[tuple[sql.Composable, Any]] = []
        if params.webhook_endpoint is not None:
            filters.append((sql.SQL("endpoint_id = %s"), params.webhook_endpoint))
        if params.event is not None:
            filters.append((sql.SQL("event_id = %s"), params.event))
        if params.status is not None:
            filters.append((sql.SQL("status = %s"), params.status))
        ids, more = await page_ids(conn, "webhook_deliveries", scope, params, filters)
        return list_object(request.url.path, await service.list_deliveries(conn, scope, ids), more)

    return await read(request, ctx, DeliveryListParams, work)


@router.get("/v1/webhook_deliveries/{delivery_id}")
async def get_webhook_delivery(
    delivery_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: NoParams) -> dict[str, Any]:
        return await service.get_delivery(conn, scope, delivery_id)

    return await read(request, ctx, NoParams, work)


@router.get("/v1/webhook_deliveries/{delivery_id}/attempts")
async def list_webhook_attempts(
    delivery_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: ListParams) -> dict[str, Any]:
        await service.get_delivery(conn, scope, delivery_id)
        filters: list[tuple[sql.Composable, Any]] = [(sql.SQL("delivery_id = %s"), delivery_id)]
        ids, more = await page_ids(conn, "webhook_attempts", scope, params, filters)
        return list_object(request.url.path, await service.list_attempts(conn, scope, ids), more)

    return await read(request, ctx, ListParams, work)


@router.post("/v1/webhook_deliveries/{delivery_id}/retry", openapi_extra=request_body(NoParams))
async def retry_webhook_delivery(
    delivery_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: NoParams) -> dict[str, Any]:
        return await service.retry_delivery(conn, scope, ctx.services.clock, delivery_id)

    return await write(request, ctx, NoParams, work)
