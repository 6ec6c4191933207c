"""When to ask a provider about an attempt in doubt, and what its answer settles.

An attempt is in doubt when its request was sent and no decision came back. It is never
retried as a new charge. The janitor asks the provider for the attempt's status by its
idempotency key, on a backoff schedule, until the answer settles it.

"Never processed" needs care. A provider may still be working on a request when the
status lookup says it has none: the original may be hanging in the provider's queue.
Only after `NOT_PROCESSED_AFTER` has passed since the request was sent does "none" mean
the card was not charged.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from payrail.connectors.base import ProviderPayment
from payrail.payments.states import AttemptOutcome

# Delay before each check, counted from the previous one (the first from when the
# attempt fell into doubt); after the list, daily. The first comes after the connector's
# own request timeout (10 s), so the original request has ended on our side. The third
# lands past NOT_PROCESSED_AFTER (15 s + 1 min + 5 min), so a request the provider never
# got is settled then, not an hour later.
SCHEDULE = (
    timedelta(seconds=15),
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(hours=1),
)
DAILY = timedelta(days=1)
NOT_PROCESSED_AFTER = timedelta(minutes=5)
# A charge settled as never processed is asked about once more, this much later: a
# provider that processed it after all (a queue that drained late) must not go unseen.
LATE_CHECK = timedelta(days=1)


def next_check_at(previous: datetime, checks_done: int) -> datetime:
    """When to ask next, after `checks_done` checks, the last at `previous` (or, before
    the first, when the attempt fell into doubt)."""
    if checks_done < 0:
        raise ValueError("checks_done cannot be negative")
    delay = SCHEDULE[checks_done] if checks_done < len(SCHEDULE) else DAILY
    return previous + delay


def settle(answer: ProviderPayment | None, sent_at: datetime, now: datetime) -> AttemptOutcome:
    """What the provider's answer makes of the attempt; `in_doubt` means ask again later."""
    if answer is None:
        # No record of the key. Believe that only once the request cannot still be in
        # flight at the provider.
        return "failed" if now - sent_at >= NOT_PROCESSED_AFTER else "in_doubt"
    if answer.status == "captured":
        return "captured"
    if answer.status == "authorized":
        return "authorized"
    if answer.status == "requires_authentication":
        return "requires_authentication"
    if answer.status == "declined":
        return "declined"
    # Voided at the provider: nothing was charged and nothing is held.
    return "failed"
