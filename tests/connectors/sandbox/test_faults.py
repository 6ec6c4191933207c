"""The fault plan: header parsing and deterministic draws."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

import pytest

from payrail.connectors.sandbox.faults import (
    DRAWN_KINDS,
    Fault,
    FaultKind,
    FaultPlan,
    draw,
    exact_rate,
    parse,
)


@pytest.mark.parametrize(
    ("header", "fault"),
    [
        ("latency:0", Fault(FaultKind.LATENCY, 0)),
        ("latency:250", Fault(FaultKind.LATENCY, 250)),
        ("error_before", Fault(FaultKind.ERROR_BEFORE)),
        ("error_after", Fault(FaultKind.ERROR_AFTER)),
        ("timeout_before", Fault(FaultKind.TIMEOUT_BEFORE)),
        (" timeout_after ", Fault(FaultKind.TIMEOUT_AFTER)),
    ],
)
def test_header_names_a_fault(header: str, fault: Fault) -> None:
    assert parse(header) == fault
    assert parse(str(fault)) == fault


@pytest.mark.parametrize(
    "header",
    [
        "",
        "latency",
        "latency:",
        "latency:-1",
        "latency:1.5",
        "latency:600001",
        "error_after:1",
        "ERROR_AFTER",
        "crash",
        "latency:٣",
    ],
)
def test_header_naming_no_fault_is_refused(header: str) -> None:
    with pytest.raises(ValueError, match="Sandbox-Fault"):
        parse(header)


def test_draws_depend_only_on_seed_key_and_attempt() -> None:
    rate = Fraction(1, 2)
    draws = [draw(7, f"k{i}", attempt, rate) for i in range(200) for attempt in (1, 2)]
    assert draws == [draw(7, f"k{i}", attempt, rate) for i in range(200) for attempt in (1, 2)]
    assert draws != [draw(8, f"k{i}", attempt, rate) for i in range(200) for attempt in (1, 2)]
    # The attempt matters: a retry gets a fresh draw.
    assert [draw(7, f"k{i}", 1, rate) for i in range(200)] != [
        draw(7, f"k{i}", 2, rate) for i in range(200)
    ]


def test_rates_zero_and_one_are_never_and_always() -> None:
    assert all(draw(1, f"k{i}", 1, Fraction(0)) is None for i in range(1000))
    assert all(draw(1, f"k{i}", 1, Fraction(1)) is not None for i in range(1000))


@pytest.mark.parametrize("rate", [0.01, 0.1, 0.5])
def test_a_rate_faults_about_that_share_spread_over_the_four_kinds(rate: float) -> None:
    n = 20_000
    drawn = Counter(draw(3, f"key-{i}", 1, exact_rate(rate)) for i in range(n))
    faulted = n - drawn[None]
    expected = rate * n
    assert abs(faulted - expected) < 5 * (expected * (1 - rate)) ** 0.5
    assert set(drawn) - {None} == {Fault(kind) for kind in DRAWN_KINDS}
    for kind in DRAWN_KINDS:
        assert abs(drawn[Fault(kind)] - faulted / 4) < 5 * (faulted * 3 / 16) ** 0.5 + 1


def test_exact_rate_is_the_decimal_written() -> None:
    assert exact_rate(0.1) == Fraction(1, 10)
    for bad in (-0.1, 1.01):
        with pytest.raises(ValueError):
            exact_rate(bad)


def test_the_header_wins_over_the_rate() -> None:
    always = FaultPlan(rate=1.0, seed=0, hang_seconds=0)
    assert always.fault_for("latency:5", "k", 1) == Fault(FaultKind.LATENCY, 5)
    assert always.fault_for(None, "k", 1) is not None
    assert always.fault_for(None, None, 1) is None  # no key, nothing to draw on
    assert FaultPlan(rate=0.0, seed=0, hang_seconds=0).fault_for(None, "k", 1) is None
