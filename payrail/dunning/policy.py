"""Dunning decisions: what to do after an invoice's payment attempt fails. Pure: no I/O.

A merchant's `Policy` (per mode; `DEFAULT` when it has set none) holds a schedule of
retries, counted in days from the invoice's **first failure**, a grace period and a final
action. The billing engine calls `after_failure` after every failed attempt and applies
the `Next` it returns; it calls `on_new_payment_method` when the customer's default
payment method changes while an invoice is in dunning.

The final deadline is `first_failed_at + retry_days[-1] + grace_period_days` (with no
retries, `first_failed_at + grace_period_days`). No retry is ever scheduled after it, and
the final action happens at it, or at once if it has passed.

Decision table of `after_failure` (`n` = `failed_attempts`, `slot k` =
`first_failed_at + retry_days[k]`, "next slot" = the first slot `k >= n - 1` that is later
than `failed_at`):

| decision                 | condition                 | next                                  |
|--------------------------|---------------------------|---------------------------------------|
| soft_decline             | a next slot exists        | Retry(next slot, "soft_decline")      |
| soft_decline             | no next slot (exhausted)  | FinalAction(max(deadline, failed_at)) |
| hard_decline or          | deadline after failed_at  | AwaitPaymentMethod(deadline)          |
| authentication_required  | deadline passed           | FinalAction(failed_at)                |
| technical                | < 3 in a row, deadline    | Retry(min(failed_at + technical_retry |
|                          | after failed_at           | _hours, deadline), "technical")       |
| technical                | 3 in a row, or deadline   | as soft_decline, with the reason      |
|                          | passed                    | "technical_fallback"                  |
| in_doubt                 | (the janitor settles it)  | ValueError                            |

What the counters mean, as the engine must compute them from the invoice's attempts:

- `failed_attempts` counts the failed attempts the *issuer answered* (soft, hard and
  authentication declines), this one included. Technical failures never reached the
  issuer and are not counted: they must not use up the customer's retries. The initial
  try is an attempt, so after the first issuer decline `n = 1` and the next slot is
  `retry_days[0]`. A retry made at once for a new payment method counts too when the
  issuer answers it: an invoice gets at most `1 + len(retry_days)` scheduled issuer
  attempts, plus those its customer asks for by changing card.
- A slot whose moment has passed is gone: technical retries or a late run may have
  used its time. So slots only move forward, each retry takes a later slot than the
  one before, and the schedule's retries never exceed `len(retry_days)`.
- A hard decline with `failed_attempts = 0` is how the engine says there was no payment
  method to try at all: the customer must add one, exactly as after a hard decline.
- `technical_retries_in_a_row` counts the technical failures that end the invoice's
  history, this one included (so at least 1 when `decision` is technical). Any issuer
  answer resets it.
- `first_failed_at` is when the invoice's first failed attempt (of any kind) was made;
  `failed_at` is when this failure was learned: the engine's now.

Days are 24-hour periods on the timeline, not calendar days in a time zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Final, Literal, get_args

from payrail.connectors.declines import Decision

FinalActionKind = Literal["cancel", "mark_unpaid", "leave_past_due"]
FINAL_ACTIONS: Final[tuple[str, ...]] = get_args(FinalActionKind)
RetryReason = Literal["soft_decline", "technical", "technical_fallback", "new_payment_method"]

MAX_RETRIES: Final = 12
MAX_RETRY_DAY: Final = 60
MAX_TECHNICAL_RETRY_HOURS: Final = 72
MAX_GRACE_PERIOD_DAYS: Final = 60
# Technical failures in a row before a retry waits for the schedule: an outage that long
# is better waited out than hammered.
TECHNICAL_IN_A_ROW: Final = 3


class PolicyError(ValueError):
    """An invalid policy; `param` names the offending field as the API spells it."""

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message)
        self.param = param


def check_retry_days(days: Sequence[int]) -> None:
    """Raises ValueError unless `days` is a valid retry schedule."""
    if len(days) > MAX_RETRIES:
        raise ValueError(f"at most {MAX_RETRIES} retries")
    for day in days:
        if type(day) is not int or not 1 <= day <= MAX_RETRY_DAY:
            raise ValueError(f"each retry day must be a whole number from 1 to {MAX_RETRY_DAY}")
    if any(later <= earlier for earlier, later in pairwise(days)):
        raise ValueError("retry days must be strictly increasing")


def _check_whole(value: object, low: int, high: int, param: str) -> None:
    if type(value) is not int or not low <= value <= high:
        raise PolicyError(f"{param} must be a whole number from {low} to {high}", param=param)


@dataclass(frozen=True)
class Policy:
    retry_days: tuple[int, ...] = (1, 3, 5, 7)
    technical_retry_hours: int = 1
    grace_period_days: int = 0
    final_action: FinalActionKind = "cancel"

    def __post_init__(self) -> None:
        if not isinstance(self.retry_days, tuple):
            raise PolicyError("retry_days must be a tuple", param="retry_days")
        try:
            check_retry_days(self.retry_days)
        except ValueError as exc:
            raise PolicyError(str(exc), param="retry_days") from None
        _check_whole(
            self.technical_retry_hours, 1, MAX_TECHNICAL_RETRY_HOURS, "technical_retry_hours"
        )
        _check_whole(self.grace_period_days, 0, MAX_GRACE_PERIOD_DAYS, "grace_period_days")
        if self.final_action not in FINAL_ACTIONS:
            raise PolicyError(
                f"final_action must be one of {', '.join(FINAL_ACTIONS)}", param="final_action"
            )


DEFAULT: Final = Policy()


@dataclass(frozen=True, slots=True)
class Retry:
    at: datetime
    reason: RetryReason


@dataclass(frozen=True, slots=True)
class AwaitPaymentMethod:
    """No retry of this payment method: ask the customer for another. The final action
    happens at `final_action_at` unless a new one arrives (see `on_new_payment_method`)."""

    final_action_at: datetime


@dataclass(frozen=True, slots=True)
class FinalAction:
    action: FinalActionKind
    at: datetime


Next = Retry | AwaitPaymentMethod | FinalAction


def final_deadline(policy: Policy, first_failed_at: datetime) -> datetime:
    last_retry_day = policy.retry_days[-1] if policy.retry_days else 0
    return first_failed_at + timedelta(days=last_retry_day + policy.grace_period_days)


def _aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def after_failure(
    policy: Policy,
    *,
    decision: Decision,
    failed_attempts: int,
    first_failed_at: datetime,
    failed_at: datetime,
    technical_retries_in_a_row: int,
) -> Next:
    """What to do after a failed attempt; see the module's decision table."""
    _aware(first_failed_at, "first_failed_at")
    _aware(failed_at, "failed_at")
    if failed_at < first_failed_at:
        raise ValueError("failed_at is before first_failed_at")
    if decision is Decision.IN_DOUBT:
        raise ValueError("an in-doubt attempt is not a failure: the payments janitor settles it")
    # A hard decline may also stand for "no payment method to try": then nothing was
    # attempted, and failed_attempts may be 0.
    if failed_attempts < (1 if decision is Decision.SOFT_DECLINE else 0):
        raise ValueError(f"failed_attempts {failed_attempts} cannot follow a {decision}")
    if technical_retries_in_a_row < (1 if decision is Decision.TECHNICAL else 0):
        raise ValueError(
            f"technical_retries_in_a_row {technical_retries_in_a_row} cannot follow a {decision}"
        )

    deadline = final_deadline(policy, first_failed_at)
    if decision in (Decision.HARD_DECLINE, Decision.AUTHENTICATION_REQUIRED):
        if deadline > failed_at:
            return AwaitPaymentMethod(final_action_at=deadline)
        return FinalAction(policy.final_action, failed_at)
    reason: RetryReason = "soft_decline"
    if decision is Decision.TECHNICAL:
        if technical_retries_in_a_row < TECHNICAL_IN_A_ROW and deadline > failed_at:
            soon = failed_at + timedelta(hours=policy.technical_retry_hours)
            return Retry(min(soon, deadline), "technical")
        reason = "technical_fallback"
    for day in policy.retry_days[max(failed_attempts - 1, 0) :]:
        slot = first_failed_at + timedelta(days=day)
        if slot > failed_at:
            return Retry(slot, reason)
    return FinalAction(policy.final_action, max(deadline, failed_at))


def on_new_payment_method(*, now: datetime, final_action_taken: bool) -> Retry | None:
    """The customer's default payment method changed while an invoice of theirs is open
    after a failure: retry at once, whatever the schedule, unless dunning has ended with
    its final action (the merchant collects such an invoice by paying it explicitly). The
    schedule of `after_failure` then carries on from the invoice's first failure."""
    _aware(now, "now")
    return None if final_action_taken else Retry(now, "new_payment_method")
