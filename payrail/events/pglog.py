"""The embedded transport: a partitioned log in PostgreSQL, with Kafka's contract
(transport.py), for `payrail up` without a broker.

A topic has `PARTITIONS` partitions; a record goes to the partition of its key's hash.
Appending takes the partition rows' locks in a fixed order and hands out offsets under
them, so offsets of one partition become visible in offset order: a reader never sees
offset n+1 before n, and never skips one. Consumer groups keep their committed offsets
in `event_log_offsets`; members share a group's partitions through leases (leases.py),
and a member commits only partitions it still holds.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import orjson
import psycopg
from psycopg_pool import AsyncConnectionPool

from payrail.clock import Clock
from payrail.events import leases
from payrail.events.transport import TOPIC_PREFIX, Delivered, Record, TransportUnavailable
from payrail.ids import new_id

PARTITIONS = 8
LEASE = timedelta(seconds=15)
POLL = 0.02  # seconds between two reads of an idle log


def partition_for(key: str, partitions: int = PARTITIONS) -> int:
    return zlib.crc32(key.encode()) % partitions


class PostgresLog:
    name = "postgres"

    def __init__(self, pool: AsyncConnectionPool, clock: Clock, *, lease: timedelta = LEASE):
        self.pool = pool
        self.clock = clock
        self.lease = lease

    async def producer(self) -> PostgresLogProducer:
        return PostgresLogProducer(self)

    async def subscribe(self, group: str, topics: Sequence[str] | None) -> PostgresLogMember:
        return PostgresLogMember(self, group, topics)


class PostgresLogProducer:
    def __init__(self, log: PostgresLog) -> None:
        self.log = log
        self.known_topics: set[str] = set()

    async def publish(self, records: Sequence[Record]) -> None:
        if not records:
            return
        topics = sorted({r.topic for r in records} - self.known_topics)
        try:
            async with self.log.pool.connection() as conn:
                if topics:
                    await conn.execute(
                        "INSERT INTO event_log_partitions (topic, partition)"
                        " SELECT t, p FROM unnest(%s::text[]) t, generate_series(0, %s - 1) p"
                        " ON CONFLICT DO NOTHING",
                        (topics, PARTITIONS),
                    )
                async with conn.transaction():
                    cur = await conn.execute(_APPEND, _append_args(records, self.log.clock))
                    if cur.rowcount != len(records):  # a partition row missing: none lost
                        raise RuntimeError(
                            f"the event log appended {cur.rowcount} of {len(records)} records"
                        )
        except psycopg.OperationalError as exc:
            raise TransportUnavailable(f"the event log did not take the records: {exc}") from exc
        self.known_topics.update(topics)

    async def close(self) -> None:
        return None


# Locks the partitions in (topic, partition) order, so that two publishers never
# deadlock, then numbers each partition's records from its next offset, in the order
# they were given.
_APPEND = """
WITH given AS (
    SELECT r.topic, r.partition, r.key, r.value, r.headers, r.ord
      FROM unnest(%(topics)s::text[], %(partitions)s::smallint[], %(keys)s::text[],
                  %(values)s::bytea[], %(headers)s::jsonb[])
           WITH ORDINALITY AS r(topic, partition, key, value, headers, ord)
), counted AS (
    SELECT topic, partition, count(*) AS n FROM given GROUP BY topic, partition
), locked AS (
    SELECT p.topic, p.partition FROM event_log_partitions p
      JOIN counted c USING (topic, partition)
     ORDER BY p.topic, p.partition
       FOR UPDATE OF p
), bumped AS (
    UPDATE event_log_partitions p SET next_offset = p.next_offset + c.n
      FROM counted c, locked l
     WHERE p.topic = c.topic AND p.partition = c.partition
       AND l.topic = c.topic AND l.partition = c.partition
    RETURNING p.topic, p.partition, p.next_offset - c.n AS first_offset
)
INSERT INTO event_log (topic, partition, "offset", key, value, headers, appended_at)
SELECT g.topic, g.partition,
       b.first_offset + row_number() OVER (PARTITION BY g.topic, g.partition ORDER BY g.ord) - 1,
       g.key, g.value, g.headers, %(at)s
  FROM given g JOIN bumped b USING (topic, partition)
