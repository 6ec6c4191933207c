"""Which request gets which fault: asked for with the ``Sandbox-Fault`` header, or drawn.

A drawn fault depends only on (seed, Idempotency-Key, attempt number for that key), hashed,
so a run faults the same requests whatever order they arrive in, and a retry (the next
attempt) gets a fresh draw, so retrying with the same key eventually gets through.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction

import orjson

HEADER = "Sandbox-Fault"
# Latency beyond ten minutes is a hang, and there is a fault for that.
MAX_LATENCY_MS = 600_000


class FaultKind(StrEnum):
    LATENCY = "latency"
    ERROR_BEFORE = "error_before"
    ERROR_AFTER = "error_after"
    TIMEOUT_BEFORE = "timeout_before"
    TIMEOUT_AFTER = "timeout_after"

    @property
    def processes(self) -> bool:
        """Whether a request with this fault is processed (or replayed) at all."""
        return self not in (FaultKind.ERROR_BEFORE, FaultKind.TIMEOUT_BEFORE)


# The kinds a rate draws from, in a fixed order: the draw indexes into it.
DRAWN_KINDS: tuple[FaultKind, ...] = (
    FaultKind.ERROR_BEFORE,
    FaultKind.ERROR_AFTER,
    FaultKind.TIMEOUT_BEFORE,
    FaultKind.TIMEOUT_AFTER,
)

_PLAIN_KINDS = frozenset(kind.value for kind in DRAWN_KINDS)


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    latency_ms: int = 0

    def __str__(self) -> str:
        return f"latency:{self.latency_ms}" if self.kind is FaultKind.LATENCY else self.kind.value


# A rate draws from these unless told otherwise.
DRAWN: tuple[Fault, ...] = tuple(Fault(kind) for kind in DRAWN_KINDS)


def parse(value: str) -> Fault:
    """A ``Sandbox-Fault`` header value, or ValueError saying what is accepted."""
    value = value.strip()
    name, colon, argument = value.partition(":")
    if name == FaultKind.LATENCY and colon:
        if argument.isascii() and argument.isdigit() and int(argument) <= MAX_LATENCY_MS:
            return Fault(FaultKind.LATENCY, int(argument))
    elif not colon and name in _PLAIN_KINDS:
        return Fault(FaultKind(name))
    kinds = ", ".join(kind.value for kind in DRAWN_KINDS)
    raise ValueError(f"{HEADER} must be latency:MS (0 to {MAX_LATENCY_MS}) or one of {kinds}.")


def exact_rate(rate: float) -> Fraction:
    """The rate as the decimal fraction it was written as (0.1 is exactly one in ten)."""
    fraction = Fraction(repr(rate))
    if not 0 <= fraction <= 1:
        raise ValueError(f"a fault rate is between 0 and 1, not {rate}")
    return fraction


def draw(
    seed: int, key: str, attempt: int, rate: Fraction, kinds: tuple[Fault, ...] = DRAWN
) -> Fault | None:
    """The fault for this attempt of this key, or None: a share ``rate`` of draws fault,
    each with one of ``kinds``."""
    if rate == 0:
        return None
    # JSON encodes the triple unambiguously, whatever characters the key holds.
    digest = hashlib.sha256(orjson.dumps([seed, key, attempt])).digest()
    # Uniform in [0, 2**64): faulted when below rate * 2**64, compared in integers.
    if int.from_bytes(digest[:8], "big") * rate.denominator >= rate.numerator << 64:
        return None
    return kinds[int.from_bytes(digest[8:16], "big") % len(kinds)]


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Fault injection as it stands; replaced whole by ``POST /sandbox/faults``."""

    rate: float
    seed: int
    hang_seconds: float
    # What a drawn fault may be; a test narrows it to force one kind (or a latency).
    kinds: tuple[Fault, ...] = DRAWN

    def __post_init__(self) -> None:
        exact_rate(self.rate)
        if not self.hang_seconds >= 0:
            raise ValueError(f"hang seconds must be 0 or more, not {self.hang_seconds}")
        if not self.kinds:
            raise ValueError("at least one fault kind to draw from")

    def fault_for(self, header: str | None, key: str | None, attempt: int) -> Fault | None:
        """The header's fault if there is one (it wins over the rate), else a drawn one for
        a request with a key; ValueError for a header that names no fault."""
        if header is not None:
            return parse(header)
        if key is None:
            return None
        return draw(self.seed, key, attempt, exact_rate(self.rate), self.kinds)

    def to_json(self) -> dict[str, object]:
        return {
            "rate": self.rate,
            "seed": self.seed,
            "hang_seconds": self.hang_seconds,
            "kinds": [str(fault) for fault in self.kinds],
        }
