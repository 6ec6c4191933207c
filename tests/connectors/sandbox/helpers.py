"""Requests a client of the sandbox PSP sends, shortened for tests."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

SECRET = "sbx_sk_tests"
AUTH = {"Authorization": f"Bearer {SECRET}"}
VISA = "4242424242424242"


def new_key() -> str:
    return f"key_{uuid.uuid4().hex}"


def new_reference() -> str:
    return f"pi_{uuid.uuid4().hex}"


def card(number: Any = VISA, **overrides: Any) -> dict[str, Any]:
    return {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123", **overrides}


def payment_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "amount": 1000,
        "currency": "usd",
        "capture": True,
        "card": card(),
        "reference": new_reference(),
        "metadata": {},
    }
    body.update(overrides)
    return body


async def post(
    client: httpx.AsyncClient,
    path: str,
    body: Any = None,
    *,
    key: str | None = None,
    fault: str | None = None,
    **kwargs: Any,
) -> httpx.Response:
    headers = dict(kwargs.pop("headers", {}))
    if key is not None:
        headers["Idempotency-Key"] = key
    if fault is not None:
        headers["Sandbox-Fault"] = fault
    if body is None:
        return await client.post(path, headers=headers, **kwargs)
    return await client.post(path, json=body, headers=headers, **kwargs)


async def pay(
    client: httpx.AsyncClient, *, key: str | None = None, fault: str | None = None, **fields: Any
) -> httpx.Response:
    return await post(
        client, "/v1/payments", payment_body(**fields), key=key or new_key(), fault=fault
    )


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def payments_by_key(client: httpx.AsyncClient, key: str) -> list[dict[str, Any]]:
    reply = await client.get("/v1/payments", params={"idempotency_key": key})
    data: list[dict[str, Any]] = ok(reply)["data"]
    return data


async def refunds_by_key(client: httpx.AsyncClient, key: str) -> list[dict[str, Any]]:
    reply = await client.get("/v1/refunds", params={"idempotency_key": key})
    data: list[dict[str, Any]] = ok(reply)["data"]
    return data


async def record(client: httpx.AsyncClient) -> dict[str, list[dict[str, Any]]]:
    body: dict[str, list[dict[str, Any]]] = ok(await client.get("/sandbox/record"))
    return body


async def recorded_payments(client: httpx.AsyncClient, key: str) -> list[dict[str, Any]]:
    """Every payment the sandbox ever made under this Idempotency-Key."""
    return [p for p in (await record(client))["payments"] if p["idempotency_key"] == key]
