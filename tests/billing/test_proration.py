from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payrail.billing.proration import (
    ProrationLine,
    describe,
    price_change_prorations,
    prorate,
    remaining_fraction,
)
from payrail.money import InvalidAmount

APRIL = (datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC))  # 30 days
MID_APRIL = datetime(2026, 4, 16, tzinfo=UTC)


def at_seconds(seconds: int) -> datetime:
    return APRIL[0] + timedelta(seconds=seconds)


# --- remaining_fraction, prorate --------------------------------------------


@pytest.mark.parametrize(
    ("at", "fraction"),
    [
        (APRIL[0], Fraction(1)),
        (MID_APRIL, Fraction(1, 2)),
        (datetime(2026, 4, 25, 12, tzinfo=UTC), Fraction(11, 60)),
        (APRIL[1], Fraction(0)),
        (datetime(2026, 3, 1, tzinfo=UTC), Fraction(1)),  # clamped to the start
        (datetime(2026, 6, 1, tzinfo=UTC), Fraction(0)),  # clamped to the end
        (at_seconds(1), Fraction(2591999, 2592000)),
        # Whole seconds, as Stripe's timestamps: 1.9 s in counts as 1 s.
        (at_seconds(1) + timedelta(microseconds=900_000), Fraction(2591999, 2592000)),
        # The same instant written in another zone.
        (datetime(2026, 4, 15, 20, tzinfo=ZoneInfo("America/New_York")), Fraction(1, 2)),
    ],
)
def test_remaining_fraction(at: datetime, fraction: Fraction) -> None:
    assert remaining_fraction(*APRIL, at) == fraction


@pytest.mark.parametrize(
    ("amount", "at", "expected"),
    [
        (1000, MID_APRIL, 500),
        (1001, MID_APRIL, 500),  # 500.5 -> 500 (half to even)
        (1003, MID_APRIL, 502),  # 501.5 -> 502 (half to even)
        (-1001, MID_APRIL, -500),
        (-1003, MID_APRIL, -502),
        (1000, datetime(2026, 4, 11, tzinfo=UTC), 667),  # 666.67
        (1000, datetime(2026, 4, 21, tzinfo=UTC), 333),  # 333.33
        (999_999_999_999, at_seconds(1), 999_999_614_197),  # 999999614196.53
        (100, APRIL[0], 100),
        (100, APRIL[1], 0),
        (0, MID_APRIL, 0),
    ],
)
def test_prorate_rounds_half_to_even(amount: int, at: datetime, expected: int) -> None:
    assert prorate(amount, *APRIL, at) == expected


def test_prorate_refuses_non_integer_amounts() -> None:
    with pytest.raises(InvalidAmount, match="amount must be an int of minor units, got float"):
        prorate(10.0, *APRIL, MID_APRIL)  # type: ignore[arg-type]
    with pytest.raises(InvalidAmount, match="got bool"):
        prorate(True, *APRIL, MID_APRIL)


def test_bad_periods_and_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="must be at least a second after period_start"):
        remaining_fraction(APRIL[1], APRIL[0], MID_APRIL)
    with pytest.raises(ValueError, match="must be at least a second after period_start"):
        remaining_fraction(APRIL[0], APRIL[0] + timedelta(microseconds=10), APRIL[0])
    with pytest.raises(ValueError, match="at must be timezone-aware"):
        prorate(100, *APRIL, datetime(2026, 4, 16))  # noqa: DTZ001
    with pytest.raises(ValueError, match="period_start must be timezone-aware"):
        remaining_fraction(datetime(2026, 4, 1), APRIL[1], MID_APRIL)  # noqa: DTZ001


# --- price changes ----------------------------------------------------------


def test_upgrade_mid_period_gives_stripes_two_lines() -> None:
    lines = price_change_prorations(
        "price_premium", 1000, 1, "price_premium_plus", 2000, 1, *APRIL, MID_APRIL
    )
    assert lines == [
        ProrationLine(-500, "unused_time", "price_premium", 1, MID_APRIL, APRIL[1]),
        ProrationLine(1000, "remaining_time", "price_premium_plus", 1, MID_APRIL, APRIL[1]),
    ]


