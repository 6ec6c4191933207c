"""`payrail bench payments`: confirmed payments/s end to end over HTTP, beside pgbench.

Every payment is one `POST /v1/payment_intents` with `confirm=true` and `pm_card_visa`,
as a merchant's server sends it: authentication, a test card stored in the vault, the
intent, the `sending` charge committed before the call, the call to the sandbox PSP over
HTTP, the answer recorded with its ledger postings (capture and fee) and outbox events.

Three kinds of process share the machine: the API (uvicorn with uvloop and httptools, as
many workers as asked), the sandbox PSP (its own process, no faults, no latency) and this
one, the load generator. The load generator speaks HTTP/1.1 over asyncio streams with a
keep-alive connection per client: a full HTTP client library would spend more CPU per
request than the server's share allows on a small machine.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import psycopg
import uvloop
from psycopg_pool import AsyncConnectionPool
from starlette.types import ASGIApp, Receive, Scope, Send

from payrail.api.app import create_app
from payrail.api.context import Services
from payrail.bench.harness import machine, pgbench_tps, throwaway_postgres
from payrail.clock import SystemClock
from payrail.connectors.sandbox import SandboxConfig
from payrail.connectors.sandbox.server import serve as serve_sandbox
from payrail.db.migrate import upgrade
from payrail.db.pool import open_pool
from payrail.ledger.verify import verify
from payrail.ops.logging import configure as configure_logging
from payrail.tenants.service import create_merchant
from payrail.vault.envelope import Vault
from payrail.vault.keyring import KEY_BYTES, Keyring

CLOCK = SystemClock()
SANDBOX_SECRET = "sbx_sk_bench"
BODY = orjson.dumps(
    {"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
)


# -- the API's worker processes ------------------------------------------------------------


class _Api:
    """The API under test as uvicorn's app factory returns it (`--factory`): each worker
    process opens its own pool at start-up (the lifespan) and builds the app on it. The
    database and the master key come from the environment the benchmark sets."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None
        self.pool: AsyncConnectionPool | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            assert self.app is not None
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                size = int(os.environ["PAYRAIL_BENCH_POOL"])
                url = os.environ["PAYRAIL_DATABASE_URL"]
                configure_logging(logging.WARNING)
                self.pool = await open_pool(url, min_size=size, max_size=size)
                vault = Vault(Keyring.from_env(Path.cwd()))
                self.app = create_app(Services(pool=self.pool, clock=CLOCK, vault=vault))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.pool is not None:
                    await self.pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def api() -> ASGIApp:
    return _Api()


def sandbox(port: int) -> None:
    """The sandbox PSP's process: no faults, no latency, only warnings logged."""
    configure_logging(logging.WARNING)
    config = SandboxConfig(secret=SANDBOX_SECRET)
    asyncio.run(serve_sandbox(config, "127.0.0.1", port))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the process serving {url} exited")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered at {url}")


@contextmanager
def _process(
    command: list[str], ready_url: str, env: dict[str, str] | None = None
) -> Iterator[str]:
    """A server in a process of its own, stopped (SIGTERM, as uvicorn expects) after."""
    process = subprocess.Popen(command, env=env)
    try:
        _wait_until_up(ready_url, process)
        yield ready_url
    finally:
        process.terminate()
        process.wait(30)


@contextmanager
def _sandbox_process() -> Iterator[str]:
    port = _free_port()
    code = f"import {__name__} as bench; bench.sandbox({port})"
    url = f"http://127.0.0.1:{port}"
    with _process([sys.executable, "-c", code], f"{url}/health"):
        yield url


@contextmanager
def _api_processes(database_url: str, master_key: str, workers: int, pool: int) -> Iterator[str]:
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        f"{__name__}:api",
        "--factory",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--workers={workers}",
        "--loop=uvloop",
        "--http=httptools",
        "--lifespan=on",
        "--log-level=warning",
        "--no-access-log",
        "--backlog=1024",
    ]
    env = {
        **os.environ,
        "PAYRAIL_DATABASE_URL": database_url,
        "PAYRAIL_MASTER_KEY": master_key,
        "PAYRAIL_BENCH_POOL": str(pool),
    }
    url = f"http://127.0.0.1:{port}"
    with _process(command, f"{url}/openapi.json", env):
        yield url


# -- setting up a merchant -------------------------------------------------------------------


async def _merchant(database_url: str, vault: Vault) -> str:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await vault.prepare(conn, CLOCK.now())
        merchant = await create_merchant(conn, CLOCK, "bench")
    return merchant.test_secret


def _connector_account(api_url: str, secret: str, sandbox_url: str) -> None:
    reply = httpx.post(
        f"{api_url}/v1/connector_accounts",
        headers={"Authorization": f"Bearer {secret}"},
        json={
            "provider": "sandbox",
            "name": "bench",
            "credentials": {"secret": SANDBOX_SECRET},
            "base_url": sandbox_url,
        },
    )
    reply.raise_for_status()


# -- the load --------------------------------------------------------------------------------


