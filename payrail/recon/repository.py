"""Reconciliation's SQL, but for matching (matching.py): reports and runs, the COPY of a
report's rows, breaks, payouts and bank lines."""

from __future__ import annotations

from collections import defaultdict
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
    " currency, amount, fee, net, occurred_at, repeat_of_line"
)
# The columns' types, for a binary COPY: half the time of a text one at a million rows,
# where formatting and parsing timestamps as text cost most.
_ROW_TYPES = (
    ("text", "date", "text", "bool", "text", "int4")
    + ("text",) * 7
    + ("int8", "int8", "int8", "timestamptz", "int4")
)


async def copy_rows(
    conn: Conn,
    scope: Scope,
    report_id: str,
    report_date: date,
    connector_account_id: str,
    rows: Iterable[ProviderRow],
) -> int:
    """Stream the rows into their partition through COPY; how many there were. A row
    whose kind and reference an earlier row of the report had carries that row's line."""
    head = (report_id, report_date, scope.merchant_id, scope.livemode, connector_account_id)
    # The first line of each reference, per kind: a dict per kind, keyed by the
    # reference string itself (no key objects to build a million times).
    first_lines: defaultdict[str, dict[str, int]] = defaultdict(dict)
    count = 0
    async with conn.cursor().copy(
        f"COPY recon_provider_transactions ({_ROW_COLUMNS}) FROM STDIN (FORMAT binary)"
    ) as copy:
        copy.set_types(_ROW_TYPES)
        for row in rows:
            line = row[0]
            first = first_lines[row[1]].setdefault(row[3], line)
            await copy.write_row(head + row + ((None if first == line else first),))
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


async def copy_into(conn: Conn, table: str, rows: list[dict[str, Any]]) -> None:
    """Many rows into `table` through one COPY; a column a row lacks is NULL."""
    if not rows:
        return
    columns = sorted({c for row in rows for c in row})
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    async with conn.cursor().copy(statement) as copy:
        for row in rows:
            await copy.write_row(tuple(row.get(c) for c in columns))


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
