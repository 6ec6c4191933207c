from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payrail.billing import periods
from payrail.billing.periods import (
    Interval,
    UnknownTimeZone,
    add_days,
    load_zone,
    period_bounds,
    period_index_at,
    period_start_at,
)

NY = "America/New_York"
BERLIN = "Europe/Berlin"
KOLKATA = "Asia/Kolkata"
US = timedelta(microseconds=1)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def local(
    zone: str, year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, fold: int = 0
) -> datetime:
    """The UTC instant of a wall time in `zone`."""
    wall = datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone), fold=fold)
    return wall.astimezone(UTC)


def starts(anchor: datetime, interval: Interval, count: int, zone: str, n: int) -> list[datetime]:
    return [period_start_at(anchor, interval, count, i, zone) for i in range(n)]


# --- the examples ---------------------------------------------------


@pytest.mark.parametrize(
    ("anchor", "expected"),
    [
        (
            utc(2026, 1, 31, 9, 15),
            [
                utc(2026, 1, 31, 9, 15),
                utc(2026, 2, 28, 9, 15),
                utc(2026, 3, 31, 9, 15),
                utc(2026, 4, 30, 9, 15),
                utc(2026, 5, 31, 9, 15),
            ],
        ),
        (
            utc(2028, 1, 31),
            [utc(2028, 1, 31), utc(2028, 2, 29), utc(2028, 3, 31), utc(2028, 4, 30)],
        ),
        (
            utc(2026, 1, 30),
            [utc(2026, 1, 30), utc(2026, 2, 28), utc(2026, 3, 30), utc(2026, 4, 30)],
        ),
    ],
)
def test_monthly_clamps_to_short_months_without_drift(
    anchor: datetime, expected: list[datetime]
) -> None:
    assert starts(anchor, "month", 1, "UTC", len(expected)) == expected


def test_yearly_feb_29_clamps_then_returns() -> None:
    assert starts(utc(2028, 2, 29, 12), "year", 1, "UTC", 6) == [
        utc(2028, 2, 29, 12),
        utc(2029, 2, 28, 12),
        utc(2030, 2, 28, 12),
        utc(2031, 2, 28, 12),
        utc(2032, 2, 29, 12),
        utc(2033, 2, 28, 12),
    ]


def test_every_three_months_from_a_month_end() -> None:
    assert starts(utc(2025, 11, 30), "month", 3, "UTC", 5) == [
        utc(2025, 11, 30),
        utc(2026, 2, 28),
        utc(2026, 5, 30),
        utc(2026, 8, 30),
        utc(2026, 11, 30),
    ]


def test_every_two_years() -> None:
    assert starts(utc(2024, 2, 29), "year", 2, "UTC", 3) == [
        utc(2024, 2, 29),
        utc(2026, 2, 28),
        utc(2028, 2, 29),
    ]


def test_weekly_keeps_local_wall_time_across_dst() -> None:
    # New York springs forward on Sunday 8 March 2026.
    anchor = local(NY, 2026, 3, 2, 10)
    assert starts(anchor, "week", 1, NY, 3) == [
        utc(2026, 3, 2, 15),
        utc(2026, 3, 9, 14),
        utc(2026, 3, 16, 14),
    ]
    assert starts(anchor, "week", 2, NY, 3) == [
        utc(2026, 3, 2, 15),
        utc(2026, 3, 16, 14),
        utc(2026, 3, 30, 14),
    ]