"""


def _append_args(records: Sequence[Record], clock: Clock) -> dict[str, Any]:
    return {
        "topics": [r.topic for r in records],
        "partitions": [partition_for(r.key) for r in records],
        "keys": [r.key for r in records],
        "values": [r.value for r in records],
        "headers": [orjson.dumps(r.headers).decode() for r in records],
        "at": clock.now(),
    }


class PostgresLogMember:
    """One member of a consumer group on the log."""

    def __init__(self, log: PostgresLog, group: str, topics: Sequence[str] | None) -> None:
        self.log = log
        self.group = group
        self.topics = list(topics) if topics is not None else None
        self.owner = new_id("member")
        self.lease_pool = f"log:{group}"
        self.slots: set[str] = set()
        # Where this member reads next, per held partition; commits lag behind it.
        self.positions: dict[tuple[str, int], int] = {}
        self.hold_due = 0.0

    async def _hold(self) -> None:
        now = self.log.clock.now()
        async with self.log.pool.connection() as conn:
            topics = self.topics
            if topics is None:
                rows = await (
                    await conn.execute(
                        "SELECT DISTINCT topic FROM event_log_partitions"
                        " WHERE starts_with(topic, %s)",
                        (TOPIC_PREFIX,),
                    )
                ).fetchall()
                topics = [row[0] for row in rows]
            await leases.add_slots(
                conn,
                self.lease_pool,
                [f"{topic}/{partition}" for topic in topics for partition in range(PARTITIONS)],
            )
            held = set(await leases.hold(conn, self.lease_pool, self.owner, now, self.log.lease))
            for slot in self.slots - held:
                self.positions.pop(_partition_of(slot), None)
            gained = [_partition_of(slot) for slot in held - self.slots]
            if gained:
                rows = await (
                    await conn.execute(
                        "SELECT w.topic, w.partition, coalesce(o.next_offset, 0)"
                        "  FROM unnest(%s::text[], %s::smallint[]) AS w(topic, partition)"
                        "  LEFT JOIN event_log_offsets o ON o.consumer_group = %s"
                        "   AND o.topic = w.topic AND o.partition = w.partition",
                        ([t for t, _ in gained], [p for _, p in gained], self.group),
                    )
                ).fetchall()
                for topic, partition, offset in rows:
                    self.positions[(topic, partition)] = offset
        self.slots = held
        # Renewed well before the lease ends, so a slow round does not lose it.
        self.hold_due = time.monotonic() + self.log.lease.total_seconds() / 3

    async def fetch(self, max_records: int, max_wait: float) -> list[Delivered]:
        deadline = time.monotonic() + max_wait
        while True:
            if time.monotonic() >= self.hold_due:
                await self._hold()
            found = await self._read(max_records) if self.positions else []
            if found or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(min(POLL, max(deadline - time.monotonic(), 0)))

    async def _read(self, max_records: int) -> list[Delivered]:
        held = list(self.positions.items())
        async with self.log.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    'SELECT l.topic, l.partition, l."offset", l.key, l.value, l.headers'
                    "  FROM unnest(%s::text[], %s::smallint[], %s::bigint[])"
                    "       AS w(topic, partition, from_offset)"
                    " CROSS JOIN LATERAL (SELECT * FROM event_log l"
                    "   WHERE l.topic = w.topic AND l.partition = w.partition"
                    '     AND l."offset" >= w.from_offset'
                    '   ORDER BY l."offset" LIMIT %s) l',
                    (
                        [topic for (topic, _), _ in held],
                        [partition for (_, partition), _ in held],
                        [offset for _, offset in held],
                        max_records,
                    ),
                )
            ).fetchall()
        found = [
            Delivered(topic, partition, offset, key, bytes(value), headers)
            for topic, partition, offset, key, value, headers in rows[:max_records]
        ]
        for record in found:
            self.positions[(record.topic, record.partition)] = record.offset + 1
        return found

    async def commit(self, delivered: Sequence[Delivered]) -> None:
        done: dict[tuple[str, int], int] = {}
        for record in delivered:
            key = (record.topic, record.partition)
            done[key] = max(done.get(key, 0), record.offset + 1)
        if not done:
            return
        async with self.log.pool.connection() as conn:
            # Only partitions this member still holds: one taken over meanwhile is the
            # new holder's to commit, from what it reads again.
            await conn.execute(
                "INSERT INTO event_log_offsets (consumer_group, topic, partition, next_offset)"
                " SELECT %(group)s, w.topic, w.partition, w.next_offset"
                "   FROM unnest(%(topics)s::text[], %(partitions)s::smallint[],"
                "               %(offsets)s::bigint[]) AS w(topic, partition, next_offset)"
                "   JOIN event_leases l ON l.pool = %(pool)s"
                "    AND l.slot = w.topic || '/' || w.partition"
                "    AND l.owner = %(owner)s AND l.lease_until > %(now)s"
                " ON CONFLICT (consumer_group, topic, partition)"
                " DO UPDATE SET next_offset = EXCLUDED.next_offset",
                {
                    "group": self.group,
                    "topics": [topic for topic, _ in done],
                    "partitions": [partition for _, partition in done],
                    "offsets": list(done.values()),
                    "pool": self.lease_pool,
                    "owner": self.owner,
                    "now": self.log.clock.now(),
                },
            )

    async def lag(self) -> dict[tuple[str, int], int]:
        held = list(self.positions)
        if not held:
            return {}
        async with self.log.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT p.topic, p.partition, p.next_offset - coalesce(o.next_offset, 0)"
                    "  FROM unnest(%s::text[], %s::smallint[]) AS w(topic, partition)"
                    "  JOIN event_log_partitions p USING (topic, partition)"
                    "  LEFT JOIN event_log_offsets o ON o.consumer_group = %s"
                    "   AND o.topic = p.topic AND o.partition = p.partition",
                    ([t for t, _ in held], [p for _, p in held], self.group),
                )
            ).fetchall()
        return {(topic, partition): behind for topic, partition, behind in rows}

    async def close(self) -> None:
        async with self.log.pool.connection() as conn:
            await leases.release(conn, self.lease_pool, self.owner)


def _partition_of(slot: str) -> tuple[str, int]:
    topic, _, partition = slot.rpartition("/")
    return topic, int(partition)
