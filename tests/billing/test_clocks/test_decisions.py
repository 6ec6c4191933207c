"""The test clock decisions, as plain functions over values: the object's shape, how far
a clock may advance, whether it may, and the FrozenClock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from payrail.billing.test_clocks.service import (
    FrozenClock,
    add_interval,
    advance_limit,
    check_advance,
    clock_object,
)
from payrail.clock import Clock
from payrail.errors import InvalidRequest

T0 = datetime(2024, 1, 31, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("interval", "count", "expected"),
    [
        ("day", 1, datetime(2024, 2, 1, 9, 30, tzinfo=UTC)),
        ("week", 2, datetime(2024, 2, 14, 9, 30, tzinfo=UTC)),
        ("month", 1, datetime(2024, 2, 29, 9, 30, tzinfo=UTC)),  # leap year: last day
        ("month", 13, datetime(2025, 2, 28, 9, 30, tzinfo=UTC)),
        ("month", 2, datetime(2024, 3, 31, 9, 30, tzinfo=UTC)),
        ("year", 2, datetime(2026, 1, 31, 9, 30, tzinfo=UTC)),
    ],
)
def test_add_interval_counts_calendar_intervals(
    interval: str, count: int, expected: datetime
) -> None:
    assert add_interval(T0, interval, count) == expected


def test_add_interval_works_in_utc_and_stops_at_the_last_datetime() -> None:
    # 2024-01-31 23:30 in UTC-5 is Feb 1 in UTC: a month later is Mar 1 UTC.
    local = datetime(2024, 1, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert add_interval(local, "month", 1) == datetime(2024, 3, 1, 4, 30, tzinfo=UTC)
    last = datetime.max.replace(tzinfo=UTC)
    assert add_interval(datetime(9999, 12, 1, tzinfo=UTC), "month", 2) == last
    assert add_interval(datetime(9999, 12, 31, tzinfo=UTC), "day", 2) == last
    with pytest.raises(ValueError, match="fortnight"):
        add_interval(T0, "fortnight", 1)


def test_advance_limit_is_two_of_the_shortest_interval_or_two_years() -> None:
    assert advance_limit(T0, []) == datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
    assert advance_limit(T0, [("year", 1)]) == datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
    assert advance_limit(T0, [("year", 1), ("month", 1)]) == datetime(
        2024, 3, 31, 9, 30, tzinfo=UTC
    )
    assert advance_limit(T0, [("month", 1), ("week", 3)]) == T0 + timedelta(weeks=6)
    assert advance_limit(T0, [("month", 1), ("day", 45)]) == datetime(
        2024, 3, 31, 9, 30, tzinfo=UTC
    )


def test_check_advance_refuses_in_order_advancing_failed_backwards_too_far() -> None:
    limit = T0 + timedelta(days=10)
    check_advance("clock_a", "ready", T0, limit, limit)  # up to the limit itself is fine

    def refusal(status: str, target: datetime) -> InvalidRequest:
        with pytest.raises(InvalidRequest) as raised:
            check_advance("clock_a", status, T0, target, limit)
        return raised.value

    advancing = refusal("advancing", T0 - timedelta(days=1))
    assert (advancing.code, advancing.param) == ("test_clock_advancing", None)
    failed = refusal("internal_failure", T0 + timedelta(days=1))
    assert (failed.code, failed.param) == ("test_clock_internal_failure", None)
    for target in (T0, T0 - timedelta(seconds=1)):
        backwards = refusal("ready", target)
        assert (backwards.code, backwards.param) == ("parameter_invalid", "frozen_time")
        assert str(int(T0.timestamp())) in backwards.message
    too_far = refusal("ready", limit + timedelta(seconds=1))
    assert (too_far.code, too_far.param) == ("parameter_invalid", "frozen_time")
    assert str(int(limit.timestamp())) in too_far.message


def test_clock_object_shows_the_target_while_advancing() -> None:
    row = {
        "id": "clock_a",
        "livemode": False,
        "name": None,
        "frozen_time": T0,
        "status": "advancing",
        "deletes_after": T0 + timedelta(days=30),
        "created_at": T0 - timedelta(days=1),
    }
    seconds = int(T0.timestamp())
    assert clock_object(row) == {
        "id": "clock_a",
        "object": "test_helpers.test_clock",
        "created": seconds - 86_400,
        "deletes_after": seconds + 30 * 86_400,
        "frozen_time": seconds,
        "livemode": False,
        "name": None,
        "status": "advancing",
        "status_details": {"advancing": {"target_frozen_time": seconds}},
    }
    assert clock_object({**row, "status": "ready"})["status_details"] == {}


def test_frozen_clock_is_a_clock_stopped_at_its_moment() -> None:
    stopped: Clock = FrozenClock(T0)
    assert stopped.now() == T0
    assert stopped.now() == T0
    assert FrozenClock(T0) == FrozenClock(T0)
    with pytest.raises(AttributeError):
        stopped.moment = T0 + timedelta(days=1)  # type: ignore[attr-defined]
