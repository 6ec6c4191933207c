"""Defects found reviewing reconciliation: each test fails while the defect is there, and
says what is wrong and what correct behaviour is. Those still open are strict xfails:
fixing one makes its test pass, and the xfail must then go."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.api.context import Services
from payrail.api.pagination import page_ids
from payrail.clock import ManualClock, unix
from payrail.connectors.sandbox import reports
from payrail.connectors.sandbox_connector import SandboxConnector
from payrail.errors import InvalidRequest
from payrail.recon import service, worker
from payrail.recon.commands import CommandError, run_file
from payrail.recon.formats.common import ReportError
from payrail.recon.partitions import ensure_partition
from payrail.recon.runs import Rules, Source, reconcile_bank, reconcile_provider
from payrail.recon.schemas import BreakList
from payrail.tenants.scope import Scope
from payrail.tenants.service import NewMerchant
from tests.conftest import new_merchant
from tests.connectors.accounts.helpers import create_account
from tests.recon.helpers import DAY, expect, pay, stripe_row, write_report
from tests.recon.test_sandbox_days import balance

RULES = Rules(fallback_window=None)


def known_defect(what: str) -> pytest.MarkDecorator:
    """Still open: a strict xfail, which fails the day the defect is fixed."""
    return pytest.mark.xfail(strict=True, reason=f"known defect: {what}")


@pytest.fixture
async def scope(merchant: NewMerchant) -> Scope:
    return Scope(merchant.id, False)


@pytest.fixture
async def account(client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    """A connector account whose reports are files: its provider is never called."""
    made = await create_account(client, auth, base_url="http://127.0.0.1:9", currencies=[])
    return str(made["id"])


def day(n: int) -> date:
    """The n-th day of the reviewed scenarios, DAY being the first."""
    return DAY + timedelta(days=n - 1)


async def run_provider(
    pool: AsyncConnectionPool,
    scope: Scope,
    clock: ManualClock,
    connector: str,
    source: Source,
    on: date,
    rules: Rules = RULES,
) -> dict[str, Any]:
    async with pool.connection() as conn, conn.transaction():
        run, made = await reconcile_provider(conn, scope, clock, connector, source, on, rules)
    assert made
    return run


async def run_bank(
    pool: AsyncConnectionPool,
    scope: Scope,
    clock: ManualClock,
    directory: Path,
    on: date,
    lines: list[str],
) -> dict[str, Any]:
    path = directory / f"bank-{on}.csv"
    path.write_text("\n".join(["date,amount,currency,reference,description", *lines]) + "\n")
    async with pool.connection() as conn, conn.transaction():
        run, made = await reconcile_bank(conn, scope, clock, Source(path, "bank", path.name), on)
    assert made
    return run


def bank_line(on: date, amount: int, reference: str, description: str = "") -> str:
    """A USD credit of a bank statement, `amount` in cents."""
    return f"{on},{amount // 100}.{amount % 100:02d},USD,{reference},{description}"


async def breaks_of(pool: AsyncConnectionPool, reference: str) -> list[tuple[str, str]]:
    """(type, status) of every break about `reference`, oldest first."""
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT type, status FROM recon_breaks WHERE reference = %s ORDER BY seq",
                (reference,),
            )
        ).fetchall()
    return [(kind, status) for kind, status in rows]


async def in_transit(pool: AsyncConnectionPool, scope: Scope) -> int:
    return await balance(
        pool, scope, "recon_ledger_accounts", purpose="payouts_in_transit", currency="USD"
    )


async def scalar(pool: AsyncConnectionPool, query: str, *params: Any) -> Any:
    async with pool.connection() as conn:
        return await scalar_on(conn, query, *params)


async def scalar_on(conn: psycopg.AsyncConnection[Any], query: str, *params: Any) -> Any:
    row = await (await conn.execute(query, params)).fetchone()
    assert row is not None
    return row[0]


async def test_summary_rows_is_the_reports_row_count_not_a_matched_count(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, account: str, tmp_path: Path
) -> None:
    """The run's summary says how many rows the report had. `reconcile_provider` reuses
    the name `count` for the matched totals' loop, so `rows` is the matched count of the
    last currency, here 1 for a four-row report (the report object itself says 4)."""
    clock.current = clock.current.replace(hour=12)
    await expect(pool, scope, clock, account, "charge", "ch_a", 1000, 59)
    rows = [
        stripe_row("txn_1", "ch_a", "charge", 1000, 59),
        stripe_row("txn_2", "ch_who", "charge", 500, 45),
        stripe_row("txn_3", "", "fee", -200, 0),
        stripe_row("txn_4", "ch_who_else", "charge", 700, 50),
    ]
    run = await run_provider(
        pool, scope, clock, account, write_report(tmp_path, "d1.csv", rows), day(1)
    )
    assert run["report"]["rows"] == 4
    assert run["summary"]["rows"] == 4


async def test_a_stripe_payout_named_by_two_days_reports_is_the_sum_of_both(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, account: str, tmp_path: Path
) -> None:
    """Stripe names its payout on every row it settles, and a payout settles the rows
    of several days. Day 2's rows naming po_1 are posted to payouts in transit, but the
    payout kept for the bank stays day 1's sum (`insert_payout` does nothing on
    conflict). In transit then holds more than the payouts not yet at the bank, and the
    bank line of the whole payout matches nothing: a missing_internal at the bank, and
    the payout later missing_at_bank. Correct: the payout is the sum of every row that
    names it, so its bank line matches it and nothing breaks."""
    clock.current = clock.current.replace(hour=12)
    await expect(pool, scope, clock, account, "charge", "ch_a", 1000, 59)
    first = [stripe_row("txn_1", "ch_a", "charge", 1000, 59, payout="po_1")]
    await run_provider(pool, scope, clock, account, write_report(tmp_path, "d1.csv", first), day(1))
    clock.current += timedelta(days=1)
    await expect(pool, scope, clock, account, "charge", "ch_b", 2000, 88)
    second = [stripe_row("txn_2", "ch_b", "charge", 2000, 88, day=day(2), payout="po_1")]
    await run_provider(
        pool, scope, clock, account, write_report(tmp_path, "d2.csv", second), day(2)
    )
    whole = (1000 - 59) + (2000 - 88)
    assert await in_transit(pool, scope) == whole
    waiting = await scalar(
        pool, "SELECT sum(amount) FROM recon_payouts WHERE arrived_run_id IS NULL"
    )
    assert waiting == whole, "payouts in transit must equal the payouts not yet at the bank"
    bank = await run_bank(pool, scope, clock, tmp_path, day(3), [bank_line(day(3), whole, "po_1")])
    assert bank["summary"]["matched"]["payouts"] == 1
    assert bank["summary"]["breaks_opened"] == {}
    assert await in_transit(pool, scope) == 0


async def test_a_status_mismatch_row_matches_when_payrail_records_the_movement(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, account: str, tmp_path: Path
) -> None:
    """Stripe's dispute and its reversal share the du_ id. The provider reports the won
    dispute's reinstatement before payrail records it: a status_mismatch, right then.
    When payrail records it the next day, the row should match the new expectation and
    the status_mismatch close (its suspense moved back). Only open missing_internal rows
    of earlier reports are tried again (`_CANDIDATE_ROWS`), so the reinstatement waits
    as timing, escalates to missing_at_provider although the provider reported it, and
    the status_mismatch stays open: one movement, two breaks, both wrong."""
    clock.current = clock.current.replace(hour=12)
    await expect(pool, scope, clock, account, "dispute", "du_1", -1000)
    withdrawn = [stripe_row("txn_1", "du_1", "dispute", -1000, 0, payout="")]
    await run_provider(
        pool, scope, clock, account, write_report(tmp_path, "d1.csv", withdrawn), day(1)
    )
    reinstated = [stripe_row("txn_2", "du_1", "dispute_reversal", 1000, 0, day=day(2), payout="")]
    await run_provider(
        pool, scope, clock, account, write_report(tmp_path, "d2.csv", reinstated), day(2)
    )
    assert await breaks_of(pool, "du_1") == [("status_mismatch", "open")]
    clock.current += timedelta(days=2)
    await expect(pool, scope, clock, account, "dispute_reversal", "du_1", 1000)
    for n in range(3, 7):
        empty = write_report(tmp_path, f"d{n}.csv", [])
        await run_provider(pool, scope, clock, account, empty, day(n))
    assert await breaks_of(pool, "du_1") == [("status_mismatch", "resolved")]


async def test_a_guess_by_amount_does_not_take_an_expectation_whose_own_row_comes_later(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, account: str, tmp_path: Path
) -> None:
    """The fallback rule pairs a row payrail does not know with any unmatched expectation
    of the same kind, currency and amount, including one that has its own provider
    reference and whose row is merely a day late. A charge made straight at the provider
    (ch_direct) then takes ch_a's place; ch_a's own row arrives the next day and is
    called a duplicate, while the unexplained charge is hidden as matched. Correct: rule
    1 first, always: ch_a's row matches ch_a, and ch_direct is missing_internal."""
    clock.current = clock.current.replace(hour=12)
    await expect(pool, scope, clock, account, "charge", "ch_a", 1500, 74)
    direct = [stripe_row("txn_1", "ch_direct", "charge", 1500, 74, payout="")]
    await run_provider(
        pool, scope, clock, account, write_report(tmp_path, "d1.csv", direct), day(1), Rules()
    )
    late = [stripe_row("txn_2", "ch_a", "charge", 1500, 74, payout="")]
    await run_provider(
        pool, scope, clock, account, write_report(tmp_path, "d2.csv", late), day(2), Rules()
    )
    assert await breaks_of(pool, "ch_a") in ([], [("timing", "resolved")])
    assert await breaks_of(pool, "ch_direct") == [("missing_internal", "open")]


