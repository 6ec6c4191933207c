"""A run's report for people: the summary and the breaks it opened, as HTML (a page a
finance team can read and file) and as CSV (one row per break, for a spreadsheet)."""

from __future__ import annotations

import csv
import html
import io
from typing import Any

BREAK_COLUMNS = (
    "id",
    "type",
    "status",
    "stage",
    "reference",
    "currency",
    "expected_net",
    "reported_net",
    "suspense_amount",
    "due_on",
    "resolution",
    "note",
)


def breaks_csv(breaks: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(BREAK_COLUMNS)
    for b in breaks:
        writer.writerow(["" if b.get(c) is None else b[c] for c in BREAK_COLUMNS])
    return out.getvalue()


def summary_rows(run: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(what, count, amount in minor units) lines of a run's summary."""
    s = run["summary"]
    rows: list[tuple[str, str, str]] = [("rows in the report", str(s.get("rows", 0)), "")]
    matched = s.get("matched", {})
    for currency, totals in matched.get("by_currency", {}).items():
        rows.append((f"matched, {currency}", str(totals["count"]), str(totals["amount"])))
    if isinstance(matched.get("payouts"), int):
        rows.append(("payouts arrived at the bank", str(matched["payouts"]), ""))
    for kind, count in s.get("breaks_opened", {}).items():
        rows.append((f"break opened: {kind}", str(count), ""))
    rows.append(("breaks closed (arrived)", str(s.get("breaks_closed", 0)), ""))
    rows.append(("breaks escalated", str(s.get("breaks_escalated", 0)), ""))
    rows.append(("breaks re-typed duplicate", str(s.get("breaks_retyped", 0)), ""))
    for label, key in (("fees posted", "fees"), ("payouts posted", "payouts")):
        for currency, amount in s.get(key, {}).items():
            rows.append((f"{label}, {currency}", "", str(amount)))
    for currency, amount in s.get("suspense", {}).items():
        rows.append((f"moved to suspense, {currency}", "", str(amount)))
    return rows


def page(run: dict[str, Any], breaks: list[dict[str, Any]]) -> str:
    e = html.escape
    summary = "".join(
        f"<tr><td>{e(what)}</td><td class=n>{e(count)}</td><td class=n>{e(amount)}</td></tr>"
        for what, count, amount in summary_rows(run)
    )
    head = "".join(f"<th>{e(c)}</th>" for c in BREAK_COLUMNS)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{e('' if b.get(c) is None else str(b[c]))}</td>" for c in BREAK_COLUMNS)
        + "</tr>"
        for b in breaks
    )
    report = run["report"]
    title = f"Reconciliation {run['report_date']} — {run['connector_account'] or 'bank'}"
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>{e(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}.n{text-align:right}"
        "</style></head><body>"
        f"<h1>{e(title)}</h1>"
        f"<p>Run {e(run['id'])}: {e(report['file_name'])} ({e(report['format'])},"
        f" {report['rows']} rows, sha256 {e(report['sha256'])}). Amounts in minor units.</p>"
        f"<h2>Summary</h2><table><tr><th></th><th>count</th><th>amount</th></tr>{summary}</table>"
        f"<h2>Breaks opened ({len(breaks)})</h2><table><tr>{head}</tr>{body}</table>"
        "</body></html>"
    )
