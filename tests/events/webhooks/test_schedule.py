"""The retry schedule, as plain functions over values: backoff with full jitter within
its bounds, Retry-After honoured within a cap, giving up 3 days after the first attempt."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from payrail.events.webhooks.service import (
    FIRST_DELAY,
    MAX_DELAY,
    MIN_DELAY,
    RETRY_WINDOW,
    backoff,
    decide,
    retry_after,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def bound(attempts: int) -> timedelta:
    return min(MAX_DELAY, FIRST_DELAY * 2 ** min(attempts - 1, 30))


@pytest.mark.parametrize("attempts", [1, 2, 3, 5, 8, 9, 10, 30, 10_000])
def test_backoff_stays_within_its_exponential_capped_bound(attempts: int) -> None:
    rng = random.Random(attempts)
    waits = [backoff(attempts, rng) for _ in range(500)]
    assert all(MIN_DELAY <= wait <= bound(attempts) for wait in waits)
    # Full jitter: spread over the whole range, not bunched at its top.
    assert min(waits) < bound(attempts) / 4 or bound(attempts) / 4 < MIN_DELAY
    assert max(waits) > bound(attempts) * 3 / 4
    assert len(set(waits)) > 400


def test_bounds_double_up_to_the_cap() -> None:
    assert [bound(n) for n in (1, 2, 3)] == [FIRST_DELAY, FIRST_DELAY * 2, FIRST_DELAY * 4]
    assert bound(40) == MAX_DELAY


def test_answers() -> None:
    rng = random.Random(0)
    for status in (200, 201, 204, 299):
        assert decide(status, None, 1, NOW, NOW, rng).verdict == "succeeded"
    assert decide(410, None, 1, NOW, NOW, rng).verdict == "gone"
    for status in (None, 301, 302, 400, 404, 408, 429, 500, 503):
        decision = decide(status, None, 1, NOW, NOW, rng)
        assert decision.verdict == "retry", status
        assert decision.next_attempt_at is not None
        assert NOW + MIN_DELAY <= decision.next_attempt_at <= NOW + FIRST_DELAY


def test_retry_after_is_honoured_within_the_cap() -> None:
    rng = random.Random(0)
    asked = decide(429, timedelta(minutes=30), 1, NOW, NOW, rng)
    assert asked.next_attempt_at == NOW + timedelta(minutes=30)
    capped = decide(503, timedelta(days=2), 1, NOW, NOW, rng)
    assert capped.next_attempt_at == NOW + MAX_DELAY
    # A shorter wait than the backoff's does not make the retry earlier.
    later = decide(503, timedelta(seconds=1), 12, NOW, NOW, random.Random(1))
    assert later.next_attempt_at is not None
    assert later.next_attempt_at - NOW == backoff(12, random.Random(1))


def test_retry_after_forms() -> None:
    assert retry_after("120", NOW) == timedelta(seconds=120)
    assert retry_after(" 0 ", NOW) == timedelta(0)
    assert retry_after("99999999999", NOW) == MAX_DELAY
    assert retry_after("Sun, 01 Mar 2026 12:05:00 GMT", NOW) == timedelta(minutes=5)
    assert retry_after("Sun, 01 Mar 2026 11:00:00 GMT", NOW) == timedelta(0)
    assert retry_after("9" * 5000, NOW) == MAX_DELAY  # int() of it would refuse
    for bad in (None, "", "soon", "-5", "1.5", "Sun, 01 Mar 2026 12:05:00", "²", "１２"):  # noqa: RUF001
        assert retry_after(bad, NOW) is None, bad


def test_gives_up_three_days_after_the_first_attempt_with_a_last_try_then() -> None:
    rng = random.Random(0)
    first = NOW
    late = first + RETRY_WINDOW - timedelta(minutes=1)
    last = decide(500, None, 20, first, late, rng)
    assert last.verdict == "retry"
    assert last.next_attempt_at == first + RETRY_WINDOW  # not beyond the window
    assert decide(500, None, 21, first, first + RETRY_WINDOW, rng).verdict == "failed"
    assert decide(None, None, 21, first, first + RETRY_WINDOW * 2, rng).verdict == "failed"
    # Success and 410 mean what they mean, however late.
    assert decide(200, None, 21, first, first + RETRY_WINDOW, rng).verdict == "succeeded"
    assert decide(410, None, 21, first, first + RETRY_WINDOW, rng).verdict == "gone"
