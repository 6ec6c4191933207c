"""Webhook SQL: endpoints, deliveries, attempts. Parameterized, scoped by merchant and mode."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from payrail.events.webhooks.signing import SignatureFormat
from payrail.ids import new_id
from payrail.tenants.scope import Scope

Conn = AsyncConnection[Any]

# The columns an update may set; the service decides which, never the request.
UPDATABLE = (
    "url",
    "enabled_events",
    "description",
    "metadata",
    "status",
    "disabled_reason",
    "signature_format",
)


async def insert_endpoint(conn: Conn, scope: Scope, row: dict[str, Any]) -> None:
    await conn.execute(
        """
        INSERT INTO webhook_endpoints (id, merchant_id, livemode, url, enabled_events,
            description, metadata, status, signature_format, secret_key_id, secret_sealed,
            created_at, updated_at)
        VALUES (%(id)s, %(merchant_id)s, %(livemode)s, %(url)s, %(enabled_events)s,
            %(description)s, %(metadata)s, 'enabled', %(signature_format)s, %(secret_key_id)s,
            %(secret_sealed)s, %(created_at)s, %(created_at)s)
        """,
        {
            **row,
            "merchant_id": scope.merchant_id,
            "livemode": scope.livemode,
            "metadata": orjson.dumps(row["metadata"]).decode(),
        },
    )


async def fetch_endpoints(
    conn: Conn, scope: Scope, ids: Sequence[str], *, lock: bool = False
) -> list[dict[str, Any]]:
    """The endpoints of these ids that are not deleted, in the order of `ids`."""
    query = (
        "SELECT id, livemode, url, enabled_events, description, metadata, status,"
        " disabled_reason, signature_format, created_at, deleted_at FROM webhook_endpoints"
        " WHERE merchant_id = %s AND livemode = %s AND id = ANY(%s) AND deleted_at IS NULL"
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            query + (" FOR UPDATE" if lock else ""),
            (scope.merchant_id, scope.livemode, list(ids)),
        )
        rows = {row["id"]: row for row in await cur.fetchall()}
    return [rows[i] for i in ids if i in rows]


async def sealed_secret(conn: Conn, scope: Scope, endpoint_id: str) -> tuple[str, bytes] | None:
    cur = await conn.execute(
        "SELECT secret_key_id, secret_sealed FROM webhook_endpoints"
        " WHERE merchant_id = %s AND livemode = %s AND id = %s AND deleted_at IS NULL",
        (scope.merchant_id, scope.livemode, endpoint_id),
    )
    row = await cur.fetchone()
    return (row[0], bytes(row[1])) if row else None


async def update_endpoint(
    conn: Conn, endpoint_id: str, changes: dict[str, Any], at: datetime
) -> None:
    assert changes and set(changes) <= set(UPDATABLE)
    values = {k: orjson.dumps(v).decode() if k == "metadata" else v for k, v in changes.items()}
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in values
    )
    await conn.execute(
        sql.SQL("UPDATE webhook_endpoints SET {}, updated_at = {} WHERE id = {}").format(
            assignments, sql.Placeholder("at"), sql.Placeholder("endpoint_id")
        ),
        {**values, "at": at, "endpoint_id": endpoint_id},
    )


async def mark_deleted(conn: Conn, endpoint_id: str, at: datetime) -> None:
    """Deleted, and the sealed secret dropped with it: nothing can sign as it any more."""
    await conn.execute(
        "UPDATE webhook_endpoints SET deleted_at = %s, updated_at = %s,"
        " secret_key_id = NULL, secret_sealed = NULL WHERE id = %s",
        (at, at, endpoint_id),
    )


async def cancel_pending(conn: Conn, endpoint_id: str, at: datetime) -> int:
    """Stop an endpoint's pending deliveries (it was disabled or deleted); one in flight
    keeps its attempt, whose outcome is then not recorded against the delivery."""
    cur = await conn.execute(
        "UPDATE webhook_deliveries SET status = 'canceled', next_attempt_at = NULL,"
        " lease = NULL, updated_at = %s WHERE endpoint_id = %s AND status = 'pending'",
        (at, endpoint_id),
    )
    return cur.rowcount


async def insert_deliveries(conn: Conn, event_id: str) -> int:
    """A pending delivery of the event to each of its merchant's enabled endpoints that
    subscribe to its type, due at once. Endpoints made after the event do not get it:
    a consumer running behind must not send them history. Twice is a no-op.

    The endpoints are share-locked until the deliveries commit: a disable or delete
    (which cancels pending deliveries) waits for them, or they for it and then see the
    endpoint gone, so no pending delivery outlives its endpoint's secret."""
    cur = await conn.execute(
        "SELECT w.id FROM events e JOIN webhook_endpoints w"
        " ON w.merchant_id = e.merchant_id AND w.livemode = e.livemode"
        " WHERE e.id = %s AND w.status = 'enabled' AND w.deleted_at IS NULL"
        " AND w.created_at <= e.created_at AND w.enabled_events && ARRAY['*', e.type]"
        " ORDER BY w.id FOR SHARE OF w",
        (event_id,),
    )
    endpoint_ids = [row[0] for row in await cur.fetchall()]
    if not endpoint_ids:
        return 0
    cur = await conn.execute(
        "INSERT INTO webhook_deliveries (id, merchant_id, livemode, endpoint_id, event_id,"
        " event_type, status, next_attempt_at, created_at, updated_at)"
        " SELECT d.id, e.merchant_id, e.livemode, d.endpoint_id, e.id, e.type, 'pending',"
        " e.created_at, e.created_at, e.created_at"
        " FROM unnest(%s::text[], %s::text[]) AS d (id, endpoint_id), events e"
        " WHERE e.id = %s ON CONFLICT (endpoint_id, event_id) DO NOTHING",
        ([new_id("whdel") for _ in endpoint_ids], endpoint_ids, event_id),
    )
    return cur.rowcount


