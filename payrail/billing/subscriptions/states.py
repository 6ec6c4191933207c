"""What a subscription must do next, and when: plain functions over its values.

The billing engine asks `due_step` at `next_action_at` and applies one step per
transaction, then asks again, so a subscription months behind (a backfill, a test clock
advanced far) catches up period by period, each period billed by its own invoice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

# Stripe's: an incomplete subscription whose first invoice is not paid in 23 hours expires.
INCOMPLETE_EXPIRY = timedelta(hours=23)

ENDED = frozenset({"canceled", "incomplete_expired"})
# Periods keep renewing (and invoicing) in these; `paused` waits for a resume.
RENEWING = frozenset({"trialing", "active", "past_due", "unpaid"})


@dataclass(frozen=True, slots=True)
class Subscription:
    status: str
    created_at: datetime
    current_period_end: datetime
    cancel_at_period_end: bool
    cancel_at: datetime | None
    pause_resumes_at: datetime | None


@dataclass(frozen=True, slots=True)
class Expire:
    """The first invoice went unpaid too long: incomplete → incomplete_expired."""

    at: datetime


@dataclass(frozen=True, slots=True)
class Cancel:
    at: datetime


@dataclass(frozen=True, slots=True)
class ResumeCollection:
    """pause_collection[resumes_at] has come."""

    at: datetime


@dataclass(frozen=True, slots=True)
class Renew:
    """The period ended: the next one starts `at` (the old period's end)."""

    at: datetime


Step = Expire | Cancel | ResumeCollection | Renew


def _cancel_moment(sub: Subscription) -> datetime | None:
    moments = [m for m in (sub.cancel_at,) if m is not None]
    if sub.cancel_at_period_end:
        moments.append(sub.current_period_end)
    return min(moments) if moments else None


def next_action_at(sub: Subscription) -> datetime | None:
    """When the engine must look at it next; None when nothing will happen by itself."""
    if sub.status in ENDED:
        return None
    if sub.status == "incomplete":
        return sub.created_at + INCOMPLETE_EXPIRY
    moments = [sub.pause_resumes_at] if sub.pause_resumes_at is not None else []
    if sub.status in RENEWING:
        moments.append(sub.current_period_end)
    cancel = _cancel_moment(sub)
    if cancel is not None:
        moments.append(cancel)
    return min(moments) if moments else None


def due_step(sub: Subscription, now: datetime) -> Step | None:
    """The first thing due at `now`, in the order they fall due; None when nothing is."""
    if sub.status in ENDED:
        return None
    if sub.status == "incomplete":
        expiry = sub.created_at + INCOMPLETE_EXPIRY
        return Expire(expiry) if now >= expiry else None
    due: list[tuple[datetime, int, Step]] = []
    cancel = _cancel_moment(sub)
    # At the same moment a cancel wins over a renewal (no invoice for a period not had),
    # and a resume comes before the renewal that then invoices.
    if cancel is not None and now >= cancel:
        due.append((cancel, 0, Cancel(cancel)))
    if sub.pause_resumes_at is not None and now >= sub.pause_resumes_at:
        due.append((sub.pause_resumes_at, 1, ResumeCollection(sub.pause_resumes_at)))
    if sub.status in RENEWING and now >= sub.current_period_end:
        due.append((sub.current_period_end, 2, Renew(sub.current_period_end)))
    return min(due, key=lambda d: (d[0], d[1]))[2] if due else None


Status = Literal[
    "incomplete",
    "incomplete_expired",
    "trialing",
    "active",
    "past_due",
    "unpaid",
    "canceled",
    "paused",
]


def after_payment(status: str) -> str:
    """An invoice of the subscription got paid: it is in good standing again."""
    return "active" if status in ("incomplete", "past_due", "unpaid", "active") else status


def after_failed_payment(status: str, billing_reason: str) -> str:
    """A collection attempt failed: the first invoice leaves it incomplete, a later one
    makes it past due (dunning decides what comes after)."""
    if status == "incomplete" or billing_reason == "subscription_create":
        return status
    return "past_due" if status in ("active", "trialing") else status
