"""Request-parameter decoding for the Stripe-compatible API.

The Stripe SDKs send ``application/x-www-form-urlencoded`` bodies (and GET query
strings) with bracket nesting: ``metadata[k]=v``, ``items[0][price]=p``,
``expand[]=x``. Other clients send JSON. Both decode to the same plain
``dict``/``list``/``str`` tree here; type coercion is left to pydantic.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

import orjson

__all__ = [
    "MAX_DEPTH",
    "ParamError",
    "decode_body",
    "decode_form",
    "decode_json",
    "decode_query",
    "flatten_param_path",
]

# Bracket segments allowed after the base name; bounds recursion and work per key.
MAX_DEPTH = 10

_KEY_RE = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_SEGMENT_RE = re.compile(r"\[([^\[\]]*)\]")
# Only canonical decimals are list indexes, so `[01]` can't alias `[1]`.
_INDEX_RE = re.compile(r"0|[1-9][0-9]*")

# Intermediate tree: named/indexed children live in dicts, `name[]=v` in lists.
_Tree = dict[str, "_Tree | list[str] | str"]


class ParamError(ValueError):
    """A request parameter could not be decoded; `param` uses bracket notation."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


def flatten_param_path(loc: tuple[str | int, ...]) -> str:
    """("entries", 1, "amount") -> "entries[1][amount]"."""
    if not loc:
        return ""
    return str(loc[0]) + "".join(f"[{part}]" for part in loc[1:])


def _split_key(key: str) -> list[str]:
    """`items[0][price]` -> ["items", "0", "price"]; rejects malformed keys."""
    match = _KEY_RE.fullmatch(key)
    if match is None:
        raise ParamError(key, f"Malformed parameter name: {key!r}")
    segments = _SEGMENT_RE.findall(match.group(2))
    if len(segments) > MAX_DEPTH:
        raise ParamError(key, f"Parameter {key} is nested deeper than {MAX_DEPTH} levels")
    # `[]` only makes sense as a terminal "append a scalar" marker.
    if "" in segments[:-1]:
        raise ParamError(key, f"Malformed parameter name: {key!r} (`[]` must come last)")
    return [match.group(1), *segments]


def _insert(root: _Tree, key: str, value: str) -> None:
    names = _split_key(key)
    node = root
    path = names[0]
    for i, name in enumerate(names):
        nxt = names[i + 1] if i + 1 < len(names) else None
        existing = node.get(name)
        if nxt is None:
            if isinstance(existing, str):
                raise ParamError(path, f"Duplicate parameter {path}")
            if existing is not None:
                raise ParamError(path, f"Parameter {path} is used both as a value and a container")
            node[name] = value
            return
        if nxt == "":  # `name[]=value`: append to a list of scalars
            if existing is None:
                existing = node[name] = []
            if isinstance(existing, str):
                raise ParamError(path, f"Parameter {path} is used both as a value and a container")
            if isinstance(existing, dict):
                raise ParamError(path, f"Parameter {path} mixes `[]` with other forms")
            existing.append(value)
            return
        if existing is None:
            existing = node[name] = {}
        if isinstance(existing, str):
            raise ParamError(path, f"Parameter {path} is used both as a value and a container")
        if isinstance(existing, list):
            raise ParamError(path, f"Parameter {path} mixes `[]` with other forms")
        node = existing
        path = f"{path}[{nxt}]"


def _finish(node: _Tree | list[str] | str, path: str) -> object:
    """Convert all-integer-keyed dicts to lists, checking indexes are 0..n-1."""
    if isinstance(node, str | list):
        return node
    if all(_INDEX_RE.fullmatch(k) for k in node):
        items = sorted((int(k), v) for k, v in node.items())
        for expected, (index, _) in enumerate(items):
            if index != expected:
                raise ParamError(f"{path}[{index}]", f"List index gap: expected {path}[{expected}]")
        return [_finish(v, f"{path}[{i}]") for i, v in items]
    return {k: _finish(v, f"{path}[{k}]") for k, v in node.items()}


def decode_query(query_string: str) -> dict[str, object]:
    """Decode a bracket-nested urlencoded string (query string or form body)."""
    try:
        pairs = parse_qsl(
            query_string,
            keep_blank_values=True,
            strict_parsing=True,
            encoding="utf-8",
            errors="strict",
        )
    except ValueError as exc:  # includes UnicodeDecodeError from bad %-escapes
        raise ParamError("", f"Malformed urlencoded parameters: {exc}") from exc
    root: _Tree = {}
    for key, value in pairs:
        if "\x00" in key or "\x00" in value:
            raise ParamError(key.replace("\x00", ""), _NUL_MESSAGE)
        _insert(root, key, value)
    # The top level stays a dict even if every key looks like an index.
    return {k: _finish(v, k) for k, v in root.items()}


def decode_form(body: bytes) -> dict[str, object]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParamError("", f"Request body is not valid UTF-8: {exc}") from exc
    return decode_query(text)


def decode_json(body: bytes) -> dict[str, object]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:  # message carries line/column/char position
        raise ParamError("", f"Invalid JSON body: {exc}") from exc
    if not isinstance(data, dict):
        raise ParamError("", "JSON body must be an object")
    _reject_nul(data, "")
    return data


# PostgreSQL text cannot hold NUL, and no legitimate parameter contains one.
_NUL_MESSAGE = "Parameters must not contain NUL (\\u0000) characters."


def _reject_nul(value: object, path: str) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ParamError(path, _NUL_MESSAGE)
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}[{key}]" if path else str(key)
            if "\x00" in key:
                raise ParamError(child.replace("\x00", ""), _NUL_MESSAGE)
            _reject_nul(item, child)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _reject_nul(item, f"{path}[{index}]")


def decode_body(content_type: str | None, body: bytes) -> dict[str, object]:
    """Dispatch on media type; a missing Content-Type is treated as form data."""
    if not body:
        return {}
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type == "application/json":
        return decode_json(body)
    if media_type in ("", "application/x-www-form-urlencoded"):
        return decode_form(body)
    raise ParamError("", f"Unsupported Content-Type {content_type!r}")
