"""Where the database comes from, and `payrail up`."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn
from rich.console import Console

from payrail.api.app import create_app
from payrail.api.context import Services
from payrail.clock import SystemClock
from payrail.config import Settings
from payrail.db.embedded import EmbeddedPostgres
from payrail.db.migrate import upgrade
from payrail.db.pool import open_pool

console = Console(stderr=True)


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The external database when configured; else the embedded one, started if it is not
    already running (say under `payrail up` in another terminal) and stopped afterwards
    only if this process started it."""
    if settings.database_url:
        yield settings.database_url
        return
    server = EmbeddedPostgres(settings.data_dir)
    url = server.start()
    try:
        yield url
    finally:
        if server.started_here:
            server.stop()


async def _serve(url: str, settings: Settings) -> None:
    pool = await open_pool(url)
    try:
        app = create_app(Services(pool=pool, clock=SystemClock()))
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            loop="uvloop",
            http="httptools",
            lifespan="off",
        )
        server = uvicorn.Server(config)
        console.print(f"payrail is up: API on http://{settings.host}:{settings.port}")
        console.print(
            "Create a merchant and key from another terminal: "
            "uv run payrail merchants create 'My Shop'"
        )
        await server.serve()
    finally:
        await pool.close()


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def up(settings: Settings) -> None:
    # uvicorn re-raises the signal that stopped it; make SIGTERM unwind like Ctrl-C so the
    # embedded PostgreSQL is stopped cleanly either way.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    where = (
        "external PostgreSQL"
        if settings.database_url
        else f"embedded PostgreSQL in {settings.data_dir}"
    )
    console.print(f"database: {where}")
    try:
        with database(settings) as url:
            upgrade(url)
            asyncio.run(_serve(url, settings))
    finally:
        console.print("payrail stopped")