async def fetch_deliveries(
    conn: Conn, scope: Scope, ids: Sequence[str], *, lock: bool = False
) -> list[dict[str, Any]]:
    query = (
        "SELECT id, livemode, endpoint_id, event_id, event_type, status, attempt_count,"
        " last_attempt_at, next_attempt_at, lease, created_at FROM webhook_deliveries"
        " WHERE merchant_id = %s AND livemode = %s AND id = ANY(%s)"
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            query + (" FOR UPDATE" if lock else ""),
            (scope.merchant_id, scope.livemode, list(ids)),
        )
        rows = {row["id"]: row for row in await cur.fetchall()}
    return [rows[i] for i in ids if i in rows]


async def schedule_now(conn: Conn, delivery_id: str, at: datetime) -> None:
    """Due now, on a new 3-day schedule, whatever it was."""
    await conn.execute(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = %s, lease = NULL,"
        " window_started_at = NULL, updated_at = %s WHERE id = %s",
        (at, at, delivery_id),
    )


async def fetch_attempts(conn: Conn, scope: Scope, ids: Sequence[str]) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT id, livemode, delivery_id, attempted_at, host(address) AS address,"
            " status_code, error, duration_ms, response_excerpt FROM webhook_attempts"
            " WHERE merchant_id = %s AND livemode = %s AND id = ANY(%s)",
            (scope.merchant_id, scope.livemode, list(ids)),
        )
        rows = {row["id"]: row for row in await cur.fetchall()}
    return [rows[i] for i in ids if i in rows]


# --- The delivery worker --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    id: str
    scope: Scope
    endpoint_id: str
    event_id: str
    attempt_count: int
    window_started_at: datetime | None
    url: str
    signature_format: SignatureFormat
    secret_key_id: str
    secret_sealed: bytes


