"""Integer minor-unit money values.

An amount is always an ``int`` count of the currency's minor unit (cents for
USD, yen for JPY, fils for BHD). Nothing here uses binary floating point.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Self

from payrail.money.currencies import EXPONENTS, NO_MINOR_UNIT

__all__ = [
    "CurrencyMismatch",
    "InvalidAmount",
    "Money",
    "MoneyError",
    "TooManyDecimals",
    "UnknownCurrency",
    "exponent",
    "normalize_currency",
]


class MoneyError(ValueError):
    """Base class of every money error."""


class UnknownCurrency(MoneyError):
    """The code is not an ISO 4217 code with a minor unit."""


class CurrencyMismatch(MoneyError):
    """An operation mixed two different currencies."""


class TooManyDecimals(MoneyError):
    """A decimal string has more fraction digits than the currency allows."""


class InvalidAmount(MoneyError):
    """An amount is not an int, or a decimal string is malformed."""


# Optional "-", ASCII digits, optionally "." followed by at least one digit.
# No "+", no exponent, no grouping separators, no surrounding whitespace.
_DECIMAL_RE = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")


def normalize_currency(code: str) -> str:
    """Return the upper-case ISO 4217 code, or raise :class:`UnknownCurrency`."""
    if not isinstance(code, str):
        raise UnknownCurrency(f"currency code must be a str, got {type(code).__name__}")
    upper = code.upper()
    if upper in EXPONENTS:
        return upper
    if upper in NO_MINOR_UNIT:
        raise UnknownCurrency(f"currency {upper} has no minor unit")
    raise UnknownCurrency(f"unknown currency code {code!r}")


def exponent(currency: str) -> int:
    """Number of minor-unit digits of ``currency`` (JPY 0, USD 2, BHD 3)."""
    return EXPONENTS[normalize_currency(currency)]


@dataclass(frozen=True, slots=True)
class Money:
    """An integer number of minor units of one currency."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.amount) is not int:
            raise InvalidAmount(
                f"amount must be an int of minor units, got {type(self.amount).__name__}"
            )
        object.__setattr__(self, "currency", normalize_currency(self.currency))

    @classmethod
    def zero(cls, currency: str) -> Self:
        return cls(0, currency)

    @classmethod
    def parse(cls, text: str, currency: str) -> Self:
        """Parse a plain decimal string such as ``"12.34"`` or ``"-5"``.

        The string may have at most ``exponent(currency)`` fraction digits
        (trailing zeros included: ``"1.0"`` is rejected for JPY).
        """
        code = normalize_currency(currency)
        if not isinstance(text, str):
            raise InvalidAmount(f"amount text must be a str, got {type(text).__name__}")
        match = _DECIMAL_RE.fullmatch(text)
        if match is None:
            raise InvalidAmount(f"not a plain decimal amount: {text!r}")
        sign, whole, fraction = match.group(1), match.group(2), match.group(3) or ""
        exp = EXPONENTS[code]
        if len(fraction) > exp:
            raise TooManyDecimals(
                f"{text!r} has {len(fraction)} fraction digits; {code} allows {exp}"
            )
        try:
            minor = int(whole + fraction.ljust(exp, "0"))
        except ValueError as exc:  # more digits than sys.get_int_max_str_digits()
            raise InvalidAmount(f"amount has too many digits: {len(text)}") from exc
        return cls(-minor if sign else minor, code)

    def to_decimal_string(self) -> str:
        """Format as a plain decimal string: ``"12.34"``, ``"1000"``, ``"-0.125"``."""
        exp = EXPONENTS[self.currency]
        sign = "-" if self.amount < 0 else ""
        whole, fraction = divmod(abs(self.amount), 10**exp)
        if exp == 0:
            return f"{sign}{whole}"
        return f"{sign}{whole}.{fraction:0{exp}d}"

    def _check_same(self, other: Money) -> None:
        if self.currency != other.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._check_same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._check_same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._check_same(other)
        return self.amount < other.amount

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._check_same(other)
        return self.amount <= other.amount

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._check_same(other)
        return self.amount > other.amount

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._check_same(other)
        return self.amount >= other.amount
