"""`payrail bench events` drives the real relay and a real consumer; a short run must
publish everything it filled and receive everything it wrote."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from payrail.bench.events import CLOCK, latency, producer_rate, relay_rate
from payrail.events.pglog import PostgresLog


async def test_each_measure_moves_what_it_counts(pool: AsyncConnectionPool) -> None:
    log = PostgresLog(pool, CLOCK)
    assert (await producer_rate(log, 300, batch=100)).operations == 300
    assert (await relay_rate(pool, log, 500, replicas=2)).operations == 500
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) FILTER (WHERE published_at IS NULL), count(*) FROM events"
                " WHERE aggregate_type = 'payment_intent'"
            )
        ).fetchone()
    assert row == (0, 500)
    measured = await latency(pool, log, rate=200, seconds=1)
    assert (measured.sent, measured.received) == (200, 200)
    assert 0 < measured.p50_ms <= measured.p99_ms <= measured.max_ms
