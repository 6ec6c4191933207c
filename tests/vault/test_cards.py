from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payrail.vault.cards import brand, expired, luhn_valid, mask_card_numbers
from payrail.vault.test_cards import TEST_CARDS


def with_check_digit(body: str) -> str:
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("4242424242424242", True),
        ("4242424242424241", False),
        ("79927398713", True),
        ("", False),
        ("4242 4242 4242 4242", False),  # callers strip spaces first
        ("\uff14\uff12\uff14\uff12", False),  # fullwidth digits are not card digits
    ],
)
def test_luhn(number: str, valid: bool) -> None:
    assert luhn_valid(number) is valid


@given(st.text(alphabet="0123456789", min_size=11, max_size=18))
def test_exactly_one_check_digit_makes_a_number_valid(body: str) -> None:
    assert sum(luhn_valid(body + d) for d in "0123456789") == 1


def test_the_brand_of_every_test_card_is_read_from_its_bin() -> None:
    for card in TEST_CARDS:
        assert brand(card.number) == card.brand, card.number


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("2221", "mastercard"),
        ("2720", "mastercard"),
        ("2721", "unknown"),
        ("3528", "jcb"),
        ("3530", "jcb"),
        ("300", "diners"),
        ("36", "diners"),
        ("34", "amex"),
        ("6011", "discover"),
        ("644", "discover"),
        ("65", "discover"),
        ("62", "unionpay"),
        ("4", "visa"),
        ("1", "unknown"),
        ("9", "unknown"),
    ],
)
def test_brand_ranges(prefix: str, expected: str) -> None:
    assert brand(prefix.ljust(16, "0")) == expected


def test_a_card_is_good_through_its_expiry_month() -> None:
    now = datetime(2026, 11, 21, tzinfo=UTC)
    assert not expired(11, 2026, now)
    assert expired(10, 2026, now)
    assert expired(12, 2025, now)
    assert not expired(1, 2027, now)


@pytest.mark.parametrize(
    "written",
    [
        "4242424242424242",
        "4242 4242 4242 4242",
        "4242-4242-4242-4242",
        "card=4242424242424242;",
        '{"number": 378282246310005}',
    ],
)
def test_masking_leaves_only_the_last_four(written: str) -> None:
    masked = mask_card_numbers(f"before {written} after")
    digits = "".join(c for c in masked if c.isdigit())
    assert digits in ("4242", "0005")
    assert masked.startswith("before ") and masked.endswith(" after")


@given(st.text(alphabet="0123456789", min_size=12, max_size=18))
def test_masking_catches_any_luhn_valid_number(body: str) -> None:
    number = with_check_digit(body)
    assert number not in mask_card_numbers(f"x{number}x")


def test_masking_leaves_short_numbers_alone() -> None:
    # Long numbers may be masked when some stretch of them passes Luhn: the safe side.
    for text in ("amount 123456789012", "id 12", "2026-11-21 17:14:05.123456", "4242 4242"):
        assert mask_card_numbers(text) == text


@pytest.mark.parametrize(
    "written",
    [
        "4242424242424242 123",
        "4242424242424242 12 2030",
        "exp 12 4242424242424242",
        "12 4242424242424242 123",
        "00004242424242424242",
        "/v1/customers/4242424242424242%20123",
    ],
)
def test_a_number_beside_other_digits_is_masked(written: str) -> None:
    masked = mask_card_numbers(written)
    assert "424242424242" not in masked.replace(" ", "").replace("-", ""), masked


@given(
    st.text(alphabet="0123456789", max_size=6),
    st.text(alphabet="0123456789", min_size=12, max_size=18),
    st.text(alphabet="0123456789 ", max_size=6),
)
def test_a_valid_number_is_masked_whatever_digits_surround_it(
    before: str, body: str, after: str
) -> None:
    number = with_check_digit(body)
    masked = mask_card_numbers(before + number + after)
    assert number[:-4] not in masked.replace(" ", "")
