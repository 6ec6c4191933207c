"""Reconciliation's SQL. Matching is set-based: a statement per rule over the whole
report, so that a million rows cost a few hash joins, not a million round trips."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from payrail.recon.formats.common import BankLine, ProviderRow
from payrail.tenants.scope import Scope

Conn = AsyncConnection[Any]

_ROW_COLUMNS = (
    "report_id, report_date, merchant_id, livemode, connector_account_id, line, kind,"
    " category, reference, payment_reference, merchant_reference, payout_reference,"
    " currency, amount, fee, net, occurred_at"
)


async def ensure_partition(conn: Conn, report_date: date) -> None:
    """The month's partition of provider transactions, made the first time it is needed.
    Only then is the month's lock taken (and held to the end of the run's transaction):
    runs of a month whose partition exists never wait for each other."""
    first = report_date.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    name = f"recon_provider_transactions_{first:%Y_%m}"
    exists = "SELECT to_regclass(%s) IS NOT NULL"
    if (await (await conn.execute(exists, (name,))).fetchone()) == (True,):
        return
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (name,))
    await conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF recon_provider_transactions"
            " FOR VALUES FROM ({}) TO ({})"
        ).format(sql.Identifier(name), sql.Literal(first), sql.Literal(following))
    )


async def copy_rows(
    conn: Conn,
    scope: Scope,
    report_id: str,
    report_date: date,
    connector_account_id: str,
    rows: Iterable[ProviderRow],
) -> int:
    """Stream the rows into their partition through COPY; how many there were."""
    head = (report_id, report_date, scope.merchant_id, scope.livemode, connector_account_id)
    count = 0
    async with conn.cursor().copy(
        f"COPY recon_provider_transactions ({_ROW_COLUMNS}) FROM STDIN"
    ) as copy:
        for row in rows:
            await copy.write_row(head + row)
            count += 1
    return count


async def reports_by_hash(conn: Conn, scope: Scope, digest: str) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT r.*, run.id AS run_id FROM recon_reports r JOIN recon_runs run"
        " ON run.report_id = r.id WHERE r.merchant_id = %s AND r.livemode = %s"
        " AND r.content_sha256 = %s ORDER BY run.seq",
        (scope.merchant_id, scope.livemode, digest),
    )
    return await cur.fetchall()


async def run_for_day(
    conn: Conn, scope: Scope, kind: str, connector_account_id: str | None, report_date: date
) -> str | None:
    found = await (
        await conn.execute(
            "SELECT id FROM recon_runs WHERE merchant_id = %s AND livemode = %s AND kind = %s"
            " AND connector_account_id IS NOT DISTINCT FROM %s AND report_date = %s",
            (scope.merchant_id, scope.livemode, kind, connector_account_id, report_date),
        )
    ).fetchone()
    return None if found is None else str(found[0])


async def insert(conn: Conn, table: str, row: dict[str, Any]) -> None:
    await conn.execute(
        sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(table),
            sql.SQL(", ").join(map(sql.Identifier, row)),
            sql.SQL(", ").join(sql.Placeholder() * len(row)),
        ),
        tuple(row.values()),
    )


# The provider rows a run may match: its report's, and those of earlier reports that
# matched nothing yet (their missing_internal breaks are open), within the lookback.
_CANDIDATE_ROWS = sql.SQL("""
    SELECT p.id, p.kind, p.reference, p.currency, p.amount, p.fee, p.occurred_at,
           p.report_date, p.line
    FROM recon_provider_transactions p
    WHERE p.report_id = %(report)s AND p.report_date = %(day)s
      AND p.kind IN ('charge', 'refund', 'dispute', 'dispute_reversal')
    UNION ALL
    SELECT p.id, p.kind, p.reference, p.currency, p.amount, p.fee, p.occurred_at,
           p.report_date, p.line
    FROM recon_breaks b
    JOIN recon_provider_transactions p ON p.id = b.provider_transaction_id
      AND p.report_date BETWEEN %(since)s AND %(day)s
    WHERE b.merchant_id = %(merchant)s AND b.livemode = %(mode)s
      AND b.connector_account_id = %(connector)s AND b.status = 'open'
      AND b.type IN ('missing_internal', 'status_mismatch') AND b.stage = 'provider'
