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
       e.aggregate_id, e.payload, %(created_at)s
FROM unnest(%(ids)s::text[], %(types)s::text[], %(versions)s::int[],
            %(aggregate_types)s::text[], %(aggregate_ids)s::text[], %(payloads)s::jsonb[])
     AS e(id, type, version, aggregate_type, aggregate_id, payload)
"""


async def emit(
    conn: AsyncConnection[Any], scope: Scope, at: datetime, events: Sequence[OutboxEvent]
) -> None:
    if not events:
        return
    await conn.execute(
        INSERT_EVENTS,
        {
            "merchant_id": scope.merchant_id,
            "livemode": scope.livemode,
            "created_at": at,
            "ids": [new_id("evt") for _ in events],
            "types": [e.type for e in events],
            "versions": [e.version for e in events],
            "aggregate_types": [e.aggregate_type for e in events],
            "aggregate_ids": [e.aggregate_id for e in events],
            "payloads": [orjson.dumps(e.payload).decode() for e in events],
        },
    )
