"""Matching a report's rows to payrail's expectations, in SQL, set-based: a statement per
rule over the whole report, so that a million rows cost a few hash joins, not a million
round trips.

A run reads its report once, into a temporary table of its own (`recon_run_rows`,
dropped at the run's COMMIT): the report's rows and the earlier reports' rows still
unmatched, each with the expectation it matched, if any. Every later question of the run
(which rows matched nothing, which of the day's expectations the provider did not
report, what fees and payouts the report carries) is asked of that table, which holds
this run's rows only, not every match ever made: a run on the 30th costs what one on the
1st did.

The report's rows were copied in by the same transaction and have no statistics yet, so
the planner would take a large report for a few rows and probe the expectations' index
once per row. They are first read as they are (by report id) into a staging table,
which is ANALYZEd, and only then joined to the expectations: the planner sees both
sides' true sizes, and hashes a large report where it probes the index for a small one,
or for a connector whose years of expectations outweigh a day's report.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from payrail.recon.repository import Conn, utc_midnight
from payrail.tenants.scope import Scope

# A run of a report of more rows than this gets BULK_WORK_MEM for its match: a million
# rows' hash table fits, where the default spills to disk in batches.
BULK_ROWS = 20_000
BULK_WORK_MEM = "256MB"

Totals = list[tuple[str, int, int]]  # (currency, pairs, amount) of what matched


@dataclass(frozen=True, slots=True)
class Report:
    """What a run matches: one report's rows of a day, for a connector account, and the
    earlier reports' rows still unmatched since `since`."""

    scope: Scope
    run_id: str
    report_id: str
    connector_account_id: str
    day: date
    since: date
    rows: int

    def params(self) -> dict[str, Any]:
        return {
            "merchant": self.scope.merchant_id,
            "mode": self.scope.livemode,
            "run": self.run_id,
            "report": self.report_id,
            "connector": self.connector_account_id,
            "day": self.day,
            "since": self.since,
        }


@asynccontextmanager
async def _memory(conn: Conn, rows: int) -> AsyncIterator[None]:
    """BULK_WORK_MEM for the statements inside when the report is large; restored after.
    A failure aborts the transaction (or its savepoint), which restores it too."""
    if rows <= BULK_ROWS:
        yield
        return
    cur = await conn.execute("SELECT current_setting('work_mem')")
    was = await cur.fetchone()
    assert was is not None
    await conn.execute("SELECT set_config('work_mem', %s, true)", (BULK_WORK_MEM,))
    yield
    await conn.execute("SELECT set_config('work_mem', %s, true)", was)


_COLUMNS = sql.SQL(
    "p.id, p.kind, p.reference, p.currency, p.amount, p.fee, p.net, p.occurred_at,"
    " p.report_date, p.line, p.payout_reference, p.repeat_of_line"
)
_KINDS = sql.SQL("('charge', 'refund', 'dispute', 'dispute_reversal')")

# Rows of earlier reports that matched nothing yet (their missing_internal breaks are
# open), within the lookback: tried again by every run.
_EARLIER_ROWS = sql.SQL("""
    SELECT {columns}
    FROM recon_breaks b
    JOIN recon_provider_transactions p ON p.id = b.provider_transaction_id
      AND p.report_date BETWEEN %(since)s AND %(day)s
    WHERE b.merchant_id = %(merchant)s AND b.livemode = %(mode)s
      AND b.connector_account_id = %(connector)s AND b.status = 'open'
      AND b.type IN ('missing_internal', 'status_mismatch') AND b.stage = 'provider'
      AND NOT EXISTS (SELECT 1 FROM recon_matches m WHERE m.provider_transaction_id = p.id)
""").format(columns=_COLUMNS)

_REPORT_ROWS = sql.SQL(
    "SELECT {columns} FROM recon_provider_transactions p"
    " WHERE p.report_id = %(report)s AND p.report_date = %(day)s"
).format(columns=_COLUMNS)

