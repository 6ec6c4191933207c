"""`payrail bench recon` reconciles a report with discrepancies injected; a small run must
find each one as the break it is, agree with the pandas reference, and fail loudly when
the run's summary disagrees with what was injected."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from payrail.bench.recon import Expected, failures, measure, parse_sizes, table
from tests.vaults import fixed_vault

ROWS = 3_000


def _report(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _minor(text: str) -> int:
    return int(text.replace(".", ""))


def test_each_injected_discrepancy_is_found_as_its_break(database_url: str, tmp_path: Path) -> None:
    size = measure(database_url, fixed_vault(), ROWS, tmp_path, lambda _: None)

    e = size.expected
    assert size.failed == []
    assert e.expectations == ROWS
    # 0.2% of the rows for each discrepancy; a fee changed on a refund or dispute (which
    # have none) is a fee added, posted as the processor's rather than a break.
    for kind in ("dropped", "amount changed", "duplicated", "unknown reference"):
        assert e.injected[kind] == 6, kind
    assert e.injected["fee changed"] + e.injected["fee added"] == 6
    assert e.rows == ROWS - 6 + 6 + 6

    summary = size.payrail.summary
    assert summary["rows"] == e.rows
    assert summary["matched"]["reference"] == ROWS - 6
    assert summary["breaks_opened"] == {
        "amount_mismatch": 6,
        "duplicate": 6,
        "fee_mismatch": e.injected["fee changed"],
        "missing_internal": 6,
        "timing": 6,
    }
    assert size.pandas.breaks == summary["breaks_opened"]

    # Each break is about the row it was injected in: read back from the file and the
    # expectations, not from the bench's own tally.
    rows = _report(next(tmp_path.glob("balance_change_from_activity.*.csv")))
    expected = {r["provider_reference"]: r for r in _report(tmp_path / "expectations.csv")}
    seen = Counter(r["source_id"] for r in rows)
    first = {r["source_id"]: r for r in reversed(rows)}
    want = {
        "timing": set(expected) - set(seen),
        "missing_internal": set(seen) - set(expected),
        "duplicate": {ref for ref, n in seen.items() if n > 1},
        "amount_mismatch": {
            ref
            for ref, r in first.items()
            if ref in expected and _minor(r["gross"]) != int(expected[ref]["amount"])
        },
        "fee_mismatch": {
            ref
            for ref, r in first.items()
            if ref in expected
            and _minor(r["gross"]) == int(expected[ref]["amount"])
            and int(expected[ref]["fee"]) not in (0, _minor(r["fee"]))
        },
    }
    with psycopg.connect(database_url) as conn:
        found = conn.execute("SELECT type, reference FROM recon_breaks").fetchall()
    got: dict[str, set[str]] = {}
    for kind, reference in found:
        got.setdefault(kind, set()).add(reference)
    assert got == want

    printed = {label: figure for label, figure, _ in table([size])}
    assert printed["  checks"] == "OK"
    assert printed["  payrail rows/s"].endswith("/s")


def test_a_summary_that_disagrees_with_the_injection_fails() -> None:
    expected = Expected(rows=10, expectations=9)
    expected.injected.update({"dropped": 1, "unknown reference": 2})
    expected.breaks.update({"timing": 1, "missing_internal": 2})
    expected.payouts.update({"USD": 5000})
    expected.suspense.update({"USD": 700})
    right = {
        "rows": 10,
        "matched": {"reference": 8, "amount_window": 0},
        "breaks_opened": {"missing_internal": 2, "timing": 1},
        "payouts": {"USD": 5000},
        "fees": {},
        "suspense": {"USD": 700},
    }
    assert failures(expected, right) == []
    wrong = {**right, "breaks_opened": {"missing_internal": 1, "timing": 1}}
    assert failures(expected, wrong) == [
        "breaks opened: {'missing_internal': 1, 'timing': 1}, expected"
        " {'missing_internal': 2, 'timing': 1}"
    ]
    guessed = {**right, "matched": {"reference": 8, "amount_window": 1}}
    assert failures(expected, guessed) == ["matched by amount and time: 1, expected 0"]


def test_sizes_are_read_from_a_comma_separated_list() -> None:
    assert parse_sizes("1000000,2000000") == (1_000_000, 2_000_000)
    assert parse_sizes(" 3_000 ") == (3_000,)
    for bad in ("1,,2", "0", "-5", "", "1e6"):
        with pytest.raises(ValueError, match=r"^--sizes: "):
            parse_sizes(bad)
