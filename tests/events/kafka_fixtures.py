"""A real Kafka-protocol broker for tests: the bundled Tansu, on a free loopback port.

No Kafka mocks: every test of the Kafka transport talks to this broker. `kafka_broker`
and `own_kafka_broker` keep records in memory; `durable_kafka_broker` keeps them in a
local S3-compatible store (moto's server), so that they outlive a restart. Run as a script,
this module is one consumer-group member in a process of its own, for the tests that kill
a member with SIGKILL (see `member_main`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import pytest

from payrail.events.broker import TansuBroker, s3_storage_env
from payrail.events.kafka import KafkaSettings, KafkaSubscription, KafkaTransport
from payrail.events.transport import Delivered, Record, topic_for

REPO = Path(__file__).resolve().parents[2]


def fast_settings(bootstrap_servers: str) -> KafkaSettings:
    """Short timeouts, so that a dead member's partitions move and a publish to a stopped
    broker gives up in a few seconds rather than production's ten and five."""
    return KafkaSettings(
        bootstrap_servers,
        publish_timeout=2.0,
        session_timeout_ms=2000,
        metadata_refresh_ms=500,
    )


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """One broker for a test module; tests keep apart by their own topics and groups."""
    broker = TansuBroker(log_path=tmp_path_factory.mktemp("tansu") / "tansu.log")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def own_kafka_broker(tmp_path: Path) -> Iterator[TansuBroker]:
    """A broker for one test, which may stop, kill and restart it."""
    broker = TansuBroker(log_path=tmp_path / "tansu.log")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@contextlib.contextmanager
def local_s3(bucket: str) -> Iterator[str]:
    """An S3-compatible store in this process (moto's server, on a free loopback port)
    holding an empty `bucket`; yields its endpoint. moto keeps its buckets per process,
    not per server: callers pick a bucket name of their own."""
    # Imported here: only the tests of a durable broker need moto.
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        # Tansu does not create its bucket. moto checks no signatures: a bare PUT does.
        create = urllib.request.Request(f"{endpoint}/{bucket}", method="PUT")
        with urllib.request.urlopen(create, timeout=10) as response:
            assert response.status == 200, response.status
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def durable_kafka_broker(tmp_path: Path) -> Iterator[TansuBroker]:
    """A broker for one test, which may stop, kill and restart it, on Tansu's `s3://`
    storage: topics, records and committed offsets outlive the process."""
    bucket = f"tansu-{secrets.token_hex(4)}"
    with local_s3(bucket) as endpoint:
        broker = TansuBroker(
            storage=f"s3://{bucket}/",
            env=s3_storage_env(endpoint),
            log_path=tmp_path / "tansu.log",
        )
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()


@pytest.fixture
def kafka(kafka_broker: TansuBroker) -> KafkaTransport:
    return KafkaTransport(fast_settings(kafka_broker.bootstrap_servers))


@pytest.fixture
def kafka_topic() -> str:
    """A topic of its own for the test (a payrail topic: it starts with `payrail.`)."""
    return topic_for(f"t{secrets.token_hex(4)}")


@pytest.fixture
def kafka_group() -> str:
    return f"group-{secrets.token_hex(4)}"


@pytest.fixture
async def kafka_members() -> AsyncIterator[list[KafkaSubscription]]:
    """Subscriptions a test opens; whatever it leaves open is closed after it."""
    opened: list[KafkaSubscription] = []
    yield opened
    for member in opened:
        await member.close()


def records(topic: str, count: int, keys: int = 10, start: int = 0) -> list[Record]:
    """`count` records over `keys` aggregates; the value names the aggregate's sequence."""
    return [
        Record(
            topic=topic,
            key=f"agg_{i % keys}",
            value=json.dumps({"key": f"agg_{i % keys}", "seq": i}).encode(),
            headers={"event_type": "test.event"},
        )
        for i in range(start, start + count)
    ]


async def drain(
    member: KafkaSubscription,
    done: Callable[[list[Delivered]], bool],
    within: float = 20.0,
    max_records: int = 500,
) -> list[Delivered]:
    """Fetch until `done(everything so far)` or `within` seconds have passed."""
    got: list[Delivered] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        got += await member.fetch(max_records, max_wait=0.2)
        if done(got):
            break
    return got


async def quiet(member: KafkaSubscription, seconds: float) -> list[Delivered]:
    """Everything fetched in `seconds`: what a member gets when nothing more should come."""
    return await drain(member, lambda _got: False, within=seconds)


# --- a member in a process of its own --------------------------------------------------


async def spawn_member(
    bootstrap_servers: str, group: str, topic: str, fetch: int, commit: int
) -> tuple[asyncio.subprocess.Process, list[tuple[int, int]], list[tuple[int, int]]]:
    """Start a member that fetches at least `fetch` records, commits the first `commit`
    of them (per partition, in offset order), and then hangs as if in mid-batch. Returns
    the process and the (partition, offset) pairs it fetched and committed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.events.kafka_fixtures",
        bootstrap_servers,
        group,
        topic,
        str(fetch),
        str(commit),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    report = json.loads(line)
    fetched = [tuple(pair) for pair in report["fetched"]]
    committed = [tuple(pair) for pair in report["committed"]]
    return process, fetched, committed  # type: ignore[return-value]


async def member_main(
    bootstrap_servers: str, group: str, topic: str, fetch: int, commit: int
) -> None:
    transport = KafkaTransport(fast_settings(bootstrap_servers))
    member = await transport.subscribe(group, [topic])
    got = await drain(member, lambda got: len(got) >= fetch, within=60)
    got.sort(key=lambda d: (d.partition, d.offset))
    done = got[:commit]
    await member.commit(done)
    report = {
        "fetched": [(d.partition, d.offset) for d in got],
        "committed": [(d.partition, d.offset) for d in done],
    }
    print(json.dumps(report), flush=True)
    await asyncio.sleep(3600)  # mid-batch until killed


def pairs(delivered: Sequence[Delivered]) -> set[tuple[int, int]]:
    return {(d.partition, d.offset) for d in delivered}


if __name__ == "__main__":
    servers, group_, topic_, fetch_, commit_ = sys.argv[1:6]
    asyncio.run(member_main(servers, group_, topic_, int(fetch_), int(commit_)))
