"""Reconciliation's API objects, as the API, the events and the reports show them."""

from __future__ import annotations

from datetime import date
from typing import Any

from payrail.clock import unix


def _day(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def run_object(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "reconciliation_run",
        "merchant": row["merchant_id"],
        "livemode": row["livemode"],
        "kind": row["kind"],
        "connector_account": row["connector_account_id"],
        "report_date": _day(row["report_date"]),
        "report": {
            "id": row["report_id"],
            "format": row["format"],
            "file_name": row["file_name"],
            "sha256": row["content_sha256"],
            "rows": row["row_count"],
        },
        "summary": row["summary"],
        "created": unix(row["created_at"]),
    }


def break_object(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "reconciliation_break",
        "livemode": row["livemode"],
        "stage": row["stage"],
        "type": row["type"],
        "status": row["status"],
        "connector_account": row["connector_account_id"],
        "reference": row["reference"],
        "currency": row["currency"].lower(),
        "expected_net": row["expected_net"],
        "reported_net": row["reported_net"],
        "suspense_amount": row["suspense_amount"],
        "due_on": _day(row.get("due_on")),
        "opened_by_run": row["opened_run_id"],
        "closed_by_run": row.get("closed_run_id"),
        "resolution": row.get("resolution"),
        # The break a person resolved whose item turned up after all (after_resolution).
        "follows_break": row.get("follows_break_id"),
        "note": row.get("note"),
        "created": unix(row["created_at"]),
        "updated": unix(row["updated_at"]),
    }
