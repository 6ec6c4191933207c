"""The dunning decisions, row by row of the decision table (payrail/dunning/policy.py), and
their invariants under hypothesis: a retry is always after the failure and never after the
final deadline, and the schedule never gives more retries than it has days."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payrail.connectors.declines import Decision
from payrail.dunning.policy import (
    DEFAULT,
    FINAL_ACTIONS,
    MAX_RETRIES,
    AwaitPaymentMethod,
    FinalAction,
    Next,
    Policy,
    PolicyError,
    Retry,
    after_failure,
    final_deadline,
    on_new_payment_method,
)

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
SECOND = timedelta(seconds=1)
SOFT = Decision.SOFT_DECLINE
HARD = Decision.HARD_DECLINE
AUTH = Decision.AUTHENTICATION_REQUIRED
TECH = Decision.TECHNICAL


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def hour(n: float) -> datetime:
    return T0 + timedelta(hours=n)


def decide(
    decision: Decision,
    failed_attempts: int,
    failed_at: datetime,
    technical: int = 0,
    policy: Policy = DEFAULT,
) -> Next:
    return after_failure(
        policy,
        decision=decision,
        failed_attempts=failed_attempts,
        first_failed_at=T0,
        failed_at=failed_at,
        technical_retries_in_a_row=technical,
    )


GRACE = Policy(grace_period_days=2)
UNPAID = Policy(retry_days=(2, 9, 20), final_action="mark_unpaid", technical_retry_hours=6)
NO_RETRIES = Policy(retry_days=(), final_action="leave_past_due")
NO_RETRIES_GRACE = Policy(retry_days=(), grace_period_days=3)

# (policy, decision, failed attempts, failed at, technical failures in a row) -> next
TABLE: list[tuple[str, Policy, Decision, int, datetime, int, Next]] = [
    # Soft declines walk the schedule, counted from the first failure.
    ("first try declined", DEFAULT, SOFT, 1, T0, 0, Retry(day(1), "soft_decline")),
    ("first retry declined", DEFAULT, SOFT, 2, day(1) + SECOND, 0, Retry(day(3), "soft_decline")),
    ("second retry declined", DEFAULT, SOFT, 3, day(3), 0, Retry(day(5), "soft_decline")),
    ("third retry declined", DEFAULT, SOFT, 4, day(5), 0, Retry(day(7), "soft_decline")),
    ("last retry declined", DEFAULT, SOFT, 5, day(7), 0, FinalAction("cancel", day(7))),
    ("last retry answered late", DEFAULT, SOFT, 5, day(7) + SECOND, 0,
     FinalAction("cancel", day(7) + SECOND)),
    ("a passed slot is gone", DEFAULT, SOFT, 2, day(4), 0, Retry(day(5), "soft_decline")),
    ("declined at a slot's moment", DEFAULT, SOFT, 2, day(3), 0, Retry(day(5), "soft_decline")),
    ("every slot passed", DEFAULT, SOFT, 1, day(8), 0, FinalAction("cancel", day(8))),
    ("more issuer attempts than slots", DEFAULT, SOFT, 9, day(2), 0, FinalAction("cancel", day(7))),
    ("own schedule", UNPAID, SOFT, 2, day(2), 0, Retry(day(9), "soft_decline")),
    ("own final action", UNPAID, SOFT, 4, day(20), 0, FinalAction("mark_unpaid", day(20))),
    ("grace after the schedule", GRACE, SOFT, 5, day(7), 0, FinalAction("cancel", day(9))),
    ("no retries", NO_RETRIES, SOFT, 1, T0, 0, FinalAction("leave_past_due", T0)),
    ("no retries, grace", NO_RETRIES_GRACE, SOFT, 1, T0, 0, FinalAction("cancel", day(3))),
    # Hard declines and authentication: no retry of this card; the deadline stands.
    ("hard decline", DEFAULT, HARD, 1, T0, 0, AwaitPaymentMethod(day(7))),
    ("authentication required", DEFAULT, AUTH, 1, T0, 0, AwaitPaymentMethod(day(7))),
    ("hard decline on a retry", DEFAULT, HARD, 3, day(3), 0, AwaitPaymentMethod(day(7))),
    ("no payment method to try", DEFAULT, HARD, 0, T0, 0, AwaitPaymentMethod(day(7))),
    ("hard decline, grace", GRACE, HARD, 1, T0, 0, AwaitPaymentMethod(day(9))),
    ("hard decline at the deadline", DEFAULT, HARD, 5, day(7), 0, FinalAction("cancel", day(7))),
    ("authentication after it", GRACE, AUTH, 6, day(10), 0, FinalAction("cancel", day(10))),
    ("hard, no retries", NO_RETRIES, HARD, 1, T0, 0, FinalAction("leave_past_due", T0)),
    ("hard, no retries, grace", NO_RETRIES_GRACE, HARD, 1, T0, 0, AwaitPaymentMethod(day(3))),
    # Technical errors: sooner, three in a row at most, never past the deadline.
    ("technical first try", DEFAULT, TECH, 0, T0, 1, Retry(hour(1), "technical")),
    ("technical twice", DEFAULT, TECH, 0, hour(1), 2, Retry(hour(2), "technical")),
    ("technical thrice: the schedule", DEFAULT, TECH, 0, hour(2), 3,
     Retry(day(1), "technical_fallback")),
    ("technical on a retry", DEFAULT, TECH, 1, day(1), 1, Retry(hour(25), "technical")),
    ("technical thrice on a retry", DEFAULT, TECH, 1, hour(26), 3,
     Retry(day(3), "technical_fallback")),
    ("own technical delay", UNPAID, TECH, 2, day(9), 1, Retry(hour(9 * 24 + 6), "technical")),
    ("technical capped by the deadline", DEFAULT, TECH, 4, day(7) - timedelta(minutes=30), 1,
     Retry(day(7), "technical")),
    ("technical past the deadline", DEFAULT, TECH, 5, day(7) + SECOND, 1,
     FinalAction("cancel", day(7) + SECOND)),
    ("technical in the grace period", GRACE, TECH, 5, day(7), 1, Retry(hour(169), "technical")),
    ("technical thrice in the grace period", GRACE, TECH, 5, hour(170), 3,
     FinalAction("cancel", day(9))),
    ("technical, no retries", NO_RETRIES, TECH, 0, T0, 1, FinalAction("leave_past_due", T0)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("policy", "decision", "failed_attempts", "failed_at", "technical", "expected"),
    [case[1:] for case in TABLE],
    ids=[case[0] for case in TABLE],
)
def test_decision_table(
    policy: Policy,
    decision: Decision,
    failed_attempts: int,
    failed_at: datetime,
    technical: int,
    expected: Next,
) -> None:
    assert decide(decision, failed_attempts, failed_at, technical, policy) == expected


def test_in_doubt_never_reaches_dunning() -> None:
    with pytest.raises(ValueError, match="janitor"):
        decide(Decision.IN_DOUBT, 1, T0)


@pytest.mark.parametrize(
    ("decision", "failed_attempts", "first_failed_at", "failed_at", "technical", "message"),
    [
        (SOFT, 0, T0, T0, 0, "failed_attempts 0"),
        (SOFT, -1, T0, T0, 0, "failed_attempts -1"),
        (TECH, 0, T0, T0, 0, "technical_retries_in_a_row 0"),
        (SOFT, 1, T0, T0, -1, "technical_retries_in_a_row -1"),
        (SOFT, 1, day(1), T0, 0, "before first_failed_at"),
        (SOFT, 1, T0.replace(tzinfo=None), T0, 0, "first_failed_at must be timezone-aware"),
        (SOFT, 1, T0, T0.replace(tzinfo=None), 0, "failed_at must be timezone-aware"),
    ],
)
def test_impossible_histories_are_refused(
    decision: Decision,
    failed_attempts: int,
    first_failed_at: datetime,
    failed_at: datetime,
    technical: int,
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        after_failure(
            DEFAULT,
            decision=decision,
            failed_attempts=failed_attempts,
            first_failed_at=first_failed_at,
            failed_at=failed_at,
            technical_retries_in_a_row=technical,
        )


def test_a_new_payment_method_is_tried_at_once_until_the_final_action() -> None:
    assert on_new_payment_method(now=day(2), final_action_taken=False) == Retry(
        day(2), "new_payment_method"
    )
    assert on_new_payment_method(now=day(9), final_action_taken=True) is None
    with pytest.raises(ValueError, match="timezone-aware"):
        on_new_payment_method(now=T0.replace(tzinfo=None), final_action_taken=False)


def test_the_default_policy() -> None:
    assert Policy((1, 3, 5, 7), 1, 0, "cancel") == DEFAULT
    assert final_deadline(DEFAULT, T0) == day(7)
    assert final_deadline(GRACE, T0) == day(9)
    assert final_deadline(NO_RETRIES_GRACE, T0) == day(3)


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        ({"retry_days": (1, 1)}, "retry_days", "strictly increasing"),
        ({"retry_days": (5, 3)}, "retry_days", "strictly increasing"),
        ({"retry_days": (0, 3)}, "retry_days", "from 1 to 60"),
        ({"retry_days": (3, 61)}, "retry_days", "from 1 to 60"),
        ({"retry_days": tuple(range(1, 14))}, "retry_days", "at most 12 retries"),
        ({"retry_days": [1, 3]}, "retry_days", "a tuple"),
        ({"retry_days": (1, True)}, "retry_days", "whole number"),
        ({"technical_retry_hours": 0}, "technical_retry_hours", "from 1 to 72"),
        ({"technical_retry_hours": 73}, "technical_retry_hours", "from 1 to 72"),
        ({"technical_retry_hours": True}, "technical_retry_hours", "from 1 to 72"),
        ({"grace_period_days": -1}, "grace_period_days", "from 0 to 60"),
        ({"grace_period_days": 61}, "grace_period_days", "from 0 to 60"),
        ({"final_action": "delete"}, "final_action", "cancel, mark_unpaid, leave_past_due"),
    ],
)
def test_invalid_policies_name_their_field(
    fields: dict[str, object], param: str, message: str
) -> None:
    with pytest.raises(PolicyError, match=message) as raised:
        Policy(**fields)  # type: ignore[arg-type]
    assert raised.value.param == param


def test_the_widest_policy_is_valid() -> None:
    widest = Policy(tuple(range(49, 61)), 72, 60, "leave_past_due")
    assert len(widest.retry_days) == MAX_RETRIES
    assert final_deadline(widest, T0) == day(120)


# --- Invariants -----------------------------------------------------------------------------------

policies = st.builds(
    Policy,
    retry_days=st.lists(st.integers(1, 60), max_size=12, unique=True).map(
        lambda days: tuple(sorted(days))
    ),
    technical_retry_hours=st.integers(1, 72),
    grace_period_days=st.integers(0, 60),
    final_action=st.sampled_from(FINAL_ACTIONS),
)
ISSUER = [SOFT, HARD, AUTH]


@settings(max_examples=500)
@given(
    policy=policies,
    decision=st.sampled_from([*ISSUER, TECH]),
    failed_attempts=st.integers(0, 16),
    technical=st.integers(0, 5),
    seconds=st.integers(0, 130 * 86400),
)
def test_one_decision_keeps_to_the_deadline(
    policy: Policy, decision: Decision, failed_attempts: int, technical: int, seconds: int
) -> None:
    if decision is TECH:
        technical = max(technical, 1)
    elif decision is SOFT:
        failed_attempts = max(failed_attempts, 1)
    failed_at = T0 + timedelta(seconds=seconds)
    deadline = final_deadline(policy, T0)
    result = decide(decision, failed_attempts, failed_at, technical, policy)
    match result:
        case Retry(at, reason):
            assert failed_at < at <= deadline
            assert decision in (SOFT, TECH)
            if reason != "technical":
                assert at - T0 in [timedelta(days=d) for d in policy.retry_days]
        case AwaitPaymentMethod(final_action_at):
            assert decision in (HARD, AUTH)
            assert failed_at < final_action_at == deadline
        case FinalAction(action, at):
            assert action == policy.final_action
            assert at == max(deadline, failed_at)
            # A hard decline before the deadline waits for a new card instead.
            assert decision in (SOFT, TECH) or deadline <= failed_at


@dataclass
class Run:
    """The engine's side of a dunning run, as the billing engine keeps it."""

    policy: Policy
    issuer_failures: int = 0
    technical_in_a_row: int = 0
    scheduled_retries: int = 0

    def fail(self, decision: Decision, at: datetime) -> Next:
        if decision is TECH:
            self.technical_in_a_row += 1
        else:
            self.issuer_failures += 1
            self.technical_in_a_row = 0
        return decide(decision, self.issuer_failures, at, self.technical_in_a_row, self.policy)


