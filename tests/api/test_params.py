from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from payrail.api.params import (
    MAX_DEPTH,
    ParamError,
    decode_body,
    decode_form,
    decode_json,
    decode_query,
    flatten_param_path,
)

# --- Stripe-SDK-style encoder used by the round-trip properties -------------


def _flatten(prefix: str, value: object) -> list[tuple[str, str]]:
    """Encode like stripe-python: dicts as `k[sub]`, lists as `k[0]`, `k[1]`..."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _flatten(f"{prefix}[{k}]", v)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _flatten(f"{prefix}[{i}]", v)]
    assert isinstance(value, str)
    return [(prefix, value)]


def encode(params: dict[str, object], *, safe_brackets: bool = False) -> str:
    pairs = [p for k, v in params.items() for p in _flatten(k, v)]
    # The SDK percent-encodes brackets; hand-written clients (curl -d) often don't.
    return urlencode(pairs, safe="[]" if safe_brackets else "", quote_via=quote)


_keys = st.from_regex(r"[a-z_]{1,8}", fullmatch=True)
# Surrogates can't be UTF-8 encoded, so no client could send them.
# NUL is refused by the decoder (PostgreSQL text cannot hold it); tested on its own below.
_leaf = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=10
)


def _values(depth: int) -> st.SearchStrategy[object]:
    if depth == 0:
        return _leaf
    child = _values(depth - 1)
    return st.one_of(
        _leaf,
        st.lists(child, min_size=1, max_size=3),  # empty containers can't be encoded
        st.dictionaries(_keys, child, min_size=1, max_size=3),
    )


_params = st.dictionaries(_keys, _values(4), max_size=4)


@given(_params, st.booleans())
def test_form_round_trip(params: dict[str, object], safe_brackets: bool) -> None:
    body = encode(params, safe_brackets=safe_brackets).encode()
    assert decode_form(body) == params


@given(_params)
def test_query_round_trip(params: dict[str, object]) -> None:
    assert decode_query(encode(params)) == params


# --- Examples ----------------------------------------------------------------


def test_stripe_examples() -> None:
    body = (
        b"metadata[order_id]=42&metadata[note]=&items[0][price]=p1&items[1][price]=p2"
        b"&expand[]=a&expand[]=b&entries[0][amount]=5&amount=100"
    )
    assert decode_form(body) == {
        "metadata": {"order_id": "42", "note": ""},
        "items": [{"price": "p1"}, {"price": "p2"}],
        "expand": ["a", "b"],
        "entries": [{"amount": "5"}],
        "amount": "100",
    }


def test_indexes_any_order() -> None:
    assert decode_form(b"items[1][price]=b&items[0][price]=a") == {
        "items": [{"price": "a"}, {"price": "b"}]
    }
    # 10 sorts before 2 as a string; ordering must be numeric.
    body = "&".join(f"x[{i}]={i}" for i in reversed(range(12))).encode()
    assert decode_form(body) == {"x": [str(i) for i in range(12)]}


def test_query_filters_and_plus() -> None:
    assert decode_query("created[gte]=1&created[lt]=2&expand[]=data.customer&q=a+b%2Bc") == {
        "created": {"gte": "1", "lt": "2"},
        "expand": ["data.customer"],
        "q": "a b+c",
    }


def test_non_canonical_index_is_a_key() -> None:
    assert decode_form(b"a[01]=x") == {"a": {"01": "x"}}
    assert decode_form(b"a[0]=x&a[b]=y") == {"a": {"0": "x", "b": "y"}}


def test_top_level_numeric_keys_stay_dict() -> None:
    assert decode_form(b"0=a") == {"0": "a"}


def test_max_depth_allowed() -> None:
    key = "a" + "[b]" * MAX_DEPTH
    result: object = decode_form(f"{key}=v".encode())
    for _ in range(MAX_DEPTH + 1):
        assert isinstance(result, dict)
        (result,) = result.values()
    assert result == "v"


def test_empty_input() -> None:
    assert decode_form(b"") == {}
    assert decode_query("") == {}


# --- Errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"items[0][price]=a&items[2][price]=c", "items[2]"),
        (b"items[1]=a", "items[1]"),
        (b"items[0][x][0]=a&items[0][x][3]=b", "items[0][x][3]"),
        (b"a=1&a[b]=2", "a"),
        (b"a[b]=2&a=1", "a"),
        (b"a[b]=1&a[b][c]=2", "a[b]"),
        (b"a=1&a[]=2", "a"),
        (b"a=1&a=2", "a"),
        (b"a[b]=1&a[b]=2", "a[b]"),
        (b"items[0]=1&items[0]=2", "items[0]"),
        (b"a[]=1&a[0]=2", "a"),
        (b"a[0]=1&a[]=2", "a"),
        (b"a[b=1", "a[b"),
        (b"a]=1", "a]"),
        (b"[x]=1", "[x]"),
        (b"a[b]c=1", "a[b]c"),
        (b"a[b[c]]=1", "a[b[c]]"),
        (b"a[][b]=1", "a[][b]"),
        (b"=1", ""),
        ("a" + "[b]" * (MAX_DEPTH + 1) + "=1", "a" + "[b]" * (MAX_DEPTH + 1)),
        (b"a=1&&b=2", ""),
        (b"flag", ""),
        (b"a=%ff", ""),
        (b"a=\xff", ""),
    ],
)
def test_form_errors_name_param(body: bytes | str, param: str) -> None:
    raw = body.encode() if isinstance(body, str) else body
    with pytest.raises(ParamError) as info:
        decode_form(raw)
    assert info.value.param == param
    assert info.value.message
    assert isinstance(info.value, ValueError)


def test_query_errors_name_param() -> None:
    with pytest.raises(ParamError) as info:
        decode_query("expand[0]=a&expand[2]=b")
    assert info.value.param == "expand[2]"


# --- JSON ----------------------------------------------------------------------


def test_json() -> None:
    assert decode_json(b'{"amount": 100, "x": 1.5, "items": [{"price": "p"}]}') == {
        "amount": 100,
        "x": 1.5,
        "items": [{"price": "p"}],
    }


@pytest.mark.parametrize("body", [b"[1]", b'"s"', b"null", b"3"])
def test_json_top_level_must_be_object(body: bytes) -> None:
    with pytest.raises(ParamError) as info:
        decode_json(body)
    assert info.value.param == ""


def test_json_invalid_includes_position() -> None:
    with pytest.raises(ParamError) as info:
        decode_json(b'{"a": 1,}')
    assert info.value.param == ""
    assert "line 1 column" in info.value.message


@given(_params)
def test_json_round_trip(params: dict[str, object]) -> None:
    assert decode_json(orjson.dumps(params)) == params


# --- Content-Type dispatch -------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=utf-8",
        "Application/X-WWW-Form-Urlencoded",
        None,
        "",
    ],
)
def test_dispatch_form(content_type: str | None) -> None:
    assert decode_body(content_type, b"a[b]=1") == {"a": {"b": "1"}}


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=UTF-8"])
def test_dispatch_json(content_type: str) -> None:
    assert decode_body(content_type, b'{"a": {"b": 1}}') == {"a": {"b": 1}}


@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain"])
def test_dispatch_empty_body(content_type: str | None) -> None:
    assert decode_body(content_type, b"") == {}


@pytest.mark.parametrize("content_type", ["text/plain", "multipart/form-data; boundary=x"])
def test_dispatch_unsupported(content_type: str) -> None:
    with pytest.raises(ParamError) as info:
        decode_body(content_type, b"a=1")
    assert info.value.param == ""
    assert "Unsupported Content-Type" in info.value.message


def test_dispatch_errors_propagate() -> None:
    with pytest.raises(ParamError) as info:
        decode_body("application/json", b"{")
    assert info.value.param == ""
    with pytest.raises(ParamError) as info:
        decode_body(None, b"a=1&a=2")
    assert info.value.param == "a"


# --- flatten_param_path ----------------------------------------------------------


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        (("amount",), "amount"),
        (("entries", 1, "amount"), "entries[1][amount]"),
        (("items", 0, "price"), "items[0][price]"),
        (("metadata", "order_id"), "metadata[order_id]"),
        ((), ""),
    ],
)
def test_flatten_param_path(loc: tuple[str | int, ...], expected: str) -> None:
    assert flatten_param_path(loc) == expected


@pytest.mark.parametrize(
    ("decode", "body", "param"),
    [
        (decode_query, "a[b]=x%00y", "a[b]"),
        (decode_query, "a%00=1", "a"),
        (decode_json, b'{"a": {"b": ["ok", "x\\u0000"]}}', "a[b][1]"),
        (decode_json, b'{"k\\u0000": 1}', "k"),
    ],
)
def test_nul_is_refused_naming_the_param(
    decode: Callable[[Any], dict[str, object]], body: Any, param: str
) -> None:
    with pytest.raises(ParamError) as caught:
        decode(body)
    assert caught.value.param == param
