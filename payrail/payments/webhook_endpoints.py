"""/webhooks/{connector_account_id}, where providers report changes, and /v1/disputes,
the disputes they report."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from psycopg import sql

from payrail.api.auth import require_key
from payrail.api.context import RequestContext, Services
from payrail.api.http import Conn, json_response, read
from payrail.api.pagination import ListParams, list_object, page_ids
from payrail.connectors.base import WebhookRejected
from payrail.errors import InvalidRequest
from payrail.payments import disputes, webhooks
from payrail.payments.schemas import ObjectId, RetrieveParams
from payrail.tenants.scope import Scope

router = APIRouter(tags=["payments"])
Ctx = Depends(require_key)

RECEIVED = b'{"received":true}'


async def _capped_body(request: Request) -> bytes:
    """The body, read no further than the largest one accepted: anyone can call this
    route, and must not make it hold an unbounded body in memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > webhooks.MAX_BODY:
        raise WebhookRejected(f"The body is larger than {webhooks.MAX_BODY} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > webhooks.MAX_BODY:
            raise WebhookRejected(f"The body is larger than {webhooks.MAX_BODY} bytes.")
    return bytes(body)


# Not under /v1 and no API key: the provider calls it, and proves who it is by signing.
@router.post("/webhooks/{connector_account_id}", include_in_schema=False)
async def receive_webhook(connector_account_id: str, request: Request) -> Response:
    services: Services = request.app.state.services
    try:
        await webhooks.receive(
            services.pool.connection,
            services,
            connector_account_id,
            request.headers,
            await _capped_body(request),
        )
    except WebhookRejected:
        # One answer for every refusal, whatever the reason (logged by `receive`): a
        # caller without the account's webhook secret learns nothing from it, not even
        # whether the account exists.
        raise InvalidRequest(
            "Webhook rejected: no signature in it verifies for this endpoint at this time.",
            code="webhook_rejected",
        ) from None
    return json_response(200, RECEIVED)


class DisputeListParams(ListParams):
    charge: ObjectId | None = None
    payment_intent: ObjectId | None = None


@router.get("/v1/disputes")
async def list_disputes(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: DisputeListParams) -> dict[str, Any]:
        filters: list[tuple[sql.Composable, Any]] = []
        if params.charge:
            filters.append((sql.SQL("charge_id = %s"), params.charge))
        if params.payment_intent:
            filters.append((sql.SQL("payment_intent_id = %s"), params.payment_intent))
        ids, more = await page_ids(conn, "disputes", scope, params, filters)
        return list_object(request.url.path, await disputes.list_disputes(conn, scope, ids), more)

    return await read(request, ctx, DisputeListParams, work)


@router.get("/v1/disputes/{dispute_id}")
async def get_dispute(dispute_id: str, request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: RetrieveParams) -> dict[str, Any]:
        return await disputes.get(conn, scope, dispute_id)

    return await read(request, ctx, RetrieveParams, work)
