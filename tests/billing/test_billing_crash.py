"""Billing workers killed at random during a renewal run: after restart, every
subscription is billed once and paid once, and the ledger ties out.

N subscriptions fall due at once (PAYRAIL_CRASH_SUBSCRIPTIONS, default 500; the issue's
10,000 is a manual run). A few are made through the API, which bills and collects their
first period; the rest are copies of those rows, made in SQL: this test is about the
renewal run, not about creating subscriptions, so the copies carry no first invoice.

K worker processes (tests/billing/crash_worker.py: the billing engine and the payments
janitor, real clock, 2-second leases) renew and collect them against a sandbox PSP while
the test SIGKILLs one at random moments and starts a replacement, until no subscription
is due. A killed worker can leave a payment in flight: a charge committed as `sending`
that the PSP may or may not have received. The janitor settles it by asking the PSP, but
may call it never processed only minutes later (in_doubt.NOT_PROCESSED_AFTER); rather
than wait that long, the test then runs the janitor and the engine itself on a clock
moved ahead, as the workers would later on, until nothing is left.

Then: each subscription has exactly one invoice for its due period, paid in full; at the
PSP each invoice was captured exactly once and no charge was sent twice; receivable and
payment clearing are zero and the ledger verifies.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, LiteralString

import httpx
from psycopg_pool import AsyncConnectionPool

from payrail.api.context import Services
from payrail.billing.engine import Engine, EngineOptions
from payrail.clock import ManualClock
from payrail.ids import new_id
from payrail.ledger.verify import verify
from payrail.payments import janitor
from tests.billing import crash_worker
from tests.billing.conftest import Api, customer_with_card, monthly_price
from tests.billing.test_subscription_flows import balances, merchant_of

SUBSCRIPTIONS = int(os.environ.get("PAYRAIL_CRASH_SUBSCRIPTIONS", "500"))
SEED = int(os.environ.get("PAYRAIL_CRASH_SEED", "20260131"))
WORKERS = 3
# A renewal locks its customer's balance row: spread over customers, workers don't queue.
CUSTOMERS = 20
AMOUNT = 1500
KILL_EVERY = (0.5, 4.0)  # seconds between kills, drawn uniformly

_COPY: LiteralString = """
INSERT INTO subscriptions (id, merchant_id, livemode, customer_id, status, item_id, price_id,
    quantity, currency, collection_method, days_until_due, billing_cycle_anchor, time_zone,
    current_period_start, current_period_end, cancel_at_period_end, missing_payment_method,
    metadata, start_date, created_at, updated_at, next_action_at)
SELECT %s, merchant_id, livemode, customer_id, status, %s, price_id, quantity, currency,
    collection_method, days_until_due, billing_cycle_anchor, time_zone, current_period_start,
    current_period_end, cancel_at_period_end, missing_payment_method, metadata, start_date,
    created_at, updated_at, next_action_at