""")

# Each inserted match's expectation, summed per currency: the run's matched totals come
# out of the insert, not out of a second pass over a million matches.
_TOTALS = sql.SQL("""
SELECT e.currency, count(*), sum(e.amount)::bigint
FROM inserted m JOIN settlement_expectations e ON e.id = m.expectation_id
GROUP BY e.currency
""")


def _params(
    scope: Scope, run_id: str, report_id: str, connector: str, day: date, since: date
) -> dict[str, Any]:
    return {
        "merchant": scope.merchant_id,
        "mode": scope.livemode,
        "run": run_id,
        "report": report_id,
        "connector": connector,
        "day": day,
        "since": since,
    }


async def match_by_reference(
    conn: Conn,
    scope: Scope,
    run_id: str,
    report_id: str,
    connector_account_id: str,
    day: date,
    since: date,
) -> list[tuple[str, int, int]]:
    """Each candidate row to the expectation with its reference and kind; of several rows
    for one expectation, the earliest. An expectation matched before (by an earlier
    report) stays as it was: the row is left unmatched, a duplicate. Returns (currency,
    count, amount) of what matched."""
    query = sql.SQL(
        "WITH inserted AS ("
        " INSERT INTO recon_matches (provider_transaction_id, expectation_id, merchant_id,"
        "  run_id, rule, differs)"
        " SELECT DISTINCT ON (e.id) p.id, e.id, %(merchant)s, %(run)s, 'reference',"
        "  (p.currency, p.amount, p.fee) IS DISTINCT FROM (e.currency, e.amount, e.fee)"
        " FROM ({candidates}) p"
        " JOIN settlement_expectations e ON e.connector_account_id = %(connector)s"
        "  AND e.kind = p.kind AND e.provider_reference = p.reference"
        " ORDER BY e.id, p.report_date, p.line"
        " ON CONFLICT DO NOTHING RETURNING expectation_id) {totals}"
    ).format(candidates=_CANDIDATE_ROWS, totals=_TOTALS)
    cur = await conn.execute(
        query, _params(scope, run_id, report_id, connector_account_id, day, since)
    )
    return [(str(c), int(n), int(a)) for c, n, a in await cur.fetchall()]


async def match_by_amount_window(
    conn: Conn,
    scope: Scope,
    run_id: str,
    report_id: str,
    connector_account_id: str,
    day: date,
    since: date,
    window: timedelta,
) -> list[tuple[str, int, int]]:
    """The fallback rule, for payrail's movements the provider gave no id for: a row
    whose reference payrail does not know, of the same kind,
    currency and amount within `window` of each other, taken only when the pair is the
    sole candidate on both sides, so that a guess never pairs the wrong two. The
    expectations it looks at are the report day's still unmatched, and the older ones
    still waiting (open timing breaks)."""
    params = _params(scope, run_id, report_id, connector_account_id, day, since)
    params |= {
        "window": window,
        "from": utc_midnight(day),
        "to": utc_midnight(day + timedelta(days=1)),
    }
    query = sql.SQL(
        "WITH p AS (SELECT c.* FROM ({candidates}) c"
        "  WHERE NOT EXISTS (SELECT 1 FROM recon_matches m"
        "   WHERE m.provider_transaction_id = c.id AND m.run_id = %(run)s)"
        "  AND NOT EXISTS (SELECT 1 FROM settlement_expectations k"
        "   WHERE k.connector_account_id = %(connector)s AND k.kind = c.kind"
        "   AND k.provider_reference = c.reference)"
        " ), e AS ("
        "  SELECT e.id, e.kind, e.currency, e.amount, e.fee, e.occurred_at"
        "  FROM settlement_expectations e"
        "  WHERE e.connector_account_id = %(connector)s"
        "   AND e.occurred_at >= %(from)s AND e.occurred_at < %(to)s"
        "   AND e.provider_reference IS NULL"
        "   AND NOT EXISTS (SELECT 1 FROM recon_matches m"
        "    WHERE m.expectation_id = e.id AND m.run_id = %(run)s)"
        "  UNION ALL"
        "  SELECT e.id, e.kind, e.currency, e.amount, e.fee, e.occurred_at"
        "  FROM recon_breaks b JOIN settlement_expectations e ON e.id = b.expectation_id"
        "  WHERE b.merchant_id = %(merchant)s AND b.livemode = %(mode)s"
        "   AND b.connector_account_id = %(connector)s AND b.status = 'open'"
        "   AND b.type = 'timing' AND b.stage = 'provider'"
        "   AND e.provider_reference IS NULL"
        " ), candidates AS ("
        "  SELECT p.id AS p_id, e.id AS e_id, p.fee IS DISTINCT FROM e.fee AS differs,"
        "   count(*) OVER (PARTITION BY p.id) AS for_p,"
        "   count(*) OVER (PARTITION BY e.id) AS for_e"
        "  FROM p JOIN e ON e.kind = p.kind AND e.currency = p.currency"
        "   AND e.amount = p.amount"
        "   AND e.occurred_at BETWEEN p.occurred_at - %(window)s AND p.occurred_at + %(window)s"
        " ), inserted AS ("
        "  INSERT INTO recon_matches (provider_transaction_id, expectation_id, merchant_id,"
        "   run_id, rule, differs)"
        "  SELECT p_id, e_id, %(merchant)s, %(run)s, 'amount_window', differs FROM candidates"
        "  WHERE for_p = 1 AND for_e = 1"
        "  ON CONFLICT DO NOTHING RETURNING expectation_id"
        " ) {totals}"
    ).format(candidates=_CANDIDATE_ROWS, totals=_TOTALS)
    cur = await conn.execute(query, params)
    return [(str(c), int(n), int(a)) for c, n, a in await cur.fetchall()]


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


async def unmatched_rows(
    conn: Conn, run_id: str, report_id: str, report_date: date
) -> list[dict[str, Any]]:
    """The report's rows that matched nothing, with what payrail knows of each reference:
    whether a row with it is matched already, and whether payrail has the reference in
    another kind or in a state that moved no money."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT p.id, p.kind, p.reference, p.currency, p.net, p.payout_reference,"
        " EXISTS (SELECT 1 FROM settlement_expectations e JOIN recon_matches m"
        "  ON m.expectation_id = e.id WHERE e.connector_account_id = p.connector_account_id"
        "  AND e.provider_reference = p.reference AND e.kind = p.kind"
        "  AND m.provider_transaction_id <> p.id) AS duplicate_of_matched,"
        " (EXISTS (SELECT 1 FROM settlement_expectations e"
        "   WHERE e.connector_account_id = p.connector_account_id"
        "   AND e.provider_reference = p.reference AND e.kind <> p.kind)"
        "  OR EXISTS (SELECT 1 FROM charges c WHERE c.connector_account_id ="
        "   p.connector_account_id AND c.provider_id = p.reference)"
        "  OR EXISTS (SELECT 1 FROM refunds r JOIN charges c ON c.id = r.charge_id"
        "   WHERE c.connector_account_id = p.connector_account_id"
        "   AND r.provider_id = p.reference)) AS known_elsewhere"
        " FROM recon_provider_transactions p"
        " WHERE p.report_id = %s AND p.report_date = %s"
        # This report's rows can only have matched in this run.
        "  AND NOT EXISTS (SELECT 1 FROM recon_matches m"
        "   WHERE m.provider_transaction_id = p.id AND m.run_id = %s)"
        " ORDER BY p.line",
        (report_id, report_date, run_id),
    )
    return await cur.fetchall()


