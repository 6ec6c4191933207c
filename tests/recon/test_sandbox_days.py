"""Days of real payments through the sandbox PSP, reconciled from the sandbox's own
settlement reports and bank statements, in each of the three formats: the ledger ties
out to the provider and the bank every day, and each injected discrepancy is found."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from payrail.clock import ManualClock
from payrail.ledger import service as ledger
from payrail.recon.runs import Rules, Source, reconcile_bank, reconcile_provider
from payrail.tenants.scope import Scope
from payrail.tenants.service import NewMerchant
from tests.connectors.accounts.helpers import send
from tests.recon.helpers import pay

DAY1 = date(2026, 1, 1)
RULES = Rules(fallback_window=None)


async def fetch(psp: httpx.AsyncClient, directory: Path, path: str, **params: str) -> Path:
    reply = await psp.get(path, params=params)
    assert reply.status_code == 200, reply.text
    name = "-".join([path.rsplit("/", 1)[1], *params.values()]) + ".csv"
    (directory / name).write_bytes(reply.content)
    return directory / name


async def balance(pool: AsyncConnectionPool, scope: Scope, table: str, **key: str) -> int:
    """The posted balance of the ledger account a domain keeps for `key`."""
    query = sql.SQL("SELECT ledger_account_id FROM {} WHERE merchant_id = %s AND {}").format(
        sql.Identifier(table),
        sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in key),
    )
    async with pool.connection() as conn:
        row = await (await conn.execute(query, (scope.merchant_id, *key.values()))).fetchone()
        if row is None:
            return 0
        account = await ledger.get_account(conn, scope, row[0])
    posted: int = account["balances"]["posted"]["amount"]
    return posted


async def waiting(pool: AsyncConnectionPool) -> int:
    """What payrail booked that the provider has not reported yet (open timing breaks)."""
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT coalesce(sum(expected_net), 0) FROM recon_breaks"
                " WHERE stage = 'provider' AND type = 'timing' AND status = 'open'"
            )
        ).fetchone()
    assert row is not None
    return int(row[0])


async def open_breaks(pool: AsyncConnectionPool) -> dict[str, int]:
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT type, count(*) FROM recon_breaks WHERE status = 'open' GROUP BY type"
            )
        ).fetchall()
    return dict(rows)


@pytest.mark.parametrize("format", ["stripe", "paypal", "adyen"])
async def test_days_tie_out_and_every_injected_discrepancy_is_found(
    format: str,
    pool: AsyncConnectionPool,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    psp: httpx.AsyncClient,
    clock: ManualClock,
    connector: str,
    tmp_path: Path,
) -> None:
    scope = Scope(merchant.id, False)

    async def reconcile(day: date) -> dict[str, Any]:
        path = await fetch(
            psp, tmp_path, "/sandbox/settlement_reports", date=day.isoformat(), format=format
        )
        async with pool.connection() as conn, conn.transaction():
            run, made = await reconcile_provider(
                conn, scope, clock, connector, Source(path, format, path.name), day, RULES
            )
        assert made
        return run

    async def provider_balance() -> int:
        return await balance(
            pool,
            scope,
            "payment_ledger_accounts",
            purpose="provider_balance",
            currency="USD",
            connector_account_id=connector,
        )

    # Day 1: a clean day. Everything matches; the payout empties the provider balance.
    for amount, refund in ((1500, 0), (2500, 700), (990, 0), (12000, 0)):
        await pay(client, auth, amount, refund=refund)
    clock.current = datetime(2026, 1, 2, 2, tzinfo=UTC)
    day1 = await reconcile(DAY1)
    assert day1["summary"]["breaks_opened"] == {}, day1["summary"]
    assert day1["summary"]["matched"]["reference"] == 5
    assert await provider_balance() == 0
    paid_out = day1["summary"]["payouts"]["USD"]
    assert (
        await balance(
            pool, scope, "recon_ledger_accounts", purpose="payouts_in_transit", currency="USD"
        )
        == paid_out
    )

    # The payout reaches the bank the next day: in transit moves to the bank.
    statement = await fetch(psp, tmp_path, "/sandbox/bank_statements", date="2026-01-02")
    async with pool.connection() as conn, conn.transaction():
        bank_run, _ = await reconcile_bank(
            conn, scope, clock, Source(statement, "bank", statement.name), date(2026, 1, 2), RULES
        )
    assert bank_run["summary"]["matched"]["payouts"] == 1
    assert bank_run["summary"]["breaks_opened"] == {}
    assert (
        await balance(
            pool, scope, "recon_ledger_accounts", purpose="payouts_in_transit", currency="USD"
        )
        == 0
    )
    assert await balance(pool, scope, "recon_ledger_accounts", purpose="bank", currency="USD") == (
        paid_out
    )

    # Day 2: the provider drops one row, changes an amount and a fee, reports one twice
    # and one a day late.
    discrepancies = {
        "date": "2026-01-02",
        **{"seed": 7, "drop": 1, "amount": 1, "fee": 1, "duplicate": 1, "late": 1},
    }
    assert (await psp.post("/sandbox/report_discrepancies", json=discrepancies)).status_code == 200
    for amount in (1100, 1200, 1300, 1400, 1500, 1600, 1700, 1800):
        await pay(client, auth, amount)
    clock.current = datetime(2026, 1, 3, 2, tzinfo=UTC)
    day2 = await reconcile(date(2026, 1, 2))
    assert day2["summary"]["breaks_opened"] == {
        "amount_mismatch": 1,
        "duplicate": 1,
        "fee_mismatch": 1,
        "timing": 2,
    }
    # The ledger shows what the provider holds: nothing (it paid everything out) but
    # what it has not reported yet.
    assert await provider_balance() == await waiting(pool)

    # Day 3: the late row arrives and its timing break closes; the dropped one waits.
    # Someone charges a card straight at the provider, bypassing payrail, and captures at
    # the provider a payment payrail holds as only authorized.
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030}
    direct = {"amount": 4242, "currency": "usd", "capture": True, "card": card}
    made = await psp.post("/v1/payments", json=direct, headers={"Idempotency-Key": "direct-1"})
    assert made.status_code == 200, made.text
    held = await send(
        client,
        auth,
        "/v1/payment_intents",
        {
            "amount": 3100,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "capture_method": "manual",
        },
    )
    assert held.json()["status"] == "requires_capture", held.text
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT provider_id FROM charges WHERE payment_intent_id = %s",
                (held.json()["id"],),
            )
        ).fetchone()
    assert row is not None
    captured = await psp.post(
        f"/v1/payments/{row[0]}/capture", json={}, headers={"Idempotency-Key": "by-hand-1"}
    )
    assert captured.status_code == 200, captured.text
    clock.current = datetime(2026, 1, 4, 2, tzinfo=UTC)
    day3 = await reconcile(date(2026, 1, 3))
    assert day3["summary"]["breaks_closed"] == 1
    assert day3["summary"]["breaks_opened"] == {"missing_internal": 1, "status_mismatch": 1}
    assert await provider_balance() == await waiting(pool)

    # Days 4 and 5: the dropped row never comes; on its due day it is missing.
    for day in (date(2026, 1, 4), date(2026, 1, 5)):
        clock.current = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
        last = await reconcile(day)
    assert last["summary"]["breaks_escalated"] == 1
    assert await open_breaks(pool) == {
        "amount_mismatch": 1,
        "duplicate": 1,
        "fee_mismatch": 1,
        "missing_at_provider": 1,
        "missing_internal": 1,
        "status_mismatch": 1,
    }
    assert await waiting(pool) == 0
    assert await provider_balance() == 0