# The run's rows as they are, and which of them may match: of the rows of a kind and
# reference, only the first, an earlier report's before this one's, and in a report the
# first line (a row that repeats one carries repeat_of_line, from the COPY). The few
# earlier rows are compared with each other and with the report's; the report's million
# are never compared with themselves.
_STAGED = sql.SQL("""
CREATE TEMP TABLE recon_run_staged ON COMMIT DROP AS
WITH earlier AS MATERIALIZED ({earlier})
SELECT q.*, true AS earlier, NOT EXISTS (SELECT 1 FROM earlier r
    WHERE r.kind = q.kind AND r.reference = q.reference
    AND (r.report_date, r.line) < (q.report_date, q.line)) AS first
FROM earlier q
UNION ALL
SELECT c.*, false, c.repeat_of_line IS NULL AND c.kind IN {kinds}
    AND NOT EXISTS (SELECT 1 FROM earlier r
        WHERE r.kind = c.kind AND r.reference = c.reference)
FROM ({report}) c
""").format(earlier=_EARLIER_ROWS, report=_REPORT_ROWS, kinds=_KINDS)

# Each of the run's rows with the expectation its kind and reference name.
_RUN_ROWS = sql.SQL("""
CREATE TEMP TABLE recon_run_rows ON COMMIT DROP AS
SELECT r.id, r.kind, r.reference, r.currency, r.amount, r.fee, r.net, r.occurred_at,
       r.line, r.payout_reference, r.earlier,
       e.id AS expectation_id, e.currency AS expected_currency,
       e.amount AS expected_amount,
       CASE WHEN e.id IS NOT NULL THEN 'reference' END AS rule,
       (r.currency, r.amount, r.fee) IS DISTINCT FROM (e.currency, e.amount, e.fee)
           AS differs
FROM pg_temp.recon_run_staged r
LEFT JOIN settlement_expectations e ON r.first AND e.connector_account_id = %(connector)s
    AND e.kind = r.kind AND e.provider_reference = r.reference
""")


async def _insert_matches(conn: Conn, report: Report, rule: str) -> Totals:
    """The run's pairs of `rule` into recon_matches; their totals per currency."""
    await conn.execute(
        "INSERT INTO recon_matches (provider_transaction_id, expectation_id, merchant_id,"
        " run_id, rule, differs)"
        " SELECT id, expectation_id, %(merchant)s, %(run)s, rule, differs"
        " FROM recon_run_rows WHERE rule = %(rule)s",
        report.params() | {"rule": rule},
    )
    cur = await conn.execute(
        "SELECT expected_currency, count(*), sum(expected_amount)::bigint"
        " FROM recon_run_rows WHERE rule = %s GROUP BY 1 ORDER BY 1",
        (rule,),
    )
    return [(str(c), int(n), int(a)) for c, n, a in await cur.fetchall()]


async def match_by_reference(conn: Conn, report: Report) -> Totals:
    """Each candidate row to the expectation with its reference and kind. An expectation
    matched before (by an earlier report) stays as it was: the row is left unmatched, a
    duplicate. Leaves the run's rows (recon_run_rows) for the steps after."""
    params = report.params()
    # Left by an earlier run in the same transaction (tests run several in one).
    await conn.execute("DROP TABLE IF EXISTS pg_temp.recon_run_staged, pg_temp.recon_run_rows")
    async with _memory(conn, report.rows):
        await conn.execute(_STAGED, params)
        await conn.execute("ANALYZE pg_temp.recon_run_staged")
        await conn.execute(_RUN_ROWS, params)
    await conn.execute("DROP TABLE pg_temp.recon_run_staged")
    await conn.execute("ANALYZE pg_temp.recon_run_rows")
    try:
        # An expectation is matched once, which recon_matches' unique index holds. An
        # earlier report's match of one is rare (the provider reported a movement
        # twice): the insert assumes none, and only when the index says otherwise are
        # the pairs checked one by one and the insert made again.
        async with conn.transaction():
            return await _insert_matches(conn, report, "reference")
    except psycopg.errors.UniqueViolation:
        pass
    await conn.execute(
        "UPDATE recon_run_rows x SET expectation_id = NULL, rule = NULL"
        " WHERE x.rule IS NOT NULL"
        " AND EXISTS (SELECT 1 FROM recon_matches m WHERE m.expectation_id = x.expectation_id)"
    )
    return await _insert_matches(conn, report, "reference")