async def unexpected(conn: Conn, connector_account_id: str, day: date) -> list[dict[str, Any]]:
    """The report day's expectations no provider row matched: what the provider has not
    (yet) reported. Earlier days' were looked at by their own runs, and wait as timing
    breaks."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT e.id, e.provider_reference, e.object_id, e.currency, e.amount, e.fee"
        " FROM settlement_expectations e"
        " WHERE e.connector_account_id = %s AND e.occurred_at >= %s AND e.occurred_at < %s"
        "  AND NOT EXISTS (SELECT 1 FROM recon_matches m WHERE m.expectation_id = e.id)"
        " ORDER BY e.id",
        (
            connector_account_id,
            utc_midnight(day),
            utc_midnight(day + timedelta(days=1)),
        ),
    )
    return await cur.fetchall()


async def open_breaks(
    conn: Conn, scope: Scope, stage: str, connector_account_id: str | None
) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT b.*,"
        " (b.provider_transaction_id IS NULL AND EXISTS (SELECT 1 FROM recon_matches m"
        "   WHERE m.expectation_id = b.expectation_id))"
        " OR (b.type IN ('missing_internal', 'status_mismatch')"
        "   AND EXISTS (SELECT 1 FROM recon_matches m"
        "   WHERE m.provider_transaction_id = b.provider_transaction_id))"
        " OR (b.payout_id IS NOT NULL AND EXISTS (SELECT 1 FROM recon_bank_lines l"
        "   WHERE l.payout_id = b.payout_id)) AS arrived"
        " FROM recon_breaks b WHERE b.merchant_id = %s AND b.livemode = %s AND b.stage = %s"
        "  AND b.connector_account_id IS NOT DISTINCT FROM %s AND b.status = 'open'"
        " ORDER BY b.seq FOR UPDATE",
        (scope.merchant_id, scope.livemode, stage, connector_account_id),
    )
    return await cur.fetchall()


async def update_break(conn: Conn, break_id: str, changes: dict[str, Any]) -> None:
    await conn.execute(
        sql.SQL("UPDATE recon_breaks SET {} WHERE id = %s").format(
            sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in changes)
        ),
        (*changes.values(), break_id),
    )


async def fees_and_payouts(
    conn: Conn, report_id: str, report_date: date
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The report's fee and payout rows per currency, kind and payout (its payout
    reference, or its own when it has none); and the net per currency of the rows that
    name each payout."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT currency, kind, coalesce(nullif(payout_reference, ''), reference) AS key,"
        " count(*) AS rows, sum(net) AS net FROM recon_provider_transactions"
        " WHERE report_id = %s AND report_date = %s"
        "  AND kind IN ('fee', 'payout', 'payout_reversal')"
        " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        (report_id, report_date),
    )
    listed = await cur.fetchall()
    await cur.execute(
        "SELECT currency, payout_reference AS key, count(*) AS rows, sum(net) AS net"
        " FROM recon_provider_transactions WHERE report_id = %s AND report_date = %s"
        "  AND payout_reference <> '' AND kind NOT IN ('payout', 'payout_reversal')"
        " GROUP BY 1, 2 ORDER BY 1, 2",
        (report_id, report_date),
    )
    return listed, await cur.fetchall()


async def insert_payout(conn: Conn, row: dict[str, Any]) -> None:
    """A payout once per connector, reference and currency. A payout whose rows come in
    several days' reports (Stripe's) grows by each report's rows while it has not reached
    the bank."""
    await conn.execute(
        sql.SQL(
            "INSERT INTO recon_payouts ({}) VALUES ({})"
            " ON CONFLICT (connector_account_id, provider_reference, currency) DO UPDATE"
            " SET amount = recon_payouts.amount + excluded.amount,"
            " transactions = recon_payouts.transactions + excluded.transactions"
            " WHERE recon_payouts.arrived_run_id IS NULL"
        ).format(
            sql.SQL(", ").join(map(sql.Identifier, row)),
            sql.SQL(", ").join(sql.Placeholder() * len(row)),
        ),
        tuple(row.values()),
    )


async def reverse_payouts(
    conn: Conn, connector_account_id: str, run_id: str, references: list[tuple[str, str]]
) -> None:
    """Payouts that came back (a payout reversal): the bank will not see them."""
    for reference, currency in references:
        await conn.execute(
            "UPDATE recon_payouts SET reversed_run_id = %s WHERE connector_account_id = %s"
            " AND provider_reference = %s AND currency = %s AND arrived_run_id IS NULL",
            (run_id, connector_account_id, reference, currency),
        )


async def copy_bank_lines(
    conn: Conn, scope: Scope, report_id: str, lines: Iterable[BankLine]
) -> int:
    count = 0
    async with conn.cursor().copy(
        "COPY recon_bank_lines (report_id, merchant_id, livemode, line, booked_on, currency,"
        " amount, reference, description) FROM STDIN"
    ) as copy:
        for line in lines:
            await copy.write_row((report_id, scope.merchant_id, scope.livemode, *line))
            count += 1
    return count


async def match_bank_lines(
    conn: Conn, scope: Scope, report_id: str, window: timedelta
) -> list[dict[str, Any]]:
    """Each credit line of the statement to the payout it is: by the payout's reference
    in the line's reference or description first, then by amount and currency within
    `window` of the payout's report date when that pair is the sole candidate both ways.
    Returns the lines matched, with their payout."""
    params = {"report": report_id, "merchant": scope.merchant_id, "mode": scope.livemode}
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "WITH candidates AS ("
        "  SELECT DISTINCT ON (o.id) l.id AS line_id, o.id AS payout_id"
        "  FROM recon_bank_lines l JOIN recon_payouts o ON o.merchant_id = l.merchant_id"
        "   AND o.livemode = l.livemode AND o.currency = l.currency AND o.amount = l.amount"
        "   AND (l.reference = o.provider_reference"
        "    OR strpos(l.description, o.provider_reference) > 0)"
        "  WHERE l.report_id = %(report)s AND l.payout_id IS NULL"
        "   AND NOT EXISTS (SELECT 1 FROM recon_bank_lines x WHERE x.payout_id = o.id)"
        "  ORDER BY o.id, l.line"
        " )"
        " UPDATE recon_bank_lines l SET payout_id = c.payout_id FROM candidates c"
        " WHERE l.id = c.line_id RETURNING l.id, l.payout_id",
        params,
    )
    matched = await cur.fetchall()
    await cur.execute(
        "WITH l AS (SELECT l.* FROM recon_bank_lines l"
        "  WHERE l.report_id = %(report)s AND l.payout_id IS NULL AND l.amount > 0),"
        " o AS (SELECT o.* FROM recon_payouts o WHERE o.merchant_id = %(merchant)s"
        "  AND o.livemode = %(mode)s"
        "  AND NOT EXISTS (SELECT 1 FROM recon_bank_lines x WHERE x.payout_id = o.id)),"
        " candidates AS (SELECT l.id AS line_id, o.id AS payout_id,"
        "  count(*) OVER (PARTITION BY l.id) AS for_line,"
        "  count(*) OVER (PARTITION BY o.id) AS for_payout"
        "  FROM l JOIN o ON o.currency = l.currency AND o.amount = l.amount"
        "  AND l.booked_on BETWEEN o.report_date AND o.report_date + %(days)s)"
        " UPDATE recon_bank_lines x SET payout_id = c.payout_id FROM candidates c"
        " WHERE x.id = c.line_id AND c.for_line = 1 AND c.for_payout = 1"
        " RETURNING x.id, x.payout_id",
        {**params, "days": window.days},
    )
    return matched + await cur.fetchall()


async def mark_arrived(conn: Conn, run_id: str, payout_ids: list[str]) -> None:
    await conn.execute(
        "UPDATE recon_payouts SET arrived_run_id = %s WHERE id = ANY(%s)", (run_id, payout_ids)
    )


async def payouts_of_lines(conn: Conn, line_ids: list[int]) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT o.* FROM recon_payouts o JOIN recon_bank_lines l ON l.payout_id = o.id"
        " WHERE l.id = ANY(%s) ORDER BY l.id",
        (line_ids,),
    )
    return await cur.fetchall()


async def unmatched_bank_lines(conn: Conn, report_id: str) -> list[dict[str, Any]]:
    """The statement's credits that no payout explains. Debits are the merchant's own
    spending, not reconciliation's business."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT * FROM recon_bank_lines WHERE report_id = %s AND payout_id IS NULL"
        " AND amount > 0 ORDER BY line",
        (report_id,),
    )
    return await cur.fetchall()


