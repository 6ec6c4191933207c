"""`payrail bench ledger` drives the real posting paths; a short run must write what it
counts, events included, and leave the ledger consistent."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from payrail.bench.ledger import Transfers, _measure, _setup
from payrail.ledger.verify import verify


async def test_each_measure_writes_what_it_counts(pool: AsyncConnectionPool) -> None:
    setup = await _setup(pool, 6)
    transfers = Transfers(setup)
    single = await _measure(pool, setup, transfers, seconds=0.2, workers=2, batch=1, hot=None)
    batched = await _measure(
        pool, setup, transfers, seconds=0.2, workers=2, batch=10, hot=setup.hot
    )
    assert single.operations > 0
    assert batched.operations > 0
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM ledger_transactions),"
            " (SELECT count(*) FROM events WHERE aggregate_type = 'ledger_transaction')"
        )
        assert await cur.fetchone() == (single.operations + batched.operations,) * 2
        assert (await verify(conn)).ok
