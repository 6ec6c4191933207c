"""`payrail billing run`: bill everything due up to a time, with a progress bar and a
summary; for batch runs and backfills beside (or instead of) the billing workers."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from payrail.api.context import Services
from payrail.billing.engine import Engine, PassResult, due_count
from payrail.clock import SystemClock
from payrail.config import Settings
from payrail.db.pool import open_pool
from payrail.vault.envelope import Vault
from payrail.vault.keyring import Keyring


def parse_until(text: str, now: datetime) -> datetime:
    """'now' or an ISO 8601 time (UTC unless it says otherwise); never in the future:
    what has not happened yet is not billed."""
    if text == "now":
        return now
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"--until: '{text}' is not an ISO 8601 time such as 2026-11-01T00:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment > now:
        raise ValueError(f"--until: {moment.isoformat()} is in the future; billing runs up to now")
    return moment


async def run_billing(
    url: str, settings: Settings, until: datetime, console: Console
) -> PassResult:
    pool = await open_pool(url, min_size=1, max_size=4)
    try:
        services = Services(
            pool=pool, clock=SystemClock(), vault=Vault(Keyring.from_env(settings.data_dir))
        )
        engine = Engine(pool, services)
        total = await due_count(pool, until)
        started = time.perf_counter()
        columns = (
            TextColumn("billing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("billing", total=total or None)

            def advance(result: PassResult) -> None:
                progress.advance(task, result.renewed)

            result = await engine.run_until(until, advance)
        await services.connectors.aclose()
        elapsed = time.perf_counter() - started
    finally:
        await pool.close()
    table = Table(title=f"billing run up to {until.isoformat()}")
    table.add_column("step")
    table.add_column("count", justify="right")
    table.add_row("subscription steps (renewals, trial ends, cancels)", str(result.renewed))
    table.add_row("collection attempts from the queue", str(result.collected))
    table.add_row("dunning final actions", str(result.final_actions))
    table.add_row("seconds", f"{elapsed:.1f}")
    console.print(table)
    return result
