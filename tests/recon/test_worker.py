"""The recon worker: each connector account's reports of the last days, fetched from the
provider and reconciled once, however many workers look; the gauges set from the database."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import httpx
from prometheus_client import generate_latest
from psycopg_pool import AsyncConnectionPool

from payrail.api.context import Services
from payrail.clock import ManualClock
from payrail.ops.metrics import REGISTRY
from payrail.recon import worker
from tests.recon.helpers import pay


async def test_each_due_day_is_reconciled_once_by_racing_workers(
    pool: AsyncConnectionPool,
    services: Services,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    clock: ManualClock,
    connector: str,
) -> None:
    await pay(client, auth, 1500)
    await pay(client, auth, 2500, refund=500)
    clock.current = datetime(2026, 1, 2, 3, tzinfo=UTC)
    done = await asyncio.gather(worker.run_once(services), worker.run_once(services))
    # Three days caught up (two before the first payment, empty), each once.
    async with pool.connection() as conn:
        runs = await (
            await conn.execute(
                "SELECT report_date, summary -> 'matched' -> 'reference' FROM recon_runs"
                " WHERE connector_account_id = %s ORDER BY report_date",
                (connector,),
            )
        ).fetchall()
    assert [day for day, _ in runs] == [date(2025, 12, 30), date(2025, 12, 31), date(2026, 1, 1)]
    assert runs[-1][1] == 3  # two captures and a refund
    assert sum(done) >= 3
    assert await worker.run_once(services) == 0, "nothing is due twice"
    assert b"payrail_recon_last_success_timestamp_seconds" in generate_latest(REGISTRY)


async def test_a_report_that_cannot_be_had_is_counted_and_the_rest_go_on(
    pool: AsyncConnectionPool, services: Services, clock: ManualClock, connector: str
) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            'UPDATE connector_accounts SET metadata = metadata || \'{"settlement_report_format":'
            ' "nonesuch"}\' WHERE id = %s',
            (connector,),
        )
    clock.current = datetime(2026, 1, 2, 3, tzinfo=UTC)
    before = REGISTRY.get_sample_value(
        "payrail_recon_run_failures_total", {"provider": "sandbox", "reason": "ConnectorError"}
    )
    assert await worker.run_once(services) == 0
    after = REGISTRY.get_sample_value(
        "payrail_recon_run_failures_total", {"provider": "sandbox", "reason": "ConnectorError"}
    )
    assert (after or 0) - (before or 0) == worker.CATCH_UP_DAYS
