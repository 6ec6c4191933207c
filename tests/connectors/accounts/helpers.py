"""Requests and row counts shared by the connector accounts tests."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import httpx
from psycopg_pool import AsyncConnectionPool

Json = dict[str, Any]


ACCOUNTS = "/v1/connector_accounts"
RULES = "/v1/routing_rules"
FORM = "application/x-www-form-urlencoded"
SECRET = "sbx_sk_merchant_secret_7Qx9"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def form_pairs(data: Json, prefix: str = "") -> list[tuple[str, str]]:
    """A nested body in Stripe's bracket notation: {"credentials": {"secret": s}} ->
    credentials[secret]=s, {"currencies": ["usd"]} -> currencies[0]=usd."""
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}[{key}]" if prefix else key
        if isinstance(value, dict):
            pairs.extend(form_pairs(value, name))
        elif isinstance(value, list):
            pairs.extend(form_pairs({str(i): v for i, v in enumerate(value)}, name))
        elif isinstance(value, bool):
            pairs.append((name, "true" if value else "false"))
        else:
            pairs.append((name, str(value)))
    return pairs


async def send(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    path: str,
    data: Json,
    *,
    as_form: bool = False,
    key: str | None = None,
) -> httpx.Response:
    extra = {"Idempotency-Key": key} if key else {}
    if as_form:
        return await client.post(
            path,
            content=urlencode(form_pairs(data)).encode(),
            headers={**headers, **extra, "Content-Type": FORM},
        )
    return await client.post(path, json=data, headers={**headers, **extra})


async def ok(reply: httpx.Response) -> Json:
    assert reply.status_code == 200, reply.text
    obj: Json = reply.json()
    return obj


def sandbox_account(base_url: str = "http://127.0.0.1:9", **extra: Any) -> Json:
    return {
        "provider": "sandbox",
        "name": "Sandbox EU",
        "credentials": {"secret": SECRET},
        "base_url": base_url,
        **extra,
    }


async def create_account(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> Json:
    return await ok(await send(client, headers, ACCOUNTS, sandbox_account(**fields)))


async def counts(pool: AsyncConnectionPool) -> dict[str, int]:
    """What a refused request must leave as it was."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM connector_accounts),"
            " (SELECT count(*) FROM routing_rules), (SELECT count(*) FROM events)"
        )
        row = await cur.fetchone()
    assert row is not None
    return {"connector_accounts": row[0], "routing_rules": row[1], "events": row[2]}


async def events_of(pool: AsyncConnectionPool, aggregate_id: str) -> list[tuple[str, Json]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT type, payload FROM events WHERE aggregate_id = %s ORDER BY seq",
            (aggregate_id,),
        )
        return [(row[0], row[1]) for row in await cur.fetchall()]