@pytest.mark.parametrize(
    ("zone", "anchor", "hours"),
    [
        (NY, (2026, 3, 6, 12), [24, 23, 24]),  # spring forward on 8 Mar
        (NY, (2026, 10, 30, 12), [24, 25, 24]),  # fall back on 1 Nov
        (BERLIN, (2026, 3, 28, 0), [24, 23, 24]),  # spring forward on 29 Mar
        (BERLIN, (2026, 10, 24, 0), [24, 25, 24]),  # fall back on 25 Oct
        (KOLKATA, (2026, 3, 7, 0), [24, 24, 24]),
    ],
)
def test_daily_periods_are_local_calendar_days(
    zone: str, anchor: tuple[int, int, int, int], hours: list[int]
) -> None:
    start = local(zone, *anchor)
    lengths = []
    for i in range(3):
        begin, end = period_bounds(start, "day", 1, i, zone)
        assert begin.astimezone(ZoneInfo(zone)).hour == anchor[3]
        lengths.append((end - begin) / timedelta(hours=1))
    assert lengths == hours


def test_new_york_monthly_at_0230_across_both_dst_changes() -> None:
    anchor = local(NY, 2026, 1, 8, 2, 30)
    assert starts(anchor, "month", 1, NY, 12) == [
        utc(2026, 1, 8, 7, 30),  # EST
        utc(2026, 2, 8, 7, 30),
        # 02:30 on 8 Mar does not exist: read with EST's offset it is 03:30 EDT.
        utc(2026, 3, 8, 7, 30),
        utc(2026, 4, 8, 6, 30),  # EDT, back at 02:30 local
        utc(2026, 5, 8, 6, 30),
        utc(2026, 6, 8, 6, 30),
        utc(2026, 7, 8, 6, 30),
        utc(2026, 8, 8, 6, 30),
        utc(2026, 9, 8, 6, 30),
        utc(2026, 10, 8, 6, 30),
        utc(2026, 11, 8, 7, 30),  # EST again
        utc(2026, 12, 8, 7, 30),
    ]
    in_the_gap = period_start_at(anchor, "month", 1, 2, NY).astimezone(ZoneInfo(NY))
    assert (in_the_gap.hour, in_the_gap.minute) == (3, 30)


def test_berlin_monthly_at_0230_across_both_dst_changes() -> None:
    anchor = local(BERLIN, 2026, 1, 29, 2, 30)
    assert starts(anchor, "month", 1, BERLIN, 11) == [
        utc(2026, 1, 29, 1, 30),  # CET
        utc(2026, 2, 28, 1, 30),  # clamped to 28 Feb
        # 02:30 on 29 Mar does not exist: read with CET's offset it is 03:30 CEST.
        utc(2026, 3, 29, 1, 30),
        utc(2026, 4, 29, 0, 30),  # CEST
        utc(2026, 5, 29, 0, 30),
        utc(2026, 6, 29, 0, 30),
        utc(2026, 7, 29, 0, 30),
        utc(2026, 8, 29, 0, 30),
        utc(2026, 9, 29, 0, 30),
        utc(2026, 10, 29, 1, 30),  # CET again (fall back was 25 Oct)
        utc(2026, 11, 29, 1, 30),
    ]


def test_repeated_hour_takes_the_anchors_pass() -> None:
    # 01:30 happens twice in New York on 1 Nov 2026: 05:30 UTC (EDT), 06:30 UTC (EST).
    first_pass = local(NY, 2026, 10, 1, 1, 30)
    assert period_start_at(first_pass, "month", 1, 1, NY) == utc(2026, 11, 1, 5, 30)
    second_pass = local(NY, 2026, 11, 1, 1, 30, fold=1)
    assert second_pass == utc(2026, 11, 1, 6, 30)
    assert period_start_at(second_pass, "day", 1, 0, NY) == second_pass
    assert period_start_at(second_pass, "year", 1, 1, NY) == utc(2027, 11, 1, 5, 30)
    assert period_start_at(second_pass, "week", 1, 1, NY) == utc(2026, 11, 8, 6, 30)
    assert period_bounds(second_pass, "day", 1, 0, NY) == (second_pass, utc(2026, 11, 2, 6, 30))
    assert period_index_at(second_pass, "day", 1, utc(2026, 11, 2, 6, 30) - US, NY) == 0