def test_each_line_is_rounded_on_its_own() -> None:
    # -500.5 and 1001: the net of rounded lines is 501, where rounding the net gives 500.
    lines = price_change_prorations("price_a", 1001, 1, "price_b", 2002, 1, *APRIL, MID_APRIL)
    assert [line.amount for line in lines] == [-500, 1001]


def test_quantity_change_on_the_same_price() -> None:
    at = datetime(2026, 4, 11, tzinfo=UTC)  # 2/3 left
    lines = price_change_prorations("price_seat", 1500, 2, "price_seat", 1500, 5, *APRIL, at)
    assert lines == [
        ProrationLine(-2000, "unused_time", "price_seat", 2, at, APRIL[1]),
        ProrationLine(5000, "remaining_time", "price_seat", 5, at, APRIL[1]),
    ]


def test_downgrade_credits_more_than_it_charges() -> None:
    at = datetime(2026, 4, 21, tzinfo=UTC)  # 1/3 left
    lines = price_change_prorations("price_big", 3000, 1, "price_small", 1000, 1, *APRIL, at)
    assert [line.amount for line in lines] == [-1000, 333]


def test_line_periods_are_utc_and_clamped() -> None:
    early = datetime(2026, 3, 20, tzinfo=ZoneInfo("Europe/Berlin"))
    lines = price_change_prorations("price_a", 100, 1, "price_b", 200, 1, *APRIL, early)
    assert [(line.amount, line.period_start, line.period_end) for line in lines] == [
        (-100, APRIL[0], APRIL[1]),
        (200, APRIL[0], APRIL[1]),
    ]
    assert lines[0].period_start.tzinfo is UTC


@pytest.mark.parametrize(
    "at", [APRIL[1], APRIL[1] + timedelta(days=1), APRIL[1] + timedelta(microseconds=1)]
)
def test_no_lines_when_no_time_is_left(at: datetime) -> None:
    assert price_change_prorations("price_a", 100, 1, "price_b", 200, 1, *APRIL, at) == []


def test_no_lines_when_nothing_changes() -> None:
    assert price_change_prorations("price_a", 100, 3, "price_a", 100, 3, *APRIL, MID_APRIL) == []


def test_bad_price_change_inputs() -> None:
    with pytest.raises(ValueError, match="price price_a given two unit amounts: 100 and 200"):
        price_change_prorations("price_a", 100, 1, "price_a", 200, 1, *APRIL, MID_APRIL)
    with pytest.raises(ValueError, match="new_quantity must be an integer >= 0, got -1"):
        price_change_prorations("price_a", 100, 1, "price_b", 200, -1, *APRIL, MID_APRIL)
    with pytest.raises(ValueError, match="old_unit_amount must be an integer >= 0, got -100"):
        price_change_prorations("price_a", -100, 1, "price_b", 200, 1, *APRIL, MID_APRIL)
    with pytest.raises(InvalidAmount, match="new_unit_amount must be an int of minor units"):
        price_change_prorations("price_a", 100, 1, "price_b", 2.5, 1, *APRIL, MID_APRIL)  # type: ignore[arg-type]


# --- descriptions -----------------------------------------------------------


def test_descriptions_read_like_stripes() -> None:
    at = datetime(2026, 3, 15, 10, tzinfo=UTC)
    end = datetime(2026, 4, 1, tzinfo=UTC)
    unused, remaining = price_change_prorations(
        "price_premium",
        1000,
        1,
        "price_premium_plus",
        2000,
        1,
        datetime(2026, 3, 1, tzinfo=UTC),
        end,
        at,
    )
    assert describe(unused, "Premium", at) == "Unused time on Premium after 15 Mar 2026"
    assert describe(remaining, "Premium+", at) == "Remaining time on Premium+ after 15 Mar 2026"


