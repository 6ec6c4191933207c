"""Reading the outbox for the API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection

from payrail.errors import NotFound
from payrail.tenants.scope import Scope


async def envelopes(
    conn: AsyncConnection[Any], scope: Scope, ids: Sequence[str]
) -> list[dict[str, Any]]:
    """The events of `ids`, in that order, as `event_envelope` shapes them."""
    rows = await (
        await conn.execute(
            "SELECT e.id, event_envelope(e)::json FROM events e"
            " WHERE e.id = ANY(%s) AND e.merchant_id = %s AND e.livemode = %s",
            (list(ids), scope.merchant_id, scope.livemode),
        )
    ).fetchall()
    found = dict(rows)
    return [found[i] for i in ids if i in found]


async def envelope(conn: AsyncConnection[Any], scope: Scope, event_id: str) -> dict[str, Any]:
    found = await envelopes(conn, scope, [event_id])
    if not found:
        raise NotFound("event", event_id)
    return found[0]
