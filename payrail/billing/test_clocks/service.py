"""Stripe's test clocks: a frozen time that the customers attached to a clock are billed by.

A clock is made at a frozen time and only ever moves forward. `advance` sets the new
frozen time and the status `advancing` at once; the billing engine then bills the clock's
customers up to that time and, on each pass, calls `finish_advances`, which flips the
clocks it has nothing left to do for to `ready` (the SDK polls for that status). While it
advances, `frozen_time` already shows the target (Stripe shows the time reached so far):
the engine bills by that column, so it is the target from the start.

Test clocks are test-mode only: creating or listing them with a live key is a 400, and
a clock id given with a live key is not found (no clock exists in live mode).

Deleting a clock differs from Stripe, which deletes the clock's customers and their
subscriptions with it. payrail marks the clock deleted and touches nothing else: the
customers of a deleted clock keep existing, with their subscriptions and invoices, but
the billing engine no longer bills them (nothing advances their time any more), and a
deleted clock is not found by retrieve, advance, delete or when attaching a customer.
`deletes_after` is shown as Stripe shows it; payrail does not delete clocks by itself.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from payrail.billing.test_clocks import repository as repo
from payrail.billing.test_clocks.schemas import ClockAdvance, ClockCreate
from payrail.clock import Clock, unix
from payrail.errors import InvalidRequest, NotFound
from payrail.events.outbox import OutboxEvent, emit
from payrail.ids import new_id
from payrail.tenants.scope import Scope

Conn = repo.Conn

OBJECT = "test_helpers.test_clock"
# The events' aggregate, and so their topic: payrail.test_clocks.
AGGREGATE = "test_clock"
DELETES_AFTER = timedelta(days=30)
# How far a clock may move in one advance, in intervals of its shortest subscription,
# or in years when it has none (Stripe's limits).
MAX_INTERVALS = 2
MAX_YEARS_WITHOUT_SUBSCRIPTIONS = 2


@dataclass(frozen=True, slots=True)
class FrozenClock:
    """A payrail Clock stopped at one moment: a test clock's time, for code that takes a
    Clock. (ManualClock is a test helper that can be moved; this one cannot.)"""

    moment: datetime

    def now(self) -> datetime:
        return self.moment


# --- Decisions --------------------------------------------------------------------------


def clock_object(row: dict[str, Any]) -> dict[str, Any]:
    advancing = row["status"] == "advancing"
    return {
        "id": row["id"],
        "object": OBJECT,
        "created": unix(row["created_at"]),
        "deletes_after": unix(row["deletes_after"]),
        "frozen_time": unix(row["frozen_time"]),
        "livemode": row["livemode"],
        "name": row["name"],
        "status": row["status"],
        "status_details": (
            {"advancing": {"target_frozen_time": unix(row["frozen_time"])}} if advancing else {}
        ),
    }


def deleted_object(clock_id: str) -> dict[str, Any]:
    return {"id": clock_id, "object": OBJECT, "deleted": True}


def require_test_mode(scope: Scope, *, param: str | None = None) -> None:
    if scope.livemode:
        raise InvalidRequest(
            "Test clocks are only available in test mode; use a test mode key (sk_test_...).",
            param=param,
            code="livemode_mismatch",
        )


INTERVALS = ("day", "week", "month", "year")
LATEST = datetime.max.replace(tzinfo=UTC)


def add_interval(moment: datetime, interval: str, count: int) -> datetime:
    """`moment` plus `count` calendar intervals, in UTC; a day of month that the target
    month lacks becomes its last day (Jan 31 + 1 month = Feb 28 or 29). Past the last
    datetime, the last datetime."""
    if interval not in INTERVALS:
        raise ValueError(f"unknown interval {interval!r}")
    moment = moment.astimezone(UTC)
    try:
        if interval in ("day", "week"):
            return moment + timedelta(days=count * (7 if interval == "week" else 1))
        months = count * (12 if interval == "year" else 1)
        year, month = divmod(moment.month - 1 + months, 12)
        year += moment.year
        if year > LATEST.year:
            return LATEST
        day = min(moment.day, calendar.monthrange(year, month + 1)[1])
        return moment.replace(year=year, month=month + 1, day=day)
    except OverflowError:
        return LATEST


def advance_limit(frozen: datetime, intervals: Sequence[tuple[str, int]]) -> datetime:
    """The latest time a clock at `frozen` may advance to in one step: two intervals of
    its shortest subscription, or two years when it has none."""
    if not intervals:
        return add_interval(frozen, "year", MAX_YEARS_WITHOUT_SUBSCRIPTIONS)
    return min(add_interval(frozen, i, count * MAX_INTERVALS) for i, count in intervals)


def check_advance(
    clock_id: str, status: str, frozen: datetime, target: datetime, limit: datetime
) -> None:
    """Whether a clock may start advancing to `target`; raises the error to answer if not."""
    if status == "advancing":
        raise InvalidRequest(
            f"The test clock {clock_id} is advancing; wait until its status is ready"
            " before advancing it again.",
            code="test_clock_advancing",
        )
    if status == "internal_failure":
        raise InvalidRequest(
            f"The test clock {clock_id} failed to advance and cannot advance again;"
            " create a new test clock.",
            code="test_clock_internal_failure",
        )
    if target <= frozen:
        raise InvalidRequest(
            f"Invalid frozen_time: it must be after the test clock's current frozen time"
            f" ({unix(frozen)}).",
            param="frozen_time",
            code="parameter_invalid",
        )
    if target > limit:
        raise InvalidRequest(
            f"Invalid frozen_time: a test clock advances at most {MAX_INTERVALS} intervals of"
            f" its shortest subscription ({MAX_YEARS_WITHOUT_SUBSCRIPTIONS} years without"
            f" one) at a time: at most to {unix(limit)}.",
            param="frozen_time",
            code="parameter_invalid",
        )


def from_unix(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# --- Orchestration ----------------------------------------------------------------------


async def _emit(conn: Conn, scope: Scope, at: datetime, kind: str, obj: dict[str, Any]) -> None:
    event = OutboxEvent(f"{OBJECT}.{kind}", AGGREGATE, obj["id"], obj)
    await emit(conn, scope, at, [event])


async def _existing_clock(
    conn: Conn, scope: Scope, clock_id: str, *, param: str = "id", lock: repo.Lock = None
) -> dict[str, Any]:
    rows = await repo.fetch_clocks(conn, scope, [clock_id], lock=lock)
    if not rows or rows[0]["deleted_at"] is not None:
        raise NotFound("test_clock", clock_id, param=param)
    return rows[0]


async def create_clock(
    conn: Conn, scope: Scope, clock: Clock, params: ClockCreate
) -> dict[str, Any]:
    require_test_mode(scope)
    now = clock.now()
    clock_id = new_id("clock")
    await repo.insert_clock(
        conn,
        scope,
        {
            "id": clock_id,
            "name": params.name,
            "frozen_time": from_unix(params.frozen_time),
            "deletes_after": now + DELETES_AFTER,
            "created_at": now,
        },
    )
    obj = clock_object((await repo.fetch_clocks(conn, scope, [clock_id]))[0])
    await _emit(conn, scope, now, "created", obj)
    return obj


async def get_clock(conn: Conn, scope: Scope, clock_id: str) -> dict[str, Any]:
    return clock_object(await _existing_clock(conn, scope, clock_id))


async def list_clocks(conn: Conn, scope: Scope, ids: Sequence[str]) -> list[dict[str, Any]]:
    return [clock_object(row) for row in await repo.fetch_clocks(conn, scope, ids)]


async def delete_clock(conn: Conn, scope: Scope, clock: Clock, clock_id: str) -> dict[str, Any]:
    """Marks the clock deleted and nothing else: see the module's docstring."""
    await _existing_clock(conn, scope, clock_id, lock="update")
    now = clock.now()
    await repo.mark_deleted(conn, clock_id, now)
    obj = deleted_object(clock_id)
    await _emit(conn, scope, now, "deleted", obj)
    return obj