async def test_an_item_arriving_after_its_break_was_resolved_by_hand_reaches_the_ledger(
    pool: AsyncConnectionPool,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    scope: Scope,
    clock: ManualClock,
    connector: str,
    tmp_path: Path,
) -> None:
    """A capture the provider does not report escalates to missing_at_provider, taking
    its net off the provider balance; a person resolves it with a note (its suspense
    stays, as designed). Then the provider does report it. The row matches the
    expectation, no break is open to close, and nothing is posted: the ledger's provider
    balance stays short of what the provider holds, and no break says so. Correct: the
    arrival puts the net back on the provider balance (against suspense) and is shown as
    a break of its own for the person who moved the first one on."""
    await pay(client, auth, 1000)
    found = await scalar(
        pool, "SELECT row(provider_reference, amount, fee) FROM settlement_expectations"
    )
    reference, amount, fee = found[0], int(found[1]), int(found[2])
    for n in range(1, 5):
        clock.current += timedelta(days=1)
        empty = write_report(tmp_path, f"d{n}.csv", [])
        await run_provider(pool, scope, clock, connector, empty, day(n))
    [(escalated, _)] = await breaks_of(pool, reference)
    assert escalated == "missing_at_provider"
    async with pool.connection() as conn, conn.transaction():
        break_id = await (
            await conn.execute("SELECT id FROM recon_breaks WHERE reference = %s", (reference,))
        ).fetchone()
        assert break_id is not None
        await service.resolve_break(conn, scope, clock, break_id[0], "written off")
    clock.current += timedelta(days=1)
    arrived = [stripe_row("txn_1", reference, "charge", amount, fee, day=day(5), payout="")]
    await run_provider(
        pool, scope, clock, connector, write_report(tmp_path, "d5.csv", arrived), day(5)
    )
    provider_balance = await balance(
        pool,
        scope,
        "payment_ledger_accounts",
        purpose="provider_balance",
        currency="USD",
        connector_account_id=connector,
    )
    assert provider_balance == amount - fee, "the provider holds the capture's net"
    assert await breaks_of(pool, reference) == [
        ("missing_at_provider", "resolved"),
        ("after_resolution", "open"),
    ]
    listed = await client.get(
        "/v1/reconciliation_breaks", headers=auth, params={"type": "after_resolution"}
    )
    [follow] = listed.json()["data"]
    assert (follow["follows_break"], follow["suspense_amount"]) == (break_id[0], amount - fee)
    # Once: the next day's run moves nothing more for it.
    clock.current += timedelta(days=1)
    await run_provider(pool, scope, clock, connector, write_report(tmp_path, "d6.csv", []), day(6))
    assert len(await breaks_of(pool, reference)) == 2
    assert (
        await balance(
            pool,
            scope,
            "payment_ledger_accounts",
            purpose="provider_balance",
            currency="USD",
            connector_account_id=connector,
        )
        == amount - fee
    )