FROM subscriptions WHERE id = %s
"""


async def copy_subscriptions(pool: AsyncConnectionPool, originals: list[str], n: int) -> None:
    rows = [(new_id("sub"), new_id("si"), originals[i % len(originals)]) for i in range(n)]
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        await cur.executemany(_COPY, rows)


async def one(pool: AsyncConnectionPool, query: LiteralString, *args: Any) -> Any:
    async with pool.connection() as conn:
        cur = await conn.execute(query, args)
        row = await cur.fetchone()
    assert row is not None
    return row[0]


async def subscriptions_due(pool: AsyncConnectionPool) -> int:
    n: int = await one(pool, "SELECT count(*) FROM subscriptions WHERE next_action_at <= now()")
    return n


class Workers:
    """K worker processes, forked from a forkserver that has imported them; kill()
    SIGKILLs one and starts its replacement."""

    def __init__(self, database_url: str, logs: Path, k: int) -> None:
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(["tests.billing.crash_worker"])
        self.database_url = database_url
        self.logs = logs
        self.started = 0
        self.procs = [self._start() for _ in range(k)]

    def _start(self) -> tuple[BaseProcess, Path]:
        self.started += 1
        ready = self.logs / f"worker-{self.started}.ready"
        proc = self.context.Process(
            target=crash_worker.run,
            args=(self.database_url, str(ready), str(self.logs / f"worker-{self.started}.log")),
        )
        proc.start()
        return proc, ready

    def working(self) -> list[int]:
        """The workers past start-up."""
        return [i for i, (_, ready) in enumerate(self.procs) if ready.exists()]

    def kill(self, index: int) -> None:
        proc, _ = self.procs[index]
        proc.kill()
        proc.join()
        self.procs[index] = self._start()

    def stop(self) -> None:
        for proc, _ in self.procs:
            proc.terminate()
        for proc, _ in self.procs:
            proc.join(timeout=15)
            if proc.exitcode is None:
                proc.kill()
                proc.join()


async def finish_later(pool: AsyncConnectionPool, services: Services, clock: ManualClock) -> None:
    """The janitor and the engine as they would run minutes, then hours, later."""
    engine = Engine(pool, services, EngineOptions(batch=200, lease=timedelta(seconds=60)))
    real_now = datetime.now(UTC)
    for later in (timedelta(minutes=10), timedelta(hours=2), timedelta(days=2)):
        clock.current = real_now + later
        for _ in range(100):
            checked = (await janitor.run_once(services, limit=200)).checked
            work = (await engine.run_once()).work
            if checked == 0 and work == 0:
                break
        else:
            raise AssertionError(f"billing still had work {later} later")


async def test_billing_workers_killed_at_random_bill_each_subscription_once(
    api: Api,
    pool: AsyncConnectionPool,
    clock: ManualClock,
    services: Services,
    database_url: str,
    psp: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    # Subscribed 40 days ago: each first period ended about 9 days ago, the next one is
    # not due for weeks. Exactly one renewal each is due now.
    clock.current = datetime.now(UTC) - timedelta(days=40)
    price = await monthly_price(api, AMOUNT)
    originals = []
    for _ in range(CUSTOMERS):
        customer = await customer_with_card(api)
        sub = await api.post(
            "/v1/subscriptions", {"customer": customer["id"], "items": [{"price": price["id"]}]}
        )
        assert sub["status"] == "active"
        originals.append(sub["id"])
    await copy_subscriptions(pool, originals, SUBSCRIPTIONS - CUSTOMERS)
    due_period = await one(
        pool, "SELECT current_period_end FROM subscriptions WHERE id = %s", originals[0]
    )
    assert await subscriptions_due(pool) == SUBSCRIPTIONS

    rng = random.Random(SEED)
    started = time.monotonic()
    workers = Workers(database_url, tmp_path, WORKERS)
    kills = 0
    try:
        while await subscriptions_due(pool) > 0:
            assert time.monotonic() - started < 1800, "the renewal run does not end"
            await asyncio.sleep(rng.uniform(*KILL_EVERY))
            working = workers.working()
            if working:
                workers.kill(rng.choice(working))
                kills += 1
    finally:
        workers.stop()
    elapsed = time.monotonic() - started
    assert kills > 0
    in_flight: int = await one(
        pool, "SELECT count(*) FROM invoices WHERE payment_intent_id IS NOT NULL"
    )
    await finish_later(pool, services, clock)
    retried: int = await one(pool, "SELECT count(*) FROM invoices WHERE attempt_count > 1")
    print(
        f"\n{SUBSCRIPTIONS} renewals: {elapsed:.1f} s, {kills} workers killed,"
        f" {in_flight} payments left in flight, {retried} invoices charged again after a"
        " charge the PSP never received"
    )

    # Each subscription: exactly one invoice for its due period, paid in full.
    merchant_id = await merchant_of(pool, originals[0])
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT s.id, s.current_period_start, count(i.id), min(i.status),"
            " max(i.status), min(i.amount_paid), max(i.amount_paid), min(i.period_start),"
            " max(i.period_start)"
            " FROM subscriptions s LEFT JOIN invoices i ON i.subscription_id = s.id"
            " AND i.billing_reason = 'subscription_cycle' GROUP BY s.id"
        )
        renewals = await cur.fetchall()
        cur = await conn.execute(
            "SELECT i.id, c.id FROM invoices i"
            " JOIN payment_intents pi ON pi.invoice_id = i.id"
            " JOIN charges c ON c.payment_intent_id = pi.id"
            " WHERE i.billing_reason = 'subscription_cycle'"
        )
        charges = await cur.fetchall()
        report = await verify(conn)
    assert len(renewals) == SUBSCRIPTIONS
    wrong = [
        r
        for r in renewals
        if r[1:] != (due_period, 1, "paid", "paid", AMOUNT, AMOUNT, due_period, due_period)
    ]
    assert wrong == [], wrong[:10]

    # At the PSP: no charge sent twice, each invoice captured exactly once.
    record = (await psp.get("/sandbox/record")).json()
    at_psp: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for payment in record["payments"]:
        at_psp[payment["reference"]].append(payment)
    captured: dict[str, list[int]] = defaultdict(list)
    for invoice_id, charge_id in charges:
        made = at_psp.get(charge_id, [])
        assert len(made) <= 1, f"charge {charge_id} sent to the PSP twice"
        captured[invoice_id] += [p["amount_captured"] for p in made if p["status"] == "captured"]
    assert len(captured) == SUBSCRIPTIONS
    twice = {i: c for i, c in captured.items() if c != [AMOUNT]}
    assert twice == {}, list(twice.items())[:10]

    assert report.ok, report
    money = await balances(pool, merchant_id)
    assert (money["receivable"], money["payment_clearing"]) == (0, 0)
    assert money["deferred_revenue"] + money["subscription_revenue"] == AMOUNT * (
        SUBSCRIPTIONS + CUSTOMERS
    )
