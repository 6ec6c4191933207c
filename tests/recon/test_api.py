"""/v1/reconciliation_runs and /v1/reconciliation_breaks: reading what a run found, and a
person resolving a break with a note, its trail kept."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.clock import ManualClock
from payrail.recon.runs import reconcile_provider
from payrail.tenants.scope import Scope
from payrail.tenants.service import NewMerchant
from tests.connectors.accounts.helpers import create_account
from tests.recon.helpers import DAY, expect, stripe_row, write_report

RUNS = "/v1/reconciliation_runs"
BREAKS = "/v1/reconciliation_breaks"


@pytest.fixture
async def run_id(
    pool: AsyncConnectionPool,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    clock: ManualClock,
    tmp_path: Path,
) -> str:
    """A run with a matched charge, an amount mismatch and a row payrail never made."""
    account = await create_account(client, auth, base_url="http://127.0.0.1:9", currencies=[])
    scope = Scope(merchant.id, False)
    await expect(pool, scope, clock, account["id"], "charge", "ch_ok", 1000, 59)
    await expect(pool, scope, clock, account["id"], "charge", "ch_off", 2000, 88)
    source = write_report(
        tmp_path,
        "day.csv",
        [
            stripe_row("txn_1", "ch_ok", "charge", 1000, 59),
            stripe_row("txn_2", "ch_off", "charge", 1990, 88),
            stripe_row("txn_3", "ch_who", "charge", 500, 45),
        ],
    )
    async with pool.connection() as conn, conn.transaction():
        run, _ = await reconcile_provider(conn, scope, clock, account["id"], source, DAY)
    return str(run["id"])


async def test_runs_are_listed_and_read(
    client: httpx.AsyncClient, auth: dict[str, str], run_id: str
) -> None:
    listed = (await client.get(RUNS, headers=auth)).json()
    assert [r["id"] for r in listed["data"]] == [run_id]
    run = (await client.get(f"{RUNS}/{run_id}", headers=auth)).json()
    assert run["object"] == "reconciliation_run"
    assert run["report_date"] == "2026-01-01"
    assert run["report"]["rows"] == 3 and run["report"]["format"] == "stripe"
    assert run["summary"]["matched"]["by_currency"] == {"USD": {"count": 2, "amount": 3000}}
    assert run["summary"]["breaks_opened"] == {"amount_mismatch": 1, "missing_internal": 1}
    missing = await client.get(f"{RUNS}/rcr_nope", headers=auth)
    assert missing.status_code == 404


async def test_breaks_are_filtered_and_resolved_with_a_note_once(
    client: httpx.AsyncClient, auth: dict[str, str], run_id: str, pool: AsyncConnectionPool
) -> None:
    everything = (await client.get(BREAKS, headers=auth, params={"run": run_id})).json()["data"]
    assert sorted(b["type"] for b in everything) == ["amount_mismatch", "missing_internal"]
    [off] = (await client.get(BREAKS, headers=auth, params={"type": "amount_mismatch"})).json()[
        "data"
    ]
    assert (off["reference"], off["expected_net"], off["reported_net"]) == ("ch_off", 1912, 1902)
    assert off["suspense_amount"] == -10

    # A resolution needs its note; without one nothing changes.
    refused = await client.post(f"{BREAKS}/{off['id']}/resolve", headers=auth, json={})
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "note"
    resolved = await client.post(
        f"{BREAKS}/{off['id']}/resolve",
        headers=auth,
        json={"note": "the provider took 0.10 for a currency check; agreed with finance"},
    )
    assert resolved.status_code == 200, resolved.text
    body = resolved.json()
    assert body["status"] == "resolved" and body["resolution"] == "resolved_by_user"
    assert [h["action"] for h in body["history"]] == ["opened", "resolved"]
    assert body["history"][1]["note"].startswith("the provider took 0.10")
    # What it moved to suspense stays there for an accountant to move on.
    assert body["suspense_amount"] == -10

    again = await client.post(f"{BREAKS}/{off['id']}/resolve", headers=auth, json={"note": "twice"})
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "break_not_open"
    still_open = (await client.get(BREAKS, headers=auth, params={"status": "open"})).json()
    assert [b["reference"] for b in still_open["data"]] == ["ch_who"]
    read = (await client.get(f"{BREAKS}/{off['id']}", headers=auth)).json()
    assert read["history"] == body["history"]
