"""The failed-payments report: how much failed, what dunning recovered, and at which retry.

The cohort is the invoices whose *first* failed attempt was made in [since, until), so
consecutive windows never count an invoice twice. Everything about them counts whenever
it happened (a retry made after `until` included), and their state is as of now:

- recovered: paid; lost: voided, uncollectible, or its subscription canceled by dunning;
  at risk: still open (in dunning, or left past due or unpaid by the final action);
- recovery rate = recovered / (recovered + lost + at risk) = recovered / failed invoices;
- by attempt (1 = the first try, 2 = the first retry, ...): attempts, failed, succeeded,
  recovered (succeeded after a failure) with their amounts, success rate = succeeded /
  (succeeded + failed), and recovery rate = recovered at that attempt / failed invoices,
  so the attempts' recovery rates add up to at most the overall one (an invoice paid
  outside a retry counts in the overall rate only);
- by decline code: failed attempts, the invoices they hit and how many of those were
  recovered; by connector account: as by attempt.

Amounts are integer minor units per currency, never summed across currencies. Rates are
exact decimal strings with 4 places (half-even), null when nothing is there to divide.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from payrail.clock import unix
from payrail.dunning import repository as repo
from payrail.money import Money
from payrail.tenants.scope import Scope

Conn = repo.Conn
OBJECT = "failed_payments_report"
STATES = ("recovered", "lost", "at_risk")
_PLACES = Decimal("0.0001")


def rate(numerator: int, denominator: int) -> str | None:
    if denominator == 0:
        return None
    return str((Decimal(numerator) / Decimal(denominator)).quantize(_PLACES, ROUND_HALF_EVEN))


def _amounts(by_currency: dict[str, int]) -> list[dict[str, Any]]:
    """Stripe's list of money, one entry per currency, lowercase, by currency."""
    return [
        {"amount": amount, "currency": currency.lower()}
        for currency, amount in sorted(by_currency.items())
    ]


def _attempt_rows(
    rows: Iterable[dict[str, Any]], key: str, failed_invoices: int
) -> list[dict[str, Any]]:
    """Rows per (key, currency) merged per key: counts added, amounts kept per currency."""
    merged: dict[Any, dict[str, Any]] = {}
    for row in rows:
        entry = merged.setdefault(
            row[key],
            {"attempts": 0, "failed": 0, "succeeded": 0, "recovered": 0, "amounts": {}},
        )
        for field in ("attempts", "failed", "succeeded", "recovered"):
            entry[field] += row[field]
        if row["recovered_amount"]:
            entry["amounts"][row["currency"]] = row["recovered_amount"]
    out = []
    for value, entry in merged.items():
        item = {
            key: value,
            "attempts": entry["attempts"],
            "failed": entry["failed"],
            "succeeded": entry["succeeded"],
            "recovered": entry["recovered"],
            "recovered_amounts": _amounts(entry["amounts"]),
            "success_rate": rate(entry["succeeded"], entry["succeeded"] + entry["failed"]),
        }
        if key == "attempt":
            item["recovery_rate"] = rate(entry["recovered"], failed_invoices)
        out.append(item)
    return out


async def failed_payments(
    conn: Conn, scope: Scope, since: datetime, until: datetime
) -> dict[str, Any]:
    """The report over the invoices whose first failure falls in [since, until)."""
    rows = await repo.failed_payments_rows(conn, scope, since, until)
    counts = dict.fromkeys(STATES, 0)
    amounts: dict[str, dict[str, int]] = {state: {} for state in STATES}
    for row in rows.states:
        counts[row["state"]] += row["invoices"]
        amounts[row["state"]][row["currency"]] = row["amount"]
    failed_invoices = sum(counts.values())
    by_attempt = _attempt_rows(rows.by_attempt, "attempt", failed_invoices)
    by_connector = _attempt_rows(rows.by_connector, "connector_account_id", failed_invoices)
    for item in by_connector:
        item["connector_account"] = item.pop("connector_account_id")
    return {
        "object": OBJECT,
        "livemode": scope.livemode,
        "since": unix(since),
        "until": unix(until),
        "failed_invoices": failed_invoices,
        **{
            state: {"invoices": counts[state], "amounts": _amounts(amounts[state])}
            for state in STATES
        },
        "recovery_rate": rate(counts["recovered"], failed_invoices),
        "by_attempt": by_attempt,
        "by_decline_code": [
            {
                "decline_code": row["decline_code"],
                "decision": row["decision"],
                "failed": row["failed"],
                "invoices": row["invoices"],
                "recovered": row["recovered"],
                "recovery_rate": rate(row["recovered"], row["invoices"]),
            }
            for row in rows.by_decline_code
        ],
        "by_connector": by_connector,
    }