def test_berlin_repeated_hour_first_pass() -> None:
    anchor = local(BERLIN, 2026, 9, 25, 2, 30)
    assert period_start_at(anchor, "month", 1, 1, BERLIN) == utc(2026, 10, 25, 0, 30)
    assert period_start_at(anchor, "month", 1, 2, BERLIN) == utc(2026, 11, 25, 1, 30)


def test_kolkata_cuts_at_local_month_ends_not_utc_ones() -> None:
    # Midnight on 31 Jan in Kolkata is 18:30 UTC on the 30th: the anchor day is the 31st.
    anchor = local(KOLKATA, 2026, 1, 31)
    assert anchor == utc(2026, 1, 30, 18, 30)
    assert starts(anchor, "month", 1, KOLKATA, 4) == [
        utc(2026, 1, 30, 18, 30),
        utc(2026, 2, 27, 18, 30),
        utc(2026, 3, 30, 18, 30),
        utc(2026, 4, 29, 18, 30),
    ]
    # The same instant anchored in UTC keeps the 30th.
    assert starts(anchor, "month", 1, "UTC", 4) == [
        utc(2026, 1, 30, 18, 30),
        utc(2026, 2, 28, 18, 30),
        utc(2026, 3, 30, 18, 30),
        utc(2026, 4, 30, 18, 30),
    ]


def test_results_are_utc_whatever_the_inputs_zone() -> None:
    anchor = datetime(2026, 1, 31, 12, tzinfo=ZoneInfo(NY))
    start, end = period_bounds(anchor, "month", 1, 1, NY)
    assert start.tzinfo is UTC and end.tzinfo is UTC
    assert (start, end) == (utc(2026, 2, 28, 17), utc(2026, 3, 31, 16))
    assert add_days(anchor, 1, NY).tzinfo is UTC


# --- period_index_at --------------------------------------------------------


def test_index_400_months_ahead_matches_iterating() -> None:
    anchor = local(NY, 2026, 1, 31, 2, 30)
    boundaries = starts(anchor, "month", 1, NY, 402)
    assert boundaries[400] == period_start_at(anchor, "month", 1, 400, NY)
    assert boundaries[400] == local(NY, 2059, 5, 31, 2, 30)
    for moment in (
        boundaries[400],
        boundaries[400] + timedelta(days=3),
        boundaries[401] - US,
        boundaries[400] - US,
    ):
        by_iterating = max(i for i, start in enumerate(boundaries) if start <= moment)
        assert period_index_at(anchor, "month", 1, moment, NY) == by_iterating
    assert period_index_at(anchor, "month", 1, boundaries[400] - US, NY) == 399


def test_index_far_ahead_computes_a_few_boundaries_not_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = 0
    resolve = periods._resolve

    def counting(wall: datetime, zone: ZoneInfo, fold: int) -> datetime:
        nonlocal calls
        calls += 1
        return resolve(wall, zone, fold)

    monkeypatch.setattr(periods, "_resolve", counting)
    anchor = local(NY, 2026, 1, 31, 2, 30)
    moment = utc(8999, 7, 1)
    # 20:00 on 30 Jun 8999 in New York, after that day's 02:30 boundary.
    days = period_index_at(anchor, "day", 1, moment, NY)
    assert calls <= 4
    assert days == (date(8999, 6, 30) - date(2026, 1, 31)).days
    calls = 0
    assert period_index_at(anchor, "month", 1, moment, NY) == (8999 - 2026) * 12 + 5
    assert calls <= 4


@pytest.mark.parametrize(
    ("moment", "index"),
    [
        (utc(2026, 1, 31), 0),
        (utc(2026, 2, 27, 23, 59, 59, 999999), 0),
        (utc(2026, 2, 28), 1),
        (utc(2026, 3, 30, 23, 59), 1),
        (utc(2026, 3, 31), 2),
        (utc(2027, 1, 31), 12),
        (utc(2027, 1, 30, 23), 11),
    ],
)
def test_index_start_inclusive_end_exclusive(moment: datetime, index: int) -> None:
    assert period_index_at(utc(2026, 1, 31), "month", 1, moment, "UTC") == index