CLAIM = """
WITH due AS (
    SELECT id FROM webhook_deliveries
     WHERE status = 'pending' AND next_attempt_at <= %(now)s
     ORDER BY next_attempt_at
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
),
-- A delivery whose endpoint is no longer enabled must not be sent, and must not come
-- back in every claim: it is canceled here, as disabling the endpoint would have done.
orphaned AS (
    UPDATE webhook_deliveries d
       SET status = 'canceled', next_attempt_at = NULL, lease = NULL, updated_at = %(now)s
      FROM due, webhook_endpoints w
     WHERE d.id = due.id AND w.id = d.endpoint_id
       AND (w.status <> 'enabled' OR w.deleted_at IS NOT NULL)
)
UPDATE webhook_deliveries d
   SET lease = %(lease)s, next_attempt_at = %(until)s
  FROM due, webhook_endpoints w
 WHERE d.id = due.id AND w.id = d.endpoint_id
   AND w.status = 'enabled' AND w.deleted_at IS NULL
RETURNING d.id, d.merchant_id, d.livemode, d.endpoint_id, d.event_id, d.attempt_count,
          d.window_started_at, w.url, w.signature_format, w.secret_key_id, w.secret_sealed
"""


async def claim(
    conn: Conn, now: datetime, until: datetime, lease: str, limit: int
) -> list[Claimed]:
    """Take up to `limit` due deliveries until `until`, skipping those another worker
    holds. Pending deliveries only exist for live endpoints (disabling or deleting one
    cancels them in the same transaction), so the secret is there."""
    cur = await conn.execute(CLAIM, {"now": now, "until": until, "lease": lease, "limit": limit})
    return [
        Claimed(
            row[0],
            Scope(row[1], row[2]),
            row[3],
            row[4],
            row[5],
            row[6],
            row[7],
            row[8],
            row[9],
            bytes(row[10]),
        )
        for row in await cur.fetchall()
    ]


async def count_due(conn: Conn, now: datetime) -> int:
    """Pending deliveries whose attempt is due: the backlog the workers have not caught."""
    cur = await conn.execute(
        "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"
        " AND next_attempt_at <= %s",
        (now,),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def envelope(conn: Conn, event_id: str) -> bytes | None:
    """The event as published (migration 0009), as the bytes that are signed and sent."""
    cur = await conn.execute("SELECT event_envelope(e) FROM events e WHERE id = %s", (event_id,))
    row = await cur.fetchone()
    return str(row[0]).encode() if row else None


async def insert_attempt(conn: Conn, claimed: Claimed, row: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO webhook_attempts (id, merchant_id, livemode, delivery_id, attempted_at,"
        " address, status_code, error, duration_ms, response_excerpt)"
        " VALUES (%(id)s, %(merchant_id)s, %(livemode)s, %(delivery_id)s, %(attempted_at)s,"
        " %(address)s, %(status_code)s, %(error)s, %(duration_ms)s, %(response_excerpt)s)",
        {
            **row,
            "id": new_id("whatt"),
            "merchant_id": claimed.scope.merchant_id,
            "livemode": claimed.scope.livemode,
            "delivery_id": claimed.id,
        },
    )


async def record_outcome(
    conn: Conn,
    claimed: Claimed,
    lease: str,
    attempted_at: datetime,
    status: str,
    next_attempt_at: datetime | None,
) -> bool:
    """The delivery's state after an attempt, if this worker still holds it."""
    cur = await conn.execute(
        "UPDATE webhook_deliveries SET status = %s, next_attempt_at = %s, lease = NULL,"
        " attempt_count = attempt_count + 1, last_attempt_at = %s,"
        " window_started_at = coalesce(window_started_at, %s), updated_at = %s"
        " WHERE id = %s AND lease = %s AND status = 'pending'",
        (
            status,
            next_attempt_at,
            attempted_at,
            attempted_at,
            attempted_at,
            claimed.id,
            lease,
        ),
    )
    return cur.rowcount == 1


async def disable_gone(conn: Conn, endpoint_id: str, at: datetime) -> bool:
    """Disable an endpoint that answered 410, unless it already is (or was deleted)."""
    cur = await conn.execute(
        "UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = 'gone',"
        " updated_at = %s WHERE id = %s AND status = 'enabled' AND deleted_at IS NULL",
        (at, endpoint_id),
    )
    return cur.rowcount == 1
