"""A sandbox PSP on payrail's own clock, so that both agree on what day it is, and a
merchant's connector account at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.api.context import Services
from payrail.clock import ManualClock
from payrail.connectors.accounts.service import Connectors
from payrail.connectors.sandbox import SandboxConfig
from payrail.connectors.sandbox.server import run_sandbox
from tests.connectors.accounts.helpers import SECRET, bearer, create_account
from tests.vaults import fixed_vault


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 1, 9, tzinfo=UTC))


@pytest.fixture
def psp_url(clock: ManualClock) -> Iterator[str]:
    """A sandbox on payrail's clock, so that both agree on what day it is."""
    with run_sandbox(SandboxConfig(secret=SECRET), clock, grace_seconds=1) as url:
        yield url


@pytest.fixture
async def psp(psp_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=psp_url, headers=bearer(SECRET)) as http:
        yield http


@pytest.fixture
async def services(pool: AsyncConnectionPool, clock: ManualClock) -> AsyncIterator[Services]:
    services = Services(pool=pool, clock=clock, vault=fixed_vault(), connectors=Connectors())
    yield services
    await services.connectors.aclose()


@pytest.fixture
async def connector(client: httpx.AsyncClient, auth: dict[str, str], psp_url: str) -> str:
    account = await create_account(client, auth, base_url=psp_url, currencies=[])
    return str(account["id"])
