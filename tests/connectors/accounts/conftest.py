"""The API with the connector accounts router, whether or not payrail.api.app includes it
yet."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from payrail.api.app import create_app
from payrail.api.context import Services
from payrail.connectors.accounts.endpoints import router
from tests.connectors.accounts.helpers import ACCOUNTS
from tests.routes import api_routes


def app_with_accounts(services: Services) -> FastAPI:
    app = create_app(services)
    if not any(path.startswith(ACCOUNTS) for _, path in api_routes(app.routes)):
        app.include_router(router)
    return app


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app_with_accounts(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://payrail.test") as client:
        yield client
