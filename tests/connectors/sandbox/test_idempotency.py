"""Idempotency-Key: one effect per key, the first reply replayed, other requests refused."""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson

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


async def test_the_same_key_and_body_replay_the_first_reply(psp: httpx.AsyncClient) -> None:
    key, body = new_key(), payment_body()
    first = await post(psp, "/v1/payments", body, key=key)
    second = await post(psp, "/v1/payments", body, key=key)
    assert (second.status_code, second.content) == (first.status_code, first.content)
    assert "idempotent-replayed" not in first.headers
    assert second.headers["idempotent-replayed"] == "true"
    assert await recorded_payments(psp, key) == [first.json()]


async def test_a_replay_is_the_reply_then_not_the_payment_now(psp: httpx.AsyncClient) -> None:
    key, body = new_key(), payment_body(capture=False)
    created = ok(await post(psp, "/v1/payments", body, key=key))
    ok(await post(psp, f"/v1/payments/{created['id']}/capture", None, key=new_key()))
    assert ok(await post(psp, "/v1/payments", body, key=key)) == created
    assert ok(await psp.get(f"/v1/payments/{created['id']}"))["status"] == "captured"


async def test_key_order_and_whitespace_do_not_make_another_request(
    psp: httpx.AsyncClient,
) -> None:
    key, body = new_key(), payment_body()
    first = await post(psp, "/v1/payments", body, key=key)
    reordered = orjson.dumps(dict(reversed(body.items())), option=orjson.OPT_INDENT_2)
    second = await psp.post("/v1/payments", content=reordered, headers={"Idempotency-Key": key})
    assert (second.status_code, second.content) == (200, first.content)


async def test_a_refusal_is_stored_too(psp: httpx.AsyncClient) -> None:
    key, body = new_key(), payment_body(amount=0)
    first = await post(psp, "/v1/payments", body, key=key)
    second = await post(psp, "/v1/payments", body, key=key)
    assert first.status_code == second.status_code == 400
    assert second.content == first.content and second.headers["idempotent-replayed"] == "true"


async def test_the_same_key_with_another_body_or_path_is_409(psp: httpx.AsyncClient) -> None:
    key, body = new_key(), payment_body(capture=False)
    payment = ok(await post(psp, "/v1/payments", body, key=key))
    others = [
        await post(psp, "/v1/payments", {**body, "amount": 1001}, key=key),
        await post(psp, "/v1/payments", {**body, "capture": True}, key=key),
        await post(psp, f"/v1/payments/{payment['id']}/capture", None, key=key),
        await post(psp, f"/v1/payments/{payment['id']}/void", None, key=key),
    ]
    for reply in others:
        assert reply.status_code == 409, reply.text
        assert reply.json()["error"]["code"] == "idempotency_mismatch"
    assert ok(await psp.get(f"/v1/payments/{payment['id']}"))["status"] == "authorized"
    assert await recorded_payments(psp, key) == [payment]
    # The 409 was not stored: the first request still replays.
    assert ok(await post(psp, "/v1/payments", body, key=key)) == payment


async def test_a_key_used_on_one_payment_is_refused_on_another(psp: httpx.AsyncClient) -> None:
    one, two = ok(await pay(psp, capture=False)), ok(await pay(psp, capture=False))
    key = new_key()
    ok(await post(psp, f"/v1/payments/{one['id']}/capture", None, key=key))
    other = await post(psp, f"/v1/payments/{two['id']}/capture", None, key=key)
    assert other.status_code == 409
    assert ok(await psp.get(f"/v1/payments/{two['id']}"))["status"] == "authorized"


async def test_every_post_needs_a_key(psp: httpx.AsyncClient) -> None:
    reference = payment_body()["reference"]
    paid = ok(await pay(psp))
    for path in (
        "/v1/payments",
        f"/v1/payments/{paid['id']}/capture",
        f"/v1/payments/{paid['id']}/void",
        f"/v1/payments/{paid['id']}/refunds",
    ):
        for key in (None, "", "k" * 256):
            reply = await post(psp, path, payment_body(reference=reference), key=key)
            assert reply.status_code == 400, (path, key)
            assert reply.json()["error"]["param"] == "Idempotency-Key"
    assert ok(await psp.get(f"/v1/payments/{paid['id']}")) == paid
    record = ok(await psp.get("/sandbox/record"))
    assert not [p for p in record["payments"] if p["reference"] == reference]


async def test_fifty_concurrent_requests_with_one_key_make_one_payment(
    psp: httpx.AsyncClient,
) -> None:
    key, body = new_key(), payment_body()
    replies = await asyncio.gather(*(post(psp, "/v1/payments", body, key=key) for _ in range(50)))
    assert {(reply.status_code, reply.content) for reply in replies} == {(200, replies[0].content)}
    assert sum("idempotent-replayed" not in reply.headers for reply in replies) == 1
    assert await recorded_payments(psp, key) == [replies[0].json()]


async def test_fifty_concurrent_refunds_with_one_key_make_one_refund(
    psp: httpx.AsyncClient,
) -> None:
    payment = ok(await pay(psp, amount=5000))
    key, path = new_key(), f"/v1/payments/{payment['id']}/refunds"
    replies = await asyncio.gather(*(post(psp, path, {"amount": 100}, key=key) for _ in range(50)))
    assert len({reply.content for reply in replies}) == 1
    assert [r["id"] for r in await refunds_by_key(psp, key)] == [replies[0].json()["id"]]
    assert ok(await psp.get(f"/v1/payments/{payment['id']}"))["amount_refunded"] == 100


async def test_a_request_while_the_key_is_in_flight_waits_and_replays(
    psp: httpx.AsyncClient,
) -> None:
    key, body = new_key(), payment_body()
    # latency: the processor is slow, and the first request holds its key meanwhile.
    slow = asyncio.create_task(post(psp, "/v1/payments", body, key=key, fault="latency:400"))
    await asyncio.sleep(0.1)
    assert await payments_by_key(psp, key) == [], "still being processed"
    started = time.monotonic()
    retry = await post(psp, "/v1/payments", body, key=key)
    waited = time.monotonic() - started
    first = await slow
    assert waited > 0.2, "the retry waited for the first request"
    assert (retry.status_code, retry.content) == (first.status_code, first.content)
    assert retry.headers["idempotent-replayed"] == "true"
    assert await recorded_payments(psp, key) == [first.json()]


async def test_another_body_while_the_key_is_in_flight_waits_then_409(
    psp: httpx.AsyncClient,
) -> None:
    key, body = new_key(), payment_body()
    slow = asyncio.create_task(post(psp, "/v1/payments", body, key=key, fault="latency:300"))
    await asyncio.sleep(0.1)
    other = await post(psp, "/v1/payments", {**body, "amount": 5}, key=key)
    assert slow.done(), "the other request waited for the first"
    assert other.status_code == 409
    assert ok(await slow)["amount"] == 1000