async def advance_clock(
    conn: Conn, scope: Scope, clock: Clock, clock_id: str, params: ClockAdvance
) -> dict[str, Any]:
    row = await _existing_clock(conn, scope, clock_id, lock="update")
    target = from_unix(params.frozen_time)
    limit = advance_limit(row["frozen_time"], await repo.subscription_intervals(conn, clock_id))
    check_advance(clock_id, row["status"], row["frozen_time"], target, limit)
    await repo.start_advance(conn, clock_id, target)
    obj = clock_object((await repo.fetch_clocks(conn, scope, [clock_id]))[0])
    await _emit(conn, scope, clock.now(), "advancing", obj)
    return obj


async def attachable_clock(conn: Conn, scope: Scope, clock_id: str, *, param: str) -> str:
    """The id of a clock a new customer may be attached to: one of the scope's, not
    deleted, in test mode. Holds a share lock until the caller's transaction ends, so
    that the clock cannot be deleted under the customer being attached."""
    require_test_mode(scope, param=param)
    row = await _existing_clock(conn, scope, clock_id, param=param, lock="share")
    attached: str = row["id"]
    return attached


# --- For the billing engine -------------------------------------------------------------


async def finish_advances(conn: Conn, now: datetime) -> list[str]:
    """Flip to ready each advancing clock that the engine has nothing left to do for at or
    before its frozen time (repository.mark_ready_when_done says what counts), emitting
    test_helpers.test_clock.ready for each; returns their ids. `now` is the engine's
    (real) time, against which leases are judged: a subscription or invoice under an
    unexpired lease is work under way. Safe to run from several workers at once: each
    clock is flipped by one of them, once."""
    async with conn.transaction():
        rows = await repo.mark_ready_when_done(conn, now)
        for row in rows:
            scope = Scope(row["merchant_id"], row["livemode"])
            await _emit(conn, scope, now, "ready", clock_object(row))
    return [row["id"] for row in rows]


async def frozen_time(conn: Conn, scope: Scope, test_clock_id: str) -> datetime:
    """The clock's time: what `now` is for its customers. A deleted clock still answers
    (its customers still exist); an id that is not the scope's is NotFound."""
    rows = await repo.fetch_clocks(conn, scope, [test_clock_id])
    if not rows:
        raise NotFound("test_clock", test_clock_id, param="test_clock")
    moment: datetime = rows[0]["frozen_time"]
    return moment.astimezone(UTC)
