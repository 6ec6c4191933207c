"""Slots shared out between the live members of a pool, each held under a lease.

The relay's pool is its 16 outbox slices; a PostgreSQL-log consumer group's pool is its
topics' partitions. A member calls `hold` between two rounds of work: that is its
heartbeat, and it answers which slots the member may work on until the lease ends.
Members split the slots evenly: one above its share gives the extra back, one below
takes free or expired slots. A member that dies stops renewing; its slots are free
once their lease has run out, and never before. So at most one live member works on a
slot at a time, as long as a round of work ends within the lease.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

# Members gone this long are forgotten; until then a dead member only delays the share
# count, never a slot (its slots free up when their own lease ends).
FORGET_AFTER = timedelta(hours=1)


async def add_slots(conn: AsyncConnection[Any], pool: str, slots: Sequence[str]) -> None:
    await conn.execute(
        "INSERT INTO event_leases (pool, slot) SELECT %s, unnest(%s::text[])"
        " ON CONFLICT DO NOTHING",
        (pool, list(slots)),
    )


async def hold(
    conn: AsyncConnection[Any], pool: str, owner: str, now: datetime, lease: timedelta
) -> list[str]:
    """Renews this member and its share of the pool's slots; the slots it holds until
    `now + lease`, sorted."""
    until = now + lease
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO event_members (pool, owner, seen_until) VALUES (%s, %s, %s)"
            " ON CONFLICT (pool, owner) DO UPDATE SET seen_until = EXCLUDED.seen_until",
            (pool, owner, until),
        )
        counted = await (
            await conn.execute(
                "SELECT (SELECT count(*) FROM event_members"
                "         WHERE pool = %(pool)s AND seen_until > %(now)s),"
                "       (SELECT count(*) FROM event_leases WHERE pool = %(pool)s)",
                {"pool": pool, "now": now},
            )
        ).fetchone()
        assert counted is not None
        members, slots = counted
        share = math.ceil(slots / max(members, 1))
        held = [
            row[0]
            for row in await (
                await conn.execute(
                    "SELECT slot FROM event_leases"
                    " WHERE pool = %s AND owner = %s AND lease_until > %s"
                    " ORDER BY slot FOR UPDATE",
                    (pool, owner, now),
                )
            ).fetchall()
        ]
        kept, extra = held[:share], held[share:]
        if extra:
            await conn.execute(
                "UPDATE event_leases SET owner = NULL, lease_until = '-infinity'"
                " WHERE pool = %s AND slot = ANY(%s)",
                (pool, extra),
            )
        if kept:
            await conn.execute(
                "UPDATE event_leases SET lease_until = %s WHERE pool = %s AND slot = ANY(%s)",
                (until, pool, kept),
            )
        if len(kept) < share:
            taken = await (
                await conn.execute(
                    "UPDATE event_leases SET owner = %(owner)s, lease_until = %(until)s"
                    " WHERE pool = %(pool)s AND slot IN ("
                    "   SELECT slot FROM event_leases"
                    "    WHERE pool = %(pool)s AND lease_until <= %(now)s"
                    "    ORDER BY slot LIMIT %(need)s FOR UPDATE SKIP LOCKED)"
                    " RETURNING slot",
                    {
                        "owner": owner,
                        "until": until,
                        "pool": pool,
                        "now": now,
                        "need": share - len(kept),
                    },
                )
            ).fetchall()
            kept += [row[0] for row in taken]
        await conn.execute(
            "DELETE FROM event_members WHERE pool = %s AND seen_until < %s",
            (pool, now - FORGET_AFTER),
        )
    return sorted(kept)


async def release(conn: AsyncConnection[Any], pool: str, owner: str) -> None:
    """A member that stops cleanly hands its slots over at once."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE event_leases SET owner = NULL, lease_until = '-infinity'"
            " WHERE pool = %s AND owner = %s",
            (pool, owner),
        )
        await conn.execute(
            "DELETE FROM event_members WHERE pool = %s AND owner = %s", (pool, owner)
        )
