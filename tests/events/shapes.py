"""The field shapes of events, and the compatibility rule of docs/events.md over them:
within one (type, version), fields are only added; none is removed, retyped, or made
nullable.

`event_shapes.json` holds the shape of every (type, version) payrail has published.
Run the outbox test with PAYRAIL_RECORD_EVENT_SHAPES=1 to add new types and new fields
to it; a removal or a retyping is never recorded: it needs the next version.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SHAPES = Path(__file__).with_name("event_shapes.json")
# Maps whose keys are the merchant's data, not fields.
OPAQUE = {"metadata"}
Shape = dict[str, set[str]]
_KINDS = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}


def shape_of(document: Any) -> Shape:
    """Every field path (`data.object.charges[].id`) and the JSON kinds seen there."""
    paths: Shape = defaultdict(set)

    def walk(value: Any, path: str) -> None:
        paths[path].add(_KINDS[type(value)])
        if isinstance(value, dict) and path.rsplit(".", 1)[-1] not in OPAQUE:
            for key, inner in value.items():
                walk(inner, f"{path}.{key}" if path else key)
        elif isinstance(value, list):
            for inner in value:
                walk(inner, f"{path}[]")

    walk(document, "")
    del paths[""]
    return dict(paths)


def shapes_of(events: Iterable[dict[str, Any]]) -> dict[str, Shape]:
    """Shapes per `type@version`, merged over every event of it."""
    merged: dict[str, Shape] = defaultdict(lambda: defaultdict(set))
    for event in events:
        for path, kinds in shape_of(event).items():
            merged[f"{event['type']}@{event['version']}"][path] |= kinds
    return {key: dict(shape) for key, shape in merged.items()}


def breaks(recorded: dict[str, Shape], current: dict[str, Shape]) -> list[str]:
    """What in `current` breaks the rule against `recorded`; an unrecorded type too."""
    found: list[str] = []
    for key, shape in sorted(current.items()):
        if key not in recorded:
            found.append(f"{key}: not recorded (PAYRAIL_RECORD_EVENT_SHAPES=1 records it)")
            continue
        for path, was in sorted(recorded[key].items()):
            now = shape.get(path)
            if now is None:
                found.append(f"{key}: {path} removed")
                continue
            known = was - {"null"}
            if known and not (now - {"null"}) <= known:
                found.append(f"{key}: {path} was {sorted(was)}, now {sorted(now)}")
            if "null" in now and "null" not in was:
                found.append(f"{key}: {path} was never null, now is")
    return found


def load() -> dict[str, Shape]:
    stored = json.loads(SHAPES.read_text()) if SHAPES.exists() else {}
    return {key: {p: set(k) for p, k in shape.items()} for key, shape in stored.items()}


def check(events: Iterable[dict[str, Any]]) -> None:
    """Fails on a break of the rule; records new types and fields when asked to."""
    recorded = load()
    current = shapes_of(events)
    if os.environ.get("PAYRAIL_RECORD_EVENT_SHAPES") == "1":
        for key, shape in current.items():
            merged = recorded.setdefault(key, {})
            for path, kinds in shape.items():
                merged.setdefault(path, set()).update(kinds)
        SHAPES.write_text(
            json.dumps(
                {
                    k: {p: sorted(v) for p, v in sorted(s.items())}
                    for k, s in sorted(recorded.items())
                },
                indent=1,
            )
            + "\n"
        )
        recorded = load()
    problems = breaks(recorded, current)
    assert not problems, "events break the compatibility rule (docs/events.md):\n" + "\n".join(
        problems
    )