async def match_by_amount_window(conn: Conn, report: Report, window: timedelta) -> Totals:
    """The fallback rule, for payrail's movements the provider gave no id for: a row
    whose reference payrail does not know, of the same kind, currency and amount within
    `window` of each other, taken only when the pair is the sole candidate on both sides,
    so that a guess never pairs the wrong two. The expectations it looks at are the
    report day's still unmatched, and the older ones still waiting (open timing
    breaks)."""
    params = report.params() | {
        "window": window,
        "from": utc_midnight(report.day),
        "to": utc_midnight(report.day + timedelta(days=1)),
    }
    await conn.execute(
        sql.SQL("""
        WITH p AS (
            SELECT u.* FROM recon_run_rows u WHERE u.rule IS NULL AND u.kind IN {kinds}
            AND NOT EXISTS (SELECT 1 FROM settlement_expectations k
                WHERE k.connector_account_id = %(connector)s AND k.kind = u.kind
                AND k.provider_reference = u.reference)
        ), e AS (
            SELECT e.id, e.kind, e.currency, e.amount, e.fee, e.occurred_at
            FROM settlement_expectations e
            WHERE e.connector_account_id = %(connector)s
              AND e.occurred_at >= %(from)s AND e.occurred_at < %(to)s
              AND e.provider_reference IS NULL
              AND NOT EXISTS (SELECT 1 FROM recon_matches m WHERE m.expectation_id = e.id)
            UNION ALL
            SELECT e.id, e.kind, e.currency, e.amount, e.fee, e.occurred_at
            FROM recon_breaks b JOIN settlement_expectations e ON e.id = b.expectation_id
            WHERE b.merchant_id = %(merchant)s AND b.livemode = %(mode)s
              AND b.connector_account_id = %(connector)s AND b.status = 'open'
              AND b.type = 'timing' AND b.stage = 'provider'
              AND e.provider_reference IS NULL
              AND NOT EXISTS (SELECT 1 FROM recon_matches m WHERE m.expectation_id = e.id)
        ), candidates AS (
            SELECT p.id, e.id AS expectation_id, e.currency, e.amount,
                   p.fee IS DISTINCT FROM e.fee AS differs,
                   count(*) OVER (PARTITION BY p.id) AS for_p,
                   count(*) OVER (PARTITION BY e.id) AS for_e
            FROM p JOIN e ON e.kind = p.kind AND e.currency = p.currency
              AND e.amount = p.amount
              AND e.occurred_at BETWEEN p.occurred_at - %(window)s
                                    AND p.occurred_at + %(window)s
        )
        UPDATE recon_run_rows x SET expectation_id = c.expectation_id,
            expected_currency = c.currency, expected_amount = c.amount,
            rule = 'amount_window', differs = c.differs
        FROM candidates c WHERE c.id = x.id AND c.for_p = 1 AND c.for_e = 1
        """).format(kinds=_KINDS),
        params,
    )
    return await _insert_matches(conn, report, "amount_window")


async def differing_pairs(conn: Conn, run_id: str) -> list[dict[str, Any]]:
    """The run's matches whose two sides differ in currency, amount or fee."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT p.id AS provider_transaction_id, e.id AS expectation_id, p.reference,"
        " e.currency AS expected_currency, e.amount AS expected_amount,"
        " e.fee AS expected_fee, p.currency AS reported_currency,"
        " p.amount AS reported_amount, p.fee AS reported_fee, p.net AS reported_net"
        " FROM recon_matches m"
        " JOIN recon_provider_transactions p ON p.id = m.provider_transaction_id"
        " JOIN settlement_expectations e ON e.id = m.expectation_id"
        " WHERE m.run_id = %s AND m.differs ORDER BY p.report_date, p.line",
        (run_id,),
    )
    return await cur.fetchall()


async def unmatched_rows(conn: Conn, report: Report) -> list[dict[str, Any]]:
    """The report's rows that matched nothing, with what payrail knows of each reference:
    whether a row with it is matched already, and whether payrail has the reference in
    another kind or in a state that moved no money."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT u.id, u.kind, u.reference, u.currency, u.net, u.payout_reference,"
        " EXISTS (SELECT 1 FROM settlement_expectations e"
        "  WHERE e.connector_account_id = %(connector)s"
        "  AND e.provider_reference = u.reference AND e.kind = u.kind"
        "  AND EXISTS (SELECT 1 FROM recon_matches m WHERE m.expectation_id = e.id"
        "   AND m.provider_transaction_id <> u.id)) AS duplicate_of_matched,"
        " (EXISTS (SELECT 1 FROM settlement_expectations e"
        "   WHERE e.connector_account_id = %(connector)s"
        "   AND e.provider_reference = u.reference AND e.kind <> u.kind)"
        "  OR EXISTS (SELECT 1 FROM charges c WHERE c.connector_account_id = %(connector)s"
        "   AND c.provider_id = u.reference)"
        "  OR EXISTS (SELECT 1 FROM refunds r WHERE r.provider_id = u.reference"
        "   AND EXISTS (SELECT 1 FROM charges c WHERE c.id = r.charge_id"
        "    AND c.connector_account_id = %(connector)s))) AS known_elsewhere"
        " FROM recon_run_rows u WHERE u.rule IS NULL AND NOT u.earlier ORDER BY u.line",
        report.params(),
    )
    return await cur.fetchall()


