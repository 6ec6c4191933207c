"""The relay: publishes the outbox to the transport, in order per aggregate.

Every event of an aggregate lies in one of `SLICES` slices (`events.relay_slice`,
migration 0009). Relay replicas share the slices through leases (leases.py), so one
replica at a time publishes a slice, oldest event first, and marks what the transport
took as published. Within a slice, events of one aggregate were committed in `seq`
order (a change locks its aggregate's row before writing its event), so reading the
unpublished rows by `seq` gives each aggregate's events in commit order.

Delivery is at least once: when the transport fails, or a replica loses a slice in the
middle of a batch, the rows stay unpublished and go out again. A record published twice
is the inbox's business; what matters for order is that each replica publishes a slice's
rows in order, so the first copy of every event reaches Kafka in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from psycopg_pool import AsyncConnectionPool

from payrail.clock import Clock
from payrail.events import leases
from payrail.events.transport import (
    Producer,
    Record,
    Transport,
    TransportUnavailable,
    topic_for,
)
from payrail.ids import new_id
from payrail.ops import metrics

log = structlog.get_logger(__name__)

SLICES = 16
LEASE = timedelta(seconds=15)
BATCH = 1000
IDLE = 0.02  # seconds between two looks at an empty outbox
MAX_BACKOFF = 5.0  # seconds between two tries while the transport is down
STATS_EVERY = 5.0  # seconds between two counts of the backlog


@dataclass(frozen=True)
class Relay:
    pool: AsyncConnectionPool
    transport: Transport
    clock: Clock
    owner: str
    batch: int = BATCH
    lease: timedelta = LEASE


def new_relay(
    pool: AsyncConnectionPool, transport: Transport, clock: Clock, **options: Any
) -> Relay:
    return Relay(pool, transport, clock, new_id("relay"), **options)


async def hold_slices(relay: Relay) -> list[int]:
    async with relay.pool.connection() as conn:
        slots = await leases.hold(conn, "relay", relay.owner, relay.clock.now(), relay.lease)
    return sorted(int(slot) for slot in slots)


async def read_batch(
    relay: Relay, slices: list[int], in_flight: Sequence[int] = ()
) -> list[tuple[int, Record]]:
    """The oldest unpublished events of these slices, as (seq, record), leaving out those
    `in_flight` (published, their mark not yet committed). Always read from the oldest
    unpublished row, never from a cursor: a row committed late with a lower seq must
    go out before any later event of its aggregate."""
    async with relay.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT e.seq, e.id, e.aggregate_type, e.aggregate_id, e.type, e.version,"
                "       event_envelope(e)"
                "  FROM events e"
                " WHERE e.published_at IS NULL AND e.relay_slice = ANY(%s)"
                "   AND e.seq <> ALL(%s)"
                " ORDER BY e.seq LIMIT %s",
                (slices, list(in_flight), relay.batch),
            )
        ).fetchall()
    return [
        (
            seq,
            Record(
                topic_for(aggregate_type),
                aggregate_id,
                envelope.encode(),
                {"event_id": event_id, "event_type": kind, "event_version": str(version)},
            ),
        )
        for seq, event_id, aggregate_type, aggregate_id, kind, version, envelope in rows
    ]


async def mark_published(relay: Relay, seqs: Sequence[int]) -> None:
    async with relay.pool.connection() as conn:
        await conn.execute(
            "UPDATE events SET published_at = %s WHERE published_at IS NULL AND seq = ANY(%s)",
            (relay.clock.now(), list(seqs)),
        )
    metrics.relay_published.labels(relay.transport.name).inc(len(seqs))


async def publish_once(relay: Relay, producer: Producer, slices: list[int]) -> int:
    """Publishes up to `batch` of the oldest unpublished events of these slices and marks
    them published; the number published. Raises TransportUnavailable, marking nothing."""
    batch = await read_batch(relay, slices)
    if batch:
        await producer.publish([record for _, record in batch])
        await mark_published(relay, [seq for seq, _ in batch])
    return len(batch)


async def record_backlog(relay: Relay) -> None:
    async with relay.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT count(*), min(created_at) FROM events WHERE published_at IS NULL"
            )
        ).fetchone()
    assert row is not None
    count, oldest = row
    metrics.outbox_unpublished.set(count)
    age = (relay.clock.now() - oldest).total_seconds() if oldest else 0.0
    metrics.outbox_oldest_unpublished_seconds.set(max(age, 0.0))


async def run(relay: Relay, stop: asyncio.Event) -> None:
    """One relay replica, until `stop` is set; then its slices go back at once.

    A batch's mark commits while the next batch is read and published: the database's
    work and the broker's overlap. Batches are still published one after another, each
    only once the one before it was taken, so order holds; a mark that fails leaves its
    rows to be published again, after later ones, which only makes duplicates."""
    producer = await relay.transport.producer()
    slices: list[int] = []
    hold_due = stats_due = 0.0
    backoff = 0.0
    marking: asyncio.Task[None] | None = None
    in_flight: list[int] = []
    try:
        while not stop.is_set():
            try:
                if time.monotonic() >= hold_due:
                    slices = await hold_slices(relay)
                    hold_due = time.monotonic() + relay.lease.total_seconds() / 3
                if time.monotonic() >= stats_due:
                    await record_backlog(relay)
                    stats_due = time.monotonic() + STATS_EVERY
                batch = await read_batch(relay, slices, in_flight) if slices else []
                if batch:
                    await producer.publish([record for _, record in batch])
                if marking is not None:
                    # Shielded: a relay cancelled here leaves the mark to finish, and
                    # its `finally` to wait for it, close the producer, give back slices.
                    await asyncio.shield(marking)
                    marking, in_flight = None, []
                if batch:
                    in_flight = [seq for seq, _ in batch]
                    marking = asyncio.create_task(mark_published(relay, in_flight))
                backoff = 0.0
            except Exception as exc:
                # The broker, or the database itself (a failover, a restart): the rows
                # wait in the outbox, and the relay must outlive the outage to send them.
                if isinstance(exc, TransportUnavailable):
                    metrics.relay_failures.labels(relay.transport.name).inc()
                    log.warning("relay: transport unavailable", error=str(exc))
                else:
                    log.exception("relay: round failed")
                await _settle(marking)
                marking, in_flight = None, []
                backoff = min(max(backoff * 2, 0.1), MAX_BACKOFF)
                await _pause(stop, backoff)
                continue
            if len(batch) < relay.batch:
                await _pause(stop, IDLE if slices else relay.lease.total_seconds() / 3)
    finally:
        await _settle(marking)
        await producer.close()
        with contextlib.suppress(Exception):  # a dead database: the lease runs out instead
            async with relay.pool.connection() as conn:
                await leases.release(conn, "relay", relay.owner)


async def _settle(marking: asyncio.Task[None] | None) -> None:
    """Waits for a mark in progress, whatever its outcome (`asyncio.wait` never raises):
    a failed one leaves its rows unpublished, to go out again."""
    if marking is None:
        return
    await asyncio.wait({marking})
    if not marking.cancelled() and marking.exception() is not None:
        log.warning("relay: a mark failed; its rows go out again", error=str(marking.exception()))


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
