"""The payment intent's state machine: examples, then a hypothesis machine that drives
every action in every order and checks the money invariants after each step."""

from __future__ import annotations

from typing import get_args

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from payrail.payments import states
from payrail.payments.states import AttemptOutcome, IllegalTransition, Intent


def confirmed(capture_method: states.CaptureMethod = "automatic") -> Intent:
    return states.confirming(states.created(1_000, capture_method, "pm_1"), None)


def test_created_without_a_card_needs_one_and_cannot_be_confirmed() -> None:
    intent = states.created(500, "automatic", None)
    assert intent.status == "requires_payment_method"
    with pytest.raises(IllegalTransition) as raised:
        states.confirming(intent, None)
    assert raised.value.param == "payment_method"
    assert states.confirming(intent, "pm_2").payment_method == "pm_2"


def test_automatic_capture_succeeds_and_manual_waits_for_capture() -> None:
    done = states.attempted(confirmed(), "captured")
    assert (done.status, done.amount_received) == ("succeeded", 1_000)
    held = states.attempted(confirmed("manual"), "authorized")
    assert (held.status, held.amount_capturable, held.amount_received) == (
        "requires_capture",
        1_000,
        0,
    )
    partial = states.captured(held, 600)
    assert (partial.status, partial.amount_received, partial.amount_capturable) == (
        "succeeded",
        600,
        0,
    )


@pytest.mark.parametrize(("amount", "ok"), [(0, False), (1, True), (1_000, True), (1_001, False)])
def test_capture_bounds(amount: int, ok: bool) -> None:
    held = states.attempted(confirmed("manual"), "authorized")
    if ok:
        assert states.captured(held, amount).amount_received == amount
    else:
        with pytest.raises(IllegalTransition) as raised:
            states.captured(held, amount)
        assert raised.value.param == "amount_to_capture"


def test_an_in_doubt_attempt_keeps_the_intent_processing_and_untouchable() -> None:
    doubt = states.attempted(confirmed(), "in_doubt")
    assert doubt.status == "processing"
    for action in (
        lambda: states.confirming(doubt, "pm_2"),
        lambda: states.canceled(doubt),
        lambda: states.captured(doubt, None),
        lambda: states.refunded(doubt, None),
    ):
        with pytest.raises(IllegalTransition):
            action()
    assert states.attempted(doubt, "captured").status == "succeeded"


def test_a_decline_or_a_failure_everywhere_asks_for_another_card() -> None:
    for outcome in ("declined", "failed"):
        assert states.attempted(confirmed(), outcome).status == "requires_payment_method"
    assert states.attempted(confirmed(), "requires_authentication").status == "requires_action"


def test_refunds_never_exceed_what_was_received() -> None:
    paid = states.captured(states.attempted(confirmed("manual"), "authorized"), 700)
    paid, first = states.refunded(paid, 200)
    paid, rest = states.refunded(paid, None)
    assert (first, rest, paid.amount_refunded) == (200, 500, 700)
    with pytest.raises(IllegalTransition) as raised:
        states.refunded(paid, 1)
    assert raised.value.code == "charge_already_refunded"
    paid = states.refund_failed(paid, 500)
    with pytest.raises(IllegalTransition) as raised:
        states.refunded(paid, 501)
    assert raised.value.code == "amount_too_large"


# A manual-capture attempt never comes back captured.
MANUAL_OUTCOMES = [o for o in get_args(AttemptOutcome) if o != "captured"]


class IntentMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.intent = states.created(1_000, "manual", None)
        self.refunds: list[int] = []
        self.ever_succeeded = False

    def attempt(self, action: object) -> None:
        try:
            result = action() if callable(action) else action
        except IllegalTransition:
            return
        if isinstance(result, tuple):
            self.intent, amount = result
            self.refunds.append(amount)
        else:
            assert isinstance(result, Intent)
            self.intent = result

    @rule(card=st.sampled_from([None, "pm_1", "pm_2"]))
    def confirm(self, card: str | None) -> None:
        self.attempt(lambda: states.confirming(self.intent, card))

    @precondition(lambda self: self.intent.status == "processing")
    @rule(outcome=st.sampled_from(["authorized", "authorized", *MANUAL_OUTCOMES]))
    def provider_answers(self, outcome: AttemptOutcome) -> None:
        self.attempt(lambda: states.attempted(self.intent, outcome))

    # Amounts are drawn around the boundary that matters: what is left to take.
    @rule(whole=st.booleans(), delta=st.integers(-3, 3))
    def capture(self, whole: bool, delta: int) -> None:
        amount = None if whole else self.intent.amount_capturable + delta
        self.attempt(lambda: states.captured(self.intent, amount))

    @rule()
    def cancel(self) -> None:
        self.attempt(lambda: states.canceled(self.intent))

    @rule(whole=st.booleans(), delta=st.integers(-3, 3), part=st.integers(1, 999))
    def refund(self, whole: bool, delta: int, part: int) -> None:
        left = self.intent.amount_received - self.intent.amount_refunded
        amount = None if whole else (left + delta if delta else min(part, left) or 1)
        self.attempt(lambda: states.refunded(self.intent, amount))

    @precondition(lambda self: bool(self.refunds))
    @rule()
    def last_refund_fails(self) -> None:
        amount = self.refunds.pop()
        self.intent = states.refund_failed(self.intent, amount)

    @invariant()
    def money_adds_up(self) -> None:
        i = self.intent
        assert 0 <= i.amount_capturable <= i.amount
        assert 0 <= i.amount_received <= i.amount
        assert 0 <= i.amount_refunded <= i.amount_received
        assert i.amount_refunded == sum(self.refunds)
        assert not (i.amount_capturable and i.amount_received), "captured once, never twice"

    @invariant()
    def succeeded_and_canceled_are_final(self) -> None:
        if self.ever_succeeded:
            assert self.intent.status == "succeeded"
        self.ever_succeeded = self.intent.status == "succeeded"
        if self.intent.status == "canceled":
            for action in (
                lambda: states.confirming(self.intent, "pm_1"),
                lambda: states.captured(self.intent, None),
            ):
                with pytest.raises(IllegalTransition):
                    action()


TestIntentMachine = IntentMachine.TestCase
TestIntentMachine.settings = settings(max_examples=300, stateful_step_count=40)
