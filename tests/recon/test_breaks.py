"""Classification of differences, as plain values."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from payrail.recon import breaks
from payrail.recon.breaks import Pair, Unmatched


def pair(**changed: object) -> Pair:
    values: dict[str, object] = {
        "expected_currency": "USD",
        "expected_amount": 1000,
        "expected_fee": 59,
        "reported_currency": "USD",
        "reported_amount": 1000,
        "reported_fee": 59,
    }
    return Pair(**(values | changed))  # type: ignore[arg-type]


def test_an_agreeing_pair_is_no_break() -> None:
    assert breaks.pair_break(pair()) is None
    assert breaks.late_fee(pair()) == 0


def test_the_most_telling_difference_names_the_break() -> None:
    assert breaks.pair_break(pair(reported_currency="EUR", reported_amount=1)) == (
        "currency_mismatch"
    )
    assert breaks.pair_break(pair(reported_amount=999, reported_fee=1)) == "amount_mismatch"
    assert breaks.pair_break(pair(reported_fee=60)) == "fee_mismatch"


def test_a_fee_told_only_at_settlement_is_posted_not_a_break() -> None:
    late = pair(expected_fee=0, reported_fee=75)
    assert breaks.pair_break(late) is None
    assert breaks.late_fee(late) == 75
    # With an amount difference it is the amount that breaks, and no fee is posted alone.
    assert breaks.late_fee(pair(expected_fee=0, reported_fee=75, reported_amount=5)) == 0


@given(
    st.sampled_from(["charge", "refund", "dispute", "dispute_reversal", "adjustment", "other"]),
    st.booleans(),
    st.booleans(),
)
def test_unmatched_rows_are_duplicates_then_status_then_missing(
    kind: str, duplicate: bool, known: bool
) -> None:
    found = breaks.unmatched_break(Unmatched(kind, duplicate, known))
    if duplicate:
        assert found == "duplicate"
    elif known:
        assert found == "status_mismatch"
    else:
        assert found == "missing_internal"


def test_fees_payouts_and_transfers_are_explained() -> None:
    for kind in ("fee", "payout", "payout_reversal", "transfer"):
        assert breaks.unmatched_break(Unmatched(kind, True, True)) is None


def test_a_late_item_escalates_on_its_due_day() -> None:
    due = breaks.due_on(date(2026, 11, 20), 3)
    assert due == date(2026, 11, 23)
    assert not breaks.escalates(due, date(2026, 11, 22))
    assert breaks.escalates(due, date(2026, 11, 23))
    assert breaks.escalated_type("provider") == "missing_at_provider"
    assert breaks.escalated_type("bank") == "missing_at_bank"