def test_index_of_quarters_and_weeks() -> None:
    anchor = utc(2025, 11, 30)
    assert period_index_at(anchor, "month", 3, utc(2026, 5, 29), "UTC") == 1
    assert period_index_at(anchor, "month", 3, utc(2026, 5, 30), "UTC") == 2
    assert period_index_at(anchor, "week", 1, utc(2025, 12, 6, 23), "UTC") == 0
    assert period_index_at(anchor, "week", 1, utc(2025, 12, 7), "UTC") == 1
    assert period_index_at(anchor, "year", 1, utc(2030, 11, 29), "UTC") == 4


# --- add_days ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "days", "zone", "expected"),
    [
        (local(NY, 2026, 3, 1, 12), 14, NY, utc(2026, 3, 15, 16)),  # 13 days 23 hours
        (local(NY, 2026, 10, 25, 12), 14, NY, utc(2026, 11, 8, 17)),
        (local(BERLIN, 2026, 3, 20, 9), 14, BERLIN, utc(2026, 4, 3, 7)),
        (local(KOLKATA, 2026, 1, 31, 23, 59), 30, KOLKATA, utc(2026, 3, 2, 18, 29)),
        (utc(2026, 1, 1), 0, "UTC", utc(2026, 1, 1)),
        (local(NY, 2026, 3, 7, 2, 30), 1, NY, utc(2026, 3, 8, 7, 30)),  # into the gap
    ],
)
def test_add_days_counts_local_calendar_days(
    start: datetime, days: int, zone: str, expected: datetime
) -> None:
    assert add_days(start, days, zone) == expected


# --- validation -------------------------------------------------------------


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus", "", "america/new_york", "localtime", "right/UTC", "../etc/passwd"]
)
def test_unknown_time_zone(zone: str) -> None:
    with pytest.raises(UnknownTimeZone) as error:
        period_start_at(utc(2026, 1, 1), "month", 1, 0, zone)
    assert isinstance(error.value, ValueError)
    assert str(error.value) == (
        f"Unknown time zone: {zone!r}. Use an IANA time zone name such as "
        "'America/New_York' or 'UTC'."
    )
    with pytest.raises(UnknownTimeZone):
        add_days(utc(2026, 1, 1), 1, zone)
    with pytest.raises(UnknownTimeZone):
        period_index_at(utc(2026, 1, 1), "month", 1, utc(2026, 2, 1), zone)


def test_load_zone_known_names() -> None:
    assert load_zone("UTC") == ZoneInfo("UTC")
    assert load_zone(KOLKATA) == ZoneInfo(KOLKATA)


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2026, 1, 1)  # noqa: DTZ001
    with pytest.raises(ValueError, match="anchor must be timezone-aware"):
        period_start_at(naive, "month", 1, 0, "UTC")
    with pytest.raises(ValueError, match="moment must be timezone-aware"):
        period_index_at(utc(2026, 1, 1), "month", 1, naive, "UTC")
    with pytest.raises(ValueError, match="moment must be timezone-aware"):
        add_days(naive, 1, "UTC")


@pytest.mark.parametrize("count", [0, -1, True])
def test_interval_count_must_be_positive(count: int) -> None:
    with pytest.raises(ValueError, match="interval_count must be an integer >= 1"):
        period_bounds(utc(2026, 1, 1), "month", count, 0, "UTC")


def test_interval_must_be_known() -> None:
    with pytest.raises(ValueError, match="interval must be one of day, week, month, year"):
        period_start_at(utc(2026, 1, 1), "quarter", 1, 0, "UTC")  # type: ignore[arg-type]


