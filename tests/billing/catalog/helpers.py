"""What the catalog's tests share: calls in JSON or Stripe's form encoding, and the
checks that a refused request changed nothing."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import httpx
from psycopg_pool import AsyncConnectionPool

Json = dict[str, Any]
Headers = dict[str, str]

PRODUCTS = "/v1/products"
PRICES = "/v1/prices"
FORM = "application/x-www-form-urlencoded"


def form_pairs(data: Json, prefix: str = "") -> list[tuple[str, str]]:
    """A nested body in Stripe's bracket notation: {"recurring": {"interval": v}} ->
    recurring[interval]=v; booleans as Stripe's SDKs write them."""
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}[{key}]" if prefix else key
        if isinstance(value, dict):
            pairs.extend(form_pairs(value, name))
        elif isinstance(value, bool):
            pairs.append((name, "true" if value else "false"))
        else:
            pairs.append((name, str(value)))
    return pairs


async def post(
    client: httpx.AsyncClient,
    path: str,
    headers: Headers,
    data: Json | None = None,
    *,
    as_form: bool = False,
) -> httpx.Response:
    if as_form:
        return await client.post(
            path,
            content=urlencode(form_pairs(data or {})).encode(),
            headers={**headers, "Content-Type": FORM},
        )
    return await client.post(path, json=data or {}, headers=headers)


async def get(client: httpx.AsyncClient, path: str, headers: Headers, **params: Any) -> Json:
    return ok(await client.get(path, headers=headers, params=params))


def ok(reply: httpx.Response) -> Json:
    assert reply.status_code == 200, reply.text
    obj: Json = reply.json()
    return obj


def assert_error(
    reply: httpx.Response, status: int, param: str | None, code: str | None = "parameter_invalid"
) -> str:
    """The error's message, once its status, type, param and code are as expected."""
    assert reply.status_code == status, reply.text
    error: Json = reply.json()["error"]
    assert error["type"] == "invalid_request_error", error
    assert error.get("param") == param, error
    assert error.get("code") == code, error
    message: str = error["message"]
    return message


def ids(page: Json) -> list[str]:
    return [obj["id"] for obj in page["data"]]


async def new_product(client: httpx.AsyncClient, headers: Headers, **data: Any) -> Json:
    return ok(await post(client, PRODUCTS, headers, {"name": "Basic", **data}))


async def new_price(client: httpx.AsyncClient, headers: Headers, **data: Any) -> Json:
    return ok(await post(client, PRICES, headers, {"currency": "usd", **data}))


async def catalog_state(pool: AsyncConnectionPool) -> tuple[Any, ...]:
    """Every product, price, event and stored idempotent reply: what "nothing changed"
    compares."""
    async with pool.connection() as conn:
        found = []
        for query in (
            "SELECT * FROM products ORDER BY seq",
            "SELECT * FROM prices ORDER BY seq",
            "SELECT type, aggregate_id FROM events ORDER BY seq",
        ):
            found.append(await (await conn.execute(query)).fetchall())
    return tuple(found)


async def event_types(pool: AsyncConnectionPool) -> list[tuple[str, str]]:
    """(type, aggregate id) of every event, oldest first."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT type, aggregate_id FROM events ORDER BY seq")
        return [(row[0], row[1]) for row in await cur.fetchall()]
