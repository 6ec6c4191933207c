"""`payrail recon run` as an operator runs it: a table of what it found, an HTML and a CSV
report, the same file again changing nothing, and a bad file refused by line and column."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.connectors.accounts.helpers import create_account

REPORT = (
    "balance_transaction_id,created_utc,currency,gross,fee,net,reporting_category,source_id,"
    "automatic_payout_id\n"
    "txn_1,2026-01-01 10:00:00,usd,10.00,0.59,9.41,charge,ch_never_made,po_1\n"
    "txn_2,2026-01-01 11:00:00,usd,-2.00,0.00,-2.00,fee,,po_1\n"
)


def payrail(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "payrail", *args],
        env={**os.environ, "PAYRAIL_DATABASE_URL": database_url, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_recon_run_prints_writes_reports_and_refuses_a_bad_file(
    database_url: str, client: httpx.AsyncClient, auth: dict[str, str], tmp_path: Path
) -> None:
    account = await create_account(client, auth, base_url="http://127.0.0.1:9", currencies=[])
    report = tmp_path / "stripe-2026-01-01.csv"
    report.write_text(REPORT)
    args = ("recon", "run", "--provider", "stripe", "--file", str(report), "--date", "2026-01-01")
    html, breaks = tmp_path / "run.html", tmp_path / "breaks.csv"
    done = payrail(
        database_url, *args, "--connector", account["id"], "--html", str(html), "--csv", str(breaks)
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "break opened: missing_internal" in done.stdout
    assert "fees posted, USD" in done.stdout and "200" in done.stdout
    assert "ch_never_made" in html.read_text()
    [row] = list(csv.DictReader(breaks.open()))
    assert (row["type"], row["reference"], row["reported_net"]) == (
        "missing_internal",
        "ch_never_made",
        "941",
    )

    again = payrail(database_url, *args, "--connector", account["id"])
    assert again.returncode == 0, again.stderr
    assert "reconciled before; nothing changed" in again.stdout

    bad = tmp_path / "bad.csv"
    bad.write_text(REPORT.replace("9.41", "9.4l"))
    refused = payrail(
        database_url,
        "recon",
        "run",
        "--provider",
        "stripe",
        "--file",
        str(bad),
        "--date",
        "2026-01-02",
        "--connector",
        account["id"],
    )
    assert refused.returncode == 2
    message = " ".join(refused.stdout.split())
    assert f"{bad}, line 2, column 'net'" in message, refused.stdout
