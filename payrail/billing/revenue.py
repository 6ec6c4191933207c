"""Revenue recognition: an invoice line's amount moves from deferred to earned revenue as
its service period passes, in proportion to the seconds gone by.

Each run takes a batch of lines not yet fully recognised, sets each line's
`recognized_amount` to what its period's elapsed share makes it, and posts the sum of
the differences per merchant, mode and currency as one ledger transaction, in the same
database transaction: a run that dies posts nothing and updates nothing, and a line is
never recognised twice. A line of a test-clock customer is recognised by the clock's
time. Lines of void invoices are not recognised (voiding takes their revenue back).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from fractions import Fraction
from typing import Any, LiteralString

from psycopg_pool import AsyncConnectionPool

from payrail.billing import postings
from payrail.billing import repository as repo
from payrail.clock import Clock
from payrail.ids import new_id
from payrail.tenants.scope import Scope


def recognized_by(amount: int, start: datetime, end: datetime, at: datetime) -> int:
    """What of `amount` is earned at `at`: its elapsed share, rounded toward zero so that
    nothing is recognised early; all of it once the period is over."""
    if at >= end or end <= start:
        return amount
    if at <= start:
        return 0
    share = Fraction(int((at - start).total_seconds()), int((end - start).total_seconds()))
    earned = abs(amount) * share
    return int(earned) if amount >= 0 else -int(earned)


_DUE: LiteralString = """
SELECT l.seq, l.id, l.merchant_id, l.livemode, l.currency, l.amount, l.recognized_amount,
       l.period_start, l.period_end, coalesce(c.frozen_time, %(now)s) AS at
FROM invoice_lines l
JOIN invoices i ON i.id = l.invoice_id
LEFT JOIN test_clocks c ON c.id = i.test_clock_id
WHERE l.recognized_amount <> l.amount
  AND i.status IN ('open', 'paid', 'uncollectible')
  AND l.period_start < coalesce(c.frozen_time, %(now)s)
  AND l.seq > %(after)s
ORDER BY l.seq
LIMIT %(batch)s
FOR UPDATE OF l SKIP LOCKED
"""


async def recognize(pool: AsyncConnectionPool, clock: Clock, *, batch: int = 1000) -> int:
    """Recognise what is due now; returns the amount of lines moved forward."""
    now = clock.now()
    moved = 0
    after = 0
    while True:
        async with pool.connection() as conn, conn.transaction():
            rows = await repo.select(
                conn,
                _DUE,
                {"now": now, "after": after, "batch": batch},
            )
            if not rows:
                return moved
            after = rows[-1]["seq"]
            totals: dict[tuple[str, bool, str], int] = defaultdict(int)
            updates: list[tuple[int, str]] = []
            for row in rows:
                target = recognized_by(
                    row["amount"], row["period_start"], row["period_end"], row["at"]
                )
                if target != row["recognized_amount"]:
                    totals[(row["merchant_id"], row["livemode"], row["currency"])] += (
                        target - row["recognized_amount"]
                    )
                    updates.append((target, row["id"]))
            await _post(conn, clock, totals)
            async with conn.cursor() as cur:
                await cur.executemany(
                    "UPDATE invoice_lines SET recognized_amount = %s WHERE id = %s", updates
                )
            moved += len(updates)


async def _post(conn: Any, clock: Clock, totals: dict[tuple[str, bool, str], int]) -> None:
    run = new_id("revrec")
    for (merchant_id, livemode, currency), amount in sorted(totals.items()):
        scope = Scope(merchant_id, livemode)
        accounts = await postings.accounts(conn, scope, clock, currency)
        await postings.post(
            conn, scope, clock, postings.recognized(accounts, run, currency, amount)
        )
