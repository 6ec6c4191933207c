"""Billing periods as Stripe cuts them: from the anchor, in the customer's time zone.

Boundary i is the anchor's local wall-clock time plus i x interval_count intervals. Months
and years keep the anchor's day of month, clamped to short months (Jan 31 -> Feb 28 ->
Mar 31), and every boundary is computed from the anchor, never from the previous one, so
clamping never drifts. Days and weeks are local calendar days: across a DST change a day
lasts 23 or 25 hours.

Wall times that DST makes odd resolve as zoneinfo does:

- a wall time that does not exist (the spring-forward gap) is read with the offset from
  before the jump (fold=0), which moves it forward by the gap: 02:30 on New York's
  spring-forward day is 03:30 EDT;
- a wall time that occurs twice takes the same pass as the anchor's own wall time (the
  first unless the anchor was in the second), so period 0 always starts at the anchor.

A zone that skips a whole calendar day (Pacific/Apia on 30 Dec 2011) puts that day's
boundary on the next day's, an empty period; no live subscription reaches such a date.

Every result is a timezone-aware UTC datetime.
"""

from __future__ import annotations

import calendar
import functools
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

Interval = Literal["day", "week", "month", "year"]
INTERVALS: tuple[Interval, ...] = get_args(Interval)

# Names zoneinfo lists that are not places: the host's zone and tzdata's placeholders.
_NOT_PLACES = frozenset({"localtime", "posixrules", "Factory"})


class UnknownTimeZone(ValueError):
    """The name is not an IANA time zone (callers answer 400 naming their field)."""

    def __init__(self, time_zone: object):
        super().__init__(
            f"Unknown time zone: {time_zone!r}. Use an IANA time zone name such as "
            "'America/New_York' or 'UTC'."
        )
        self.time_zone = time_zone


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - _NOT_PLACES


def load_zone(time_zone: str) -> zoneinfo.ZoneInfo:
    """The zone named `time_zone`, or UnknownTimeZone. Only listed IANA names pass:
    ZoneInfo itself also opens paths such as 'right/UTC' (leap-second clocks)."""
    if not isinstance(time_zone, str) or time_zone not in _zone_names():
        raise UnknownTimeZone(time_zone)
    return zoneinfo.ZoneInfo(time_zone)


def _utc(name: str, moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def _resolve(wall: datetime, zone: zoneinfo.ZoneInfo, fold: int) -> datetime:
    """The UTC instant of a naive local wall time in `zone`."""
    earlier = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if earlier.astimezone(zone).replace(tzinfo=None) != wall:
        # Not a real wall time (a gap): fold=0 reads it with the offset from before the
        # jump, which lands after the gap.
        return earlier
    return wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)


@dataclass(frozen=True)
class _Cycle:
    wall: datetime  # the anchor's local wall time, naive
    fold: int
    zone: zoneinfo.ZoneInfo
    interval: Interval
    interval_count: int

    @classmethod
    def of(
        cls, anchor: datetime, interval: Interval, interval_count: int, time_zone: str
    ) -> _Cycle:
        zone = load_zone(time_zone)
        if interval not in INTERVALS:
            raise ValueError(f"interval must be one of {', '.join(INTERVALS)}, got {interval!r}")
        if type(interval_count) is not int or interval_count < 1:
            raise ValueError(f"interval_count must be an integer >= 1, got {interval_count!r}")
        local = _utc("anchor", anchor).astimezone(zone)
        return cls(local.replace(tzinfo=None), local.fold, zone, interval, interval_count)

    def start(self, index: int) -> datetime:
        steps = index * self.interval_count
        try:
            if self.interval in ("day", "week"):
                days = steps * 7 if self.interval == "week" else steps
                wall = self.wall + timedelta(days=days)
            else:
                months = steps * 12 if self.interval == "year" else steps
                year, month0 = divmod(self.wall.year * 12 + self.wall.month - 1 + months, 12)
                day = min(self.wall.day, calendar.monthrange(year, month0 + 1)[1])
                wall = self.wall.replace(year=year, month=month0 + 1, day=day)
            return _resolve(wall, self.zone, self.fold)
        except (OverflowError, ValueError) as exc:
            raise ValueError(f"period {index} starts beyond the year 9999") from exc

    def elapsed_intervals(self, moment: datetime) -> int:
        """Whole intervals between the anchor's and `moment`'s local calendar positions:
        within one or two of the true period index, whatever the clamping and DST."""
        wall = moment.astimezone(self.zone)
        if self.interval in ("day", "week"):
            days = (wall.date() - self.wall.date()).days
            return days // 7 if self.interval == "week" else days
        months = (wall.year - self.wall.year) * 12 + wall.month - self.wall.month
        return months // 12 if self.interval == "year" else months


def _check_index(index: int) -> None:
    if type(index) is not int or index < 0:
        raise ValueError(f"period index must be an integer >= 0, got {index!r}")


def period_start_at(
    anchor: datetime, interval: Interval, interval_count: int, index: int, time_zone: str
) -> datetime:
    """The start of period `index` (0 starts at `anchor`)."""
    _check_index(index)
    return _Cycle.of(anchor, interval, interval_count, time_zone).start(index)


def period_bounds(
    anchor: datetime, interval: Interval, interval_count: int, index: int, time_zone: str
) -> tuple[datetime, datetime]:
    """(start, end) of period `index`; the end is the next period's start."""
    _check_index(index)
    cycle = _Cycle.of(anchor, interval, interval_count, time_zone)
    return cycle.start(index), cycle.start(index + 1)


def period_index_at(
    anchor: datetime, interval: Interval, interval_count: int, moment: datetime, time_zone: str
) -> int:
    """The index of the period holding `moment` (start inclusive, end exclusive)."""
    cycle = _Cycle.of(anchor, interval, interval_count, time_zone)
    moment, anchor = _utc("moment", moment), _utc("anchor", anchor)
    if moment < anchor:
        raise ValueError(
            f"moment {moment.isoformat()} is before the billing cycle anchor {anchor.isoformat()}"
        )
    # The calendar estimate is off by at most a step or two (clamped days, DST hours), so
    # each loop below runs a bounded number of times however far the moment is.
    index = max(0, cycle.elapsed_intervals(moment) // interval_count)
    while index > 0 and cycle.start(index) > moment:
        index -= 1
    while cycle.start(index + 1) <= moment:
        index += 1
    return index


def add_days(moment: datetime, days: int, time_zone: str) -> datetime:
    """`moment` plus `days` local calendar days at the same wall time (trial ends)."""
    zone = load_zone(time_zone)
    local = _utc("moment", moment).astimezone(zone)
    try:
        return _resolve(local.replace(tzinfo=None) + timedelta(days=days), zone, local.fold)
    except (OverflowError, ValueError) as exc:
        raise ValueError(f"{days} days from {moment.isoformat()} is out of range") from exc
