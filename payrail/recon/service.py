"""Reading runs and breaks, and resolving a break by hand with a note."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg.rows import dict_row

from payrail.clock import Clock
from payrail.errors import InvalidRequest, NotFound
from payrail.events.outbox import OutboxEvent, emit
from payrail.recon import repository as repo
from payrail.recon.objects import break_object, run_object
from payrail.tenants.scope import Scope

Conn = repo.Conn


async def get_run(conn: Conn, scope: Scope, run_id: str) -> dict[str, Any]:
    found = await repo.runs(conn, scope, [run_id])
    if not found:
        raise NotFound("reconciliation run", run_id)
    return run_object(found[0])


async def list_runs(conn: Conn, scope: Scope, ids: Sequence[str]) -> list[dict[str, Any]]:
    return [run_object(r) for r in await repo.runs(conn, scope, list(ids))]


_BREAKS = (
    "SELECT * FROM recon_breaks WHERE merchant_id = %s AND livemode = %s AND id = ANY(%s)"
    " ORDER BY seq DESC"
)
_LOCK_BREAKS = _BREAKS + " FOR UPDATE"


async def _breaks(
    conn: Conn, scope: Scope, ids: Sequence[str], *, lock: bool = False
) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        _LOCK_BREAKS if lock else _BREAKS, (scope.merchant_id, scope.livemode, list(ids))
    )
    return await cur.fetchall()


async def _history(conn: Conn, break_id: str) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT action, type, run_id, note, at FROM recon_break_history WHERE break_id = %s"
        " ORDER BY id",
        (break_id,),
    )
    return [
        {
            "action": h["action"],
            "type": h["type"],
            "run": h["run_id"],
            "note": h["note"],
            "at": int(h["at"].timestamp()),
        }
        for h in await cur.fetchall()
    ]


async def get_break(conn: Conn, scope: Scope, break_id: str) -> dict[str, Any]:
    found = await _breaks(conn, scope, [break_id])
    if not found:
        raise NotFound("reconciliation break", break_id)
    return {**break_object(found[0]), "history": await _history(conn, break_id)}


async def list_breaks(conn: Conn, scope: Scope, ids: Sequence[str]) -> list[dict[str, Any]]:
    return [break_object(r) for r in await _breaks(conn, scope, ids)]


async def resolve_break(
    conn: Conn, scope: Scope, clock: Clock, break_id: str, note: str
) -> dict[str, Any]:
    """A person explains a break and closes it. What it moved to suspense stays there:
    moving it on (a write-off, a correction) is a ledger posting of its own, with its
    own approval."""
    found = await _breaks(conn, scope, [break_id], lock=True)
    if not found:
        raise NotFound("reconciliation break", break_id)
    row = found[0]
    if row["status"] != "open":
        raise InvalidRequest(
            f"Break {break_id} is already {row['status']} ({row['resolution']}).",
            param="id",
            code="break_not_open",
        )
    now = clock.now()
    changes = {"status": "resolved", "resolution": "resolved_by_user", "note": note}
    await repo.update_break(conn, break_id, {**changes, "updated_at": now})
    await repo.insert(
        conn,
        "recon_break_history",
        {
            "break_id": break_id,
            "merchant_id": scope.merchant_id,
            "action": "resolved",
            "type": row["type"],
            "note": note,
            "at": now,
        },
    )
    obj = break_object({**row, **changes, "updated_at": now})
    await emit(
        conn,
        scope,
        now,
        [OutboxEvent("reconciliation.break.resolved", "reconciliation_break", break_id, obj)],
    )
    return {**obj, "history": await _history(conn, break_id)}
