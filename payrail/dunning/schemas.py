"""Parameters of /v1/dunning/policy and /v1/reports/failed_payments."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator

from payrail.api.schemas import Params
from payrail.dunning.policy import (
    MAX_GRACE_PERIOD_DAYS,
    MAX_RETRIES,
    MAX_RETRY_DAY,
    MAX_TECHNICAL_RETRY_HOURS,
    FinalActionKind,
    check_retry_days,
)

# Unix seconds up to the end of year 9999, which datetime can hold.
MAX_UNIX = 253_402_300_799


def _whole(value: object) -> object:
    """1.5, 1.0 and True are refused, "3" (forms, query strings) is fine."""
    if isinstance(value, bool | float):
        raise ValueError("must be a whole number")
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("must be a whole number")
    return value


def _empty_list(value: object) -> object:
    """A form cannot send an empty list: `retry_days=` (empty) stands for one."""
    return [] if value == "" else value


def _schedule(days: list[int]) -> list[int]:
    check_retry_days(days)
    return days


Whole = BeforeValidator(_whole)
RetryDay = Annotated[int, Field(ge=1, le=MAX_RETRY_DAY), Whole]
RetryDays = Annotated[
    list[RetryDay],
    Field(max_length=MAX_RETRIES),
    BeforeValidator(_empty_list),
    AfterValidator(_schedule),
]
TechnicalRetryHours = Annotated[int, Field(ge=1, le=MAX_TECHNICAL_RETRY_HOURS), Whole]
GracePeriodDays = Annotated[int, Field(ge=0, le=MAX_GRACE_PERIOD_DAYS), Whole]
UnixTime = Annotated[int, Field(ge=0, le=MAX_UNIX), Whole]


class PolicyUpdate(Params):
    """Fields not given keep their value (the default's, for a merchant without a policy)."""

    retry_days: RetryDays | None = None
    technical_retry_hours: (
        Annotated[int, Field(ge=1, le=MAX_TECHNICAL_RETRY_HOURS), Whole] | None
    ) = None
    grace_period_days: Annotated[int, Field(ge=0, le=MAX_GRACE_PERIOD_DAYS), Whole] | None = None
    final_action: FinalActionKind | None = None


class FailedPaymentsParams(Params):
    """The report's window, [since, until) in unix seconds; `until` defaults to now."""

    since: UnixTime
    until: UnixTime | None = None

    @field_validator("until")
    @classmethod
    def _after_since(cls, until: int | None, info: ValidationInfo) -> int | None:
        since = info.data.get("since")
        if until is not None and since is not None and until <= since:
            raise ValueError("must be later than since")
        return until