async def test_a_reversed_payout_is_not_waited_for_at_the_bank(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, account: str, tmp_path: Path
) -> None:
    """A payout that came back (Stripe payout_reversal, PayPal T0400 CR, Adyen
    BankInstructionReturned) takes its amount off payouts in transit, but the payout
    kept for the bank is left as it was. The bank run waits for it, escalates it to
    missing_at_bank and takes its amount off in transit a second time: in transit goes
    negative. Correct: the reversal settles the kept payout, so the bank never waits for
    it, and in transit is back to 0."""
    paid = [stripe_row("txn_1", "po_9", "payout", -1000, 0, payout="")]
    await run_provider(pool, scope, clock, account, write_report(tmp_path, "d1.csv", paid), day(1))
    assert await in_transit(pool, scope) == 1000
    back = [stripe_row("txn_2", "po_9", "payout_reversal", 1000, 0, day=day(2), payout="")]
    await run_provider(pool, scope, clock, account, write_report(tmp_path, "d2.csv", back), day(2))
    assert await in_transit(pool, scope) == 0
    for n in range(2, 6):
        await run_bank(pool, scope, clock, tmp_path, day(n), [])
    assert await in_transit(pool, scope) == 0
    assert ("missing_at_bank", "open") not in await breaks_of(pool, "po_9")


async def test_an_adyen_batch_without_a_merchant_payout_row_pays_nothing_out(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, account: str, tmp_path: Path
) -> None:
    """Adyen lists its payouts as MerchantPayout rows; a batch is not a payout (a batch
    closes daily, a payout follows the merchant's schedule). Every Adyen row carries its
    Batch Number as payout_reference, so `_explained` makes a payout of any batch with no
    MerchantPayout row, as it does for Stripe's automatic_payout_id: the ledger moves the
    batch's net from the provider balance to payouts in transit while Adyen still holds
    it, and the bank run will wait for a payout that was never sent. Correct: for Adyen
    (and PayPal) only listed payout rows are payouts."""
    clock.current = clock.current.replace(hour=12)
    await expect(pool, scope, clock, account, "charge", "psp_1", 1000, 59)
    charge = reports.Movement(
        id="txn_1",
        kind="charge",
        reference="psp_1",
        payment="psp_1",
        merchant_reference="order_1",
        brand="visa",
        currency="usd",
        gross=1000,
        fee=59,
        occurred=unix(datetime(2026, 1, 1, 10, tzinfo=UTC)),
    )
    path = tmp_path / "settlement_detail_report_batch_7.csv"
    path.write_text(reports.adyen([charge], [], day(1)))
    run = await run_provider(pool, scope, clock, account, Source(path, "adyen", path.name), day(1))
    assert run["summary"]["breaks_opened"] == {}
    assert run["summary"]["payouts"] == {}
    assert await scalar(pool, "SELECT count(*) FROM recon_payouts") == 0
    assert await in_transit(pool, scope) == 0


async def test_runs_of_two_merchants_in_one_month_do_not_wait_for_each_other(
    pool: AsyncConnectionPool,
    client: httpx.AsyncClient,
    scope: Scope,
    clock: ManualClock,
    account: str,
    tmp_path: Path,
) -> None:
    """`ensure_partition` takes an advisory lock named after the month's partition on
    every run, whether the partition exists or not, and holds it to the end of the
    run's transaction. Every provider run of a month, of every merchant and connector
    account, waits for the one before it to commit: "any number of workers" reconcile one
    report at a time, for the whole of a million-row run. Correct: a run whose month's
    partition exists takes no lock of the month, and a partition is made outside the
    run's transaction, ahead of time."""
    other = await new_merchant(pool, clock, "Other Merchant")
    other_scope = Scope(other.id, False)
    other_auth = {"Authorization": f"Bearer {other.test_secret}"}
    made = await create_account(client, other_auth, base_url="http://127.0.0.1:9", currencies=[])
    async with pool.connection() as conn, conn.transaction():
        await ensure_partition(conn, day(1))  # the month's partition is there already
    first = write_report(tmp_path, "a.csv", [stripe_row("txn_1", "ch_a", "charge", 1000, 59)])
    second = write_report(tmp_path, "b.csv", [stripe_row("txn_2", "ch_b", "charge", 2000, 88)])

    async def other_run() -> None:
        async with pool.connection() as conn, conn.transaction():
            await reconcile_provider(conn, other_scope, clock, made["id"], second, day(2), RULES)

    async with pool.connection() as conn:
        async with conn.transaction(force_rollback=True):
            await reconcile_provider(conn, scope, clock, account, first, day(1), RULES)
            running = asyncio.create_task(other_run())
            done, _ = await asyncio.wait([running], timeout=5)
            async with pool.connection() as look:
                waiting = await (
                    await look.execute(
                        "SELECT locktype, objid = (hashtextextended(%s, 0) & 4294967295)::oid"
                        " FROM pg_locks WHERE NOT granted",
                        ("recon_provider_transactions_2026_01",),
                    )
                ).fetchall()
        await running
    assert done, f"the other merchant's run waited on {waiting} (locktype, the month's lock)"


