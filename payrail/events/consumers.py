"""Consumers: a group reading the transport, each event's effect applied once.

A handler runs in a transaction that first writes the consumer's inbox row for the
event. A redelivered event (after a crash, a rebalance, a duplicate publish) finds the
row and is skipped; two members racing on one event queue on the row, and the second
sees the first's commit. So a handler only has to do its work with the connection it is
given: the inbox makes it idempotent.

A handler that raises is retried with backoff; after `max_attempts` the event goes to
`event_dead_letters` with its error, and the partition moves on. `replay` runs dead
letters again (`payrail events replay`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
import structlog
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from payrail.clock import Clock
from payrail.events.schemas import Event, MalformedEvent, parse_event
from payrail.events.transport import Delivered, Transport
from payrail.ids import new_id
from payrail.ops import metrics

log = structlog.get_logger(__name__)

Handler = Callable[[AsyncConnection[Any], Event], Awaitable[None]]
Outcome = Literal["handled", "duplicate", "dead_lettered"]

FETCH = 200
LAG_EVERY = 5.0  # seconds between two readings of the lag
MAX_BACKOFF = 5.0  # seconds between two starts of a member whose round failed
HEALTHY_ROUND = 30.0  # seconds a member ran before failing for its backoff to start over


@dataclass(frozen=True)
class Consumer:
    name: str  # the consumer group, and the inbox's and dead letters' name
    handler: Handler
    topics: Sequence[str] | None = None  # None: every payrail topic
    max_attempts: int = 5
    first_delay: float = 0.05  # seconds before the first retry; x4 each time after
    max_delay: float = 5.0


def retry_delay(consumer: Consumer, attempt: int, rng: random.Random) -> float:
    """Exponential, capped, with full jitter: retries of many members spread out."""
    return rng.uniform(0, min(consumer.max_delay, consumer.first_delay * 4 ** (attempt - 1)))


async def handle(
    pool: AsyncConnectionPool,
    consumer: Consumer,
    delivered: Delivered,
    clock: Clock,
    *,
    attempts: int | None = None,
    rng: random.Random | None = None,
) -> Outcome:
    rng = rng or random.Random()
    try:
        event = parse_event(delivered.value)
    except MalformedEvent as exc:
        await _dead_letter(pool, consumer, delivered, _record_id(delivered), str(exc), 1, clock)
        return "dead_lettered"
    tries = attempts or consumer.max_attempts
    for attempt in range(1, tries + 1):
        try:
            return await _handle_once(pool, consumer, event, clock)
        except Exception as exc:
            if _database_away(exc):
                # The database, not the event: no attempt is spent and nothing is
                # dead-lettered; the member starts over and the event comes again.
                raise
            if attempt == tries:
                log.exception(
                    "event dead-lettered",
                    consumer=consumer.name,
                    event_id=event.id,
                    event_type=event.type,
                    attempts=attempt,
                )
                error = f"{type(exc).__name__}: {exc}"
                await _dead_letter(pool, consumer, delivered, event.id, error, attempt, clock)
                return "dead_lettered"
            metrics.consumer_retries.labels(consumer.name).inc()
            await asyncio.sleep(retry_delay(consumer, attempt, rng))
    raise AssertionError("unreachable: the last attempt returns")


async def _handle_once(
    pool: AsyncConnectionPool, consumer: Consumer, event: Event, clock: Clock
) -> Outcome:
    async with pool.connection() as conn, conn.transaction():
        first = await (
            await conn.execute(
                "INSERT INTO event_inbox (consumer, event_id, handled_at) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING RETURNING true",
                (consumer.name, event.id, clock.now()),
            )
        ).fetchone()
        if first is None:
            return "duplicate"
        await consumer.handler(conn, event)
    return "handled"


def _database_away(exc: Exception) -> bool:
    """The connection is gone or could not be had (class 08, 57P: shutdown, crash), as
    opposed to an error that this event would meet again (a timeout, a deadlock, a
    value too large), which spends a try like any other."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith(("08", "57P"))


def _record_id(delivered: Delivered) -> str:
    """What names a record that is not an event: where it lies."""
    return f"{delivered.topic}/{delivered.partition}/{delivered.offset}"


async def _dead_letter(
    pool: AsyncConnectionPool,
    consumer: Consumer,
    delivered: Delivered,
    event_id: str,
    error: str,
    attempts: int,
    clock: Clock,
) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO event_dead_letters (id, consumer, event_id, topic, partition,"
            ' "offset", event, error, attempts, failed_at)'
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (consumer, event_id) DO UPDATE SET error = EXCLUDED.error,"
            " attempts = event_dead_letters.attempts + EXCLUDED.attempts,"
            " failed_at = EXCLUDED.failed_at, replayed_at = NULL",
            (
                new_id("dl"),
                consumer.name,
                event_id,
                delivered.topic,
                delivered.partition,
                delivered.offset,
                delivered.value,
                error[:2000],
                attempts,
                clock.now(),
            ),
        )


