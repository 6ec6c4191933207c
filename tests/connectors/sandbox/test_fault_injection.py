"""Faults asked for with the Sandbox-Fault header: what each answers, whether it processed,
and that a retry with the same key always ends with exactly one payment."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.connectors.sandbox.conftest import HANG_SECONDS
from tests.connectors.sandbox.helpers import (
    new_key,
    ok,
    pay,
    payment_body,
    payments_by_key,
    post,
    recorded_payments,
    refunds_by_key,
)

# kind: (status of the faulted reply, whether it processed, shortest time it takes)
KINDS: dict[str, tuple[int, bool, float]] = {
    "latency:150": (200, True, 0.15),
    "error_before": (503, False, 0),
    "error_after": (500, True, 0),
    "timeout_before": (503, False, HANG_SECONDS),
    "timeout_after": (200, True, HANG_SECONDS),
}


@pytest.mark.parametrize("fault", KINDS)
async def test_each_fault_on_a_payment(psp: httpx.AsyncClient, fault: str) -> None:
    status, processed, duration = KINDS[fault]
    key, body = new_key(), payment_body()
    started = time.monotonic()
    reply = await post(psp, "/v1/payments", body, key=key, fault=fault)
    assert time.monotonic() - started >= duration
    assert reply.status_code == status, reply.text
    assert reply.headers["sandbox-fault-injected"] == fault
    if status != 200:
        code = "internal" if status == 500 else "unavailable"
        assert reply.json()["error"]["code"] == code

    found = await payments_by_key(psp, key)
    assert len(found) == (1 if processed else 0)
    assert await recorded_payments(psp, key) == found

    retry = ok(await post(psp, "/v1/payments", body, key=key))
    if processed:
        assert retry == found[0], "the retry gets the payment made the first time"
    assert await recorded_payments(psp, key) == [retry]
    again = ok(await post(psp, "/v1/payments", body, key=key))
    assert again == retry
    assert await recorded_payments(psp, key) == [retry]


@pytest.mark.parametrize("fault", KINDS)
async def test_each_fault_on_a_refund(psp: httpx.AsyncClient, fault: str) -> None:
    status, processed, _ = KINDS[fault]
    payment = ok(await pay(psp))
    key, path = new_key(), f"/v1/payments/{payment['id']}/refunds"
    reply = await post(psp, path, {"amount": 300}, key=key, fault=fault)
    assert reply.status_code == status
    assert len(await refunds_by_key(psp, key)) == (1 if processed else 0)
    refund = ok(await post(psp, path, {"amount": 300}, key=key))
    assert await refunds_by_key(psp, key) == [refund]
    assert ok(await psp.get(f"/v1/payments/{payment['id']}"))["amount_refunded"] == 300


@pytest.mark.parametrize("fault", KINDS)
async def test_each_fault_on_a_capture(psp: httpx.AsyncClient, fault: str) -> None:
    status, processed, _ = KINDS[fault]
    payment = ok(await pay(psp, capture=False))
    key, path = new_key(), f"/v1/payments/{payment['id']}/capture"
    reply = await post(psp, path, {"amount": 600}, key=key, fault=fault)
    assert reply.status_code == status
    now = ok(await psp.get(f"/v1/payments/{payment['id']}"))
    assert now["status"] == ("captured" if processed else "authorized")
    captured = ok(await post(psp, path, {"amount": 600}, key=key))
    assert (captured["status"], captured["amount_captured"], captured["fee"]) == (
        "captured",
        600,
        47,
    )


async def test_a_client_that_gives_up_on_timeout_after_and_retries_gets_the_payment(
    psp: httpx.AsyncClient,
) -> None:
    key, body = new_key(), payment_body()
    with pytest.raises(httpx.ReadTimeout):
        await post(psp, "/v1/payments", body, key=key, fault="timeout_after", timeout=0.1)
    # The first request is still hanging on the server; the payment was already made.
    retry = await post(psp, "/v1/payments", body, key=key)
    assert retry.headers["idempotent-replayed"] == "true"
    assert await recorded_payments(psp, key) == [retry.json()]


async def test_a_retry_during_timeout_before_processes_and_the_hang_never_does(
    psp: httpx.AsyncClient,
) -> None:
    key, body = new_key(), payment_body()
    hanging = asyncio.create_task(post(psp, "/v1/payments", body, key=key, fault="timeout_before"))
    await asyncio.sleep(0.05)
    retry = ok(await post(psp, "/v1/payments", body, key=key))
    assert not hanging.done(), "timeout_before does not hold the key"
    assert (await hanging).status_code == 503
    assert await recorded_payments(psp, key) == [retry]


async def test_faults_on_reads(psp: httpx.AsyncClient) -> None:
    payment = ok(await pay(psp))
    path = f"/v1/payments/{payment['id']}"
    assert (await psp.get(path, headers={"Sandbox-Fault": "error_before"})).status_code == 503
    assert (await psp.get(path, headers={"Sandbox-Fault": "error_after"})).status_code == 500
    slow = await psp.get(path, headers={"Sandbox-Fault": "latency:10"})
    assert slow.json() == payment


async def test_a_header_that_names_no_fault_is_400_and_not_stored(psp: httpx.AsyncClient) -> None:
    key, body = new_key(), payment_body()
    for bad in ("crash", "latency:soon", "latency"):
        reply = await post(psp, "/v1/payments", body, key=key, fault=bad)
        assert (reply.status_code, reply.json()["error"]["param"]) == (400, "Sandbox-Fault")
    assert await payments_by_key(psp, key) == []
    created = await post(psp, "/v1/payments", body, key=key)
    assert created.status_code == 200 and "idempotent-replayed" not in created.headers


async def test_a_replay_can_be_faulted_and_still_has_no_second_effect(
    psp: httpx.AsyncClient,
) -> None:
    key, body = new_key(), payment_body()
    first = ok(await post(psp, "/v1/payments", body, key=key))
    for fault in KINDS:
        await post(psp, "/v1/payments", body, key=key, fault=fault)
    assert await recorded_payments(psp, key) == [first]
