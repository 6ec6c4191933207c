"""The janitor: settles what a provider may have done without payrail hearing the answer.

It takes charges and refunds whose `next_check_at` has come, a batch at a time, moving
that time forward by `LEASE` as it claims them (`FOR UPDATE SKIP LOCKED`): several
janitors split the work, and a janitor that dies mid-batch leaves its rows to be claimed
again when the lease has passed.

- An authorization never answered (`sending`, `in_doubt`) is looked up by its key and
  settled by what the provider says (`in_doubt.settle`). It is never sent again: that
  could charge a second time.
- A capture or void never answered is looked up the same way; if the provider still
  holds the authorization, the request is resent with the same key, which the provider
  carries out at most once.
- A refund never answered is resent with its key, for the same reason.

`payrail up` runs it; `payrail worker janitor` runs it alone. Reading an intent whose
check is due also runs the check for that intent's charge (`check_intent`).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog

from payrail.api.context import Services
from payrail.connectors.base import Connector, ConnectorError
from payrail.connectors.declines import classify_transport
from payrail.payments import in_doubt, outcomes, refunds
from payrail.payments import repository as repo
from payrail.payments.service import operation_key
from payrail.tenants.scope import Scope

log = structlog.get_logger(__name__)

# A claimed row is this janitor's until then: longer than a batch takes, at most
# limit / CONCURRENCY rounds of two provider calls (10 s timeout each).
LEASE = timedelta(minutes=2)
CONCURRENCY = 8


@dataclass
class JanitorRun:
    checked: int = 0  # charges and refunds asked about
    settled: int = 0  # of those, decided now
    waiting: int = 0  # still undecided: asked again on the schedule


async def run_once(services: Services, *, limit: int = 32) -> JanitorRun:
    """One batch of due charges and refunds, checked `CONCURRENCY` at a time: one slow
    provider must not hold up the others, and the batch must end within its lease."""
    now = services.clock.now()
    async with services.pool.connection() as conn, conn.transaction():
        charges = await repo.claim_due(conn, "charges", now, now + LEASE, limit)
        due_refunds = await repo.claim_due(conn, "refunds", now, now + LEASE, limit)
    run = JanitorRun()
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(check: Any) -> None:
        async with gate:
            await _count(run, check)

    await asyncio.gather(
        *(one(_check_charge(services, c)) for c in charges),
        *(one(_check_refund(services, r)) for r in due_refunds),
    )
    return run


async def _count(run: JanitorRun, check: Any) -> None:
    run.checked += 1
    try:
        settled: bool = await check
    except Exception:
        # One bad row must not stop the rest; its lease runs out and it is tried again.
        log.exception("janitor check failed")
        return
    if settled:
        run.settled += 1
    else:
        run.waiting += 1


async def check_intent(services: Services, scope: Scope, intent_id: str) -> None:
    """Run the due check of an intent's latest charge now, if it has one."""
    if "\x00" in intent_id:  # no such id can exist, and PostgreSQL text cannot hold it
        return
    now = services.clock.now()
    async with services.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT c.id FROM payment_intents p JOIN charges c ON c.id = p.latest_charge_id"
            " WHERE p.id = %s AND p.merchant_id = %s AND p.livemode = %s"
            " AND c.next_check_at <= %s",
            (intent_id, scope.merchant_id, scope.livemode, now),
        )
        found = await cur.fetchone()
        if found is None:
            return
        claimed = await repo.claim_due(conn, "charges", now, now + LEASE, 1, only=found[0])
    for charge in claimed:  # none if a janitor took it meanwhile
        await _count(JanitorRun(), _check_charge(services, charge))


async def _connector(services: Services, row: dict[str, Any], account_id: str) -> Connector:
    async with services.pool.connection() as conn:
        return await services.connectors.get(conn, _scope(row), services.vault, account_id)


def _scope(row: dict[str, Any]) -> Scope:
    return Scope(row["merchant_id"], row["livemode"])


