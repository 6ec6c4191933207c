"""A sandbox PSP, a merchant's account at it, and the requests payments tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

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

Json = dict[str, Any]

# How long payrail waits for the sandbox, and how long a timeout fault hangs there.
TIMEOUT = 1.0
HANG = 2.0


@pytest.fixture(scope="module")
def psp_url() -> Iterator[str]:
    config = SandboxConfig(secret=SECRET, hang_seconds=HANG)
    with run_sandbox(config, ManualClock(), grace_seconds=1) as url:
        yield url


@pytest.fixture
async def psp(psp_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The sandbox's control and record endpoints; faults are off when a test starts."""
    async with httpx.AsyncClient(base_url=psp_url, headers=bearer(SECRET)) as http:
        await http.post("/sandbox/faults", json={"rate": 0, "seed": 0, "hang_seconds": HANG})
        yield http


@pytest.fixture
async def services(pool: AsyncConnectionPool, clock: ManualClock) -> AsyncIterator[Services]:
    services = Services(
        pool=pool, clock=clock, vault=fixed_vault(), connectors=Connectors(timeout=TIMEOUT)
    )
    yield services
    await services.connectors.aclose()


@pytest.fixture
async def account(client: httpx.AsyncClient, auth: dict[str, str], psp_url: str) -> Json:
    return await create_account(client, auth, base_url=psp_url, currencies=[])


async def charged(psp: httpx.AsyncClient, charge_ids: list[str]) -> dict[str, list[Json]]:
    """What the sandbox made for each of these charges (its `reference`)."""
    record = (await psp.get("/sandbox/record")).json()
    found: dict[str, list[Json]] = {c: [] for c in charge_ids}
    for payment in record["payments"]:
        if payment["reference"] in found:
            found[payment["reference"]].append(payment)
    return found