@pytest.mark.parametrize("mistake", ["unknown format", "unknown merchant"])
async def test_a_mistaken_recon_command_is_a_clean_error_not_a_database_traceback(
    mistake: str,
    database_url: str,
    clock: ManualClock,
    account: str,
    tmp_path: Path,
) -> None:
    """`payrail recon run --provider strip` or `payrail recon bank --merchant mer_typo`
    get as far as inserting the report row: PostgreSQL refuses it (the format CHECK, the
    merchant foreign key), and psycopg's IntegrityError escapes as a traceback, since
    run_file turns only ReportError and PayrailError into a CommandError (exit 2).
    Correct: the format is checked before anything is written, and an unknown merchant
    is a CommandError naming it."""
    report = write_report(tmp_path, "r.csv", [stripe_row("txn_1", "ch_a", "charge", 1000, 59)])
    provider, merchant = ("strip", None) if mistake == "unknown format" else ("bank", "mer_typo")
    with pytest.raises(CommandError):
        await run_file(
            database_url,
            clock,
            provider=provider,
            path=report.path,
            report_date=day(1),
            connector=account,
            merchant=merchant,
            livemode=False,
        )


# A non-hashed IN / NOT IN subplan: evaluated by scanning the subquery's whole result once
# per outer row. A hashed one prints as "(hashed SubPlan n)", EXISTS as "EXISTS(SubPlan n)".
_RESCANNED_SUBPLAN = re.compile(r"\(SubPlan \d+\)\.col")


async def test_a_million_row_run_does_not_rescan_its_matches_once_per_row(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, account: str, tmp_path: Path
) -> None:
    """The run excludes what it matched with `x NOT IN (SELECT ... FROM recon_matches
    WHERE run_id = %s)` (the fallback rule twice, `unmatched_rows`, `unexpected`).
    PostgreSQL hashes such a list only while its estimated size fits in hash memory
    (work_mem x hash_mem_multiplier, 8 MB by default: about 260,000 rows); past that it
    rescans the whole list for every outer row, and a run of N rows costs N x N. With
    the statistics of a deployment that has reconciled a million rows a day for 100
    days (set here with pg_restore_*_stats rather than made), every one of those plans
    is the rescanning one. Measured (scratch, 20,000 rows with work_mem scaled down
    64 times to put the list past the limit): 410 s against 1.2 s. Correct: anti-joins
    (NOT EXISTS, or a LEFT JOIN ... IS NULL), which PostgreSQL runs as a hash anti-join
    at any size."""
    clock.current = clock.current.replace(hour=12)
    for n in range(3):
        await expect(pool, scope, clock, account, "charge", f"ch_{n}", 1000 + n, 59)
    rows = [stripe_row(f"txn_{n}", f"ch_{n}", "charge", 1000 + n, 59) for n in range(3)]
    await run_provider(pool, scope, clock, account, write_report(tmp_path, "d1.csv", rows), day(1))
    async with pool.connection() as conn:
        await conn.execute(
            "SELECT pg_restore_relation_stats('schemaname', 'public', 'relname',"
            " 'recon_matches', 'reltuples', 100000000::real,"
            " 'relpages', (pg_relation_size('recon_matches') / 8192)::integer)"
        )
        await conn.execute(
            "SELECT pg_restore_attribute_stats('schemaname', 'public', 'relname',"
            " 'recon_matches', 'attname', 'run_id', 'inherited', false, 'null_frac', 0::real,"
            " 'avg_width', 29, 'n_distinct', 100::real)"
        )
    clock.current += timedelta(days=1)
    for n in range(3, 6):
        await expect(pool, scope, clock, account, "charge", f"ch_{n}", 1000 + n, 59)
    rows = [
        stripe_row(f"txn_{n}", f"ch_{n}", "charge", 1000 + n, 59, day=day(2)) for n in range(3, 5)
    ]
    plans: list[str] = []
    async with pool.connection() as conn:
        conn.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
        for setting in (
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = 0",
            "SET auto_explain.log_level = 'notice'",
        ):
            await conn.execute(setting)
        async with conn.transaction():
            await reconcile_provider(
                conn, scope, clock, account, write_report(tmp_path, "d2.csv", rows), day(2)
            )
    assert any("recon_matches" in plan for plan in plans), "auto_explain showed no plans"
    rescanning = [
        line.strip()
        for plan in plans
        for line in plan.splitlines()
        if _RESCANNED_SUBPLAN.search(line)
    ]
    assert rescanning == [], "\n".join(rescanning)


