"""How a difference between payrail and a provider (or the bank) is classified, and what
it does to the ledger. Plain functions over values: the run gathers the facts in SQL and
asks these.

A break's `suspense` is what the run moves between suspense and the account its item is
in (the provider balance, payouts in transit, or the bank) so that the ledger shows what
the provider and the bank say they hold: the reported net less what payrail's ledger
already moved for the item. A timing break moves nothing while it waits; it moves its
amount when it escalates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

BreakType = Literal[
    "missing_internal",
    "missing_at_provider",
    "missing_at_bank",
    "amount_mismatch",
    "fee_mismatch",
    "currency_mismatch",
    "status_mismatch",
    "duplicate",
    "timing",
    "after_resolution",
]
# Expected kinds of a provider row, per the kind of payrail's record.
EXPECTED_KINDS = ("charge", "refund", "dispute", "dispute_reversal")
# Provider rows that are money movements of their own, posted by the run, never breaks.
EXPLAINED_KINDS = ("fee", "payout", "payout_reversal", "transfer")


@dataclass(frozen=True, slots=True)
class Pair:
    """A provider row matched to payrail's record of the same movement."""

    expected_currency: str
    expected_amount: int
    expected_fee: int
    reported_currency: str
    reported_amount: int
    reported_fee: int


def pair_break(p: Pair) -> BreakType | None:
    """What is wrong with a matched pair, the most telling difference first; None when
    it agrees. A fee the provider charged where payrail recorded none is not a break: some
    providers tell their fees only at settlement, and the run posts it as a fee."""
    if p.expected_currency != p.reported_currency:
        return "currency_mismatch"
    if p.expected_amount != p.reported_amount:
        return "amount_mismatch"
    if p.expected_fee != p.reported_fee and p.expected_fee != 0:
        return "fee_mismatch"
    return None


def late_fee(p: Pair) -> int:
    """A fee that only the report tells, to post as a processor fee."""
    if pair_break(p) is None and p.expected_fee == 0:
        return p.reported_fee
    return 0


@dataclass(frozen=True, slots=True)
class Unmatched:
    """A provider row that matched nothing, and what payrail knows of its reference."""

    kind: str
    # Another row of the provider with the same reference and kind is already matched.
    duplicate_of_matched: bool
    # payrail has a record of this reference, of another kind or in a state that moved no
    # money yet (an authorization, a payment in doubt, a pending or failed refund).
    known_elsewhere: bool


def unmatched_break(u: Unmatched) -> BreakType | None:
    if u.kind in EXPLAINED_KINDS:
        return None
    if u.duplicate_of_matched:
        return "duplicate"
    if u.known_elsewhere:
        return "status_mismatch"
    return "missing_internal"


def due_on(report_date: date, timing_days: int) -> date:
    """When a missing item stops being late and becomes missing."""
    return report_date + timedelta(days=timing_days)


def escalates(due: date, report_date: date) -> bool:
    return report_date >= due


def escalated_type(stage: Literal["provider", "bank"]) -> BreakType:
    return "missing_at_provider" if stage == "provider" else "missing_at_bank"


Change = Literal["arrived", "reversed", "escalated", "retyped"]


@dataclass(frozen=True, slots=True)
class Open:
    """An open break a run looked at, and what the run found of its item."""

    type: BreakType
    due_on: date | None
    # Its item turned up: payrail's movement reported, the row's record made, the payout
    # or the bank line matched at the bank.
    arrived: bool = False
    # Its payout came back from the bank: the bank will never see it.
    reversed: bool = False
    # Another row of its kind and reference is matched: this one is a second copy.
    duplicate: bool = False


def change(b: Open, report_date: date) -> Change | None:
    """What a run does to an open break: close it (its item arrived, or its payout came
    back), escalate it (a timing break past due), re-type it (a row found to be a
    duplicate), or nothing."""
    if b.arrived:
        return "arrived"
    if b.reversed:
        return "reversed"
    if b.duplicate and b.type in ("missing_internal", "status_mismatch"):
        return "retyped"
    if b.type == "timing" and b.due_on is not None and escalates(b.due_on, report_date):
        return "escalated"
    return None
