from __future__ import annotations

import ast
import dataclasses
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import payrail.money
from payrail.money import (
    EXPONENTS,
    CurrencyMismatch,
    InvalidAmount,
    Money,
    MoneyError,
    TooManyDecimals,
    UnknownCurrency,
    exponent,
    normalize_currency,
)

CODES = sorted(EXPONENTS)
currencies = st.sampled_from(CODES)
amounts = st.integers(min_value=-(10**30), max_value=10**30)


def _exact(amount: int, exp: int) -> Decimal:
    """amount / 10**exp as an exact Decimal (string construction never rounds)."""
    return Decimal(f"{amount}E-{exp}")


# --- errors, currency codes -------------------------------------------------


def test_error_hierarchy() -> None:
    assert issubclass(MoneyError, ValueError)
    for exc in (UnknownCurrency, CurrencyMismatch, TooManyDecimals, InvalidAmount):
        assert issubclass(exc, MoneyError)


@pytest.mark.parametrize("code", ["usd", "USD", "Usd", "uSd"])
def test_normalize_currency_any_case(code: str) -> None:
    assert normalize_currency(code) == "USD"


@pytest.mark.parametrize(
    "code", ["", "US", "USDD", "ABC", " usd", "usd ", "XAU", "XXX", "XTS", "XDR"]
)
def test_normalize_currency_unknown(code: str) -> None:
    with pytest.raises(UnknownCurrency):
        normalize_currency(code)


def test_normalize_currency_non_str() -> None:
    with pytest.raises(UnknownCurrency):
        normalize_currency(840)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "exp"),
    [
        ("JPY", 0),
        ("jpy", 0),
        ("USD", 2),
        ("BHD", 3),
        ("KWD", 3),
        ("TND", 3),
        ("CLF", 4),
        ("UYW", 4),
        ("ISK", 0),
        ("KRW", 0),
        ("VND", 0),
    ],
)
def test_exponent(code: str, exp: int) -> None:
    assert exponent(code) == exp


def test_exponent_unknown() -> None:
    with pytest.raises(UnknownCurrency):
        exponent("XAU")


# --- construction -----------------------------------------------------------


def test_construct_normalizes_currency() -> None:
    m = Money(1234, "usd")
    assert m.amount == 1234
    assert m.currency == "USD"
    assert m == Money(1234, "USD")
    assert hash(m) == hash(Money(1234, "USD"))


@pytest.mark.parametrize("bad", [True, False, 1.0, Decimal(1), "1", None])
def test_construct_rejects_non_int_amount(bad: object) -> None:
    with pytest.raises(InvalidAmount):
        Money(bad, "USD")  # type: ignore[arg-type]


def test_construct_rejects_unknown_currency() -> None:
    with pytest.raises(UnknownCurrency):
        Money(1, "XAU")


def test_frozen() -> None:
    m = Money(1, "USD")
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.amount = 2  # type: ignore[misc]


def test_zero() -> None:
    assert Money.zero("eur") == Money(0, "EUR")


# --- arithmetic and comparisons ---------------------------------------------


def test_arithmetic() -> None:
    a, b = Money(150, "USD"), Money(25, "USD")
    assert a + b == Money(175, "USD")
    assert a - b == Money(125, "USD")
    assert -a == Money(-150, "USD")
    assert b - a == Money(-125, "USD")


def test_comparisons() -> None:
    a, b = Money(150, "USD"), Money(25, "USD")
    assert b < a and b <= a and a > b and a >= b
    assert a <= Money(150, "USD") and a >= Money(150, "USD")
    assert not a < Money(150, "USD")
    assert a != b


def test_equality_across_currencies_is_false() -> None:
    assert Money(1, "USD") != Money(1, "EUR")


@pytest.mark.parametrize(
    "op",
    [
        lambda a, b: a + b,
        lambda a, b: a - b,
        lambda a, b: a < b,
        lambda a, b: a <= b,
        lambda a, b: a > b,
        lambda a, b: a >= b,
    ],
)
def test_mixing_currencies_raises(op: object) -> None:
    assert callable(op)
    with pytest.raises(CurrencyMismatch):
        op(Money(1, "USD"), Money(1, "EUR"))


@pytest.mark.parametrize("other", [1, 0, Decimal(1), "1", None])
def test_non_money_operand_raises_type_error(other: object) -> None:
    m = Money(1, "USD")
    with pytest.raises(TypeError):
        m + other
    with pytest.raises(TypeError):
        other + m  # type: ignore[operator]
    with pytest.raises(TypeError):
        m - other
    with pytest.raises(TypeError):
        m < other  # noqa: B015


@given(a=amounts, b=amounts, currency=currencies)
def test_arithmetic_matches_int(a: int, b: int, currency: str) -> None:
    x, y = Money(a, currency), Money(b, currency)
    assert (x + y).amount == a + b
    assert (x - y).amount == a - b
    assert (-x).amount == -a
    assert (x < y) == (a < b)
    assert (x <= y) == (a <= b)
    assert (x > y) == (a > b)
    assert (x >= y) == (a >= b)
    assert x + Money.zero(currency) == x


