from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payrail.connectors.base import ProviderPayment
from payrail.payments.in_doubt import (
    DAILY,
    NOT_PROCESSED_AFTER,
    SCHEDULE,
    next_check_at,
    settle,
)

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def answer(status: str) -> ProviderPayment:
    return ProviderPayment("sbxpay_1", status, 1_000, 0, 0, 0, None)  # type: ignore[arg-type]


def test_the_schedule_is_15s_1m_5m_1h_then_daily() -> None:
    at = T0
    waits = []
    for done in range(7):
        following = next_check_at(at, done)
        waits.append(following - at)
        at = following
    assert waits == [
        timedelta(seconds=15),
        timedelta(minutes=1),
        timedelta(minutes=5),
        timedelta(hours=1),
        DAILY,
        DAILY,
        DAILY,
    ]
    with pytest.raises(ValueError):
        next_check_at(T0, -1)


def test_the_first_check_comes_after_the_connectors_own_timeout() -> None:
    assert SCHEDULE[0] > timedelta(seconds=10)


def test_the_third_check_can_settle_a_request_never_processed() -> None:
    assert sum(SCHEDULE[:3], timedelta()) > NOT_PROCESSED_AFTER


@given(st.integers(0, 50))
def test_checks_never_stop_and_never_come_sooner_than_15s(done: int) -> None:
    assert next_check_at(T0, done) - T0 >= timedelta(seconds=15)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("captured", "captured"),
        ("authorized", "authorized"),
        ("declined", "declined"),
        ("requires_authentication", "requires_authentication"),
        ("voided", "failed"),
    ],
)
def test_a_provider_answer_settles_the_attempt(status: str, outcome: str) -> None:
    assert settle(answer(status), T0, T0 + timedelta(seconds=15)) == outcome


def test_no_record_of_the_key_means_not_charged_only_once_the_request_cannot_be_in_flight() -> None:
    assert settle(None, T0, T0 + timedelta(seconds=15)) == "in_doubt"
    assert settle(None, T0, T0 + NOT_PROCESSED_AFTER - timedelta(seconds=1)) == "in_doubt"
    assert settle(None, T0, T0 + NOT_PROCESSED_AFTER) == "failed"