async def test_a_payout_reported_after_its_bank_line_was_seen_matches_that_line(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, account: str, tmp_path: Path
) -> None:
    """Runs need not come in order: the bank statement of day 2 can be reconciled before
    the provider report of day 1 that lists the payout (the report came out late; the
    worker catches up). The line becomes missing_internal at the bank, which is right
    then; but `match_bank_lines` only looks at the statement being run, so when the
    payout is reported it waits for a line that already came, escalates to
    missing_at_bank, and the line stays missing_internal: the same money twice in
    suspense's breaks and never closed. Correct: unmatched lines of earlier statements
    are tried again (as provider rows are, for lookback_days), and both sides close."""
    # Payrail's record of the charge, so that the only difference is the bank's.
    clock.current = clock.current.replace(hour=12)
    await expect(pool, scope, clock, account, "charge", "ch_a", 1000, 59)
    await run_bank(pool, scope, clock, tmp_path, day(2), [bank_line(day(2), 941, "po_7")])
    paid = [stripe_row("txn_1", "ch_a", "charge", 1000, 59, payout="po_7")]
    await run_provider(pool, scope, clock, account, write_report(tmp_path, "d1.csv", paid), day(1))
    for n in range(3, 7):
        await run_bank(pool, scope, clock, tmp_path, day(n), [])
    assert [b for b in await breaks_of(pool, "po_7") if b[1] == "open"] == []
    suspense = await balance(
        pool, scope, "recon_ledger_accounts", purpose="suspense", currency="USD"
    )
    assert (await in_transit(pool, scope), suspense) == (0, 0)


async def test_a_payout_found_by_its_reference_at_the_bank_arrives_though_short(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, account: str, tmp_path: Path
) -> None:
    """The design matches a payout to a bank line by its reference first. The SQL's
    reference rule also demands the same amount, so a payout the bank credits less a
    wire fee (the line names po_8, 15 cents short) is not matched at all: the line is a
    missing_internal and the payout, which did arrive, escalates to missing_at_bank.
    Correct: the line is po_8's arrival, and the 15 cents are one break of their own."""
    paid = [stripe_row("txn_1", "ch_a", "charge", 1000, 59, payout="po_8")]
    await run_provider(pool, scope, clock, account, write_report(tmp_path, "d1.csv", paid), day(1))
    line = bank_line(day(2), 941 - 15, "", "STRIPE TRANSFER po_8 LESS FEE")
    bank = await run_bank(pool, scope, clock, tmp_path, day(2), [line])
    assert bank["summary"]["matched"]["payouts"] == 1
    assert bank["summary"]["breaks_opened"] == {"amount_mismatch": 1}
    short = await scalar(
        pool,
        "SELECT row(expected_net, reported_net, suspense_amount) FROM recon_breaks"
        " WHERE reference = 'po_8'",
    )
    assert tuple(int(v) for v in short) == (941, 926, -15)
    assert await in_transit(pool, scope) == 0
    at_bank = await balance(pool, scope, "recon_ledger_accounts", purpose="bank", currency="USD")
    assert at_bank == 926
    for n in range(3, 7):
        await run_bank(pool, scope, clock, tmp_path, day(n), [])
    assert await breaks_of(pool, "po_8") == [("amount_mismatch", "open")]


async def test_a_second_row_of_a_reference_is_a_duplicate_once_the_first_matches(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, account: str, tmp_path: Path
) -> None:
    """A charge reported on day 1 and again on day 2, before payrail records it: two
    missing_internal breaks, right then. When payrail's record appears on day 3 the
    first row matches and its break closes; the second is now a duplicate of a matched
    row, but its break stays missing_internal (only rows of the run's own report are
    classified). Correct: it is re-typed duplicate, as the design's rule 1 says of the
    rows after the earliest."""
    clock.current = clock.current.replace(hour=12)
    for n in (1, 2):
        row = [stripe_row(f"txn_{n}", "ch_a", "charge", 1000, 59, day=day(n), payout="")]
        await run_provider(
            pool, scope, clock, account, write_report(tmp_path, f"d{n}.csv", row), day(n)
        )
    clock.current += timedelta(days=2)
    await expect(pool, scope, clock, account, "charge", "ch_a", 1000, 59)
    await run_provider(pool, scope, clock, account, write_report(tmp_path, "d3.csv", []), day(3))
    assert [b for b in await breaks_of(pool, "ch_a") if b[1] == "open"] == [("duplicate", "open")]


async def test_a_person_resolves_a_break_while_a_run_of_its_connector_is_going(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, account: str, tmp_path: Path
) -> None:
    """`open_breaks` selects every open break of the connector account FOR UPDATE and
    holds the locks to the end of the run, though only timing, missing_internal,
    missing_at_provider and missing_at_bank breaks can change in a run. A person
    resolving a duplicate through the API waits for the whole run (minutes, for a
    million rows). The same query also reads every open break into Python on every
    run: measured (scratch), an empty day's run takes 0.08 s with no open breaks, 2.9 s
    with 100,000, 12.5 s with 1,000,000, and a million-row day leaves thousands of
    breaks open that only a person closes. Correct: a run locks and reads only the
    breaks it may change (due or arrived), found in SQL."""
    clock.current = clock.current.replace(hour=12)
    await expect(pool, scope, clock, account, "charge", "ch_d", 1000, 59)
    twice = [
        stripe_row("txn_1", "ch_d", "charge", 1000, 59, payout=""),
        stripe_row("txn_2", "ch_d", "charge", 1000, 59, payout=""),
    ]
    await run_provider(pool, scope, clock, account, write_report(tmp_path, "d1.csv", twice), day(1))
    duplicate = await scalar(pool, "SELECT id FROM recon_breaks WHERE type = 'duplicate'")

    async def resolve() -> None:
        async with pool.connection() as conn, conn.transaction():
            await service.resolve_break(conn, scope, clock, duplicate, "refunded the copy")

    async with pool.connection() as conn:
        async with conn.transaction(force_rollback=True):
            empty = write_report(tmp_path, "d2.csv", [])
            await reconcile_provider(conn, scope, clock, account, empty, day(2), RULES)
            resolving = asyncio.create_task(resolve())
            done, _ = await asyncio.wait([resolving], timeout=5)
        await resolving
    assert done, "resolving an unrelated duplicate waited for the run to commit"


