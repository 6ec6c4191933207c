"""Reconciliation's metrics: open breaks by stage and type, when each provider's stalest
connector account last reconciled, and failed runs. Gauges are set from the database by
every recon worker (runs made from the command line count too), so alert rules take their
maximum (or minimum) across processes. Labels are bounded: provider names, break types."""

from __future__ import annotations

from typing import Any, get_args

from prometheus_client import Counter, Gauge
from psycopg import AsyncConnection

from payrail.ops.metrics import REGISTRY
from payrail.recon.breaks import BreakType

Conn = AsyncConnection[Any]

open_breaks = Gauge(
    "payrail_recon_open_breaks",
    "Reconciliation breaks open (live mode), by stage (provider, bank) and type.",
    ["stage", "type"],
    registry=REGISTRY,
)
last_success = Gauge(
    "payrail_recon_last_success_timestamp_seconds",
    "When the provider's connector account that reconciled least recently last did"
    " (live mode, enabled accounts; 0: never).",
    ["provider"],
    registry=REGISTRY,
)
runs_failed = Counter(
    "payrail_recon_run_failures_total",
    "Scheduled reconciliation runs that failed: the report could not be fetched or read.",
    ["provider", "reason"],
    registry=REGISTRY,
)

_TYPES = get_args(BreakType)


# Providers set before: one whose accounts are all disabled since is dropped, not left at
# its last figure for the stale alert to fire on.
_providers: set[str] = set()


def run_failed(provider: str, reason: str) -> None:
    runs_failed.labels(provider, reason).inc()


async def observe(conn: Conn) -> None:
    """Set the gauges from the database."""
    counts = {(stage, kind): 0 for stage in ("provider", "bank") for kind in _TYPES}
    for stage, kind, count in await (
        await conn.execute(
            "SELECT stage, type, count(*) FROM recon_breaks WHERE status = 'open' AND livemode"
            " GROUP BY 1, 2"
        )
    ).fetchall():
        counts[(stage, kind)] = count
    for (stage, kind), count in counts.items():
        open_breaks.labels(stage, kind).set(count)
    seen: set[str] = set()
    for provider, oldest in await (
        await conn.execute(
            "SELECT a.provider, min(coalesce(extract(epoch FROM r.last), 0))"
            " FROM connector_accounts a LEFT JOIN LATERAL (SELECT max(created_at) AS last"
            "  FROM recon_runs WHERE connector_account_id = a.id AND kind = 'provider') r"
            "  ON true WHERE a.enabled AND a.livemode GROUP BY 1"
        )
    ).fetchall():
        last_success.labels(provider).set(float(oldest))
        seen.add(provider)
    for gone in _providers - seen:
        last_success.remove(gone)
    _providers.clear()
    _providers.update(seen)
