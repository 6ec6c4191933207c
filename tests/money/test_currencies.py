"""The committed exponent table must match the ISO 4217 data of ``iso4217``."""

from __future__ import annotations

import importlib.util
from importlib.metadata import version
from pathlib import Path
from types import ModuleType

import iso4217
import pytest

from payrail.money import currencies
from payrail.money.currencies import EXPONENTS, NO_MINOR_UNIT, SOURCE

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "scripts" / "generate_currencies.py"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_currencies", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _package_tables() -> tuple[dict[str, int], set[str]]:
    """Read the package data directly, independently of the generator."""
    exponents: dict[str, int] = {}
    not_applicable: set[str] = set()
    for code, entry in iso4217.raw_table.items():
        if not code:  # entries such as ANTARCTICA
            continue
        minor_units = entry["CcyMnrUnts"]
        assert isinstance(minor_units, str)
        if minor_units == "N.A.":
            not_applicable.add(code)
        else:
            exponents[code] = int(minor_units)
    return exponents, not_applicable


def test_table_matches_package_data() -> None:
    expected, not_applicable = _package_tables()
    assert expected == EXPONENTS
    assert not_applicable == NO_MINOR_UNIT


def test_every_iso4217_currency_is_classified() -> None:
    package_codes = {c.code for c in iso4217.Currency}
    assert set(EXPONENTS) | NO_MINOR_UNIT == package_codes
    assert not set(EXPONENTS) & NO_MINOR_UNIT


def test_source_names_package_version() -> None:
    assert SOURCE.startswith(f"iso4217 {version('iso4217')} ")


def test_committed_file_is_what_the_generator_writes() -> None:
    generator = _load_generator()
    assert currencies.__file__ is not None
    committed = Path(currencies.__file__).read_text(encoding="utf-8")
    assert committed == generator.render(), (
        "payrail/money/currencies.py is stale: run `uv run python scripts/generate_currencies.py`"
    )


@pytest.mark.parametrize(
    ("code", "exp"),
    [
        ("JPY", 0),
        ("USD", 2),
        ("EUR", 2),
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
def test_spot_checks(code: str, exp: int) -> None:
    assert EXPONENTS[code] == exp


@pytest.mark.parametrize("code", ["XAU", "XAG", "XPD", "XPT", "XDR", "XTS", "XXX"])
def test_codes_without_minor_unit_are_excluded(code: str) -> None:
    assert code not in EXPONENTS
    assert code in NO_MINOR_UNIT


def test_table_shape() -> None:
    assert len(EXPONENTS) >= 150
    for code, exp in EXPONENTS.items():
        assert len(code) == 3 and code.isascii() and code.isalpha() and code.isupper()
        assert type(exp) is int and 0 <= exp <= 4
