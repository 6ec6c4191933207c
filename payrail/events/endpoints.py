"""`GET /v1/events` and `GET /v1/events/{id}`: the outbox, as Stripe's events."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from psycopg import sql

from payrail.api.auth import require_key
from payrail.api.context import RequestContext
from payrail.api.http import Conn, read
from payrail.api.pagination import list_object, page_ids
from payrail.api.schemas import NoParams
from payrail.errors import InvalidRequest
from payrail.events import repository
from payrail.events.schemas import EventListParams
from payrail.tenants.scope import Scope

router = APIRouter(tags=["events"])
Ctx = Depends(require_key)


@router.get("/v1/events")
async def list_events(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: EventListParams) -> dict[str, Any]:
        if params.type and params.types:
            raise InvalidRequest("You may pass either type or types, but not both.", param="types")
        filters: list[tuple[sql.Composable, Any]] = []
        types = [params.type] if params.type else params.types
        if types:
            filters.append((sql.SQL("type LIKE ANY(%s)"), [_pattern(t) for t in types]))
        ids, more = await page_ids(conn, "events", scope, params, filters)
        return list_object(request.url.path, await repository.envelopes(conn, scope, ids), more)

    return await read(request, ctx, EventListParams, work)


@router.get("/v1/events/{event_id}")
async def get_event(event_id: str, request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: NoParams) -> dict[str, Any]:
        return await repository.envelope(conn, scope, event_id)

    return await read(request, ctx, NoParams, work)


def _pattern(event_type: str) -> str:
    """Stripe's `type` filter: an exact type, or a prefix ending in `*`
    (`payment_intent.*`). LIKE's own wildcards are taken literally."""
    literal = event_type.removesuffix("*")
    escaped = literal.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%" if event_type.endswith("*") else escaped