async def test_an_amount_too_large_to_keep_is_refused_by_line_and_column(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, account: str, tmp_path: Path
) -> None:
    """An amount past what a bigint holds (a corrupt or hostile report) passes the
    parser, which checks its digits only, and fails inside COPY: psycopg's
    NumericValueOutOfRange, which names the COPY stream's line, not the file's, and
    which `payrail recon run` shows as a traceback. Correct: a ReportError naming the
    file, its line and the column."""
    path = tmp_path / "huge.csv"
    path.write_text(
        "balance_transaction_id,created_utc,currency,gross,fee,net,reporting_category,source_id\n"
        "txn_1,2026-01-01 10:00:00,usd,10.00,0.59,9.41,charge,ch_a\n"
        "txn_2,2026-01-01 10:00:00,usd,100000000000000000.00,0.00,100000000000000000.00,"
        "charge,ch_b\n"
    )
    with pytest.raises(ReportError) as refused:
        await run_provider(pool, scope, clock, account, Source(path, "stripe", path.name), day(1))
    assert (refused.value.file, refused.value.line, refused.value.column) == (
        "huge.csv",
        3,
        "gross",
    )


async def test_a_payout_arriving_after_its_bank_break_was_resolved_by_hand_leaves_transit_at_0(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, account: str, tmp_path: Path
) -> None:
    """The bank side of the same hole: a payout not at the bank escalates to
    missing_at_bank (its amount off payouts in transit, into suspense); a person
    resolves it. When it does arrive, the run moves it from in transit to the bank a
    second time, since the resolved break is not looked at: payouts in transit goes
    negative. Correct: in transit ends at 0, the arrival's amount coming back from
    suspense, and the late arrival shown as a break."""
    paid = [stripe_row("txn_1", "ch_a", "charge", 1000, 59, payout="po_5")]
    await run_provider(pool, scope, clock, account, write_report(tmp_path, "d1.csv", paid), day(1))
    for n in range(2, 6):
        await run_bank(pool, scope, clock, tmp_path, day(n), [])
    assert await breaks_of(pool, "po_5") == [("missing_at_bank", "open")]
    missing = await scalar(pool, "SELECT id FROM recon_breaks WHERE reference = 'po_5'")
    async with pool.connection() as conn, conn.transaction():
        await service.resolve_break(conn, scope, clock, missing, "asked the bank")
    await run_bank(pool, scope, clock, tmp_path, day(6), [bank_line(day(6), 941, "po_5")])
    assert await in_transit(pool, scope) == 0
    assert await breaks_of(pool, "po_5") == [
        ("missing_at_bank", "resolved"),
        ("after_resolution", "open"),
    ]
    at_bank = await balance(pool, scope, "recon_ledger_accounts", purpose="bank", currency="USD")
    assert at_bank == 941


async def test_listing_a_merchants_breaks_does_not_read_other_merchants_breaks(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, account: str, tmp_path: Path
) -> None:
    """recon_breaks has no (merchant_id, livemode, seq) index, which every other listed
    table has; `GET /v1/reconciliation_breaks` orders by seq and filters by merchant, so
    a merchant with few breaks walks the seq index through every other merchant's
    (a million-row report a day leaves thousands). Here one merchant has 20,000 breaks
    and another lists its none: PostgreSQL reads all 20,000. Correct: an index on
    (merchant_id, livemode, seq), as breaks grow every day."""
    await run_provider(pool, scope, clock, account, write_report(tmp_path, "d1.csv", []), day(1))
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO recon_breaks (id, merchant_id, livemode, connector_account_id, stage,"
            " type, status, provider_transaction_id, reference, currency, expected_net,"
            " reported_net, suspense_amount, opened_run_id, created_at, updated_at)"
            " SELECT 'rbk_' || g, %s, false, %s, 'provider', 'duplicate', 'open', g, 'ch_' || g,"
            " 'USD', 0, 100, 100, (SELECT id FROM recon_runs), now(), now()"
            " FROM generate_series(1, 20000) g",
            (scope.merchant_id, account),
        )
        await conn.execute("ANALYZE recon_breaks")
    other = await new_merchant(pool, clock, "Small Merchant")
    rows_read = (
        "SELECT pg_stat_get_xact_tuples_fetched('recon_breaks'::regclass)"
        " + pg_stat_get_xact_tuples_returned('recon_breaks'::regclass)"
    )
    async with pool.connection() as conn, conn.transaction():
        before = await scalar_on(conn, rows_read)
        ids, _ = await page_ids(conn, "recon_breaks", Scope(other.id, False), BreakList())
        read = await scalar_on(conn, rows_read) - before
    assert ids == []
    assert read < 100, f"listing no breaks read {read} rows of another merchant's"


