"""`payrail recon run` and `payrail recon bank`: reconcile a report file from the command
line, print the run's summary as a table, and optionally write it as HTML and CSV."""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

from payrail.clock import Clock
from payrail.errors import PayrailError
from payrail.recon import report, service
from payrail.recon.formats.common import ReportError
from payrail.recon.runs import Rules, Source, reconcile_bank, reconcile_provider
from payrail.tenants.scope import Scope


class CommandError(Exception):
    """A mistake in the command's arguments or file; printed, exit status 2."""


def report_day(text: str | None, clock: Clock) -> date:
    """--date, or yesterday: a day's report comes out the next day."""
    if text is None:
        return clock.now().date() - timedelta(days=1)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--date: '{text}' is not a date such as 2026-11-21") from None


async def connector_scope(
    conn: psycopg.AsyncConnection[Any], connector: str | None
) -> tuple[str, Scope]:
    """The connector account to reconcile and its merchant and mode; without --connector,
    the only one there is."""
    if connector is None:
        rows = await (
            await conn.execute("SELECT id, merchant_id, livemode FROM connector_accounts LIMIT 2")
        ).fetchall()
        if len(rows) != 1:
            raise CommandError(
                "--connector: name the connector account (ca_...) whose report this is"
                + ("; there is none yet" if not rows else "")
            )
    else:
        rows = await (
            await conn.execute(
                "SELECT id, merchant_id, livemode FROM connector_accounts WHERE id = %s",
                (connector,),
            )
        ).fetchall()
        if not rows:
            raise CommandError(f"--connector: no connector account {connector}")
    found, merchant, livemode = rows[0]
    return str(found), Scope(str(merchant), bool(livemode))


async def run_file(
    url: str,
    clock: Clock,
    *,
    provider: str,
    path: Path,
    report_date: date,
    connector: str | None,
    merchant: str | None,
    livemode: bool,
) -> tuple[dict[str, Any], bool, float]:
    """Reconcile `path` in one transaction: the run, whether it is new, and seconds taken."""
    source = Source(path, provider, str(path))
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(url) as conn:
        try:
            if provider == "bank":
                if merchant is None:
                    raise CommandError("--merchant: a bank statement is a merchant's (mer_...)")
                known = "SELECT 1 FROM merchants WHERE id = %s"
                if await (await conn.execute(known, (merchant,))).fetchone() is None:
                    raise CommandError(f"--merchant: no merchant {merchant}")
                run, made = await reconcile_bank(
                    conn, Scope(merchant, livemode), clock, source, report_date, Rules()
                )
            else:
                connector_id, scope = await connector_scope(conn, connector)
                run, made = await reconcile_provider(
                    conn, scope, clock, connector_id, source, report_date, Rules()
                )
        except (ReportError, PayrailError) as error:
            await conn.rollback()
            raise CommandError(str(error)) from None
        await conn.commit()
    return run, made, time.perf_counter() - started


def show(console: Console, run: dict[str, Any], made: bool, seconds: float) -> None:
    title = (
        f"reconciliation run {run['id']}: {run['report_date']},"
        f" {run['report']['rows']} rows of {run['report']['file_name']}"
    )
    if not made:
        title += " (reconciled before; nothing changed)"
    table = Table("", "count", "amount (minor units)", title=title)
    for row in report.summary_rows(run):
        table.add_row(*row)
    console.print(table)
    console.print(f"{seconds:.1f} s")


async def run_breaks(url: str, run: dict[str, Any]) -> list[dict[str, Any]]:
    """The breaks the run opened, oldest first."""
    scope = Scope(run["merchant"], run["livemode"])
    async with await psycopg.AsyncConnection.connect(url) as conn:
        ids = [
            row[0]
            for row in await (
                await conn.execute(
                    "SELECT id FROM recon_breaks WHERE opened_run_id = %s ORDER BY seq",
                    (run["id"],),
                )
            ).fetchall()
        ]
        found = await service.list_breaks(conn, scope, ids)
    return found[::-1]


def write_reports(
    run: dict[str, Any], breaks: list[dict[str, Any]], html: Path | None, csv: Path | None
) -> None:
    if html is not None:
        html.write_text(report.page(run, breaks), encoding="utf-8")
    if csv is not None:
        csv.write_text(report.breaks_csv(breaks), encoding="utf-8")