async def earlier_rows_to_change(conn: Conn, report: Report) -> list[dict[str, Any]]:
    """The open breaks of earlier reports' rows (missing_internal, status_mismatch) that
    the run changes, locked: the row matched (payrail has its record now), or another row
    of its kind and reference did, which makes it a second copy."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "WITH found AS (SELECT x.id, x.expectation_id IS NOT NULL AS arrived,"
        "  EXISTS (SELECT 1 FROM settlement_expectations e"
        "   JOIN recon_matches m ON m.expectation_id = e.id"
        "   WHERE e.connector_account_id = %(connector)s AND e.kind = x.kind"
        "   AND e.provider_reference = x.reference AND m.provider_transaction_id <> x.id)"
        "  AS duplicate"
        " FROM recon_run_rows x WHERE x.earlier)"
        " SELECT b.*, f.arrived, f.duplicate FROM found f"
        " JOIN recon_breaks b ON b.provider_transaction_id = f.id"
        " WHERE (f.arrived OR f.duplicate) AND b.status = 'open'"
        "  AND b.type IN ('missing_internal', 'status_mismatch')"
        " ORDER BY b.seq FOR UPDATE OF b",
        report.params(),
    )
    return await cur.fetchall()


async def unexpected(conn: Conn, report: Report) -> list[dict[str, Any]]:
    """The report day's expectations no provider row matched: what the provider has not
    (yet) reported. Earlier days' were looked at by their own runs, and wait as timing
    breaks."""
    cur = conn.cursor(row_factory=dict_row)
    async with _memory(conn, report.rows):
        await cur.execute(
            # This run's pairs first, from its own table; what is left (a day's few) is
            # looked up in recon_matches by its unique index, for a match an earlier report
            # made. OFFSET 0 keeps the two steps in that order: the planner would otherwise
            # hash every match ever made.
            "SELECT e.* FROM (SELECT e.id, e.provider_reference, e.object_id, e.currency,"
            "  e.amount, e.fee FROM settlement_expectations e"
            "  WHERE e.connector_account_id = %s AND e.occurred_at >= %s AND e.occurred_at < %s"
            "  AND NOT EXISTS (SELECT 1 FROM recon_run_rows x WHERE x.expectation_id = e.id)"
            "  OFFSET 0) e"
            " WHERE NOT EXISTS (SELECT 1 FROM recon_matches m WHERE m.expectation_id = e.id)"
            " ORDER BY e.id",
            (
                report.connector_account_id,
                utc_midnight(report.day),
                utc_midnight(report.day + timedelta(days=1)),
            ),
        )
    return await cur.fetchall()


async def fees_and_payouts(conn: Conn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The report's fee and payout rows per currency, kind and payout (its payout
    reference, or its own when it has none); and the net per currency of the rows that
    name each payout."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT currency, kind, coalesce(nullif(payout_reference, ''), reference) AS key,"
        " count(*) AS rows, sum(net) AS net FROM recon_run_rows"
        " WHERE NOT earlier AND kind IN ('fee', 'payout', 'payout_reversal')"
        " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    )
    listed = await cur.fetchall()
    await cur.execute(
        "SELECT currency, payout_reference AS key, count(*) AS rows, sum(net) AS net"
        " FROM recon_run_rows WHERE NOT earlier AND payout_reference <> ''"
        "  AND kind NOT IN ('payout', 'payout_reversal')"
        " GROUP BY 1, 2 ORDER BY 1, 2"
    )
    return listed, await cur.fetchall()