async def run(
    pool: AsyncConnectionPool,
    transport: Transport,
    consumer: Consumer,
    clock: Clock,
    stop: asyncio.Event,
) -> None:
    """One member of the consumer's group, until `stop` is set. It commits a batch only
    after handling all of it: killed in mid-batch, the rest is delivered again."""
    rng = random.Random()
    backoff = 0.0
    while not stop.is_set():
        started = time.monotonic()
        try:
            await _consume(pool, transport, consumer, clock, stop, rng)
        except Exception:
            # The database or the broker went away: join the group afresh once it is
            # back; what was not committed is delivered again, and the inbox drops
            # what was already done.
            log.exception("consumer: round failed", consumer=consumer.name)
            if time.monotonic() - started > HEALTHY_ROUND:
                backoff = 0.0  # a fresh outage, not the same one going on
            backoff = min(max(backoff * 2, 0.1), MAX_BACKOFF)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)


async def _consume(
    pool: AsyncConnectionPool,
    transport: Transport,
    consumer: Consumer,
    clock: Clock,
    stop: asyncio.Event,
    rng: random.Random,
) -> None:
    subscription = await transport.subscribe(consumer.name, consumer.topics)
    lag_due = 0.0
    reported: set[tuple[str, str]] = set()
    try:
        while not stop.is_set():
            batch = await subscription.fetch(FETCH, max_wait=0.2)
            for delivered in batch:
                started = time.perf_counter()
                outcome = await handle(pool, consumer, delivered, clock, rng=rng)
                metrics.consumer_handle_seconds.labels(consumer.name).observe(
                    time.perf_counter() - started
                )
                metrics.consumer_handled.labels(consumer.name, outcome).inc()
            if batch:
                await subscription.commit(batch)
            if time.monotonic() >= lag_due:
                lag_due = time.monotonic() + LAG_EVERY
                try:
                    lag = await subscription.lag()
                except Exception:
                    # Only a metric: a member that cannot read it goes on consuming.
                    log.warning("consumer: lag not read", consumer=consumer.name, exc_info=True)
                else:
                    reported = _report_lag(consumer, lag, reported)
    finally:
        with contextlib.suppress(Exception):  # a dead connection: its leases run out
            await subscription.close()


def _report_lag(
    consumer: Consumer, lag: dict[tuple[str, int], int], reported: set[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Sets the lag of the partitions this member holds, and drops the series of those it
    no longer holds: another member reports them now."""
    held = {(topic, str(partition)) for topic, partition in lag}
    for topic, label in reported - held:
        metrics.consumer_lag.remove(consumer.name, topic, label)
    for (topic, number), behind in lag.items():
        metrics.consumer_lag.labels(consumer.name, topic, str(number)).set(behind)
    return held


@dataclass
class Replay:
    replayed: int = 0
    failed: int = 0


async def replay(
    pool: AsyncConnectionPool,
    consumer: Consumer,
    clock: Clock,
    dead_letter_ids: Sequence[str] | None = None,
) -> Replay:
    """Runs the consumer's waiting dead letters (or the named ones) once more, oldest
    first. One that succeeds, or was handled meanwhile, is marked replayed; one that
    fails again stays, with its new error and attempt count."""
    query = (
        'SELECT topic, partition, "offset", event, id FROM event_dead_letters'
        " WHERE consumer = %s AND replayed_at IS NULL"
    )
    args: list[Any] = [consumer.name]
    if dead_letter_ids is not None:
        query += " AND id = ANY(%s)"
        args.append(list(dead_letter_ids))
    async with pool.connection() as conn:
        rows = await (await conn.execute(query + " ORDER BY failed_at, id", args)).fetchall()
    report = Replay()
    for topic, partition, offset, value, dead_letter_id in rows:
        delivered = Delivered(topic, partition, offset, "", bytes(value), {})
        outcome = await handle(pool, consumer, delivered, clock, attempts=1)
        if outcome == "dead_lettered":
            report.failed += 1
            continue
        report.replayed += 1
        async with pool.connection() as conn:
            await conn.execute(
                "UPDATE event_dead_letters SET replayed_at = %s WHERE id = %s",
                (clock.now(), dead_letter_id),
            )
    return report
