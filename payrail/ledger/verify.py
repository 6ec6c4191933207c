"""`payrail ledger verify`: recompute every balance from its entries and compare."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection

CHUNK = 1000

DRIFT = """
WITH accounts AS (
    SELECT id FROM ledger_accounts WHERE id > %(after)s ORDER BY id LIMIT %(limit)s
), stored AS (
    SELECT b.account_id, sum(b.debits_pending) AS dp, sum(b.credits_pending) AS cp,
           sum(b.debits_posted) AS dpo, sum(b.credits_posted) AS cpo
    FROM ledger_balances b JOIN accounts a ON a.id = b.account_id
    GROUP BY b.account_id
), computed AS (
    SELECT e.account_id,
           coalesce(sum(amount) FILTER (WHERE direction = 'debit' AND phase = 'pending'), 0) dp,
           coalesce(sum(amount) FILTER (WHERE direction = 'credit' AND phase = 'pending'), 0) cp,
           coalesce(sum(amount) FILTER (WHERE direction = 'debit' AND phase = 'posted'), 0) dpo,
           coalesce(sum(amount) FILTER (WHERE direction = 'credit' AND phase = 'posted'), 0) cpo
    FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
    GROUP BY e.account_id
)
SELECT a.id, s.dp, s.cp, s.dpo, s.cpo,
       coalesce(c.dp, 0), coalesce(c.cp, 0), coalesce(c.dpo, 0), coalesce(c.cpo, 0)
FROM accounts a
LEFT JOIN stored s ON s.account_id = a.id
LEFT JOIN computed c ON c.account_id = a.id
ORDER BY a.id
"""

# The same rules PostgreSQL checks at commit, over the whole ledger: they catch what a
# disabled trigger or a restored dump could have let through.
TRANSACTION_PROBLEMS = """
SELECT t.id, 'fewer than two entries'
FROM ledger_transactions t
WHERE (SELECT count(*) FROM ledger_entries e WHERE e.transaction_id = t.id) < 2
UNION ALL
SELECT transaction_id, 'unbalanced in ' || currency || ' (' || phase || ')'
FROM ledger_entries
GROUP BY transaction_id, currency, phase
HAVING sum(CASE direction WHEN 'debit' THEN amount ELSE -amount END) <> 0
UNION ALL
SELECT e.transaction_id, 'pending amount ' || sum(e.amount) || ' on ' || e.account_id
FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
WHERE e.phase = 'pending'
GROUP BY e.transaction_id, e.account_id, e.direction, t.status
HAVING sum(e.amount) < 0 OR (t.status <> 'pending' AND sum(e.amount) <> 0)
UNION ALL
SELECT DISTINCT e.transaction_id, 'posted entries on a ' || t.status || ' transaction'
FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
WHERE e.phase = 'posted' AND t.status <> 'posted'
LIMIT 100
"""


@dataclass
class VerifyReport:
    accounts: int = 0
    drifted: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    broken: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.drifted and not self.broken


async def verify(
    conn: AsyncConnection[Any], progress: Callable[[int, int], None] | None = None
) -> VerifyReport:
    """Compare stored balances with sums of entries, account by account, in chunks; then
    check every transaction against the ledger's rules."""
    report = VerifyReport()
    total = (await (await conn.execute("SELECT count(*) FROM ledger_accounts")).fetchone() or [0])[
        0
    ]
    after = ""
    while True:
        rows = await (await conn.execute(DRIFT, {"after": after, "limit": CHUNK})).fetchall()
        if not rows:
            break
        for account_id, *sums in rows:
            stored, computed = tuple(sums[:4]), tuple(sums[4:])
            if stored != computed:
                report.drifted.append((account_id, stored, computed))
        report.accounts += len(rows)
        after = rows[-1][0]
        if progress is not None:
            progress(report.accounts, total)
    for transaction_id, problem in await (await conn.execute(TRANSACTION_PROBLEMS)).fetchall():
        report.broken.append((transaction_id, problem))
    return report
