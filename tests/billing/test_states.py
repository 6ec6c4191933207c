"""What a subscription must do next: plain decisions, no database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from payrail.billing.subscriptions import states

T0 = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 2, 1, tzinfo=UTC)
ACTIVE = states.Subscription(
    status="active",
    created_at=T0,
    current_period_end=END,
    cancel_at_period_end=False,
    cancel_at=None,
    pause_resumes_at=None,
)


def test_an_active_subscription_renews_at_its_period_end() -> None:
    assert states.next_action_at(ACTIVE) == END
    assert states.due_step(ACTIVE, END - timedelta(seconds=1)) is None
    assert states.due_step(ACTIVE, END) == states.Renew(END)
    assert states.due_step(ACTIVE, END + timedelta(days=40)) == states.Renew(END)


def test_cancel_at_period_end_wins_over_the_renewal_at_the_same_moment() -> None:
    sub = replace(ACTIVE, cancel_at_period_end=True)
    assert states.due_step(sub, END) == states.Cancel(END)


def test_an_earlier_cancel_at_comes_first() -> None:
    cancel = END - timedelta(days=3)
    sub = replace(ACTIVE, cancel_at=cancel)
    assert states.next_action_at(sub) == cancel
    assert states.due_step(sub, END + timedelta(days=1)) == states.Cancel(cancel)


def test_a_resume_comes_before_the_renewal_it_lets_invoice() -> None:
    sub = replace(ACTIVE, pause_resumes_at=END)
    assert states.due_step(sub, END) == states.ResumeCollection(END)
    early = replace(ACTIVE, pause_resumes_at=END - timedelta(days=1))
    assert states.next_action_at(early) == END - timedelta(days=1)


def test_an_incomplete_subscription_only_expires() -> None:
    sub = replace(ACTIVE, status="incomplete")
    expiry = T0 + states.INCOMPLETE_EXPIRY
    assert states.next_action_at(sub) == expiry
    assert states.due_step(sub, END) == states.Expire(expiry)
    assert states.due_step(sub, expiry - timedelta(seconds=1)) is None


def test_ended_and_paused_subscriptions_wait() -> None:
    for status in ("canceled", "incomplete_expired"):
        sub = replace(ACTIVE, status=status)
        assert states.next_action_at(sub) is None
        assert states.due_step(sub, END + timedelta(days=400)) is None
    paused = replace(ACTIVE, status="paused")
    assert states.next_action_at(paused) is None
    assert states.due_step(paused, END) is None


def test_statuses_after_payments() -> None:
    assert states.after_payment("past_due") == "active"
    assert states.after_payment("incomplete") == "active"
    assert states.after_payment("canceled") == "canceled"
    assert states.after_failed_payment("active", "subscription_cycle") == "past_due"
    assert states.after_failed_payment("incomplete", "subscription_create") == "incomplete"
    assert states.after_failed_payment("unpaid", "subscription_cycle") == "unpaid"
