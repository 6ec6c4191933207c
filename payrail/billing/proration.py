"""Stripe's proration: the remaining share of a period, in exact integer arithmetic.

The share counts whole seconds, as Stripe's unix timestamps do, and every amount is
rounded half to even to minor units once, per line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Literal

from payrail.money import InvalidAmount

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
# Fixed English abbreviations: strftime's %b follows the process locale.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _aware(name: str, moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {moment.isoformat()}")
    return moment


def _unix_seconds(name: str, moment: datetime) -> int:
    # Floor division of timedeltas is exact, where datetime.timestamp() goes through float.
    return (_aware(name, moment) - _EPOCH) // _SECOND


def remaining_fraction(period_start: datetime, period_end: datetime, at: datetime) -> Fraction:
    """The share of the period left after `at`, clamped to [0, 1]."""
    start = _unix_seconds("period_start", period_start)
    end = _unix_seconds("period_end", period_end)
    if end <= start:
        raise ValueError(
            f"period_end {period_end.isoformat()} must be at least a second after "
            f"period_start {period_start.isoformat()}"
        )
    now = min(max(_unix_seconds("at", at), start), end)
    return Fraction(end - now, end - start)


def _check_amount(name: str, amount: int) -> None:
    if type(amount) is not int:
        raise InvalidAmount(f"{name} must be an int of minor units, got {type(amount).__name__}")


def prorate(amount: int, period_start: datetime, period_end: datetime, at: datetime) -> int:
    """`amount` for the time left in the period, rounded half to even to minor units."""
    _check_amount("amount", amount)
    return round(amount * remaining_fraction(period_start, period_end, at))


@dataclass(frozen=True)
class ProrationLine:
    """One proration invoice item: negative for unused time, positive for remaining time.
    Its period runs from the change to the end of the billing period."""

    amount: int
    description_kind: Literal["unused_time", "remaining_time"]
    price_id: str
    quantity: int
    period_start: datetime
    period_end: datetime


def price_change_prorations(
    old_price_id: str,
    old_unit_amount: int,
    old_quantity: int,
    new_price_id: str,
    new_unit_amount: int,
    new_quantity: int,
    period_start: datetime,
    period_end: datetime,
    at: datetime,
) -> list[ProrationLine]:
    """Stripe's two lines for a price or quantity change at `at`: a credit for the old
    price's unused time and a charge for the new price's remaining time, each rounded
    on its own as Stripe rounds them. None when nothing changes or no time is left."""
    _check_amount("old_unit_amount", old_unit_amount)
    _check_amount("new_unit_amount", new_unit_amount)
    for name, value in (
        ("old_unit_amount", old_unit_amount),
        ("new_unit_amount", new_unit_amount),
        ("old_quantity", old_quantity),
        ("new_quantity", new_quantity),
    ):
        if type(value) is not int or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if old_price_id == new_price_id and old_quantity == new_quantity:
        if old_unit_amount != new_unit_amount:
            # A price's amount never changes: two amounts for one price is a caller's bug.
            raise ValueError(
                f"price {old_price_id} given two unit amounts: {old_unit_amount} and "
                f"{new_unit_amount}"
            )
        return []
    fraction = remaining_fraction(period_start, period_end, at)
    if fraction == 0:
        return []
    since = min(max(at, period_start), period_end).astimezone(UTC)
    until = period_end.astimezone(UTC)
    return [
        ProrationLine(
            amount=-round(old_unit_amount * old_quantity * fraction),
            description_kind="unused_time",
            price_id=old_price_id,
            quantity=old_quantity,
            period_start=since,
            period_end=until,
        ),
        ProrationLine(
            amount=round(new_unit_amount * new_quantity * fraction),
            description_kind="remaining_time",
            price_id=new_price_id,
            quantity=new_quantity,
            period_start=since,
            period_end=until,
        ),
    ]


def describe(line: ProrationLine, product_name: str, at: datetime) -> str:
    """Stripe's description, e.g. "Unused time on Premium after 15 Mar 2026"; a quantity
    other than 1 goes before the name with a multiplication sign, as Stripe writes it. The
    date is `at`'s calendar date in its own zone: pass `at` in the customer's zone."""
    _aware("at", at)
    lead = "Unused time on" if line.description_kind == "unused_time" else "Remaining time on"
    what = (
        product_name
        if line.quantity == 1
        else f"{line.quantity} \N{MULTIPLICATION SIGN} {product_name}"
    )
    return f"{lead} {what} after {at.day:02d} {_MONTHS[at.month - 1]} {at.year}"
