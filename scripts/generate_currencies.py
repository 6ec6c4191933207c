"""Regenerate ``payrail/money/currencies.py`` from the ``iso4217`` package.

The ``iso4217`` PyPI package (dev dependency only) ships the official ISO 4217
"list one" XML as published by SIX, the ISO 4217 maintenance agency. This
script reads it and writes a plain dict literal, so the runtime never imports
``iso4217``.

Codes whose minor unit is "N.A." (precious metals XAU/XAG/XPD/XPT, the bond
market units XBA..XBD, XDR, XSU, XUA, the testing code XTS and "no currency"
XXX) are excluded from ``EXPONENTS``: an amount in them cannot be expressed as
an integer count of minor units. They are listed in ``NO_MINOR_UNIT`` so the
exclusion is explicit.

Usage::

    uv run python scripts/generate_currencies.py          # rewrite the file
    uv run python scripts/generate_currencies.py --check  # exit 1 if stale
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version
from pathlib import Path

import iso4217

TARGET = Path(__file__).resolve().parent.parent / "payrail" / "money" / "currencies.py"
NOT_APPLICABLE = "N.A."


def source() -> str:
    """Name and version of the data source, e.g. ``iso4217 1.16.20260101 (...)``."""
    published = iso4217.__published__.isoformat()
    return f"iso4217 {version('iso4217')} (ISO 4217 list one, published {published})"


def build_tables() -> tuple[dict[str, int], list[str]]:
    """Return ``(exponents, codes_without_minor_unit)`` from the package data."""
    exponents: dict[str, int] = {}
    no_minor_unit: list[str] = []
    for code, entry in iso4217.raw_table.items():
        if not code:  # entries such as ANTARCTICA: "No universal currency"
            continue
        minor_units = entry["CcyMnrUnts"]
        if not isinstance(code, str) or not isinstance(minor_units, str):
            raise SystemExit(f"unexpected entry in iso4217 data: {code!r} {entry!r}")
        if minor_units == NOT_APPLICABLE:
            no_minor_unit.append(code)
        elif minor_units.isascii() and minor_units.isdigit():
            exponents[code] = int(minor_units)
        else:
            raise SystemExit(f"unexpected minor unit for {code}: {minor_units!r}")
    return dict(sorted(exponents.items())), sorted(no_minor_unit)


def render() -> str:
    exponents, no_minor_unit = build_tables()
    lines = [
        '"""ISO 4217 minor-unit exponents. GENERATED FILE: do not edit by hand.',
        "",
        "Regenerate with ``uv run python scripts/generate_currencies.py``.",
        "",
        "``EXPONENTS`` maps every active ISO 4217 code (list one, funds codes",
        "included) to its number of minor-unit digits. Codes whose minor unit",
        'is "N.A." in ISO 4217 are excluded, because an amount in them cannot',
        "be expressed as an integer number of minor units; they are listed in",
        "``NO_MINOR_UNIT``.",
        '"""',
        "",
        f'SOURCE = "{source()}"',
        "",
        "EXPONENTS: dict[str, int] = {",
        *(f'    "{code}": {exp},' for code, exp in exponents.items()),
        "}",
        "",
        "NO_MINOR_UNIT: frozenset[str] = frozenset(",
        "    {",
        *(f'        "{code}",' for code in no_minor_unit),
        "    }",
        ")",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate currencies.py")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    args = parser.parse_args(argv)
    content = render()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != content:
            print(f"{TARGET} is out of date; rerun {Path(__file__).name}")
            return 1
        print(f"{TARGET} is up to date")
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(content, encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
