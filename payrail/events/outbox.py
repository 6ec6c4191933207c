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


INSERT_EVENTS = """
INSERT INTO events (id, merchant_id, livemode, type, version, aggregate_type, aggregate_id,
                    payload, created_at)
SELECT e.id, %(merchant_id)s, %(livemode)s, e.type, e.version, e.aggregate_type,
       e.aggregate_id, e.payload, %(event_created_at)s
FROM jsonb_to_recordset(%(events)s::jsonb)
     AS e(id text, type text, version int, aggregate_type text, aggregate_id text, payload jsonb)
"""


def event_params(scope: Scope, at: datetime, events: Sequence[OutboxEvent]) -> dict[str, Any]:
    """Parameters of INSERT_EVENTS: the rows travel as one JSON document."""
    rows = [
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
    return {
        "merchant_id": scope.merchant_id,
        "livemode": scope.livemode,
        "event_created_at": at,
        "events": orjson.dumps(rows).decode(),
    }


async def emit(
    conn: AsyncConnection[Any], scope: Scope, at: datetime, events: Sequence[OutboxEvent]
) -> None:
    if events:
        await conn.execute(INSERT_EVENTS, event_params(scope, at, events))
