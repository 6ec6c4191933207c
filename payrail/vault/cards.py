"""Card number checks, decided without I/O: Luhn, brand from the BIN, expiry, masking."""

from __future__ import annotations

import re
from datetime import datetime

# Issuer identification ranges, as (first digits low, high, brand). Longest prefixes are
# listed first so that 6011 is Discover before 6 is anything else.
_RANGES: tuple[tuple[int, int, str], ...] = (
    (2221, 2720, "mastercard"),
    (3528, 3589, "jcb"),
    (6011, 6011, "discover"),
    (300, 305, "diners"),
    (309, 309, "diners"),
    (644, 649, "discover"),
    (34, 34, "amex"),
    (37, 37, "amex"),
    (36, 36, "diners"),
    (38, 39, "diners"),
    (51, 55, "mastercard"),
    (62, 62, "unionpay"),
    (65, 65, "discover"),
    (4, 4, "visa"),
)

# 13 to 19 digits, possibly grouped by single spaces or dashes, not inside a longer number.
_CANDIDATE = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])")


def luhn_valid(number: str) -> bool:
    if not (number.isascii() and number.isdigit()):
        return False
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = ord(char) - 48
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def brand(number: str) -> str:
    for low, high, name in _RANGES:
        prefix = int(number[: len(str(low))])
        if low <= prefix <= high:
            return name
    return "unknown"


def expired(exp_month: int, exp_year: int, now: datetime) -> bool:
    """A card is good through the last day of its expiry month."""
    return (exp_year, exp_month) < (now.year, now.month)


def mask_card_numbers(text: str) -> str:
    """Replace anything that looks like a card number (13-19 digits passing Luhn) with its
    last four digits behind asterisks. For logs: nothing more than the last 4 survives."""

    def mask(match: re.Match[str]) -> str:
        digits = re.sub(r"[ -]", "", match.group())
        if not luhn_valid(digits):
            return match.group()
        return "*" * (len(digits) - 4) + digits[-4:]

    return _CANDIDATE.sub(mask, text)
