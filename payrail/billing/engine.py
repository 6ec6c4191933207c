"""The billing engine: `payrail worker billing` (and a role of `payrail up`).

Each pass claims what is due in batches — subscriptions whose `next_action_at` has come,
invoices due for a collection attempt or a final dunning action, attempts whose outcome
is still unknown — by setting a lease on rows picked `FOR UPDATE SKIP LOCKED`. Any number
of workers split the work that way; a worker that dies holds its rows only until their
lease passes, then another takes them.

A lease only spreads the work. What makes billing exactly-once is below it: every step
locks its row and acts only from the state it expects, an invoice is unique per
(subscription, period) in PostgreSQL, and a collection attempt is tied to its payment
intent in the intent's own transaction (collection.py).

Due means: at or before the real clock for ordinary customers (or `until`, for a
backfill run), at or before the frozen time of a customer's test clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, LiteralString

import structlog
from psycopg_pool import AsyncConnectionPool

from payrail.api.context import Services
from payrail.billing import collection, revenue
from payrail.billing import repository as repo
from payrail.billing.subscriptions import service as subscriptions
from payrail.billing.test_clocks.service import finish_advances
from payrail.ids import new_id
from payrail.ops.dunning_metrics import observe_dunning_backlog
from payrail.tenants.scope import Scope

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class EngineOptions:
    batch: int = 100
    lease: timedelta = timedelta(seconds=60)
    idle_seconds: float = 1.0
    # How often revenue is recognised and the dunning gauges refreshed.
    housekeeping: timedelta = timedelta(minutes=1)
    owner: str = field(default_factory=lambda: new_id("bw"))


@dataclass
class PassResult:
    renewed: int = 0
    collected: int = 0
    final_actions: int = 0

    @property
    def work(self) -> int:
        return self.renewed + self.collected + self.final_actions


# Real-time rows due by `cutoff`, and test-clock rows due by their clock; both leased.
_CLAIM_SUBSCRIPTIONS: LiteralString = """
WITH real_time AS (
    SELECT id FROM subscriptions
    WHERE next_action_at <= %(cutoff)s AND test_clock_id IS NULL
      AND (lease_expires_at IS NULL OR lease_expires_at < %(now)s)
    ORDER BY next_action_at LIMIT %(batch)s FOR UPDATE SKIP LOCKED
), on_clocks AS (
    SELECT s.id FROM subscriptions s JOIN test_clocks c ON c.id = s.test_clock_id
    WHERE s.next_action_at <= CASE WHEN c.status = 'advancing' THEN c.billing_time
                                ELSE c.frozen_time END
      AND c.deleted_at IS NULL
      AND (s.lease_expires_at IS NULL OR s.lease_expires_at < %(now)s)
    LIMIT %(batch)s FOR UPDATE OF s SKIP LOCKED
)
UPDATE subscriptions SET lease_owner = %(owner)s, lease_expires_at = %(lease_until)s
WHERE id IN (SELECT id FROM real_time UNION ALL SELECT id FROM on_clocks)
RETURNING id, merchant_id, livemode
"""

# Attempts due, and attempts whose outcome was unknown when their lease passed.
_CLAIM_COLLECTIONS: LiteralString = """
WITH real_time AS (
    SELECT id FROM invoices
    WHERE next_payment_attempt <= %(cutoff)s AND test_clock_id IS NULL
      AND (lease_expires_at IS NULL OR lease_expires_at < %(now)s)
    ORDER BY next_payment_attempt LIMIT %(batch)s FOR UPDATE SKIP LOCKED
), on_clocks AS (
    SELECT i.id FROM invoices i JOIN test_clocks c ON c.id = i.test_clock_id
    WHERE i.next_payment_attempt <= CASE WHEN c.status = 'advancing' THEN c.billing_time
                                ELSE c.frozen_time END
      AND c.deleted_at IS NULL
      AND (i.lease_expires_at IS NULL OR i.lease_expires_at < %(now)s)
    LIMIT %(batch)s FOR UPDATE OF i SKIP LOCKED
), in_flight AS (
    SELECT id FROM invoices
    WHERE payment_intent_id IS NOT NULL AND lease_expires_at < %(now)s
    LIMIT %(batch)s FOR UPDATE SKIP LOCKED
)
UPDATE invoices SET lease_owner = %(owner)s, lease_expires_at = %(lease_until)s
WHERE id IN (
    SELECT id FROM real_time UNION SELECT id FROM on_clocks UNION SELECT id FROM in_flight)
