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


async def provider_breaks_to_change(
    conn: Conn, scope: Scope, connector_account_id: str, day: date
) -> list[dict[str, Any]]:
    """The provider's open timing and missing_at_provider breaks that a run of `day`
    changes, locked: payrail's movement has been reported (its expectation is matched),
    or a timing break is due. Only these: a person resolving any other break of the
    connector account does not wait for the run."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT b.*, m.expectation_id IS NOT NULL AS arrived FROM recon_breaks b"
        " LEFT JOIN recon_matches m ON m.expectation_id = b.expectation_id"
        " WHERE b.merchant_id = %(merchant)s AND b.livemode = %(mode)s"
        "  AND b.connector_account_id = %(connector)s AND b.stage = 'provider'"
        "  AND b.status = 'open' AND b.type IN ('timing', 'missing_at_provider')"
        "  AND (b.type = 'timing' AND b.due_on <= %(day)s OR m.expectation_id IS NOT NULL)"
        " ORDER BY b.seq FOR UPDATE OF b",
        {
            "merchant": scope.merchant_id,
            "mode": scope.livemode,
            "connector": connector_account_id,
            "day": day,
        },
    )
    return await cur.fetchall()


async def bank_breaks_to_change(
    conn: Conn, scope: Scope, day: date, payouts: list[str], lines: list[int]
) -> list[dict[str, Any]]:
    """The open bank breaks that a bank run of `day` changes, locked: a payout's whose
    payout arrived (`payouts`) or came back, a line's that is now a payout's (`lines`),
    and timing breaks due."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT b.*,"
        " coalesce(b.payout_id = ANY(%(payouts)s) OR b.bank_line_id = ANY(%(lines)s), false)"
        "  AS arrived,"
        " coalesce(o.reversed_run_id IS NOT NULL, false) AS reversed"
        " FROM recon_breaks b LEFT JOIN recon_payouts o ON o.id = b.payout_id"
        " WHERE b.merchant_id = %(merchant)s AND b.livemode = %(mode)s"
        "  AND b.connector_account_id IS NULL AND b.stage = 'bank' AND b.status = 'open'"
        "  AND (b.type = 'missing_internal' AND b.bank_line_id = ANY(%(lines)s)"
        "   OR b.type IN ('timing', 'missing_at_bank') AND (b.payout_id = ANY(%(payouts)s)"
        "    OR o.reversed_run_id IS NOT NULL OR b.type = 'timing' AND b.due_on <= %(day)s))"
        " ORDER BY b.seq FOR UPDATE OF b",
        {
            "merchant": scope.merchant_id,
            "mode": scope.livemode,
            "day": day,
            "payouts": payouts,
            "lines": lines,
        },
    )
    return await cur.fetchall()


async def reversed_payouts_breaks(conn: Conn, payout_ids: list[str]) -> list[dict[str, Any]]:
    """The open bank breaks waiting for payouts that came back, locked."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT b.*, false AS arrived, true AS reversed FROM recon_breaks b"
        " WHERE b.payout_id = ANY(%s) AND b.stage = 'bank' AND b.status = 'open'"
        "  AND b.type IN ('timing', 'missing_at_bank') ORDER BY b.seq FOR UPDATE",
        (payout_ids,),
    )
    return await cur.fetchall()


# Breaks a person resolved that moved money to suspense, whose item may still turn up, and
# that no break has followed yet: each follows once (follows_break_id is unique).
_RESOLVED_BY_HAND = sql.SQL(
    "b.merchant_id = %(merchant)s AND b.livemode = %(mode)s"
    " AND b.resolution = 'resolved_by_user' AND b.suspense_amount <> 0"
    " AND NOT EXISTS (SELECT 1 FROM recon_breaks f WHERE f.follows_break_id = b.id)"
)


async def resolved_expectations_reported(
    conn: Conn, scope: Scope, connector_account_id: str, run_id: str
) -> list[dict[str, Any]]:
    """missing_at_provider breaks a person resolved whose movement the provider has now
    reported (its expectation matched by `run_id`), with the reported net."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        sql.SQL(
            "SELECT b.*, (SELECT p.net FROM recon_provider_transactions p"
            "  WHERE p.id = m.provider_transaction_id) AS arrived_net FROM recon_breaks b"
            " JOIN recon_matches m ON m.expectation_id = b.expectation_id AND m.run_id = %(run)s"
            " WHERE b.connector_account_id = %(connector)s AND b.type = 'missing_at_provider'"
            " AND {} ORDER BY b.seq"
        ).format(_RESOLVED_BY_HAND),
        {
            "merchant": scope.merchant_id,
            "mode": scope.livemode,
            "connector": connector_account_id,
            "run": run_id,
        },
    )
    return await cur.fetchall()


