"""A billing worker for test_billing_crash.py, in a process of its own so that the test
can SIGKILL it: `payrail worker billing` and `payrail worker janitor` in one, on the real
clock, with the tests' vault key and a short lease (a killed worker's rows come back to
the others within seconds).

The test forks these from a multiprocessing forkserver that has imported this module
(`run` is the target), so that a replacement starts in milliseconds, not in the seconds
Python takes to import payrail. A worker creates its `ready` file once connected, stops
cleanly on SIGTERM, and stops by itself when its parent (the forkserver) goes away.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

from payrail.api.context import Services
from payrail.billing.engine import Engine, EngineOptions
from payrail.clock import SystemClock
from payrail.connectors.accounts.service import Connectors
from payrail.db.pool import open_pool
from payrail.payments import janitor
from tests.vaults import fixed_vault

LEASE = timedelta(seconds=2)
BATCH = 10


async def _orphaned(stop: asyncio.Event) -> None:
    parent = os.getppid()
    while not stop.is_set():
        if os.getppid() != parent:
            stop.set()
        await asyncio.sleep(1)


async def _main(url: str, ready: Path) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    pool = await open_pool(url, min_size=1, max_size=4)
    services = Services(
        pool=pool, clock=SystemClock(), vault=fixed_vault(), connectors=Connectors()
    )
    engine = Engine(pool, services, EngineOptions(batch=BATCH, lease=LEASE, idle_seconds=0.2))
    ready.touch()  # noqa: ASYNC240 (once, before any work)
    try:
        await asyncio.gather(
            engine.run(stop), janitor.run(services, stop, interval=0.5), _orphaned(stop)
        )
    finally:
        await services.connectors.aclose()
        await pool.close()


def run(url: str, ready: str, log: str) -> None:
    """A forked worker's entry point: its output goes to `log`."""
    with open(log, "a", buffering=1) as out:  # line-buffered: a SIGKILL loses no line
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        sys.stdout = sys.stderr = out
        asyncio.run(_main(url, Path(ready)))
