"""The dunning backlog as gauges: the failed invoice payments dunning is still working on.

The backlog is the open invoices charged automatically whose payment failed at least once
and that dunning has not finished with: a retry is scheduled (`next_payment_attempt`) or
under way (`payment_intent_id`), or the final action is still to come (`final_action_at`,
while the customer is asked for another card). An invoice left open by the final action
(`leave_past_due`, `mark_unpaid`) is no longer dunning's work: kept, it would hold the age
alert up for good. Invoices on a test clock live on simulated time and are left out.

Every billing worker sets the same figures from the database, so the alert rules take
their maximum across processes (docs/alerts.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from payrail.ops import metrics

Conn = AsyncConnection[Any]

# The three IS NOT NULL conditions are the predicates of migration 0014's partial indexes
# (invoices_collect, invoices_collecting, invoices_final_action): a BitmapOr of them reads
# only the invoices in dunning, never the whole table.
_BACKLOG = """
SELECT i.livemode, i.currency, count(*), sum(i.amount_remaining)::bigint,
       min(f.first_failed), min(least(i.next_payment_attempt, i.final_action_at))
FROM invoices i
CROSS JOIN LATERAL (
    SELECT min(a.attempted_at) AS first_failed
    FROM invoice_payment_attempts a
    WHERE a.invoice_id = i.id AND a.outcome = 'failed'
) f
WHERE i.status = 'open'
  AND i.collection_method = 'charge_automatically'
  AND i.attempt_count > 0
  AND i.test_clock_id IS NULL
  AND (i.next_payment_attempt IS NOT NULL OR i.payment_intent_id IS NOT NULL
       OR i.final_action_at IS NOT NULL)
  AND f.first_failed IS NOT NULL
GROUP BY i.livemode, i.currency
"""

# Label sets set before: one that drained is set to 0 rather than left at its last value.
_seen: set[tuple[str, str]] = set()


def _seconds_since(moment: datetime | None, now: datetime) -> float:
    return max((now - moment).total_seconds(), 0.0) if moment is not None else 0.0


async def observe_dunning_backlog(conn: Conn, now: datetime) -> None:
    """Set the backlog gauges from the database as of `now` (the billing clock's time)."""
    cur = await conn.execute(_BACKLOG)
    counted: dict[tuple[str, str], tuple[int, int]] = {}
    first_failed: dict[str, datetime] = {}
    first_due: dict[str, datetime] = {}
    for livemode, currency, invoices, amount, failed, due in await cur.fetchall():
        mode = metrics.mode(livemode)
        counted[(currency.lower(), mode)] = (invoices, amount)
        first_failed[mode] = min(failed, first_failed.get(mode, failed))
        if due is not None:
            first_due[mode] = min(due, first_due.get(mode, due))
    for key in _seen - counted.keys():
        metrics.dunning_backlog_invoices.labels(*key).set(0)
        metrics.dunning_backlog_amount.labels(*key).set(0)
    for key, (invoices, amount) in counted.items():
        metrics.dunning_backlog_invoices.labels(*key).set(invoices)
        metrics.dunning_backlog_amount.labels(*key).set(amount)
    _seen.update(counted)
    for mode in ("live", "test"):
        metrics.dunning_backlog_oldest_age_seconds.labels(mode).set(
            _seconds_since(first_failed.get(mode), now)
        )
        metrics.dunning_overdue_seconds.labels(mode).set(_seconds_since(first_due.get(mode), now))
