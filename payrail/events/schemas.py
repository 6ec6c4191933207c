"""The event as consumers see it: the envelope of `event_envelope` (migration 0012).

Compatibility rule (docs/events.md): within one `version` of an event type, fields are
only ever added, to the envelope or to `data.object`; nothing is removed, renamed or
retyped. A change that would do so publishes the type under the next version. So a
consumer reads the fields it knows and ignores the rest, and `Event` keeps the whole
document for it to do so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from pydantic import Field

from payrail.api.pagination import ListParams

EventType = Annotated[str, Field(min_length=1, max_length=100)]


class MalformedEvent(ValueError):
    """A record that is not a payrail event: a poison record for its consumer."""


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    type: str
    version: int
    merchant_id: str
    livemode: bool
    created: int
    object: dict[str, Any]
    document: dict[str, Any]


def parse_event(value: bytes) -> Event:
    try:
        document = orjson.loads(value)
        return Event(
            id=_field(document, "id", str),
            type=_field(document, "type", str),
            version=_field(document, "version", int),
            merchant_id=_field(document, "merchant", str),
            livemode=_field(document, "livemode", bool),
            created=_field(document, "created", int),
            object=_field(_field(document, "data", dict), "object", dict),
            document=document,
        )
    except orjson.JSONDecodeError as exc:
        raise MalformedEvent(f"not JSON: {exc}") from None


def _field(document: Any, name: str, kind: type[Any]) -> Any:
    if not isinstance(document, dict):
        raise MalformedEvent("an event is a JSON object")
    value = document.get(name)
    # bool is an int in Python; an event's version or time must not be one.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MalformedEvent(f"field {name!r} is missing or not a {kind.__name__}")
    if isinstance(value, str) and "\x00" in value:  # PostgreSQL text cannot hold it
        raise MalformedEvent(f"field {name!r} holds a NUL character")
    return value


class EventListParams(ListParams):
    """Stripe's filters: `type` (a type, or a prefix ending in `*`) or `types`."""

    type: EventType | None = None
    types: Annotated[list[EventType], Field(max_length=20)] = []