# --- `payrail report failed-payments` ---------------------------------------------------------

_RELATIVE = re.compile(r"([1-9][0-9]{0,3})([hdw])")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def parse_moment(text: str, now: datetime, option: str) -> datetime:
    """`7d`, `12h`, `2w` (before now), an ISO date (midnight UTC) or an ISO date and time
    (UTC unless it says otherwise)."""
    relative = _RELATIVE.fullmatch(text.strip())
    if relative:
        count, unit = relative.groups()
        return now - timedelta(**{_UNITS[unit]: int(count)})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither an ISO date (2026-01-31), an ISO date and time, nor a span"
            " back from now (12h, 7d, 2w)",
            param_hint=option,
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _money(amounts: list[dict[str, Any]]) -> str:
    if not amounts:
        return "-"
    return ", ".join(
        f"{a['currency'].upper()} {Money(a['amount'], a['currency']).to_decimal_string()}"
        for a in amounts
    )


def _percent(value: str | None) -> str:
    return "-" if value is None else f"{Decimal(value) * 100:.2f}%"


def render(report: dict[str, Any], merchant: str, console: Console) -> None:
    mode = "live" if report["livemode"] else "test"
    since = datetime.fromtimestamp(report["since"], UTC)
    until = datetime.fromtimestamp(report["until"], UTC)
    summary = Table(
        "invoices",
        "count",
        "amount",
        title=f"failed payments of {merchant} ({mode}), first failed "
        f"{since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC",
    )
    summary.add_row("failed", str(report["failed_invoices"]), "")
    for state, label in (("recovered", "recovered"), ("lost", "lost"), ("at_risk", "at risk")):
        summary.add_row(label, str(report[state]["invoices"]), _money(report[state]["amounts"]))
    console.print(summary)

    attempts = Table(
        "attempt",
        "attempts",
        "failed",
        "succeeded",
        "recovered",
        "recovered amount",
        "success rate",
        "recovery rate",
        title="by attempt (1 = first try)",
    )
    for row in report["by_attempt"]:
        attempts.add_row(
            str(row["attempt"]),
            str(row["attempts"]),
            str(row["failed"]),
            str(row["succeeded"]),
            str(row["recovered"]),
            _money(row["recovered_amounts"]),
            _percent(row["success_rate"]),
            _percent(row["recovery_rate"]),
        )
    console.print(attempts)

    declines = Table(
        "decline code",
        "decision",
        "failed attempts",
        "invoices",
        "recovered",
        "recovery rate",
        title="by decline code",
    )
    for row in report["by_decline_code"]:
        declines.add_row(
            row["decline_code"] or "-",
            row["decision"] or "-",
            str(row["failed"]),
            str(row["invoices"]),
            str(row["recovered"]),
            _percent(row["recovery_rate"]),
        )
    console.print(declines)

    connectors = Table(
        "connector account",
        "attempts",
        "failed",
        "succeeded",
        "recovered",
        "recovered amount",
        "success rate",
        title="by connector account",
    )
    for row in report["by_connector"]:
        connectors.add_row(
            row["connector_account"] or "-",
            str(row["attempts"]),
            str(row["failed"]),
            str(row["succeeded"]),
            str(row["recovered"]),
            _money(row["recovered_amounts"]),
            _percent(row["success_rate"]),
        )
    console.print(connectors)
    console.print(
        f"{report['failed_invoices']} invoice(s) failed; recovery rate "
        f"{_percent(report['recovery_rate'])}"
    )


async def _collect(url: str, scope: Scope, since: datetime, until: datetime) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute("SELECT 1 FROM merchants WHERE id = %s", (scope.merchant_id,))
        if await cur.fetchone() is None:
            raise typer.BadParameter(f"no merchant {scope.merchant_id!r}", param_hint="--merchant")
        return await failed_payments(conn, scope, since, until)


def failed_payments_command(
    url: str,
    *,
    merchant: str,
    since: str,
    until: str | None,
    livemode: bool,
    now: datetime,
    console: Console,
) -> dict[str, Any]:
    """`payrail report failed-payments`: the report for one merchant and mode, as tables.
    Bad options raise typer.BadParameter naming the option. Returns the report."""
    start = parse_moment(since, now, "--since")
    end = now if until is None else parse_moment(until, now, "--until")
    if end <= start:
        raise typer.BadParameter(
            "the window is empty: --since must be before --until (default: now)",
            param_hint="--since",
        )
    report = asyncio.run(_collect(url, Scope(merchant, livemode), start, end))
    render(report, merchant, console)
    return report
