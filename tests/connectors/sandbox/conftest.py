"""A sandbox PSP over real HTTP, shared by the package's tests (each uses its own keys and
references), on a hand-moved clock and with short hangs so timeout faults stay fast."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from payrail.clock import ManualClock
from payrail.connectors.sandbox import SandboxConfig
from payrail.connectors.sandbox.server import run_sandbox
from tests.connectors.sandbox.helpers import AUTH, SECRET

HANG_SECONDS = 0.2


@pytest.fixture(scope="package")
def psp_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="package")
def psp_url(psp_clock: ManualClock) -> Iterator[str]:
    config = SandboxConfig(secret=SECRET, seed=0, fault_rate=0.0, hang_seconds=HANG_SECONDS)
    with run_sandbox(config, psp_clock, grace_seconds=1) as url:
        yield url


@pytest.fixture
async def psp(psp_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=psp_url, headers=AUTH, timeout=10) as client:
        yield client