RETURNING id, merchant_id, livemode
"""

_CLAIM_FINAL_ACTIONS: LiteralString = """
WITH real_time AS (
    SELECT id FROM invoices
    WHERE final_action_at <= %(cutoff)s AND test_clock_id IS NULL
      AND payment_intent_id IS NULL
      AND (lease_expires_at IS NULL OR lease_expires_at < %(now)s)
    ORDER BY final_action_at LIMIT %(batch)s FOR UPDATE SKIP LOCKED
), on_clocks AS (
    SELECT i.id FROM invoices i JOIN test_clocks c ON c.id = i.test_clock_id
    WHERE i.final_action_at <= CASE WHEN c.status = 'advancing' THEN c.billing_time
                                ELSE c.frozen_time END
      AND c.deleted_at IS NULL
      AND i.payment_intent_id IS NULL
      AND (i.lease_expires_at IS NULL OR i.lease_expires_at < %(now)s)
    LIMIT %(batch)s FOR UPDATE OF i SKIP LOCKED
)
UPDATE invoices SET lease_owner = %(owner)s, lease_expires_at = %(lease_until)s
WHERE id IN (SELECT id FROM real_time UNION ALL SELECT id FROM on_clocks)
RETURNING id, merchant_id, livemode
"""


# Advancing test clocks with nothing due at their billing time, stepped to their next due
# moment (or to their frozen time): what falls due between the old and the new frozen
# time happens in order, each at its own time, as Stripe's test clocks do.
_STEP_CLOCKS: LiteralString = """
WITH clocks AS (
    SELECT id, frozen_time, billing_time FROM test_clocks
    WHERE status = 'advancing' AND deleted_at IS NULL AND billing_time < frozen_time
    FOR UPDATE SKIP LOCKED
), idle AS (
    SELECT c.* FROM clocks c
    WHERE NOT EXISTS (
        SELECT 1 FROM subscriptions s WHERE s.test_clock_id = c.id
          AND (s.next_action_at <= c.billing_time OR s.lease_expires_at >= %(now)s))
      AND NOT EXISTS (
        SELECT 1 FROM invoices i WHERE i.test_clock_id = c.id
          AND (i.next_payment_attempt <= c.billing_time OR i.final_action_at <= c.billing_time
               OR i.payment_intent_id IS NOT NULL OR i.lease_expires_at >= %(now)s))
), next AS (
    SELECT idle.id, least(
        idle.frozen_time,
        (SELECT min(next_action_at) FROM subscriptions
         WHERE test_clock_id = idle.id AND next_action_at > idle.billing_time),
        (SELECT min(next_payment_attempt) FROM invoices
         WHERE test_clock_id = idle.id AND next_payment_attempt > idle.billing_time),
        (SELECT min(final_action_at) FROM invoices
         WHERE test_clock_id = idle.id AND final_action_at > idle.billing_time)
    ) AS moment FROM idle
)
UPDATE test_clocks SET billing_time = next.moment FROM next
WHERE test_clocks.id = next.id
RETURNING test_clocks.id
"""
# Passes one run_once may make while test clocks step through their due moments.
_CLOCK_STEPS = 64


class Engine:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        services: Services,
        options: EngineOptions | None = None,
    ) -> None:
        self.pool = pool
        self.services = services
        self.options = options or EngineOptions()
        self._last_housekeeping: datetime | None = None

    async def _claim(self, query: LiteralString, cutoff: datetime) -> list[tuple[str, Scope]]:
        now = self.services.clock.now()
        async with self.pool.connection() as conn:
            rows = await repo.select(
                conn,
                query,
                {
                    "owner": self.options.owner,
                    "lease_until": now + self.options.lease,
                    "cutoff": cutoff,
                    "now": now,
                    "batch": self.options.batch,
                },
            )
        return [(r["id"], Scope(r["merchant_id"], r["livemode"])) for r in rows]

    async def _release_invoice(self, invoice_id: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE invoices SET lease_owner = NULL, lease_expires_at = NULL"
                " WHERE id = %s AND lease_owner = %s",
                (invoice_id, self.options.owner),
            )

    async def advance_subscription(self, scope: Scope, sub_id: str, cutoff: datetime) -> int:
        """Apply every step due (a subscription behind catches up period by period),
        collecting each invoice as it is made. Returns the steps applied."""
        clock = self.services.clock
        steps = 0
        while True:
            async with self.pool.connection() as conn, conn.transaction():
                row = await subscriptions.subscription(conn, scope, sub_id, lock=True)
                if row["lease_owner"] != self.options.owner:
                    return steps  # the lease passed to another worker
                now = (
                    await subscriptions.billing_now(conn, clock, row["test_clock_id"])
                    if row["test_clock_id"]
                    else cutoff
                )
                row, made, stepped = await subscriptions.apply_step(conn, scope, clock, row, now)
                if not stepped:
                    await repo.update(
                        conn,
                        "subscriptions",
                        sub_id,
                        {"lease_owner": None, "lease_expires_at": None},
                    )
                    return steps
                await repo.update(
                    conn,
                    "subscriptions",
                    sub_id,
                    {"lease_expires_at": clock.now() + self.options.lease},
                )
                due = made is not None and made["next_payment_attempt"] is not None
                if due:
                    assert made is not None
                    # Ours to collect now: the invoice queue leaves it alone meanwhile.
                    await repo.update(
                        conn,
                        "invoices",
                        made["id"],
                        {
                            "lease_owner": self.options.owner,
                            "lease_expires_at": clock.now() + self.options.lease,
                        },
                    )
            steps += 1
            if due:
                assert made is not None
                await self._collect(scope, made["id"])

    async def _collect(self, scope: Scope, invoice_id: str) -> None:
        try:
            await collection.collect(
                self.pool.connection, scope, self.services, invoice_id, due_only=True
            )
        except Exception:
            # Left leased: the lease passing brings it back. One bad invoice must not
            # stop the others.
            log.exception("invoice collection failed", invoice=invoice_id)

    async def run_once(self, until: datetime | None = None) -> PassResult:
        """Passes over everything due by `until` (default: now), repeated while advancing
        test clocks step to their next due moment."""
        result = PassResult()
        for _ in range(_CLOCK_STEPS):
            stepped = await self._step_clocks()
            done = await self._pass(until)
            result.renewed += done.renewed
            result.collected += done.collected
            result.final_actions += done.final_actions
            if not stepped:
                break
        async with self.pool.connection() as conn, conn.transaction():
            await finish_advances(conn, self.services.clock.now())
        return result

    async def _step_clocks(self) -> bool:
        async with self.pool.connection() as conn:
            rows = await repo.select(conn, _STEP_CLOCKS, {"now": self.services.clock.now()})
        return bool(rows)

    async def _pass(self, until: datetime | None) -> PassResult:
        now = self.services.clock.now()
        cutoff = min(until, now) if until is not None else now
        result = PassResult()
        for sub_id, scope in await self._claim(_CLAIM_SUBSCRIPTIONS, cutoff):
            try:
                result.renewed += await self.advance_subscription(scope, sub_id, cutoff)
            except Exception:
                log.exception("subscription step failed", subscription=sub_id)
        for invoice_id, scope in await self._claim(_CLAIM_COLLECTIONS, cutoff):
            await self._collect(scope, invoice_id)
            result.collected += 1
        for invoice_id, scope in await self._claim(_CLAIM_FINAL_ACTIONS, cutoff):
            try:
                await collection.final_action(
                    self.pool.connection, scope, self.services, invoice_id
                )
                result.final_actions += 1
            except Exception:
                log.exception("dunning final action failed", invoice=invoice_id)
            await self._release_invoice(invoice_id)
        return result

    async def housekeeping(self) -> None:
        now = self.services.clock.now()
        await revenue.recognize(self.pool, self.services.clock)
        async with self.pool.connection() as conn:
            await observe_dunning_backlog(conn, now)
        self._last_housekeeping = now

    async def run(self, stop: asyncio.Event) -> None:
        """Passes until `stop` is set; sleeps while nothing is due."""
        while not stop.is_set():
            try:
                result = await self.run_once()
                now = self.services.clock.now()
                last = self._last_housekeeping
                if last is None or now - last >= self.options.housekeeping:
                    await self.housekeeping()
            except Exception:
                log.exception("billing pass failed")
                result = PassResult()
            if result.work < self.options.batch:
                await _sleep(stop, self.options.idle_seconds)

    async def run_until(
        self,
        until: datetime,
        progress: Callable[[PassResult], Awaitable[None] | None] | None = None,
    ) -> PassResult:
        """`payrail billing run --until`: passes until nothing is due by `until`."""
        total = PassResult()
        while True:
            result = await self.run_once(until)
            total.renewed += result.renewed
            total.collected += result.collected
            total.final_actions += result.final_actions
            if progress is not None:
                maybe = progress(result)
                if maybe is not None:
                    await maybe
            if result.work == 0:
                return total


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def due_count(pool: AsyncConnectionPool, until: datetime) -> int:
    """How many real-time subscriptions are due by `until`: a progress bar's total."""
    async with pool.connection() as conn:
        rows: list[dict[str, Any]] = await repo.select(
            conn,
            "SELECT count(*) AS n FROM subscriptions WHERE next_action_at <= %s"
            " AND test_clock_id IS NULL",
            (until,),
        )
    return int(rows[0]["n"])
