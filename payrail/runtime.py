"""Where the database comes from, and `payrail up`."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from contextlib import ExitStack, asynccontextmanager, contextmanager, suppress
from types import FrameType
from typing import Any

import uvicorn
from rich.console import Console

from payrail.api.app import create_app
from payrail.api.context import Services
from payrail.billing.engine import Engine
from payrail.clock import Clock, SystemClock
from payrail.config import Settings
from payrail.db.embedded import EmbeddedPostgres
from payrail.db.migrate import upgrade
from payrail.db.pool import open_pool
from payrail.events import consumers, relay
from payrail.events.pglog import PostgresLog
from payrail.events.transport import Transport
from payrail.events.transports import open_transport
from payrail.events.webhooks import delivery
from payrail.events.webhooks.delivery import DeliveryOptions
from payrail.events.webhooks.service import CONSUMER as WEBHOOKS
from payrail.payments import janitor
from payrail.recon import worker as recon_worker
from payrail.vault.envelope import Vault
from payrail.vault.keyring import Keyring

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


@contextmanager
def serve_in_thread(
    url: str,
    clock: Clock,
    vault: Vault,
    *,
    max_connections: int = 20,
    workers: bool = False,
    webhooks_allow_private: bool = False,
) -> Iterator[str]:
    """The API on a free loopback port, served from a thread of this process: for tests
    over real HTTP and for `payrail demo` when no platform is running. With `workers`,
    the background workers run beside it, as under `payrail up`."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    servers: list[uvicorn.Server] = []

    async def serve() -> None:
        pool = await open_pool(url, min_size=2, max_size=max_connections)
        try:
            async with pool.connection() as conn:
                await vault.prepare(conn, clock.now())
            services = Services(pool=pool, clock=clock, vault=vault)
            config = uvicorn.Config(
                create_app(services),
                host="127.0.0.1",
                port=port,
                log_level="warning",
                log_config=None,  # uvicorn's records go through our masking handlers
                lifespan="off",
                backlog=1024,
            )
            servers.append(uvicorn.Server(config))
            transport = PostgresLog(pool, clock)
            async with background(
                services,
                transport,
                ROLES if workers else (),
                webhooks_allow_private=webhooks_allow_private,
            ):
                await servers[0].serve()
        finally:
            await pool.close()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (servers and servers[0].started):
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        servers[0].should_exit = True
        thread.join(timeout=30)


