"""Provider runs against the real database: payrail's expectations (written by the same
function payments uses) and a Stripe itemized report written here row by row."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from payrail.clock import ManualClock
from payrail.errors import Conflict
from payrail.recon import matching
from payrail.recon.formats.common import ReportError
from payrail.recon.runs import Rules, Source, reconcile_provider
from payrail.tenants.scope import Scope
from payrail.tenants.service import NewMerchant
from tests.connectors.accounts.helpers import create_account
from tests.recon.helpers import DAY, expect, stripe_row, write_report

RULES = Rules(fallback_window=None)


@pytest.fixture
async def scope(merchant: NewMerchant) -> Scope:
    return Scope(merchant.id, False)


@pytest.fixture(params=["planner", "hash_joins"])
def plans(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A test's report matched as the planner chooses (a few rows: index probes), and
    again as a large report is (hash joins only, the run's memory raised)."""
    if request.param == "hash_joins":
        monkeypatch.setattr(matching, "BULK_ROWS", 0)
    return str(request.param)


@pytest.fixture
async def connector(client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    account = await create_account(client, auth, base_url="http://127.0.0.1:9", currencies=[])
    return str(account["id"])


async def reconcile(
    pool: AsyncConnectionPool,
    scope: Scope,
    clock: ManualClock,
    connector: str,
    source: Source,
    day: date = DAY,
) -> tuple[dict[str, Any], bool]:
    async with pool.connection() as conn, conn.transaction():
        return await reconcile_provider(conn, scope, clock, connector, source, day, RULES)


async def breaks_by_reference(pool: AsyncConnectionPool) -> dict[str, tuple[str, str]]:
    async with pool.connection() as conn:
        rows = await (
            await conn.execute("SELECT reference, type, status FROM recon_breaks ORDER BY seq")
        ).fetchall()
    return {reference: (kind, status) for reference, kind, status in rows}


async def table_counts(pool: AsyncConnectionPool) -> dict[str, int]:
    tables = (
        "recon_reports",
        "recon_runs",
        "recon_matches",
        "recon_breaks",
        "recon_break_history",
        "recon_payouts",
        "ledger_transactions",
        "events",
        "recon_provider_transactions",
    )
    async with pool.connection() as conn:
        found = {}
        for table in tables:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            row = await (await conn.execute(query)).fetchone()
            assert row is not None
            found[table] = row[0]
        row = await (
            await conn.execute("SELECT count(*) FROM recon_provider_transactions")
        ).fetchone()
        assert row is not None
        found["recon_provider_transactions"] = row[0]
    return found


async def test_a_clean_day_matches_everything_and_pays_out_its_net(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, connector: str, tmp_path: Path
) -> None:
    clock.current = clock.current.replace(year=2026, month=1, day=1, hour=12)
    await expect(pool, scope, clock, connector, "charge", "ch_a", 1000, 59)
    await expect(pool, scope, clock, connector, "charge", "ch_b", 2500, 103)
    await expect(pool, scope, clock, connector, "refund", "re_a", -400)
    source = write_report(
        tmp_path,
        "day1.csv",
        [
            stripe_row("txn_1", "ch_a", "charge", 1000, 59),
            stripe_row("txn_2", "ch_b", "charge", 2500, 103),
            stripe_row("txn_3", "re_a", "refund", -400, 0),
        ],
    )
    run, made = await reconcile(pool, scope, clock, connector, source)
    assert made
    summary = run["summary"]
    assert summary["matched"]["reference"] == 3
    assert summary["breaks_opened"] == {}
    assert summary["payouts"] == {"USD": 1000 - 59 + 2500 - 103 - 400}
    assert await breaks_by_reference(pool) == {}


@pytest.mark.usefixtures("plans")
async def test_each_break_type_is_classified(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, connector: str, tmp_path: Path
) -> None:
    clock.current = clock.current.replace(hour=12)
    await expect(pool, scope, clock, connector, "charge", "ch_ok", 1000, 59)
    await expect(pool, scope, clock, connector, "charge", "ch_amount", 1000, 59)
    await expect(pool, scope, clock, connector, "charge", "ch_fee", 1000, 59)
    await expect(pool, scope, clock, connector, "charge", "ch_currency", 1000, 59)
    await expect(pool, scope, clock, connector, "charge", "ch_twice", 700, 50)
    await expect(pool, scope, clock, connector, "refund", "re_failed", -300)
    await expect(pool, scope, clock, connector, "charge", "ch_late", 900, 56)
    source = write_report(
        tmp_path,
        "day1.csv",
        [
            stripe_row("txn_1", "ch_ok", "charge", 1000, 59),
            stripe_row("txn_2", "ch_amount", "charge", 990, 59),
            stripe_row("txn_3", "ch_fee", "charge", 1000, 70),
            stripe_row("txn_4", "ch_currency", "charge", 1000, 59, currency="eur"),
            stripe_row("txn_5", "ch_twice", "charge", 700, 50),
            stripe_row("txn_6", "ch_twice", "charge", 700, 50),
            stripe_row("txn_7", "ch_unknown", "charge", 1234, 66),
            stripe_row("txn_8", "re_failed", "refund", -300, 0),
            # The refund payrail has as succeeded failed at the provider later.
            stripe_row("txn_9", "re_failed", "refund_failure", 300, 0),
        ],
    )
    run, _ = await reconcile(pool, scope, clock, connector, source)
    assert await breaks_by_reference(pool) == {
        "ch_amount": ("amount_mismatch", "open"),
        "ch_fee": ("fee_mismatch", "open"),
        "ch_currency": ("currency_mismatch", "open"),
        "ch_twice": ("duplicate", "open"),
        "ch_unknown": ("missing_internal", "open"),
        "re_failed": ("status_mismatch", "open"),
        "ch_late": ("timing", "open"),
    }
    assert run["summary"]["breaks_opened"] == {
        "amount_mismatch": 1,
        "currency_mismatch": 1,
        "duplicate": 1,
        "fee_mismatch": 1,
        "missing_internal": 1,
        "status_mismatch": 1,
        "timing": 1,
    }


@pytest.mark.usefixtures("plans")
async def test_a_late_row_closes_its_timing_break_and_a_missing_one_escalates(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, connector: str, tmp_path: Path
) -> None:
    clock.current = clock.current.replace(hour=12)
    await expect(pool, scope, clock, connector, "charge", "ch_late", 900, 56)
    await expect(pool, scope, clock, connector, "charge", "ch_lost", 800, 53)
    await reconcile(pool, scope, clock, connector, write_report(tmp_path, "d1.csv", []))
    assert await breaks_by_reference(pool) == {
        "ch_late": ("timing", "open"),
        "ch_lost": ("timing", "open"),
    }
    day2 = DAY + timedelta(days=1)
    late = [stripe_row("txn_1", "ch_late", "charge", 900, 56, day=DAY)]
    run, _ = await reconcile(
        pool, scope, clock, connector, write_report(tmp_path, "d2.csv", late), day2
    )
    assert run["summary"]["breaks_closed"] == 1
    assert await breaks_by_reference(pool) == {
        "ch_late": ("timing", "resolved"),
        "ch_lost": ("timing", "open"),
    }
    for offset in (2, 3):
        run, _ = await reconcile(
            pool,
            scope,
            clock,
            connector,
            write_report(tmp_path, f"d{offset + 1}.csv", []),
            DAY + timedelta(days=offset),
        )
    assert run["summary"]["breaks_escalated"] == 1
    assert (await breaks_by_reference(pool))["ch_lost"] == ("missing_at_provider", "open")
    # Its side came off the provider balance into suspense.
    assert run["summary"]["suspense"] == {"USD": -(800 - 53)}


async def test_the_same_file_again_changes_nothing_and_another_file_for_the_day_is_refused(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, connector: str, tmp_path: Path
) -> None:
    await expect(pool, scope, clock, connector, "charge", "ch_a", 1000, 59)
    rows = [
        stripe_row("txn_1", "ch_a", "charge", 1000, 59),
        stripe_row("txn_2", "ch_x", "charge", 5, 0),
    ]
    first, made = await reconcile(
        pool, scope, clock, connector, write_report(tmp_path, "a.csv", rows)
    )
    assert made
    before = await table_counts(pool)
    again, made = await reconcile(
        pool, scope, clock, connector, write_report(tmp_path, "b.csv", rows)
    )
    assert not made and again["id"] == first["id"]
    assert await table_counts(pool) == before
    other = write_report(tmp_path, "c.csv", rows[:1])
    with pytest.raises(Conflict) as refused:
        await reconcile(pool, scope, clock, connector, other)
    assert first["id"] in refused.value.message
    assert await table_counts(pool) == before


async def test_a_bad_file_names_its_line_and_column_and_ingests_nothing(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, connector: str, tmp_path: Path
) -> None:
    before = await table_counts(pool)
    rows = [
        stripe_row("txn_1", "ch_a", "charge", 1000, 59),
        stripe_row("txn_2", "ch_b", "charge", 5, 0),
    ]
    rows[1] = rows[1].replace("0.05", "0.0x")
    with pytest.raises(ReportError) as bad:
        await reconcile(pool, scope, clock, connector, write_report(tmp_path, "bad.csv", rows))
    assert (bad.value.file, bad.value.line, bad.value.column) == ("bad.csv", 3, "gross")
    assert await table_counts(pool) == before


@pytest.mark.usefixtures("plans")
async def test_the_fallback_pairs_only_sole_candidates_by_amount_and_time(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, connector: str, tmp_path: Path
) -> None:
    """Movements the provider gave payrail no id for: the rule pairs a row payrail does not
    know with one of them of the same kind, currency and amount within the window, and
    only when neither side has another candidate. A movement with an id waits for its own
    row, whatever else has its amount."""
    clock.current = clock.current.replace(hour=12)
    for reference, amount, fee in (
        ("ours_1", 1500, 74),
        ("ours_2", 2200, 94),
        ("ours_3", 2200, 94),
    ):
        await expect(
            pool,
            scope,
            clock,
            connector,
            "charge",
            reference,
            amount,
            fee,
            provider_gave_an_id=False,
        )
    await expect(pool, scope, clock, connector, "charge", "ch_own", 3300, 125)
    rows = [
        stripe_row("txn_1", "theirs_1", "charge", 1500, 74),
        stripe_row("txn_2", "theirs_2", "charge", 2200, 94),  # two of ours could be it
        stripe_row("txn_3", "theirs_3", "charge", 3300, 125),  # only ch_own has its amount
    ]
    async with pool.connection() as conn, conn.transaction():
        run, _ = await reconcile_provider(
            conn, scope, clock, connector, write_report(tmp_path, "day.csv", rows), DAY
        )
    assert run["summary"]["matched"] == {
        "reference": 0,
        "amount_window": 1,
        "by_currency": {"USD": {"count": 1, "amount": 1500}},
    }
    assert await breaks_by_reference(pool) == {
        "theirs_2": ("missing_internal", "open"),
        "theirs_3": ("missing_internal", "open"),
        "obj_charge_ours_2": ("timing", "open"),
        "obj_charge_ours_3": ("timing", "open"),
        "ch_own": ("timing", "open"),
    }


@pytest.mark.usefixtures("plans")
async def test_nothing_is_matched_twice(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, connector: str, tmp_path: Path
) -> None:
    """The same reference reported on two days matches once; the database refuses a
    second match of either side, whatever the code tries."""
    clock.current = clock.current.replace(hour=12)
    await expect(pool, scope, clock, connector, "charge", "ch_a", 1000, 59)
    again = [stripe_row("txn_1", "ch_a", "charge", 1000, 59)]
    await reconcile(pool, scope, clock, connector, write_report(tmp_path, "d1.csv", again))
    day2 = DAY + timedelta(days=1)
    later = [stripe_row("txn_9", "ch_a", "charge", 1000, 59, day=day2)]
    run, _ = await reconcile(
        pool, scope, clock, connector, write_report(tmp_path, "d2.csv", later), day2
    )
    assert run["summary"]["matched"]["reference"] == 0
    assert run["summary"]["breaks_opened"] == {"duplicate": 1}
    async with pool.connection() as conn:
        match = await (
            await conn.execute(
                "SELECT provider_transaction_id, expectation_id, run_id FROM recon_matches"
            )
        ).fetchall()
        assert len(match) == 1
        (provider_row, expectation, first_run) = match[0]
        other = await (
            await conn.execute(
                "SELECT id FROM recon_provider_transactions WHERE id <> %s", (provider_row,)
            )
        ).fetchone()
        assert other is not None
        for pair in ((other[0], expectation), (provider_row, expectation + 1000)):
            with pytest.raises(psycopg.errors.UniqueViolation):
                await conn.execute(
                    "INSERT INTO recon_matches (provider_transaction_id, expectation_id,"
                    " merchant_id, run_id, rule, differs)"
                    " VALUES (%s, %s, %s, %s, 'reference', false)",
                    (*pair, scope.merchant_id, first_run),
                )


@pytest.mark.usefixtures("plans")
async def test_a_reference_repeated_in_a_report_matches_its_first_row_only(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, connector: str, tmp_path: Path
) -> None:
    """The COPY notes which row a repeated kind and reference first appeared on; the
    first is matched, and the repeats are duplicates, however many and wherever."""
    clock.current = clock.current.replace(hour=12)
    await expect(pool, scope, clock, connector, "charge", "ch_a", 1000, 59)
    await expect(pool, scope, clock, connector, "refund", "ch_a", -1000)
    rows = [
        stripe_row("txn_1", "ch_b", "charge", 500, 30),
        stripe_row("txn_2", "ch_a", "charge", 1000, 59),
        stripe_row("txn_3", "ch_a", "refund", -1000, 0),  # another kind: its own match
        stripe_row("txn_4", "ch_a", "charge", 1000, 59),
        stripe_row("txn_5", "ch_b", "charge", 500, 30),
        stripe_row("txn_6", "ch_a", "charge", 1000, 59),
    ]
    run, _ = await reconcile(pool, scope, clock, connector, write_report(tmp_path, "d.csv", rows))
    async with pool.connection() as conn:
        lines = await (
            await conn.execute(
                "SELECT p.line, p.repeat_of_line, m.expectation_id IS NOT NULL"
                " FROM recon_provider_transactions p"
                " LEFT JOIN recon_matches m ON m.provider_transaction_id = p.id ORDER BY p.line"
            )
        ).fetchall()
    # The header is line 1: txn_1 is line 2.
    assert lines == [
        (2, None, False),
        (3, None, True),
        (4, None, True),
        (5, 3, False),
        (6, 2, False),
        (7, 3, False),
    ]
    assert run["summary"]["matched"]["reference"] == 2
    assert run["summary"]["breaks_opened"] == {"duplicate": 2, "missing_internal": 2}
