"""What every benchmark shares: a throwaway PostgreSQL, pgbench, timed worker loops."""

from __future__ import annotations

import asyncio
import os
import platform
import re
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import uvloop

from payrail.db.embedded import EmbeddedPostgres, binary


@contextmanager
def throwaway_postgres() -> Iterator[EmbeddedPostgres]:
    """A fresh embedded server with PostgreSQL's default (durable) settings, removed after."""
    with tempfile.TemporaryDirectory(prefix="payrail-bench-") as directory:
        server = EmbeddedPostgres(Path(directory))
        server.start()
        try:
            yield server
        finally:
            server.stop()


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def pgbench_tps(server: EmbeddedPostgres, *, clients: int, seconds: int, scale: int = 10) -> float:
    """TPC-B-like tps from pgbench on the same server: the reference figure."""
    url = server.url("postgres")
    subprocess.run(
        [str(binary("psql")), url, "-qc", "CREATE DATABASE pgbench"],
        check=True,
        capture_output=True,
    )
    bench_url = server.url("pgbench")
    subprocess.run(
        [str(binary("pgbench")), "-i", "-q", "-s", str(scale), bench_url],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [str(binary("pgbench")), "-c", str(clients), "-j", "2", "-T", str(seconds), bench_url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = re.search(r"tps = ([0-9.]+)", out)
    if found is None:
        raise RuntimeError(f"pgbench printed no tps:\n{out}")
    return float(found.group(1))


T = TypeVar("T")


def run_on_uvloop(main: Coroutine[Any, Any, T]) -> T:
    """Run a benchmark's client on uvloop, the event loop the API serves on
    (payrail.runtime): the client's CPU per call is what the figures are about, and
    asyncio's own loop costs ~12 µs more per database round trip."""
    return uvloop.run(main)


@dataclass(frozen=True)
class Rate:
    operations: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.operations / self.seconds


async def run_for(seconds: float, workers: int, step: Callable[[int], Awaitable[int]]) -> Rate:
    """Run `step(worker)` in `workers` concurrent loops for `seconds`; each step returns how
    many operations it completed."""
    deadline = time.monotonic() + seconds
    counts = [0] * workers

    async def loop(worker: int) -> None:
        while time.monotonic() < deadline:
            counts[worker] += await step(worker)

    started = time.monotonic()
    await asyncio.gather(*(loop(w) for w in range(workers)))
    return Rate(sum(counts), time.monotonic() - started)
