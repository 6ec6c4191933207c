"""Faults drawn by rate: deterministic per (seed, key, attempt), about the rate asked for,
and never in the way of a retry converging on exactly one payment."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx

from payrail.clock import ManualClock
from payrail.connectors.sandbox import SandboxConfig
from payrail.connectors.sandbox.server import run_sandbox
from tests.connectors.sandbox.helpers import AUTH, SECRET, ok, payment_body, post, record

AFTER = {"error_after", "timeout_after"}
KINDS = ["error_before", "error_after", "timeout_before", "timeout_after"]
STATUS = {
    None: 200,
    "error_before": 503,
    "error_after": 500,
    "timeout_before": 503,
    "timeout_after": 200,
}


@contextmanager
def sandbox(seed: int, rate: float) -> Iterator[str]:
    # hang_seconds=0: drawn timeouts answer at once, so a thousand requests stay quick.
    config = SandboxConfig(secret=SECRET, seed=seed, fault_rate=rate, hang_seconds=0)
    with run_sandbox(config, ManualClock()) as url:
        yield url


@asynccontextmanager
async def client(url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as psp:
        yield psp


async def attempt(psp: httpx.AsyncClient, key: str) -> tuple[int, str | None]:
    reply = await post(psp, "/v1/payments", payment_body(reference=key), key=key)
    return reply.status_code, reply.headers.get("sandbox-fault-injected")


async def first_attempts(url: str, keys: Iterable[str]) -> dict[str, tuple[int, str | None]]:
    """One request per key, in the order given. One after another is quicker here than
    concurrently: client and server share this process's GIL."""
    async with client(url) as psp:
        return {key: await attempt(psp, key) for key in keys}


async def test_the_same_seed_faults_the_same_requests_in_any_arrival_order() -> None:
    keys = [f"order-{i}" for i in range(300)]
    shuffled = random.Random(1).sample(keys, len(keys))
    with sandbox(7, 0.3) as one, sandbox(7, 0.3) as two, sandbox(8, 0.3) as other:
        in_order = await first_attempts(one, keys)
        out_of_order = await first_attempts(two, reversed(keys))
        reseeded = await first_attempts(other, shuffled)
    assert in_order == out_of_order
    faulted = {key for key, (_, fault) in in_order.items() if fault}
    assert 40 < len(faulted) < 140
    assert faulted != {key for key, (_, fault) in reseeded.items() if fault}


async def test_a_thousand_keys_fault_at_about_the_rate_and_retries_converge() -> None:
    keys = [f"rate-{i}" for i in range(1000)]
    with sandbox(11, 0.1) as url:
        first = await first_attempts(url, keys)
        kinds = Counter(fault for _, fault in first.values() if fault)
        assert 60 <= sum(kinds.values()) <= 140
        assert set(kinds) == {"error_before", "error_after", "timeout_before", "timeout_after"}
        for status, fault in first.values():
            assert status == STATUS[fault]

        async with client(url) as psp:
            made_first = {p["idempotency_key"]: p for p in (await record(psp))["payments"]}
            # What processed is exactly what no "before" fault stopped.
            assert set(made_first) == {
                key for key, (_, fault) in first.items() if fault is None or fault in AFTER
            }

            async def until_it_works(key: str) -> int:
                tries = 1
                while (await attempt(psp, key))[0] != 200:
                    tries += 1
                    assert tries < 20
                return tries

            retried = [key for key, (status, _) in first.items() if status != 200]
            tries = [await until_it_works(key) for key in retried]
            assert max(tries, default=1) >= 2
            payments = (await record(psp))["payments"]

    assert Counter(p["idempotency_key"] for p in payments) == Counter(keys)
    assert Counter(p["reference"] for p in payments if p["status"] == "captured") == Counter(keys)
    for payment in payments:
        made = made_first.get(payment["idempotency_key"])
        assert made is None or made == payment, "a retry never makes a second payment"


async def test_fault_injection_changes_at_run_time() -> None:
    with sandbox(0, 0.0) as url:
        async with client(url) as psp:
            assert (await attempt(psp, "before"))[1] is None
            plan = ok(await post(psp, "/sandbox/faults", {"rate": 1, "seed": 5}))
            assert plan == {"rate": 1.0, "seed": 5, "hang_seconds": 0.0, "kinds": KINDS}
            faulted = [await attempt(psp, f"during-{i}") for i in range(20)]
            assert all(fault for _, fault in faulted)
            assert ok(await psp.get("/sandbox/record")), "reads are not faulted by rate"
            # The control call itself is never faulted, so faults can always be turned off.
            plan = ok(await post(psp, "/sandbox/faults", {"hang_seconds": 0.05}, key="any"))
            assert plan == {"rate": 1.0, "seed": 5, "hang_seconds": 0.05, "kinds": KINDS}
            assert ok(await post(psp, "/sandbox/faults", {"rate": 0.0}))["rate"] == 0
            assert (await attempt(psp, "after"))[1] is None

            for bad in (
                {"rate": 1.5},
                {"rate": "0.1"},
                {"seed": 1.5},
                {"hang_seconds": -1},
                {"kinds": []},
                {"kinds": ["meltdown"]},
                {"kinds": "error_after"},
                {"speed": 1},
                [1],
            ):
                reply = await post(psp, "/sandbox/faults", bad)
                assert (reply.status_code, reply.json()["error"]["code"]) == (
                    400,
                    "invalid_request",
                )
            assert ok(await post(psp, "/sandbox/faults", {}))["hang_seconds"] == 0.05


async def test_kinds_narrow_what_a_rate_draws() -> None:
    """A test forces one fault (or a latency) on every request by drawing from one kind."""
    with sandbox(0, 1.0) as url:
        async with client(url) as psp:
            plan = ok(await post(psp, "/sandbox/faults", {"kinds": ["error_after"]}))
            assert plan["kinds"] == ["error_after"]
            faulted = [await attempt(psp, f"forced-{i}") for i in range(10)]
            assert faulted == [(500, "error_after")] * 10
            plan = ok(await post(psp, "/sandbox/faults", {"kinds": ["latency:5"]}))
            assert plan["kinds"] == ["latency:5"]
            assert await attempt(psp, "slow") == (200, "latency:5")
            reply = await post(psp, "/sandbox/faults", {"kinds": ["latency:x"]})
            assert reply.status_code == 400 and reply.json()["error"]["param"] == "kinds"
            assert ok(await post(psp, "/sandbox/faults", {}))["kinds"] == ["latency:5"]