@settings(max_examples=300)
@given(
    policy=policies,
    outcomes=st.lists(
        st.tuples(st.sampled_from([*ISSUER, TECH, TECH]), st.integers(0, 59), st.floats(0, 1)),
        max_size=60,
    ),
)
def test_a_whole_run_keeps_to_the_schedule(
    policy: Policy, outcomes: list[tuple[Decision, int, float]]
) -> None:
    """Failures one after another, each answered up to a minute after its retry, and a new
    card from the customer at some point of each wait for one: every retry is after the
    failure before it and by the deadline, and the schedule's retries never outnumber its
    days."""
    run = Run(policy)
    deadline = final_deadline(policy, T0)
    failed_at = T0
    for decision, delay, new_card_at in outcomes:
        result = run.fail(decision, failed_at)
        if isinstance(result, AwaitPaymentMethod):
            assert result.final_action_at == deadline
            wait = (result.final_action_at - failed_at) * new_card_at
            result = on_new_payment_method(now=failed_at + wait, final_action_taken=False) or result
        if isinstance(result, FinalAction):
            assert result.at == max(deadline, failed_at)
            break
        assert isinstance(result, Retry)
        assert failed_at <= result.at <= deadline
        if result.reason != "new_payment_method":
            assert result.at > failed_at
        if result.reason in ("soft_decline", "technical_fallback"):
            run.scheduled_retries += 1
        failed_at = result.at + timedelta(seconds=delay)
    assert run.scheduled_retries <= len(policy.retry_days)