def test_index_and_moment_bounds() -> None:
    with pytest.raises(ValueError, match="period index must be an integer >= 0"):
        period_start_at(utc(2026, 1, 1), "month", 1, -1, "UTC")
    with pytest.raises(ValueError, match="is before the billing cycle anchor"):
        period_index_at(utc(2026, 1, 1), "month", 1, utc(2025, 12, 31), "UTC")
    with pytest.raises(ValueError, match="period 100000 starts beyond the year 9999"):
        period_start_at(utc(2026, 1, 1), "year", 1, 100_000, "UTC")
    with pytest.raises(ValueError, match="starts beyond the year 9999"):
        period_start_at(utc(2026, 1, 1), "day", 1, 10**12, "UTC")
    with pytest.raises(ValueError, match="out of range"):
        add_days(utc(2026, 1, 1), 10**9, "UTC")


# --- properties -------------------------------------------------------------

ZONES = sorted(available_timezones() - {"localtime", "posixrules", "Factory"})
INTERVALS: list[Interval] = ["day", "week", "month", "year"]
# From 2015: earlier tzdata has zones skipping whole days (Pacific/Apia in 2011), where a
# period is empty (documented in periods.py).
anchors = st.datetimes(
    min_value=utc(2015, 1, 1).replace(tzinfo=None),
    max_value=utc(2060, 1, 1).replace(tzinfo=None),
    timezones=st.just(UTC),
)
zones = st.sampled_from(ZONES)
intervals = st.sampled_from(INTERVALS)
counts = st.integers(min_value=1, max_value=12)
indexes = st.integers(min_value=0, max_value=150)


@given(anchors, intervals, counts, indexes, zones)
def test_periods_are_contiguous_and_increasing(
    anchor: datetime, interval: Interval, count: int, index: int, zone: str
) -> None:
    bounds = [period_bounds(anchor, interval, count, i, zone) for i in range(index, index + 3)]
    for (start, end), (next_start, _) in itertools.pairwise(bounds):
        assert start < end == next_start
    if index == 0:
        assert bounds[0][0] == anchor


@given(anchors, intervals, counts, indexes, zones)
def test_index_at_inverts_start_at(
    anchor: datetime, interval: Interval, count: int, index: int, zone: str
) -> None:
    start, end = period_bounds(anchor, interval, count, index, zone)
    assert period_index_at(anchor, interval, count, start, zone) == index
    assert period_index_at(anchor, interval, count, end - US, zone) == index
    assert period_index_at(anchor, interval, count, end, zone) == index + 1
    if index > 0:
        assert period_index_at(anchor, interval, count, start - US, zone) == index - 1


@given(
    anchors,
    st.sampled_from(["month", "year"]),
    counts,
    indexes,
    st.sampled_from(["UTC", NY, BERLIN, KOLKATA, "Australia/Lord_Howe", "Pacific/Chatham"]),
)
def test_anchor_days_up_to_28_are_kept(
    anchor: datetime, interval: Interval, count: int, index: int, zone: str
) -> None:
    # Zones whose DST gaps are in the small hours: a kept wall time never leaves its day.
    day = anchor.astimezone(ZoneInfo(zone)).day
    if day <= 28:
        start = period_start_at(anchor, interval, count, index, zone)
        assert start.astimezone(ZoneInfo(zone)).day == day


@given(anchors, intervals, counts, indexes, zones)
def test_boundaries_keep_the_anchors_wall_time_outside_gaps(
    anchor: datetime, interval: Interval, count: int, index: int, zone: str
) -> None:
    tz = ZoneInfo(zone)
    wall = anchor.astimezone(tz)
    start = period_start_at(anchor, interval, count, index, zone).astimezone(tz)
    if start.time() != wall.time():
        # Only a nonexistent wall time moves, and it moves forward, past the gap.
        intended = datetime.combine(start.date(), wall.time())
        round_trip = intended.replace(tzinfo=tz).astimezone(UTC).astimezone(tz)
        assert round_trip.replace(tzinfo=None) != intended
        assert start.replace(tzinfo=None) > intended