async def payouts_not_arrived(conn: Conn, scope: Scope, report_date: date) -> list[dict[str, Any]]:
    """Payouts reported before the statement's day (a payout reaches the bank the next day
    at the earliest), not at the bank, not yet waited for."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT o.* FROM recon_payouts o WHERE o.merchant_id = %s AND o.livemode = %s"
        " AND o.report_date < %s AND o.arrived_run_id IS NULL AND o.reversed_run_id IS NULL"
        " AND NOT EXISTS (SELECT 1 FROM recon_breaks b WHERE b.payout_id = o.id)"
        " ORDER BY o.report_date, o.id",
        (scope.merchant_id, scope.livemode, report_date),
    )
    return await cur.fetchall()


async def runs(conn: Conn, scope: Scope, ids: list[str]) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT run.*, r.format, r.file_name, r.content_sha256, r.row_count"
        " FROM recon_runs run JOIN recon_reports r ON r.id = run.report_id"
        " WHERE run.merchant_id = %s AND run.livemode = %s AND run.id = ANY(%s)"
        " ORDER BY run.seq DESC",
        (scope.merchant_id, scope.livemode, ids),
    )
    return await cur.fetchall()


def utc_midnight(day: date) -> datetime:
    """Report days are UTC days."""
    return datetime.combine(day, time(), UTC)