async def _later(services: Services, row: dict[str, Any], table: str) -> bool:
    now = services.clock.now()
    async with services.pool.connection() as conn, conn.transaction():
        if table == "charges":
            await outcomes.still_in_doubt(conn, row["id"], row["checks_done"] + 1, now)
        else:
            await refunds.still_pending(conn, row["id"], row["checks_done"] + 1, now)
    return False


async def _check_charge(services: Services, charge: dict[str, Any]) -> bool:
    scope, clock = _scope(charge), services.clock
    connector = await _connector(services, charge, charge["connector_account_id"])
    try:
        answer = await connector.payment_status(charge["id"])
    except ConnectorError:
        return await _later(services, charge, "charges")
    if charge["status"] in outcomes.UNDECIDED:
        if in_doubt.settle(answer, charge["sent_at"], clock.now()) == "in_doubt":
            return await _later(services, charge, "charges")
        async with services.pool.connection() as conn, conn.transaction():
            await outcomes.record_attempt(
                conn,
                scope,
                clock,
                charge["id"],
                # No record of the key long after it was sent: it was never processed.
                answer if answer is not None else classify_transport(sent=False, status=None),
                presumed=answer is None,
            )
        return True
    operation = charge["pending_operation"]
    if answer is None or operation is None or outcomes.late_success(charge, answer):
        async with services.pool.connection() as conn, conn.transaction():
            if answer is not None and outcomes.late_success(charge, answer):
                await outcomes.record_attempt(conn, scope, clock, charge["id"], answer)
            else:
                await outcomes.nothing_to_check(conn, charge["id"])
        return True
    if answer.status == "authorized":
        key = operation_key(charge["id"], operation, charge["operation_amount"])
        try:
            if operation == "capture":
                answer = await connector.capture(
                    key, answer.provider_id, charge["operation_amount"]
                )
            else:
                answer = await connector.void(key, answer.provider_id)
        except ConnectorError as error:
            if not outcomes.provider_refused(error.classification):
                return await _later(services, charge, "charges")
            # Refused for good: the intent stays as it was, and may be asked again.
            async with services.pool.connection() as conn, conn.transaction():
                await outcomes.operation_refused(conn, scope, clock, charge["id"])
            return True
        if answer.status == "authorized":
            return await _later(services, charge, "charges")
    async with services.pool.connection() as conn, conn.transaction():
        await outcomes.record_operation(conn, scope, clock, charge["id"], answer)
    return True


async def _check_refund(services: Services, refund: dict[str, Any]) -> bool:
    scope, clock = _scope(refund), services.clock
    async with services.pool.connection() as conn:
        charge = await repo.fetch_one(conn, "charges", scope, refund["charge_id"])
    assert charge is not None
    connector = await _connector(services, refund, charge["connector_account_id"])
    try:
        answer = await connector.refund_status(refund["id"])
        if answer is None:
            # Never processed, or still in flight there: resending with the key is safe.
            answer = await connector.refund(refund["id"], charge["provider_id"], refund["amount"])
    except ConnectorError as error:
        if not outcomes.provider_refused(error.classification):
            return await _later(services, refund, "refunds")
        async with services.pool.connection() as conn, conn.transaction():
            await refunds.failed(conn, scope, clock, refund["id"], error.classification.code)
        return True
    if answer.status == "pending":
        return await _later(services, refund, "refunds")
    async with services.pool.connection() as conn, conn.transaction():
        await refunds.record(conn, scope, clock, refund["id"], answer)
    return True


async def run(services: Services, stop: asyncio.Event, *, interval: float = 1.0) -> None:
    """Batches until `stop` is set; a full batch is followed at once by the next."""
    while not stop.is_set():
        try:
            done = await run_once(services)
        except Exception:
            log.exception("janitor batch failed")
            done = JanitorRun()
        if done.checked == 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
