"""Parameters of /v1/test_helpers/test_clocks, in Stripe's shapes."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field

from payrail.api.schemas import Params

# 9999-12-31T23:59:59Z: the last second a datetime (and so every date computed from a
# clock's time) can hold.
MAX_UNIX_TIME = 253_402_300_799


def _whole_seconds(value: object) -> object:
    """A timestamp is whole seconds: 1.5 and True are refused; "1577836800" (forms) is fine."""
    if isinstance(value, bool | float):
        raise ValueError("must be a Unix timestamp in whole seconds")
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("must be a Unix timestamp in whole seconds")
    return value


UnixTime = Annotated[int, Field(ge=0, le=MAX_UNIX_TIME), BeforeValidator(_whole_seconds)]


class ClockCreate(Params):
    frozen_time: UnixTime
    name: Annotated[str, Field(max_length=300)] | None = None


class ClockAdvance(Params):
    frozen_time: UnixTime
