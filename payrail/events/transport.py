"""The boundary between payrail and whatever carries its events: Kafka, or the log in
PostgreSQL that `payrail up` uses by default.

Both keep Kafka's contract, which is all the relay and the consumers rely on:
- records of one key (an aggregate id) go to one partition of their topic, and are
  appended there in the order they were published;
- `publish` returns only once every record is durably appended; when it raises
  `TransportUnavailable`, any prefix of the records may have been appended, so the
  caller publishes all of them again (duplicates are what the inbox is for);
- a consumer group's members split the partitions between them; a member reads each
  partition in offset order from the group's committed offset, and what it has not
  committed is delivered again, to it or to the member that takes the partition over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

# Every topic payrail publishes starts with this; a consumer of "every topic" subscribes
# to the prefix, so that topics of domains added later reach it too.
TOPIC_PREFIX = "payrail."


def topic_for(aggregate_type: str) -> str:
    """One topic per aggregate type: `payment_intent` -> `payrail.payment_intents`."""
    return f"{TOPIC_PREFIX}{aggregate_type}s"


class TransportUnavailable(Exception):
    """The broker (or the database holding the log) did not take the records."""


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    key: str
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Delivered:
    topic: str
    partition: int
    offset: int
    key: str
    value: bytes
    headers: dict[str, str]


class Producer(Protocol):
    async def publish(self, records: Sequence[Record]) -> None: ...

    async def close(self) -> None: ...


class Subscription(Protocol):
    """One member of a consumer group."""

    async def fetch(self, max_records: int, max_wait: float) -> list[Delivered]:
        """Up to `max_records`, waiting at most `max_wait` seconds when there are none."""
        ...

    async def commit(self, delivered: Sequence[Delivered]) -> None:
        """Everything up to and including these records is done, per partition."""
        ...

    async def lag(self) -> dict[tuple[str, int], int]:
        """Records appended but not yet committed, per (topic, partition) this member
        holds."""
        ...

    async def close(self) -> None: ...


class Transport(Protocol):
    name: str

    async def producer(self) -> Producer: ...

    async def subscribe(self, group: str, topics: Sequence[str] | None) -> Subscription:
        """A new member of `group`. `topics=None` means every payrail topic, present and
        future."""
        ...
