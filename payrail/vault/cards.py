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

# Runs of digits, possibly grouped by single spaces or dashes; a card number may sit
# anywhere inside one ("4242424242424242 123" is a number and a CVC).
_RUN = re.compile(r"[0-9](?:[ -]?[0-9])*")
PAN_LENGTHS = range(13, 20)


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
    """Mask every stretch of 13 to 19 digits inside a digit run that passes Luhn, leaving
    only its last four digits. For logs and stored messages: a card number next to other
    digits is caught too, at the price of masking some harmless long numbers."""

    def mask(match: re.Match[str]) -> str:
        run = match.group()
        positions = [i for i, char in enumerate(run) if char.isdigit()]
        if len(positions) < PAN_LENGTHS.start:
            return run
        digits = "".join(run[i] for i in positions)
        hidden: set[int] = set()
        for start in range(len(digits)):
            for length in PAN_LENGTHS:
                end = start + length
                if end <= len(digits) and luhn_valid(digits[start:end]):
                    hidden.update(positions[start : end - 4])
        if not hidden:
            return run
        return "".join("*" if i in hidden else char for i, char in enumerate(run))

    return _RUN.sub(mask, text)
