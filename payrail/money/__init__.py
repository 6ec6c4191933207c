"""Money as integer minor units with ISO 4217 exponents; no floats anywhere."""

from payrail.money.currencies import EXPONENTS, NO_MINOR_UNIT, SOURCE
from payrail.money.money import (
    CurrencyMismatch,
    InvalidAmount,
    Money,
    MoneyError,
    TooManyDecimals,
    UnknownCurrency,
    exponent,
    normalize_currency,
)

__all__ = [
    "EXPONENTS",
    "NO_MINOR_UNIT",
    "SOURCE",
    "CurrencyMismatch",
    "InvalidAmount",
    "Money",
    "MoneyError",
    "TooManyDecimals",
    "UnknownCurrency",
    "exponent",
    "normalize_currency",
]