def test_descriptions_with_quantities_and_local_dates() -> None:
    line = ProrationLine(6000, "remaining_time", "price_seat", 3, APRIL[0], APRIL[1])
    assert describe(line, "Seat", datetime(2026, 4, 5, tzinfo=UTC)) == (
        "Remaining time on 3 \N{MULTIPLICATION SIGN} Seat after 05 Apr 2026"
    )
    # 23:00 UTC on 4 Apr is already 5 Apr in Kolkata: the caller's zone decides.
    late = datetime(2026, 4, 4, 23, tzinfo=UTC)
    assert describe(line, "Seat", late).endswith("after 04 Apr 2026")
    assert describe(line, "Seat", late.astimezone(ZoneInfo("Asia/Kolkata"))).endswith(
        "after 05 Apr 2026"
    )
    with pytest.raises(ValueError, match="at must be timezone-aware"):
        describe(line, "Seat", datetime(2026, 4, 5))  # noqa: DTZ001


# --- properties -------------------------------------------------------------

starts = st.datetimes(
    min_value=datetime(2000, 1, 1, tzinfo=UTC).replace(tzinfo=None),
    max_value=datetime(2100, 1, 1, tzinfo=UTC).replace(tzinfo=None),
    timezones=st.just(UTC),
)
lengths = st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=3 * 366))
offsets = st.timedeltas(min_value=timedelta(days=-40), max_value=timedelta(days=3 * 366 + 40))
unit_amounts = st.integers(min_value=0, max_value=10**12)
quantities = st.integers(min_value=0, max_value=10_000)
amounts = st.integers(min_value=-(10**15), max_value=10**15)


@given(amounts, starts, lengths)
def test_prorate_whole_and_nothing(amount: int, start: datetime, length: timedelta) -> None:
    end = start + length
    if (end.replace(microsecond=0) - start.replace(microsecond=0)) >= timedelta(seconds=1):
        assert prorate(amount, start, end, start) == amount
        assert prorate(amount, start, end, end) == 0


@given(amounts, starts, lengths, offsets)
def test_prorate_is_the_nearest_integer(
    amount: int, start: datetime, length: timedelta, offset: timedelta
) -> None:
    start, end = start.replace(microsecond=0), (start + length).replace(microsecond=0)
    if end > start:
        exact = amount * remaining_fraction(start, end, start + offset)
        result = prorate(amount, start, end, start + offset)
        assert abs(result - exact) <= Fraction(1, 2)
        assert abs(result) <= abs(amount)
        if abs(result - exact) == Fraction(1, 2):
            assert result % 2 == 0


@given(
    st.sampled_from(["price_a", "price_b"]),
    unit_amounts,
    quantities,
    st.sampled_from(["price_a", "price_c"]),
    unit_amounts,
    quantities,
    starts,
    lengths,
    offsets,
)
def test_lines_add_up_to_the_difference(
    old_price: str,
    old_unit: int,
    old_quantity: int,
    new_price: str,
    new_unit: int,
    new_quantity: int,
    start: datetime,
    length: timedelta,
    offset: timedelta,
) -> None:
    start, end = start.replace(microsecond=0), (start + length).replace(microsecond=0)
    if old_price == new_price:
        new_unit = old_unit
    at = start + offset
    if end <= start:
        return
    lines = price_change_prorations(
        old_price, old_unit, old_quantity, new_price, new_unit, new_quantity, start, end, at
    )
    old_total, new_total = old_unit * old_quantity, new_unit * new_quantity
    if (old_price, old_quantity) == (new_price, new_quantity) or at >= end:
        assert lines == []
        return
    credit, charge = lines
    assert credit.amount + charge.amount == (
        prorate(new_total, start, end, at) - prorate(old_total, start, end, at)
    )
    assert -old_total <= credit.amount <= 0
    assert 0 <= charge.amount <= new_total
    assert (credit.price_id, credit.quantity, charge.price_id, charge.quantity) == (
        old_price,
        old_quantity,
        new_price,
        new_quantity,
    )
    assert credit.period_start == charge.period_start == max(at, start)
    assert credit.period_end == charge.period_end == end