async def test_a_payout_reversed_while_the_bank_waits_for_it_is_not_escalated(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, account: str, tmp_path: Path
) -> None:
    """A payout comes back days after it was sent, so the bank run is already waiting
    for it (an open timing break) when the provider reports the reversal. The reversal
    marks the kept payout (`reverse_payouts`), but its timing break stays open and
    escalates to missing_at_bank, taking the amount off payouts in transit a second
    time: in transit goes negative. Correct: the reversal closes the waiting break, and
    in transit stays at 0."""
    paid = [stripe_row("txn_1", "po_9", "payout", -1000, 0, payout="")]
    await run_provider(pool, scope, clock, account, write_report(tmp_path, "d1.csv", paid), day(1))
    await run_bank(pool, scope, clock, tmp_path, day(2), [])
    assert await breaks_of(pool, "po_9") == [("timing", "open")]
    back = [stripe_row("txn_2", "po_9", "payout_reversal", 1000, 0, day=day(3), payout="")]
    await run_provider(pool, scope, clock, account, write_report(tmp_path, "d3.csv", back), day(3))
    for n in range(3, 6):
        await run_bank(pool, scope, clock, tmp_path, day(n), [])
    assert await in_transit(pool, scope) == 0
    assert ("missing_at_bank", "open") not in await breaks_of(pool, "po_9")


@pytest.mark.parametrize("resolved_by_hand", [False, True])
async def test_a_payout_reversed_after_it_escalated_at_the_bank_leaves_transit_at_0(
    resolved_by_hand: bool,
    pool: AsyncConnectionPool,
    scope: Scope,
    clock: ManualClock,
    account: str,
    tmp_path: Path,
) -> None:
    """A payout comes back after the bank run gave up on it (missing_at_bank: its amount
    off payouts in transit, into suspense), and after a person resolved that break or
    not. The reversal takes the amount off in transit once more; what the break moved
    comes back at once, by the provider run that reports the reversal: closing the open
    break, or in a break of its own after the person's."""
    paid = [stripe_row("txn_1", "po_9", "payout", -1000, 0, payout="")]
    await run_provider(pool, scope, clock, account, write_report(tmp_path, "d1.csv", paid), day(1))
    for n in range(2, 6):
        await run_bank(pool, scope, clock, tmp_path, day(n), [])
    assert await breaks_of(pool, "po_9") == [("missing_at_bank", "open")]
    if resolved_by_hand:
        missing = await scalar(pool, "SELECT id FROM recon_breaks WHERE reference = 'po_9'")
        async with pool.connection() as conn, conn.transaction():
            await service.resolve_break(conn, scope, clock, missing, "asked the bank")
    back = [stripe_row("txn_2", "po_9", "payout_reversal", 1000, 0, day=day(6), payout="")]
    await run_provider(pool, scope, clock, account, write_report(tmp_path, "d6.csv", back), day(6))
    suspense = await balance(
        pool, scope, "recon_ledger_accounts", purpose="suspense", currency="USD"
    )
    assert (await in_transit(pool, scope), suspense) == (0, 0)
    resolutions = await scalar(
        pool, "SELECT array_agg(row(type, resolution)::text ORDER BY seq) FROM recon_breaks"
    )
    if resolved_by_hand:
        assert resolutions == ["(missing_at_bank,resolved_by_user)", "(after_resolution,)"]
    else:
        assert resolutions == ["(missing_at_bank,reversed)"]


async def test_a_bank_line_naming_two_payouts_is_the_one_it_names_best(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, account: str, tmp_path: Path
) -> None:
    """Matched by reference whatever the amount, a line whose description names po_12
    also contains po_1. Each line is the payout it names best (the longer reference),
    and each payout the line that names it best: both arrive, each short by the bank's
    fee, and neither takes the other's line."""
    clock.current = clock.current.replace(hour=12)
    await expect(pool, scope, clock, account, "charge", "ch_a", 1000, 59)
    await expect(pool, scope, clock, account, "charge", "ch_b", 2000, 88)
    rows = [
        stripe_row("txn_1", "ch_a", "charge", 1000, 59, payout="po_1"),
        stripe_row("txn_2", "ch_b", "charge", 2000, 88, payout="po_12"),
    ]
    await run_provider(pool, scope, clock, account, write_report(tmp_path, "d1.csv", rows), day(1))
    lines = [
        bank_line(day(2), 1912 - 12, "", "TRANSFER po_12"),
        bank_line(day(2), 941 - 11, "", "TRANSFER po_1"),
    ]
    bank = await run_bank(pool, scope, clock, tmp_path, day(2), lines)
    assert bank["summary"]["matched"]["payouts"] == 2
    async with pool.connection() as conn:
        found = await (
            await conn.execute(
                "SELECT reference, type, expected_net, reported_net FROM recon_breaks"
                " ORDER BY reference"
            )
        ).fetchall()
    assert found == [
        ("po_1", "amount_mismatch", 941, 930),
        ("po_12", "amount_mismatch", 1912, 1900),
    ]
    assert await in_transit(pool, scope) == 0


async def test_a_run_waits_for_a_person_resolving_a_break_it_closes_and_then_follows_it(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, account: str, tmp_path: Path
) -> None:
    """A person writes off a missing_at_provider break while the run in which its row
    arrives is going. The run locks the breaks it changes: it waits for the person,
    then finds the break resolved and brings its suspense back in a break of its own;
    never both closing it and following it, and never neither."""
    clock.current = clock.current.replace(hour=12)
    await expect(pool, scope, clock, account, "charge", "ch_a", 1000, 59)
    for n in range(1, 5):
        await run_provider(
            pool, scope, clock, account, write_report(tmp_path, f"d{n}.csv", []), day(n)
        )
    assert await breaks_of(pool, "ch_a") == [("missing_at_provider", "open")]
    missing = await scalar(pool, "SELECT id FROM recon_breaks WHERE reference = 'ch_a'")
    arrived = [stripe_row("txn_1", "ch_a", "charge", 1000, 59, day=day(5), payout="")]
    async with pool.connection() as person, person.transaction():
        await service.resolve_break(person, scope, clock, missing, "written off")
        running = asyncio.create_task(
            run_provider(
                pool, scope, clock, account, write_report(tmp_path, "d5.csv", arrived), day(5)
            )
        )
        done, _ = await asyncio.wait([running], timeout=1)
        assert not done, "the run changed a break a person was resolving"
    await running
    assert await breaks_of(pool, "ch_a") == [
        ("missing_at_provider", "resolved"),
        ("after_resolution", "open"),
    ]
    provider_balance = await balance(
        pool,
        scope,
        "payment_ledger_accounts",
        purpose="provider_balance",
        currency="USD",
        connector_account_id=account,
    )
    suspense = await balance(
        pool, scope, "recon_ledger_accounts", purpose="suspense", currency="USD"
    )
    # The expectation was written without its payment's posting: the run's own postings
    # net to nothing once the row arrived.
    assert (provider_balance, suspense) == (0, 0)


