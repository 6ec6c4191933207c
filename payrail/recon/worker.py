"""The recon worker: every day, each enabled connector account's settlement report of the
day before is fetched from its provider and reconciled. Days missed (the worker was down,
the report was not out yet) are caught up, up to `CATCH_UP_DAYS` back.

Several workers may run and share the connector accounts: a worker claims an account
before fetching its reports, and passes over one another worker has claimed; it takes
the account's due days oldest first, and stops at a day that fails, since each run
builds on the earlier days' (late rows, timing breaks). Each report is fetched once.
The claim is a session advisory lock on the connection that does the account's work: it
goes when the work is done, or when a dead worker's connection closes. Each tick also
makes the months' partitions of provider transactions ahead of time, so that no run has
to.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg
import structlog

from payrail.api.context import Services
from payrail.connectors.base import ConnectorError
from payrail.errors import PayrailError
from payrail.recon import metrics, partitions
from payrail.recon import repository as repo
from payrail.recon.formats.common import ReportError
from payrail.recon.runs import DEFAULT_RULES, Rules, Source, reconcile_provider
from payrail.tenants.scope import Scope

log = structlog.get_logger(__name__)

CATCH_UP_DAYS = 3
# Months whose partitions are made ahead, after the current one.
PARTITION_MONTHS_AHEAD = 2
# What each provider publishes; the sandbox writes any of them, Stripe's by default, or
# the one a connector account names in its metadata (`settlement_report_format`).
DEFAULT_FORMATS = {"sandbox": "stripe", "stripe": "stripe", "paypal": "paypal", "adyen": "adyen"}


@dataclass(frozen=True, slots=True)
class Due:
    connector_account_id: str
    provider: str
    scope: Scope
    format: str
    report_date: date


async def due(services: Services, today: date) -> list[Due]:
    """The (connector account, day) pairs of the last CATCH_UP_DAYS with no run yet."""
    days = [today - timedelta(days=n) for n in range(CATCH_UP_DAYS, 0, -1)]
    async with services.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT a.id, a.merchant_id, a.livemode, a.provider, a.metadata, d.day::date"
                " FROM connector_accounts a CROSS JOIN unnest(%s::date[]) AS d(day)"
                " WHERE a.enabled AND NOT EXISTS (SELECT 1 FROM recon_runs r"
                "  WHERE r.connector_account_id = a.id AND r.kind = 'provider'"
                "  AND r.report_date = d.day)"
                " ORDER BY d.day, a.seq",
                (days,),
            )
        ).fetchall()
    return [
        Due(
            account,
            provider,
            Scope(merchant, livemode),
            metadata.get("settlement_report_format") or DEFAULT_FORMATS[provider],
            day,
        )
        for account, merchant, livemode, provider, metadata, day in rows
    ]


_RELEASE = "SELECT pg_advisory_unlock(hashtextextended(%s, 0))"


@contextlib.asynccontextmanager
async def _claimed(conn: repo.Conn, connector_account_id: str) -> AsyncIterator[bool]:
    """Whether this worker has the connector account to itself: no other worker holds
    its claim. The claim lasts the block."""
    key = f"recon-connector|{connector_account_id}"
    taken = "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))"
    if (await (await conn.execute(taken, (key,))).fetchone()) != (True,):
        yield False
        return
    try:
        yield True
    finally:
        try:
            await conn.execute(_RELEASE, (key,))
        except BaseException:
            # Not released (cancelled at shutdown, the connection failing): the session
            # must end, or the idle pooled connection would hold the account's claim.
            await conn.close()
            raise


async def _reconcile(
    services: Services, conn: repo.Conn, item: Due, rules: Rules
) -> dict[str, Any] | None:
    """Fetch the day's report and reconcile it, in one transaction; None when it was
    reconciled since it was found due (by another worker, or from a file)."""
    done = await repo.run_for_day(
        conn, item.scope, "provider", item.connector_account_id, item.report_date
    )
    if done is not None:
        return None
    connector = await services.connectors.get(
        conn, item.scope, services.vault, item.connector_account_id
    )
    content = await connector.settlement_report(item.report_date, item.format)
    name = f"{item.connector_account_id}-{item.report_date}.{item.format}.csv"
    with tempfile.TemporaryDirectory(prefix="payrail-recon-") as directory:
        path = Path(directory) / name
        path.write_bytes(content)
        async with conn.transaction():
            run, _ = await reconcile_provider(
                conn,
                item.scope,
                services.clock,
                item.connector_account_id,
                Source(path, item.format, name),
                item.report_date,
                rules,
            )
    return run


async def reconcile_days(services: Services, days: list[Due], rules: Rules = DEFAULT_RULES) -> int:
    """One connector account's due days, oldest first; how many runs this worker made.
    Nothing when another worker has the account. A day that fails leaves the later ones
    for the next tick: each run waits for what the earlier days' runs left open (late
    rows, timing breaks, the fallback rule's candidates), so days are reconciled in order
    or not at all."""
    made = 0
    async with (
        services.pool.connection() as conn,
        _claimed(conn, days[0].connector_account_id) as claimed,
    ):
        if not claimed:
            return 0
        for item in days:
            try:
                run = await _reconcile(services, conn, item, rules)
            except (ConnectorError, ReportError, PayrailError) as error:
                metrics.run_failed(item.provider, type(error).__name__)
                log.warning(
                    "reconciliation run failed",
                    connector_account=item.connector_account_id,
                    report_date=str(item.report_date),
                    error=str(error),
                )
                break
            except Exception:
                metrics.run_failed(item.provider, "error")
                log.exception(
                    "reconciliation run failed",
                    connector_account=item.connector_account_id,
                    report_date=str(item.report_date),
                )
                break
            if run is not None:
                made += 1
    return made


async def _prepare_partitions(services: Services, today: date) -> None:
    """This month's partitions and the next ones, made ahead. A failure (a lock not had
    in time, a privilege) is logged: runs go on, and make a missing month themselves."""
    try:
        await partitions.prepare(
            services.pool,
            today - timedelta(days=CATCH_UP_DAYS),
            partitions.month_start(today, PARTITION_MONTHS_AHEAD),
        )
    except psycopg.Error:
        log.exception("reconciliation partitions not made ahead")


async def run_once(services: Services) -> int:
    """Every due day of every connector account that no other worker has; how many runs
    this worker made. One account's failure (its report not out, a bad file, a day
    already reconciled from another file, the database) is logged and counted, and the
    other accounts go on."""
    today = services.clock.now().date()
    await _prepare_partitions(services, today)
    by_account: dict[str, list[Due]] = {}
    for item in await due(services, today):
        by_account.setdefault(item.connector_account_id, []).append(item)
    done = 0
    for days in by_account.values():
        done += await reconcile_days(services, sorted(days, key=lambda d: d.report_date))
    async with services.pool.connection() as conn:
        await metrics.observe(conn)
    return done


async def run(services: Services, stop: asyncio.Event, *, interval: float = 300.0) -> None:
    """Look for due days every `interval` seconds until `stop` is set."""
    while not stop.is_set():
        try:
            await run_once(services)
        except Exception:
            log.exception("reconciliation pass failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
