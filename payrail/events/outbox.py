"""The transactional outbox: an event row per state change, in the change's transaction.

Callers pass the connection of the transaction that makes the change; the relay
(events issue) publishes rows from this table and never the other way round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from psycopg import AsyncConnection

from payrail.ids import new_id
from payrail.tenants.scope import Scope


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    type: str
    aggregate_type: str
    aggregate_id: str
    payload: dict[str, Any]
    version: int = 1


def event_rows(events: Sequence[OutboxEvent]) -> str:
    """The rows of `outbox_emit` (migration 0002) as one JSON document."""
    return orjson.dumps(
        [
            {
                "id": new_id("evt"),
                "type": e.type,
                "version": e.version,
                "aggregate_type": e.aggregate_type,
                "aggregate_id": e.aggregate_id,
                "payload": e.payload,
            }
            for e in events
        ]
    ).decode()


async def emit(
    conn: AsyncConnection[Any], scope: Scope, at: datetime, events: Sequence[OutboxEvent]
) -> None:
    if events:
        await conn.execute(
            "SELECT outbox_emit(%s, %s, %s, %s::jsonb)",
            (scope.merchant_id, scope.livemode, at, event_rows(events)),
        )