async def resolved_payouts_settled(
    conn: Conn, scope: Scope, payout_ids: list[str]
) -> list[dict[str, Any]]:
    """missing_at_bank breaks a person resolved whose payout has now arrived or come back
    (`payout_ids`), with what reached the bank (0 for one that came back)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        sql.SQL(
            "SELECT b.*, coalesce(l.amount, 0) AS arrived_net FROM recon_breaks b"
            " LEFT JOIN recon_bank_lines l ON l.payout_id = b.payout_id"
            " WHERE b.connector_account_id IS NULL AND b.type = 'missing_at_bank'"
            " AND b.payout_id = ANY(%(payouts)s) AND {} ORDER BY b.seq"
        ).format(_RESOLVED_BY_HAND),
        {"merchant": scope.merchant_id, "mode": scope.livemode, "payouts": payout_ids},
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
) -> list[str]:
    """Payouts that came back (a payout reversal): the bank will not see them. Returns
    the payouts this marked."""
    marked: list[str] = []
    for reference, currency in references:
        cur = await conn.execute(
            "UPDATE recon_payouts SET reversed_run_id = %s WHERE connector_account_id = %s"
            " AND provider_reference = %s AND currency = %s AND arrived_run_id IS NULL"
            " RETURNING id",
            (run_id, connector_account_id, reference, currency),
        )
        marked += [str(row[0]) for row in await cur.fetchall()]
    return marked


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


# The credit lines a bank run matches: the statement's, and earlier statements' still
# unexplained (their missing_internal break open) booked since %(since)s.
_OPEN_LINES = sql.SQL("""
    SELECT l.id, l.booked_on, l.currency, l.amount, l.reference, l.description
    FROM recon_bank_lines l
    WHERE l.report_id = %(report)s AND l.payout_id IS NULL AND l.amount > 0
    UNION ALL
    SELECT l.id, l.booked_on, l.currency, l.amount, l.reference, l.description
    FROM recon_breaks b JOIN recon_bank_lines l ON l.id = b.bank_line_id
    WHERE b.merchant_id = %(merchant)s AND b.livemode = %(mode)s
      AND b.connector_account_id IS NULL AND b.stage = 'bank' AND b.status = 'open'
      AND b.type = 'missing_internal' AND l.payout_id IS NULL AND l.booked_on >= %(since)s
""")
# The payouts still waiting for the bank: not in a line yet, not come back.
_WAITING_PAYOUTS = sql.SQL("""
    SELECT o.* FROM recon_payouts o WHERE o.merchant_id = %(merchant)s
      AND o.livemode = %(mode)s AND o.reversed_run_id IS NULL
      AND NOT EXISTS (SELECT 1 FROM recon_bank_lines x WHERE x.payout_id = o.id)
""")


async def match_bank_lines(
    conn: Conn, scope: Scope, report_id: str, since: date, window: timedelta
) -> list[dict[str, Any]]:
    """Each credit line (of the statement, and of earlier statements still unexplained
    since `since`) to the payout it is. By the payout's reference in the line's reference
    or description first, whatever the amounts (a bank may take a fee; the difference is
    a break of the run's): each line to the payout it names best (its reference itself
    before a description containing it, the same amount first, a longer reference before
    one it contains: po_12 before po_1), and each payout to the best of the lines that
    name it best. Then by amount and currency within `window` of the payout's report
    date, when that pair is the sole candidate both ways. Returns the lines matched (id,
    currency, amount), with their payout (payout_id, reference, payout_amount)."""
    params = {
        "report": report_id,
        "merchant": scope.merchant_id,
        "mode": scope.livemode,
        "since": since,
        "days": window.days,
    }
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        sql.SQL(
            "WITH l AS ({lines}), o AS ({payouts}),"
            " named AS (SELECT l.id AS line_id, l.booked_on, o.id AS payout_id,"
            "  o.provider_reference AS reference, o.amount AS payout_amount,"
            "  l.reference = o.provider_reference AS exact, l.amount = o.amount AS same,"
            "  row_number() OVER (PARTITION BY l.id ORDER BY l.reference = o.provider_reference"
            "   DESC, l.amount = o.amount DESC, length(o.provider_reference) DESC, o.id)"
            "   AS for_line"
            "  FROM l JOIN o ON o.currency = l.currency AND o.provider_reference <> ''"
            "  AND (l.reference = o.provider_reference"
            "   OR strpos(l.description, o.provider_reference) > 0)),"
            # Of the lines that name a payout best, the payout takes the one naming it best.
            " candidates AS (SELECT n.*, row_number() OVER (PARTITION BY n.payout_id"
            "  ORDER BY n.exact DESC, n.same DESC, n.booked_on, n.line_id) AS for_payout"
            "  FROM named n WHERE n.for_line = 1)"
            " UPDATE recon_bank_lines x SET payout_id = c.payout_id FROM candidates c"
            " WHERE x.id = c.line_id AND c.for_payout = 1"
            " RETURNING x.id, x.currency, x.amount, c.payout_id, c.reference, c.payout_amount"
        ).format(lines=_OPEN_LINES, payouts=_WAITING_PAYOUTS),
        params,
    )
    matched = await cur.fetchall()
    await cur.execute(
        sql.SQL(
            "WITH l AS ({lines}), o AS ({payouts}),"
            " candidates AS (SELECT l.id AS line_id, o.id AS payout_id,"
            "  o.provider_reference AS reference, o.amount AS payout_amount,"
            "  count(*) OVER (PARTITION BY l.id) AS for_line,"
            "  count(*) OVER (PARTITION BY o.id) AS for_payout"
            "  FROM l JOIN o ON o.currency = l.currency AND o.amount = l.amount"
            "  AND l.booked_on BETWEEN o.report_date AND o.report_date + %(days)s)"
            " UPDATE recon_bank_lines x SET payout_id = c.payout_id FROM candidates c"
            " WHERE x.id = c.line_id AND c.for_line = 1 AND c.for_payout = 1"
            " RETURNING x.id, x.currency, x.amount, c.payout_id, c.reference, c.payout_amount"
        ).format(lines=_OPEN_LINES, payouts=_WAITING_PAYOUTS),
        params,
    )
    return matched + await cur.fetchall()


async def mark_arrived(conn: Conn, run_id: str, payout_ids: list[str]) -> None:
    await conn.execute(
        "UPDATE recon_payouts SET arrived_run_id = %s WHERE id = ANY(%s)", (run_id, payout_ids)
    )


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