async def _serve(url: str, settings: Settings) -> None:
    pool = await open_pool(url)
    try:
        clock = SystemClock()
        vault = Vault(Keyring.from_env(settings.data_dir))
        async with pool.connection() as conn:
            await vault.prepare(conn, clock.now())
        services = Services(pool=pool, clock=clock, vault=vault)
        config = uvicorn.Config(
            create_app(services),
            host=settings.host,
            port=settings.port,
            log_level="warning",
            log_config=None,  # uvicorn's records go through our masking handlers
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
        transport = open_transport(settings.kafka_bootstrap_servers, pool, clock)
        console.print(f"events: {_where_events_go(settings)}")
        async with background(
            services, transport, webhooks_allow_private=settings.webhooks_allow_private
        ):
            await server.serve()
    finally:
        await pool.close()


# The background roles: `payrail up` runs them all, `payrail worker ROLE` one of them.
ROLES = ("janitor", "relay", "webhooks", "billing", "recon")


@asynccontextmanager
async def background(
    services: Services,
    transport: Transport,
    roles: Sequence[str] = ROLES,
    *,
    webhooks_allow_private: bool = False,
) -> AsyncIterator[None]:
    """The workers of `roles`, beside whatever runs in the block; stopped, and the
    connectors closed, when the block ends. The webhooks role is two loops: the consumer
    that turns events into deliveries, and the deliveries' sender."""
    stop = asyncio.Event()
    pool, clock = services.pool, services.clock
    delivery_options = DeliveryOptions(allow_private=webhooks_allow_private)
    runners: dict[str, list[Callable[[], Coroutine[Any, Any, None]]]] = {
        "janitor": [lambda: janitor.run(services, stop)],
        "relay": [lambda: relay.run(relay.new_relay(pool, transport, clock), stop)],
        "webhooks": [
            lambda: consumers.run(pool, transport, WEBHOOKS, clock, stop),
            lambda: delivery.run(pool, clock, services.vault, stop, delivery_options),
        ],
        "billing": [lambda: Engine(pool, services).run(stop)],
        "recon": [lambda: recon_worker.run(services, stop)],
    }
    tasks = [asyncio.create_task(start()) for role in roles for start in runners[role]]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await services.connectors.aclose()


@contextmanager
def _sandbox(settings: Settings) -> Iterator[str]:
    # Imported here: only `up` runs the sandbox.
    from payrail.connectors.sandbox import SandboxConfig
    from payrail.connectors.sandbox.server import run_sandbox

    with run_sandbox(
        SandboxConfig(), SystemClock(), host=settings.host, port=settings.sandbox_port
    ) as url:
        yield url


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _where_events_go(settings: Settings) -> str:
    if settings.kafka_bootstrap_servers:
        return f"Kafka at {settings.kafka_bootstrap_servers}"
    return "the event log in PostgreSQL (set PAYRAIL_KAFKA_BOOTSTRAP_SERVERS for Kafka)"


async def _worker(url: str, settings: Settings, role: str) -> None:
    pool = await open_pool(url, min_size=1, max_size=4)
    try:
        clock = SystemClock()
        services = Services(
            pool=pool, clock=clock, vault=Vault(Keyring.from_env(settings.data_dir))
        )
        transport = open_transport(settings.kafka_bootstrap_servers, pool, clock)
        async with background(
            services, transport, [role], webhooks_allow_private=settings.webhooks_allow_private
        ):
            await asyncio.Event().wait()  # until Ctrl-C or SIGTERM
    finally:
        await pool.close()


def worker(settings: Settings, role: str) -> None:
    """`payrail worker ROLE`: one background role alone, for a fleet; any number of
    processes of a role share its work through leases (or Kafka's consumer groups)."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with database(settings) as url:
        if role not in ("janitor", "billing", "recon"):
            console.print(f"events: {_where_events_go(settings)}")
        console.print(f"{role} running; Ctrl-C stops it")
        with suppress(KeyboardInterrupt):
            asyncio.run(_worker(url, settings, role))
    console.print(f"{role} stopped")


@contextmanager
def _bundled_kafka(settings: Settings) -> Iterator[Settings]:
    """`payrail up --kafka`: the bundled Tansu broker on `kafka_port`, and settings that
    send the events to it. It keeps records in memory: a restart empties it, while the
    outbox keeps every event (docs/kafka.md)."""
    from payrail.events.broker import TansuBroker

    broker = TansuBroker(
        port=settings.kafka_port, host=settings.host, log_path=settings.data_dir / "tansu.log"
    )
    servers = broker.start()
    console.print(
        f"Kafka (bundled Tansu) on {servers}: topics payrail.<aggregate>s, for example "
        "payrail.payment_intents; any Kafka client can watch them"
    )
    try:
        yield dataclasses.replace(settings, kafka_bootstrap_servers=servers)
    finally:
        broker.stop()


def up(settings: Settings, *, kafka: bool = False) -> None:
    # uvicorn re-raises the signal that stopped it; make SIGTERM (and a closed terminal's
    # SIGHUP) unwind like Ctrl-C so the embedded PostgreSQL and the bundled broker are
    # stopped cleanly either way.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    signal.signal(signal.SIGHUP, _exit_on_sigterm)
    where = (
        "external PostgreSQL"
        if settings.database_url
        else f"embedded PostgreSQL in {settings.data_dir}"
    )
    console.print(f"database: {where}")
    try:
        with ExitStack() as stack:
            url = stack.enter_context(database(settings))
            sandbox_url = stack.enter_context(_sandbox(settings))
            if kafka:
                settings = stack.enter_context(_bundled_kafka(settings))
            upgrade(url)
            console.print(f"sandbox PSP on {sandbox_url} (docs/sandbox-psp.md)")
            asyncio.run(_serve(url, settings))
    finally:
        console.print("payrail stopped")
