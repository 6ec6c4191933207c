"""`payrail demo`'s reconciliation: the sandbox's settlement report of today, with a few
of a real provider's slips injected (a row dropped, an amount and a fee changed, a row
twice), reconciled against the ledger the demo's payments and subscriptions wrote."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from rich.console import Console
from rich.table import Table

from payrail.clock import SystemClock
from payrail.recon import report
from payrail.recon.runs import Source, reconcile_provider
from payrail.tenants.scope import Scope

# What the sandbox is asked to get wrong in today's report.
DISCREPANCIES = {"seed": 20261122, "drop": 1, "amount": 1, "fee": 1, "duplicate": 1}


@dataclass
class Reconciled:
    run: dict[str, Any] | None = None
    breaks: list[dict[str, Any]] = field(default_factory=list)
    problem: str | None = None


async def _reconcile(database_url: str, connector: str, path: Path) -> Reconciled:
    clock = SystemClock()
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        found = await (
            await conn.execute(
                "SELECT merchant_id, livemode FROM connector_accounts WHERE id = %s", (connector,)
            )
        ).fetchone()
        assert found is not None
        scope = Scope(*found)
        run, _ = await reconcile_provider(
            conn, scope, clock, connector, Source(path, "stripe", path.name), clock.now().date()
        )
        await conn.commit()
        rows = await (
            await conn.execute(
                "SELECT type, reference, expected_net, reported_net FROM recon_breaks"
                " WHERE opened_run_id = %s ORDER BY seq",
                (run["id"],),
            )
        ).fetchall()
    breaks = [
        {"type": t, "reference": r, "expected_net": e, "reported_net": n} for t, r, e, n in rows
    ]
    return Reconciled(run, breaks)


def run(api: httpx.Client, psp: httpx.Client, database_url: str) -> Reconciled:
    accounts = api.get("/v1/connector_accounts", params={"limit": 100}).json()["data"]
    sandbox = [a["id"] for a in accounts if a["provider"] == "sandbox"]
    if not sandbox:
        return Reconciled(problem="no sandbox connector account to reconcile")
    asked = psp.post("/sandbox/report_discrepancies", json=DISCREPANCIES)
    today = SystemClock().now().date().isoformat()
    got = psp.get("/sandbox/settlement_reports", params={"date": today, "format": "stripe"})
    psp.post("/sandbox/report_discrepancies", json={"seed": 0})
    if asked.status_code != 200 or got.status_code != 200:
        return Reconciled(problem=f"the sandbox gave no report: HTTP {got.status_code}")
    with tempfile.TemporaryDirectory(prefix="payrail-demo-") as directory:
        path = Path(directory) / f"sandbox-{today}.stripe.csv"
        path.write_bytes(got.content)
        return asyncio.run(_reconcile(database_url, sandbox[0], path))


def show(console: Console, done: Reconciled) -> None:
    if done.run is None:
        console.print(f"[yellow]reconciliation:[/yellow] {done.problem}")
        return
    summary = Table(
        "", "count", "amount (minor units)", title="reconciliation: today's sandbox report"
    )
    for row in report.summary_rows(done.run):
        summary.add_row(*row)
    console.print(summary)
    found = Table(
        "break", "reference", "payrail (net)", "provider (net)", title="what reconciliation found"
    )
    for b in done.breaks:
        found.add_row(b["type"], b["reference"], str(b["expected_net"]), str(b["reported_net"]))
    console.print(found)
    console.print(
        "The sandbox dropped a row (a timing break: late until it arrives, missing after"
        " three days), changed an amount and a fee, and reported one row twice. The ledger"
        " moved each difference to suspense, so it shows what the provider holds."
    )
