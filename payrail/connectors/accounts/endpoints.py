"""/v1/connector_accounts (credentials in, last 4 out) and /v1/routing_rules."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from payrail.api.auth import require_key
from payrail.api.context import RequestContext
from payrail.api.http import Conn, read, request_body, write
from payrail.api.pagination import ListParams, list_object, page_ids
from payrail.api.schemas import NoParams
from payrail.connectors.accounts import service
from payrail.connectors.accounts.schemas import (
    ConnectorAccountCreate,
    ConnectorAccountUpdate,
    RoutingRuleCreate,
)
from payrail.tenants.scope import Scope

router = APIRouter(prefix="/v1")
Ctx = Depends(require_key)


@router.post(
    "/connector_accounts",
    tags=["connector_accounts"],
    openapi_extra=request_body(ConnectorAccountCreate),
)
async def create_connector_account(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: ConnectorAccountCreate) -> dict[str, Any]:
        services = ctx.services
        return await service.create_connector_account(
            conn, scope, services.clock, services.vault, params
        )

    return await write(request, ctx, ConnectorAccountCreate, work)


@router.get("/connector_accounts", tags=["connector_accounts"])
async def list_connector_accounts(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: ListParams) -> dict[str, Any]:
        ids, more = await page_ids(conn, "connector_accounts", scope, params)
        data = await service.list_connector_accounts(conn, scope, ids)
        return list_object(request.url.path, data, more)

    return await read(request, ctx, ListParams, work)


@router.get("/connector_accounts/{connector_account_id}", tags=["connector_accounts"])
async def get_connector_account(
    connector_account_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: NoParams) -> dict[str, Any]:
        return await service.get_connector_account(conn, scope, connector_account_id)

    return await read(request, ctx, NoParams, work)


@router.post(
    "/connector_accounts/{connector_account_id}",
    tags=["connector_accounts"],
    openapi_extra=request_body(ConnectorAccountUpdate),
)
async def update_connector_account(
    connector_account_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: ConnectorAccountUpdate) -> dict[str, Any]:
        services = ctx.services
        return await service.update_connector_account(
            conn, scope, services.clock, services.vault, connector_account_id, params
        )

    return await write(request, ctx, ConnectorAccountUpdate, work)


@router.post(
    "/routing_rules", tags=["routing_rules"], openapi_extra=request_body(RoutingRuleCreate)
)
async def create_routing_rule(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: RoutingRuleCreate) -> dict[str, Any]:
        return await service.create_routing_rule(conn, scope, ctx.services.clock, params)

    return await write(request, ctx, RoutingRuleCreate, work)


@router.get("/routing_rules", tags=["routing_rules"])
async def list_routing_rules(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: ListParams) -> dict[str, Any]:
        ids, more = await page_ids(conn, "routing_rules", scope, params)
        data = await service.list_routing_rules(conn, scope, ids)
        return list_object(request.url.path, data, more)

    return await read(request, ctx, ListParams, work)


@router.get("/routing_rules/{routing_rule_id}", tags=["routing_rules"])
async def get_routing_rule(
    routing_rule_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: NoParams) -> dict[str, Any]:
        return await service.get_routing_rule(conn, scope, routing_rule_id)

    return await read(request, ctx, NoParams, work)


# Stripe deletes with DELETE; `write` gives it what a POST gets: Idempotency-Key, one
# transaction with its event, and unknown parameters refused.
@router.delete("/routing_rules/{routing_rule_id}", tags=["routing_rules"])
async def delete_routing_rule(
    routing_rule_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: NoParams) -> dict[str, Any]:
        return await service.delete_routing_rule(conn, scope, ctx.services.clock, routing_rule_id)

    return await write(request, ctx, NoParams, work)