@given(a=amounts, b=amounts, pair=st.lists(currencies, min_size=2, max_size=2, unique=True))
def test_mixing_currencies_raises_property(a: int, b: int, pair: list[str]) -> None:
    x, y = Money(a, pair[0]), Money(b, pair[1])
    with pytest.raises(CurrencyMismatch):
        x + y
    with pytest.raises(CurrencyMismatch):
        x - y
    with pytest.raises(CurrencyMismatch):
        x < y  # noqa: B015


# --- parsing and formatting -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "currency", "amount"),
    [
        ("12.34", "USD", 1234),
        ("12.3", "USD", 1230),
        ("12", "USD", 1200),
        ("-5", "USD", -500),
        ("-0.05", "USD", -5),
        ("0.01", "usd", 1),
        ("-0", "USD", 0),
        ("007.50", "EUR", 750),
        ("1000", "JPY", 1000),
        ("-1000", "JPY", -1000),
        ("0.125", "BHD", 125),
        ("1.5", "KWD", 1500),
        ("1.2345", "CLF", 12345),
        ("0", "VND", 0),
    ],
)
def test_parse(text: str, currency: str, amount: int) -> None:
    assert Money.parse(text, currency) == Money(amount, currency)


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("1.234", "USD"),
        ("1.230", "USD"),
        ("0.001", "USD"),
        ("1.5", "JPY"),
        ("1.0", "JPY"),
        ("0.1250", "BHD"),
        ("1.23456", "CLF"),
    ],
)
def test_parse_too_many_decimals(text: str, currency: str) -> None:
    with pytest.raises(TooManyDecimals):
        Money.parse(text, currency)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        " 12",
        "12 ",
        "12\n",
        "1e3",
        "1E3",
        "NaN",
        "nan",
        "Infinity",
        "inf",
        "1,000",
        "1_000",
        "+5",
        "--5",
        "-",
        ".",
        ".5",
        "5.",
        "1.2.3",
        "0x10",
        "١٢",  # Arabic-Indic digits: str.isdigit() is true, but not ASCII
        "\uff11\uff12",  # full-width digits
        "12$",
    ],
)
def test_parse_rejects_junk(text: str) -> None:
    with pytest.raises(InvalidAmount):
        Money.parse(text, "USD")


def test_parse_rejects_non_str() -> None:
    with pytest.raises(InvalidAmount):
        Money.parse(12, "USD")  # type: ignore[arg-type]


def test_parse_rejects_unknown_currency() -> None:
    with pytest.raises(UnknownCurrency):
        Money.parse("1", "XAU")


def test_parse_rejects_absurdly_long_input() -> None:
    with pytest.raises(InvalidAmount):
        Money.parse("9" * 100_000, "USD")


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (1234, "USD", "12.34"),
        (5, "USD", "0.05"),
        (-5, "USD", "-0.05"),
        (-1234, "USD", "-12.34"),
        (0, "USD", "0.00"),
        (1000, "JPY", "1000"),
        (-1000, "JPY", "-1000"),
        (125, "BHD", "0.125"),
        (12345, "CLF", "1.2345"),
    ],
)
def test_to_decimal_string(amount: int, currency: str, text: str) -> None:
    assert Money(amount, currency).to_decimal_string() == text


@given(amount=amounts, currency=currencies)
def test_round_trip_every_currency(amount: int, currency: str) -> None:
    money = Money(amount, currency)
    text = money.to_decimal_string()
    assert Money.parse(text, currency) == money
    # The string means exactly amount / 10**exponent.
    assert Decimal(text) == _exact(amount, EXPONENTS[currency])


@pytest.mark.parametrize("currency", CODES)
def test_round_trip_each_currency_explicitly(currency: str) -> None:
    for amount in (0, 1, -1, 7, 10 ** EXPONENTS[currency], -(10**12) - 3):
        money = Money(amount, currency)
        assert Money.parse(money.to_decimal_string(), currency) == money


@given(
    data=st.data(),
    currency=currencies,
    negative=st.booleans(),
    whole=st.from_regex(r"[0-9]{1,20}", fullmatch=True),
)
def test_parse_agrees_with_decimal(
    data: st.DataObject, currency: str, negative: bool, whole: str
) -> None:
    exp = EXPONENTS[currency]
    fraction = data.draw(st.from_regex(rf"[0-9]{{0,{exp}}}", fullmatch=True))
    text = ("-" if negative else "") + whole + ("." + fraction if fraction else "")
    money = Money.parse(text, currency)
    assert _exact(money.amount, exp) == Decimal(text)


# --- no floats --------------------------------------------------------------


def _float_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, (float, complex)):
            found.append(f"{path.name}:{node.lineno}: float literal {node.value!r}")
        elif isinstance(node, ast.Name) and node.id == "float":
            found.append(f"{path.name}:{node.lineno}: reference to float")
        elif isinstance(node, ast.Attribute) and node.attr == "float":
            found.append(f"{path.name}:{node.lineno}: reference to .float")
    return found


def test_no_float_in_money_package() -> None:
    package_dir = Path(payrail.money.__file__).parent
    files = sorted(package_dir.rglob("*.py"))
    assert {p.name for p in files} >= {"__init__.py", "currencies.py", "money.py"}
    problems = [problem for path in files for problem in _float_uses(path)]
    assert problems == []


def test_float_scanner_catches_floats(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("x = 1.5\ny = float('2')\n", encoding="utf-8")
    assert len(_float_uses(sample)) == 2
