"""The recon worker: each connector account's reports of the last days, fetched from the
provider and reconciled once, however many workers look; the gauges set from the database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime

import httpx
import psycopg
import pytest
from prometheus_client import generate_latest
from psycopg_pool import AsyncConnectionPool

from payrail.api.context import Services
from payrail.clock import ManualClock
from payrail.connectors.accounts.service import Connectors
from payrail.connectors.base import ConnectorError
from payrail.connectors.declines import classify_transport
from payrail.connectors.sandbox_connector import SandboxConnector
from payrail.db.pool import open_pool
from payrail.ops.metrics import REGISTRY
from payrail.recon import worker
from tests.recon.helpers import pay
from tests.vaults import fixed_vault

# The due days of a worker woken at 03:00 on January 2nd.
DAYS = [date(2025, 12, 30), date(2025, 12, 31), date(2026, 1, 1)]
Fetch = Callable[[SandboxConnector, date, str], Awaitable[bytes]]


@pytest.fixture
async def other_worker(database_url: str, clock: ManualClock) -> AsyncIterator[Services]:
    """A second worker process: a pool of its own, so none of its sessions is ours."""
    pool = await open_pool(database_url, min_size=1, max_size=4)
    services = Services(pool=pool, clock=clock, vault=fixed_vault(), connectors=Connectors())
    yield services
    await services.connectors.aclose()
    await pool.close()


@pytest.fixture
def fetched(monkeypatch: pytest.MonkeyPatch) -> list[date]:
    """Every report date fetched from the sandbox, by any worker."""
    found: list[date] = []
    fetch = SandboxConnector.settlement_report

    async def counted(self: SandboxConnector, report_date: date, format: str) -> bytes:
        found.append(report_date)
        return await fetch(self, report_date, format)

    monkeypatch.setattr(SandboxConnector, "settlement_report", counted)
    return found


def hold_first_fetch(monkeypatch: pytest.MonkeyPatch, release: asyncio.Event) -> asyncio.Event:
    """The first fetch waits for `release` (a slow provider); the event returned is set
    once it is waiting."""
    fetch: Fetch = SandboxConnector.settlement_report
    waiting = asyncio.Event()

    async def slow(self: SandboxConnector, report_date: date, format: str) -> bytes:
        if not waiting.is_set():
            waiting.set()
            await release.wait()
        return await fetch(self, report_date, format)

    monkeypatch.setattr(SandboxConnector, "settlement_report", slow)
    return waiting


async def reconciled_days(pool: AsyncConnectionPool, connector: str) -> list[date]:
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT report_date FROM recon_runs WHERE connector_account_id = %s"
                " ORDER BY report_date",
                (connector,),
            )
        ).fetchall()
    return [day for (day,) in rows]


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


async def test_a_report_that_cannot_be_had_is_counted_and_its_later_days_wait(
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
    assert (after or 0) - (before or 0) == 1


async def test_an_account_another_worker_is_reconciling_is_left_to_it(
    pool: AsyncConnectionPool,
    services: Services,
    other_worker: Services,
    clock: ManualClock,
    connector: str,
    fetched: list[date],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While one worker fetches an account's first due day, another passes the account
    by at once (it does not wait, and fetches nothing); the first does every day, oldest
    first."""
    clock.current = datetime(2026, 1, 2, 3, tzinfo=UTC)
    release = asyncio.Event()
    waiting = hold_first_fetch(monkeypatch, release)
    slow = asyncio.create_task(worker.run_once(services))
    await asyncio.wait_for(waiting.wait(), timeout=10)
    assert await asyncio.wait_for(worker.run_once(other_worker), timeout=30) == 0
    assert fetched == []
    release.set()
    assert await slow == 3
    assert fetched == DAYS, "each report fetched once, in order"
    assert await reconciled_days(pool, connector) == DAYS