@dataclass
class Load:
    latencies: list[float]  # seconds, of the payments that succeeded
    failed: int
    seconds: float

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _client(
    host: str, port: int, request: bytes, deadline: float, load: Load, keys: bool
) -> None:
    """One merchant server's connection: a payment at a time, kept alive."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.monotonic() < deadline:
            key = b"Idempotency-Key: " + secrets.token_hex(12).encode() + b"\r\n" if keys else b""
            started = time.perf_counter()
            writer.write(request.replace(b"\r\n\r\n", b"\r\n" + key + b"\r\n", 1))
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            body = await reader.readexactly(length)
            took = time.perf_counter() - started
            if head.startswith(b"HTTP/1.1 200") and b'"status":"succeeded"' in body:
                load.latencies.append(took)
            else:
                load.failed += 1
    finally:
        writer.close()


async def _load(url: str, secret: str, clients: int, seconds: float, keys: bool) -> Load:
    parts = httpx.URL(url)
    host, port = parts.host, parts.port or 80
    request = (
        b"POST /v1/payment_intents HTTP/1.1\r\n"
        + f"Host: {host}:{port}\r\nAuthorization: Bearer {secret}\r\n".encode()
        + b"Content-Type: application/json\r\n"
        + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
        + BODY
    )
    load = Load([], 0, seconds)
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(
        *(_client(host, port, request, deadline, load, keys) for _ in range(clients))
    )
    load.seconds = time.monotonic() - started
    return load


# -- what the run left behind ----------------------------------------------------------------


@dataclass(frozen=True)
class Checks:
    succeeded: int  # intents in the database
    captured: int  # payments the sandbox captured
    double_charges: int  # charges the sandbox captured more than once
    ledger_ok: bool


async def _checks(database_url: str, sandbox_url: str) -> Checks:
    async with httpx.AsyncClient(
        base_url=sandbox_url, headers={"Authorization": f"Bearer {SANDBOX_SECRET}"}
    ) as http:
        record = (await http.get("/sandbox/record", timeout=60)).json()
    references: dict[str, int] = {}
    for payment in record["payments"]:
        if payment["status"] == "captured":
            references[payment["reference"]] = references.get(payment["reference"], 0) + 1
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        row = await (
            await conn.execute("SELECT count(*) FROM payment_intents WHERE status = 'succeeded'")
        ).fetchone()
        assert row is not None
        report = await verify(conn)
    return Checks(
        succeeded=row[0],
        captured=sum(references.values()),
        double_charges=sum(1 for n in references.values() if n > 1),
        ledger_ok=report.ok,
    )


@dataclass(frozen=True)
class Outcome:
    pgbench_tps: float
    load: Load
    checks: Checks


def measure(
    *, seconds: float, clients: int, api_workers: int, warmup: float, keys: bool
) -> Outcome:
    master = base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()
    vault = Vault(Keyring({1: base64.b64decode(master)}, None))
    with throwaway_postgres() as server:
        database_url = server.url()
        upgrade(database_url)
        tps = pgbench_tps(server, clients=clients, seconds=int(seconds))
        secret = asyncio.run(_merchant(database_url, vault))
        # A worker may be serving every client at once: the kernel hands each new
        # connection to whichever worker accepts first, and keep-alive keeps it there.
        pool = clients + 2
        with (
            _sandbox_process() as sandbox_url,
            _api_processes(database_url, f"1:{master}", api_workers, pool) as api_url,
        ):
            _connector_account(api_url, secret, sandbox_url)
            uvloop.run(_load(api_url, secret, clients, warmup, keys))
            load = uvloop.run(_load(api_url, secret, clients, seconds, keys))
            checks = asyncio.run(_checks(database_url, sandbox_url))
    return Outcome(tps, load, checks)


def run(
    seconds: float = 15,
    clients: int = 16,
    api_workers: int = 1,
    warmup: float = 3,
    keys: bool = True,
) -> list[tuple[str, str, str]]:
    """Rows of (measure, figure, target) for the printed table."""
    outcome = measure(
        seconds=seconds, clients=clients, api_workers=api_workers, warmup=warmup, keys=keys
    )
    load, checks = outcome.load, outcome.checks
    p50, p99 = load.percentile(0.50) * 1000, load.percentile(0.99) * 1000
    return [
        ("machine", machine(), ""),
        ("pgbench TPC-B (reference)", f"{outcome.pgbench_tps:,.0f} tps", f"{clients} clients"),
        (
            "confirmed payments",
            f"{load.per_second:,.0f}/s",
            f">= 500/s: {load.per_second / outcome.pgbench_tps:.2f} x pgbench",
        ),
        ("latency p50", f"{p50:.1f} ms", ""),
        ("latency p99", f"{p99:.1f} ms", "< 100 ms"),
        (
            "setup",
            f"{clients} clients, {api_workers} API workers",
            "Idempotency-Key on every request" if keys else "no Idempotency-Key",
        ),
        ("failed requests", f"{load.failed}", "0"),
        (
            "sandbox captured / intents succeeded",
            f"{checks.captured:,} / {checks.succeeded:,}",
            f"{checks.double_charges} charges captured twice",
        ),
        ("ledger verify after the run", "OK" if checks.ledger_ok else "DRIFT", ""),
    ]