async def test_a_person_resolving_a_break_a_run_has_closed_is_told_so(
    pool: AsyncConnectionPool, scope: Scope, clock: ManualClock, account: str, tmp_path: Path
) -> None:
    """The other order: the run has closed a timing break (its row arrived) and not
    committed yet. A person resolving it waits for the run, and is then told it closed
    by itself: its suspense is not left to a person as well."""
    clock.current = clock.current.replace(hour=12)
    await expect(pool, scope, clock, account, "charge", "ch_a", 1000, 59)
    await run_provider(pool, scope, clock, account, write_report(tmp_path, "d1.csv", []), day(1))
    waiting = await scalar(pool, "SELECT id FROM recon_breaks WHERE reference = 'ch_a'")

    async def resolve() -> None:
        async with pool.connection() as conn, conn.transaction():
            await service.resolve_break(conn, scope, clock, waiting, "chased it")

    arrived = [stripe_row("txn_1", "ch_a", "charge", 1000, 59, payout="")]
    async with pool.connection() as conn, conn.transaction():
        await reconcile_provider(
            conn, scope, clock, account, write_report(tmp_path, "d2.csv", arrived), day(2), RULES
        )
        resolving = asyncio.create_task(resolve())
        done, _ = await asyncio.wait([resolving], timeout=1)
        assert not done, "a person resolved a break the run was closing"
    with pytest.raises(InvalidRequest) as refused:
        await resolving
    assert refused.value.code == "break_not_open"
    assert await breaks_of(pool, "ch_a") == [("timing", "resolved")]


async def test_the_first_run_of_a_month_does_not_hold_up_runs_of_other_months(
    pool: AsyncConnectionPool,
    client: httpx.AsyncClient,
    scope: Scope,
    clock: ManualClock,
    account: str,
    tmp_path: Path,
) -> None:
    """The first run of a month makes the month's partition inside its own transaction.
    CREATE TABLE ... PARTITION OF takes an ACCESS EXCLUSIVE lock on
    recon_provider_transactions, held to the end of that run: every other run, of any
    merchant and any month, waits for it (a million-row report on the 1st of the month
    stops the whole fleet's reconciliation for its duration). Here merchant A's run of
    February 1st is in progress; merchant B's run of January 31st, whose partition
    exists, waits. Correct: partitions are made ahead of time, in a short transaction
    of their own (the worker, before a month begins), never inside a run."""
    other = await new_merchant(pool, clock, "Other Merchant")
    other_scope = Scope(other.id, False)
    other_auth = {"Authorization": f"Bearer {other.test_secret}"}
    made = await create_account(client, other_auth, base_url="http://127.0.0.1:9", currencies=[])
    async with pool.connection() as conn, conn.transaction():
        await ensure_partition(conn, date(2026, 1, 31))  # January's is there already
    february = write_report(tmp_path, "a.csv", [stripe_row("txn_1", "ch_a", "charge", 1000, 59)])
    january = write_report(tmp_path, "b.csv", [stripe_row("txn_2", "ch_b", "charge", 2000, 88)])

    async def january_run() -> None:
        async with pool.connection() as conn, conn.transaction():
            await reconcile_provider(
                conn, other_scope, clock, made["id"], january, date(2026, 1, 31), RULES
            )

    async with pool.connection() as conn:
        async with conn.transaction(force_rollback=True):
            await reconcile_provider(conn, scope, clock, account, february, date(2026, 2, 1), RULES)
            running = asyncio.create_task(january_run())
            done, _ = await asyncio.wait([running], timeout=5)
            async with pool.connection() as look:
                waiting = await (
                    await look.execute(
                        "SELECT l.locktype, l.mode, c.relname FROM pg_locks l"
                        " LEFT JOIN pg_class c ON c.oid = l.relation WHERE NOT l.granted"
                    )
                ).fetchall()
        await running
    assert done, f"January's run waited on {waiting} while February's partition was made"


async def test_racing_recon_workers_share_the_due_days_instead_of_each_doing_all(
    services: Services, clock: ManualClock, connector: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers do not share work: each walks every due (account, day) in the same order,
    downloads the report, and then queues on the account's advisory lock behind the
    worker already reconciling it, to find its run made. Two workers fetch every report
    twice and reconcile no faster than one; N workers, N times the provider's reports
    (a million-row file each). Correct: a worker claims a due day before fetching it
    (FOR UPDATE SKIP LOCKED, as the other workers' leases do), so each report is fetched
    once and workers take different days."""
    fetched: list[date] = []
    fetch = SandboxConnector.settlement_report

    async def counted(self: SandboxConnector, report_date: date, format: str) -> bytes:
        fetched.append(report_date)
        return await fetch(self, report_date, format)

    monkeypatch.setattr(SandboxConnector, "settlement_report", counted)
    clock.current = datetime(2026, 1, 2, 3, tzinfo=UTC)
    await asyncio.gather(worker.run_once(services), worker.run_once(services))
    assert sorted(fetched) == [day(-1), day(0), day(1)]
