"""A sandbox PSP with a merchant's account at it, a catalog, customers with saved cards,
and a billing engine running on the test's clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.api.context import Services
from payrail.billing.engine import Engine, EngineOptions
from tests.payments.conftest import account, psp, psp_url, services

__all__ = ["account", "psp", "psp_url", "services"]

Json = dict[str, Any]


@dataclass
class Api:
    http: httpx.AsyncClient
    headers: dict[str, str]

    async def post(
        self, path: str, body: Json | None = None, status: int = 200, **headers: str
    ) -> Json:
        reply = await self.http.post(path, json=body or {}, headers={**self.headers, **headers})
        assert reply.status_code == status, reply.text
        found: Json = reply.json()
        return found

    async def get(self, path: str, status: int = 200, **params: Any) -> Json:
        reply = await self.http.get(path, params=params, headers=self.headers)
        assert reply.status_code == status, reply.text
        found: Json = reply.json()
        return found

    async def delete(self, path: str, status: int = 200) -> Json:
        reply = await self.http.delete(path, headers=self.headers)
        assert reply.status_code == status, reply.text
        found: Json = reply.json()
        return found


@pytest.fixture
def api(client: httpx.AsyncClient, auth: dict[str, str], account: Json) -> Api:
    """The merchant's API, with a sandbox connector account to charge through."""
    return Api(client, auth)


@pytest.fixture
def engine(pool: AsyncConnectionPool, services: Services) -> Engine:
    return Engine(pool, services, EngineOptions(batch=50, lease=timedelta(seconds=30)))


async def monthly_price(api: Api, amount: int = 1000, currency: str = "usd", **more: Any) -> Json:
    product = await api.post("/v1/products", {"name": "Premium"})
    return await api.post(
        "/v1/prices",
        {
            "product": product["id"],
            "currency": currency,
            "unit_amount": amount,
            "recurring": {"interval": "month", **more},
        },
    )


async def customer_with_card(api: Api, card: str = "pm_card_visa", **more: Any) -> Json:
    return await api.post(
        "/v1/customers",
        {
            "email": "jenny@example.com",
            "payment_method": card,
            "invoice_settings": {"default_payment_method": card},
            **more,
        },
    )