async def test_a_day_that_fails_leaves_the_later_days_for_the_next_tick(
    pool: AsyncConnectionPool,
    services: Services,
    clock: ManualClock,
    connector: str,
    fetched: list[date],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each run builds on the earlier days' (late rows, timing breaks, the fallback's
    candidates): a day whose report is not out stops its account's later days, and the
    next tick takes them all, oldest first."""
    clock.current = datetime(2026, 1, 2, 3, tzinfo=UTC)
    fetch: Fetch = SandboxConnector.settlement_report

    async def first_not_out(self: SandboxConnector, report_date: date, format: str) -> bytes:
        if report_date == DAYS[0]:
            fetched.append(report_date)
            raise ConnectorError(classify_transport(sent=True, status=404))
        return await fetch(self, report_date, format)

    with monkeypatch.context() as failing:
        failing.setattr(SandboxConnector, "settlement_report", first_not_out)
        assert await worker.run_once(services) == 0
    assert fetched == [DAYS[0]]
    assert await reconciled_days(pool, connector) == []
    fetched.clear()
    assert await worker.run_once(services) == 3
    assert fetched == DAYS
    assert await reconciled_days(pool, connector) == DAYS


async def test_a_day_reconciled_while_a_worker_was_looking_is_not_fetched_again(
    pool: AsyncConnectionPool,
    services: Services,
    other_worker: Services,
    clock: ManualClock,
    connector: str,
    fetched: list[date],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock.current = datetime(2026, 1, 2, 3, tzinfo=UTC)
    seen = await worker.due(services, clock.now().date())
    assert [item.report_date for item in seen] == DAYS
    assert await worker.run_once(other_worker) == 3
    fetched.clear()

    async def as_seen(services: Services, today: date) -> list[worker.Due]:
        return seen

    monkeypatch.setattr(worker, "due", as_seen)
    assert await worker.run_once(services) == 0
    assert fetched == []


async def test_a_day_whose_worker_failed_or_stopped_is_taken_by_another(
    pool: AsyncConnectionPool,
    services: Services,
    other_worker: Services,
    clock: ManualClock,
    connector: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker stopped mid-fetch, and one whose fetch failed, leave no claim behind:
    another worker reconciles the day."""
    clock.current = datetime(2026, 1, 2, 3, tzinfo=UTC)
    release = asyncio.Event()
    waiting = hold_first_fetch(monkeypatch, release)
    stopped = asyncio.create_task(worker.run_once(services))
    await asyncio.wait_for(waiting.wait(), timeout=10)
    stopped.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopped

    async def not_out(self: SandboxConnector, report_date: date, format: str) -> bytes:
        raise ConnectorError(classify_transport(sent=True, status=404))

    with monkeypatch.context() as failing:
        failing.setattr(SandboxConnector, "settlement_report", not_out)
        assert await worker.run_once(services) == 0
    release.set()
    assert await worker.run_once(other_worker) == 3
    assert await reconciled_days(pool, connector) == DAYS


async def test_a_workers_tick_makes_the_months_partitions_ahead(
    pool: AsyncConnectionPool, services: Services, clock: ManualClock
) -> None:
    """The months of the days it may catch up, this one and the next two: made before
    any run needs them, with no connector account to reconcile at all."""
    clock.current = datetime(2026, 1, 2, 3, tzinfo=UTC)
    assert await worker.run_once(services) == 0
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT inhrelid::regclass::text FROM pg_inherits"
                " WHERE inhparent = 'recon_provider_transactions'::regclass ORDER BY 1"
            )
        ).fetchall()
    assert [name for (name,) in rows] == [
        f"recon_provider_transactions_{month}"
        for month in ("2025_12", "2026_01", "2026_02", "2026_03")
    ]


async def test_a_claim_that_cannot_be_released_ends_its_session(
    pool: AsyncConnectionPool,
    services: Services,
    clock: ManualClock,
    connector: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A claim whose release fails (the connection failing, a cancel at shutdown) must
    not stay with an idle pooled connection, where no other worker could take the
    account again: the connection is closed, and its session's locks go with it."""
    clock.current = datetime(2026, 1, 2, 3, tzinfo=UTC)
    monkeypatch.setattr(worker, "_RELEASE", "SELECT no_such_function(%s)")
    with pytest.raises(psycopg.errors.UndefinedFunction):
        await worker.run_once(services)
    monkeypatch.undo()
    assert await reconciled_days(pool, connector) == DAYS
    async with pool.connection() as conn:
        held = await (
            await conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        ).fetchone()
    assert held == (0,)
