"""Events become deliveries (the consumer), and deliveries reach a real HTTP receiver (the
worker): signed so that Stripe's SDK and a Standard Webhooks verifier accept them,
retried with backoff, Retry-After honoured, given up after 3 days, 410 disabling the
endpoint, resent by hand, shared by several workers, never sent to a refused address."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import stripe

from payrail.api.context import Services
from payrail.clock import ManualClock, unix
from payrail.events.webhooks import repository as repo
from payrail.events.webhooks.delivery import DeliveryOptions, Summary, _target, run_once
from payrail.events.webhooks.service import FIRST_DELAY, MAX_DELAY, MIN_DELAY, RETRY_WINDOW
from payrail.tenants.service import NewMerchant
from tests.conftest import new_merchant
from tests.events.webhooks.conftest import OPTIONS
from tests.events.webhooks.helpers import (
    DELIVERIES,
    ENDPOINTS,
    Receiver,
    create_endpoint,
    deliveries,
    fan_out_events,
)

Json = dict[str, Any]

pytestmark = pytest.mark.usefixtures("allow_private")


async def customer(client: httpx.AsyncClient, auth: dict[str, str], email: str = "jo@x.io") -> str:
    reply = await client.post("/v1/customers", headers=auth, json={"email": email})
    assert reply.status_code == 200, reply.text
    customer_id: str = reply.json()["id"]
    return customer_id


async def work(
    services: Services, http: httpx.AsyncClient, options: DeliveryOptions = OPTIONS, seed: int = 0
) -> Summary:
    return await run_once(
        services.pool, services.clock, services.vault, http, options, rng=random.Random(seed)
    )


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
        yield client


async def hooked(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    services: Services,
    merchant: NewMerchant,
    url: str,
    customers: int = 1,
    **fields: Any,
) -> tuple[Json, list[str]]:
    """An endpoint for customer.created at `url`, and that many customers made and
    fanned out to it."""
    endpoint = await create_endpoint(
        client, auth, url, enabled_events=["customer.created"], **fields
    )
    made = [await customer(client, auth, f"c{n}@x.io") for n in range(customers)]
    await fan_out_events(services.pool, services.clock, merchant.id)
    return endpoint, made


async def api_deliveries(
    client: httpx.AsyncClient, auth: dict[str, str], **params: Any
) -> list[Json]:
    reply = await client.get(DELIVERIES, headers=auth, params={"limit": 100, **params})
    assert reply.status_code == 200, reply.text
    data: list[Json] = reply.json()["data"]
    return data


async def api_attempts(
    client: httpx.AsyncClient, auth: dict[str, str], delivery_id: str
) -> list[Json]:
    reply = await client.get(
        f"{DELIVERIES}/{delivery_id}/attempts", headers=auth, params={"limit": 100}
    )
    assert reply.status_code == 200, reply.text
    data: list[Json] = reply.json()["data"]
    return data


# --- Fan-out --------------------------------------------------------------------------


async def test_each_event_goes_once_to_the_endpoints_that_want_it(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    services: Services,
    merchant: NewMerchant,
    clock: ManualClock,
) -> None:
    url = "https://hooks.example.com/"
    every = await create_endpoint(client, auth, url)
    wanted = await create_endpoint(client, auth, url, enabled_events=["customer.created"])
    await create_endpoint(client, auth, url, enabled_events=["payment_intent.succeeded"])
    disabled = await create_endpoint(client, auth, url)
    await client.post(f"{ENDPOINTS}/{disabled['id']}", headers=auth, json={"disabled": True})
    deleted = await create_endpoint(client, auth, url)
    await client.delete(f"{ENDPOINTS}/{deleted['id']}", headers=auth)
    await create_endpoint(client, {"Authorization": f"Bearer {merchant.live_secret}"}, url)
    other = await new_merchant(services.pool, clock, "Globex")
    await create_endpoint(client, {"Authorization": f"Bearer {other.test_secret}"}, url)
    clock.advance(timedelta(seconds=1))
    customer_id = await customer(client, auth)
    clock.advance(timedelta(seconds=1))
    await create_endpoint(client, auth, url)  # made after the event: not sent it

    outcomes = await fan_out_events(services.pool, clock, merchant.id)
    assert set(outcomes) == {"handled"}
    rows = await deliveries(services.pool, event_type="customer.created")
    assert sorted(r["endpoint_id"] for r in rows) == sorted([every["id"], wanted["id"]])
    assert {r["status"] for r in rows} == {"pending"}
    listed = await api_deliveries(client, auth, event=rows[0]["event_id"])
    assert {d["webhook_endpoint"] for d in listed} == {every["id"], wanted["id"]}
    assert listed[0]["event_type"] == "customer.created" and listed[0]["attempt_count"] == 0
    async with services.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT payload FROM events WHERE aggregate_id = %s", (customer_id,)
        )
        assert (await cur.fetchone()) is not None
    count = len(await deliveries(services.pool))
    assert set(await fan_out_events(services.pool, clock, merchant.id)) == {"duplicate"}
    assert len(await deliveries(services.pool)) == count


# --- Signatures -----------------------------------------------------------------------


async def test_a_delivery_verifies_with_the_stripe_sdk(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    services: Services,
    merchant: NewMerchant,
    clock: ManualClock,
    receiver: Receiver,
    http: httpx.AsyncClient,
) -> None:
    clock.current = datetime.now(UTC)  # the SDK checks the signature's age on its own clock
    endpoint, [customer_id] = await hooked(
        client, auth, services, merchant, f"{receiver.url}/ok?t=stripe"
    )
    summary = await work(services, http)
    assert (summary.claimed, summary.succeeded) == (1, 1)
    [request] = receiver.got("/ok?t=stripe")
    event = stripe.Webhook.construct_event(
        request.body.decode(), request.headers["stripe-signature"], endpoint["secret"]
    )
    assert event.type == "customer.created"
    assert event.data.object["id"] == customer_id
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    async with services.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT event_envelope(e)::json FROM events e WHERE id = %s", (event.id,)
        )
        row = await cur.fetchone()
    assert row is not None and orjson.loads(request.body) == row[0], "the published envelope"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            request.body.decode().replace(customer_id, "cus_forged"),
            request.headers["stripe-signature"],
            endpoint["secret"],
        )
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            request.body.decode(), request.headers["stripe-signature"], "whsec_other"
        )

    [delivery] = await api_deliveries(client, auth, webhook_endpoint=endpoint["id"])
    assert (delivery["status"], delivery["attempt_count"], delivery["next_attempt"]) == (
        "succeeded",
        1,
        None,
    )
    assert (await client.get(f"{DELIVERIES}/{delivery['id']}", headers=auth)).json() == delivery
    [attempt] = await api_attempts(client, auth, delivery["id"])
    assert attempt["object"] == "webhook_delivery_attempt"
    assert (attempt["status_code"], attempt["error"], attempt["address"]) == (
        200,
        None,
        "127.0.0.1",
    )
    assert attempt["response_excerpt"] == '{"received": true}'
    assert attempt["created"] == unix(clock.now())


def standard_webhooks_verify(secret: str, headers: dict[str, str], body: bytes, now: int) -> Json:
    """An independent reading of standardwebhooks.com's verification: the key is the
    base64 after whsec_, the signed content id.timestamp.body, any v1 signature of the
    space-separated list may match, and the timestamp must be within 5 minutes."""
    message_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(now - int(timestamp)) > 300:
        raise ValueError("timestamp out of tolerance")
    key = base64.b64decode(secret.split("_", 1)[1])
    content = message_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.digest(key, content, "sha256"))
    for signature in headers["webhook-signature"].split(" "):
        version, _, value = signature.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            parsed: Json = orjson.loads(body)
            return parsed
    raise ValueError("no signature matches")


async def test_a_delivery_verifies_as_standard_webhooks(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    services: Services,
    merchant: NewMerchant,
    clock: ManualClock,
    receiver: Receiver,
    http: httpx.AsyncClient,
) -> None:
    endpoint, [customer_id] = await hooked(
        client,
        auth,
        services,
        merchant,
        f"{receiver.url}/ok?t=standard",
        signature_format="standard_webhooks",
    )
    assert endpoint["signature_format"] == "standard_webhooks"
    await work(services, http)
    [request] = receiver.got("/ok?t=standard")
    assert "stripe-signature" not in request.headers
    event = standard_webhooks_verify(
        endpoint["secret"], request.headers, request.body, unix(clock.now())
    )
    assert event["data"]["object"]["id"] == customer_id
    assert request.headers["webhook-id"] == event["id"], "the event id: the same on every retry"
    assert request.headers["webhook-timestamp"] == str(unix(clock.now()))
    with pytest.raises(ValueError, match="no signature"):
        standard_webhooks_verify(
            endpoint["secret"], request.headers, request.body + b" ", unix(clock.now())
        )


# --- Failures, retries, giving up -----------------------------------------------------


async def test_a_failure_is_retried_after_a_jittered_backoff(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    services: Services,
    merchant: NewMerchant,
    clock: ManualClock,
    receiver: Receiver,
    http: httpx.AsyncClient,
) -> None:
    endpoint, _ = await hooked(client, auth, services, merchant, f"{receiver.url}/flaky?t=1")
    first = await work(services, http)
    assert (first.claimed, first.retrying) == (1, 1)
    [row] = await deliveries(services.pool, endpoint_id=endpoint["id"])
    assert row["status"] == "pending" and row["attempt_count"] == 1
    assert row["window_started_at"] == clock.now()
    wait = row["next_attempt_at"] - clock.now()
    assert MIN_DELAY <= wait <= FIRST_DELAY
    assert (await work(services, http)).claimed == 0, "not due yet"
    clock.current = row["next_attempt_at"]
    assert (await work(services, http)).succeeded == 1
    [delivery] = await api_deliveries(client, auth, webhook_endpoint=endpoint["id"])
    assert (delivery["status"], delivery["attempt_count"]) == ("succeeded", 2)
    attempts = await api_attempts(client, auth, delivery["id"])
    assert [(a["status_code"], a["response_excerpt"]) for a in attempts] == [
        (200, "ok"),
        (500, "boom"),
    ]
    bodies = [r.body for r in receiver.got("/flaky?t=1")]
    assert len(bodies) == 2 and bodies[0] == bodies[1], "the same event both times"


async def test_a_timeout_is_an_attempt_that_is_retried(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    services: Services,
    merchant: NewMerchant,
    receiver: Receiver,
    http: httpx.AsyncClient,
) -> None:
    endpoint, _ = await hooked(client, auth, services, merchant, f"{receiver.url}/slow?t=1")
    summary = await work(services, http)
    assert summary.retrying == 1
    [delivery] = await api_deliveries(client, auth, webhook_endpoint=endpoint["id"])
    assert delivery["status"] == "pending"
    [attempt] = await api_attempts(client, auth, delivery["id"])
    assert attempt["status_code"] is None and attempt["error"] == "timeout after 0.5 s"
    assert 400 <= attempt["duration_ms"] < 1400


async def test_retry_after_is_honoured(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    services: Services,
    merchant: NewMerchant,
    clock: ManualClock,
    receiver: Receiver,
    http: httpx.AsyncClient,
) -> None:
    endpoint, _ = await hooked(client, auth, services, merchant, f"{receiver.url}/busy?t=1")
    await work(services, http)
    [row] = await deliveries(services.pool, endpoint_id=endpoint["id"])
    # 429 with Retry-After: 120, later than any first backoff (at most a minute).
    assert row["next_attempt_at"] == clock.now() + timedelta(seconds=120)
    clock.advance(timedelta(seconds=119))
    assert (await work(services, http)).claimed == 0
    clock.advance(timedelta(seconds=1))
    assert (await work(services, http)).succeeded == 1


async def test_410_disables_the_endpoint_and_stops_its_deliveries(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    services: Services,
    merchant: NewMerchant,
    receiver: Receiver,
    http: httpx.AsyncClient,
) -> None:
    endpoint, _ = await hooked(
        client, auth, services, merchant, f"{receiver.url}/gone?t=1", customers=3
    )
    summary = await work(services, http, dataclasses.replace(OPTIONS, batch=1))
    assert (summary.claimed, summary.endpoints_disabled) == (1, 1)
    assert (await work(services, http)).claimed == 0
    assert len(receiver.got("/gone?t=1")) == 1
    fetched = (await client.get(f"{ENDPOINTS}/{endpoint['id']}", headers=auth)).json()
    assert (fetched["status"], fetched["disabled_reason"]) == ("disabled", "gone")
    rows = await deliveries(services.pool, endpoint_id=endpoint["id"])
    assert sorted((r["status"], r["attempt_count"]) for r in rows) == [
        ("canceled", 0),
        ("canceled", 0),
        ("canceled", 1),
    ]
    async with services.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT payload FROM events WHERE type = 'webhook_endpoint.updated'"
            " AND aggregate_id = %s",
            (endpoint["id"],),
        )
        [(payload,)] = await cur.fetchall()
    assert payload == fetched, "the merchant hears of it"
    # A resend waits for the merchant to enable the endpoint again.
    refused = await client.post(f"{DELIVERIES}/{rows[0]['id']}/retry", headers=auth)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "webhook_endpoint_disabled"


async def test_gives_up_after_three_days_and_a_manual_resend_sends_it_again(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    services: Services,
    merchant: NewMerchant,
    clock: ManualClock,
    receiver: Receiver,
    http: httpx.AsyncClient,
) -> None:
    endpoint, _ = await hooked(client, auth, services, merchant, f"{receiver.url}/fail?t=1")
    started = clock.now()
    waits: list[timedelta] = []
    for seed in range(200):
        summary = await work(services, http, seed=seed)
        assert summary.claimed == 1
        [row] = await deliveries(services.pool, endpoint_id=endpoint["id"])
        if row["status"] == "failed":
            break
        wait = row["next_attempt_at"] - clock.now()
        bound = min(MAX_DELAY, FIRST_DELAY * 2 ** min(row["attempt_count"] - 1, 30))
        assert MIN_DELAY <= wait <= bound or row["next_attempt_at"] == started + RETRY_WINDOW
        waits.append(wait)
        clock.current = row["next_attempt_at"]
    assert row["status"] == "failed" and row["next_attempt_at"] is None
    assert clock.now() == started + RETRY_WINDOW, "the last try is made at 3 days"
    assert 10 < row["attempt_count"] < 100
    assert len(set(waits)) == len(waits), "jittered"
    [delivery] = await api_deliveries(client, auth, status="failed")
    attempts = await api_attempts(client, auth, delivery["id"])
    assert len(attempts) == row["attempt_count"]
    assert {a["status_code"] for a in attempts} == {500}
    assert attempts[0]["response_excerpt"] == "x" * 500, "only the start of an answer is kept"

    # The receiver is fixed; the merchant resends, with an Idempotency-Key.
    fixed = f"{receiver.url}/ok?t=resend"
    await client.post(f"{ENDPOINTS}/{endpoint['id']}", headers=auth, json={"url": fixed})
    clock.advance(timedelta(days=1))
    resend = f"{DELIVERIES}/{delivery['id']}/retry"
    keyed = {**auth, "Idempotency-Key": "resend-1"}
    first = await client.post(resend, headers=keyed)
    assert first.status_code == 200, first.text
    assert (first.json()["status"], first.json()["next_attempt"]) == ("pending", unix(clock.now()))
    again = await client.post(resend, headers=keyed)
    assert again.headers.get("idempotent-replayed") == "true" and again.json() == first.json()
    async with services.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT payload FROM events WHERE type = 'webhook_delivery.retry_scheduled'"
        )
        assert [row[0] for row in await cur.fetchall()] == [first.json()]
    assert (await work(services, http)).succeeded == 1
    assert len(receiver.got("/ok?t=resend")) == 1
    [delivery] = await api_deliveries(client, auth, webhook_endpoint=endpoint["id"])
    assert (delivery["status"], delivery["attempt_count"]) == (
        "succeeded",
        row["attempt_count"] + 1,
    )


async def test_a_resend_leaves_a_delivery_in_flight_alone(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    services: Services,
    merchant: NewMerchant,
    clock: ManualClock,
    receiver: Receiver,
) -> None:
    await hooked(client, auth, services, merchant, f"{receiver.url}/ok?t=inflight")
    async with services.pool.connection() as conn:
        [claimed] = await repo.claim(conn, clock.now(), clock.now() + OPTIONS.lease, "w1", 10)
    reply = await client.post(f"{DELIVERIES}/{claimed.id}/retry", headers=auth)
    assert reply.status_code == 200
    assert reply.json()["next_attempt"] == unix(clock.now() + OPTIONS.lease)


# --- Workers --------------------------------------------------------------------------


async def test_several_workers_share_deliveries_without_sending_any_twice(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    services: Services,
    merchant: NewMerchant,
    receiver: Receiver,
    http: httpx.AsyncClient,
) -> None:
    await hooked(client, auth, services, merchant, f"{receiver.url}/ok?t=many", customers=30)
    options = dataclasses.replace(OPTIONS, batch=4)
    claimed = 0
    for _ in range(20):
        rounds = await asyncio.gather(*(work(services, http, options, seed) for seed in range(3)))
        claimed += sum(r.claimed for r in rounds)
        if not any(r.claimed for r in rounds):
            break
    requests = receiver.got("/ok?t=many")
    event_ids = [orjson.loads(r.body)["id"] for r in requests]
    assert claimed == len(event_ids) == len(set(event_ids)) == 30
    rows = await deliveries(services.pool, event_type="customer.created")
    assert {(r["status"], r["attempt_count"]) for r in rows} == {("succeeded", 1)}


async def test_a_dead_workers_claims_come_back_when_its_lease_runs_out(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    services: Services,
    merchant: NewMerchant,
    clock: ManualClock,
    receiver: Receiver,
    http: httpx.AsyncClient,
) -> None:
    await hooked(client, auth, services, merchant, f"{receiver.url}/ok?t=dead", customers=2)
    async with services.pool.connection() as conn:
        dead = await repo.claim(conn, clock.now(), clock.now() + OPTIONS.lease, "dead", 10)
    assert len(dead) == 2
    assert (await work(services, http)).claimed == 0, "held by the dead worker"
    clock.advance(OPTIONS.lease + timedelta(seconds=1))
    assert (await work(services, http)).succeeded == 2
    # Were it only slow, its outcome would not overwrite the new holder's.
    async with services.pool.connection() as conn:
        assert not await repo.record_outcome(conn, dead[0], "dead", clock.now(), "failed", None)
    assert {r["status"] for r in await deliveries(services.pool)} == {"succeeded"}


# --- The address guard at delivery ----------------------------------------------------


async def test_a_delivery_to_loopback_is_refused_unless_allowed(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    services: Services,
    merchant: NewMerchant,
    receiver: Receiver,
    http: httpx.AsyncClient,
) -> None:
    endpoint, _ = await hooked(client, auth, services, merchant, f"{receiver.url}/ok?t=guard")
    summary = await work(services, http, DeliveryOptions(timeout=0.5))
    assert summary.retrying == 1
    assert receiver.got("/ok?t=guard") == []
    [delivery] = await api_deliveries(client, auth, webhook_endpoint=endpoint["id"])
    [attempt] = await api_attempts(client, auth, delivery["id"])
    assert attempt["error"] == "refused: 127.0.0.1 is a loopback address"
    assert attempt["address"] == "127.0.0.1" and attempt["status_code"] is None


async def test_a_name_is_connected_to_at_the_address_checked_with_its_own_host_header(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    services: Services,
    merchant: NewMerchant,
    receiver: Receiver,
    http: httpx.AsyncClient,
) -> None:
    port = httpx.URL(receiver.url).port
    looked_up: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        looked_up.append(host)
        return ["127.0.0.1"] if host == "hooks.test" else []

    await hooked(client, auth, services, merchant, f"http://hooks.test:{port}/ok?t=host")
    options = dataclasses.replace(OPTIONS, resolve=resolve)
    assert (await work(services, http, options)).succeeded == 1
    [request] = receiver.got("/ok?t=host")
    assert request.headers["host"] == f"hooks.test:{port}"
    assert request.headers["connection"] == "close"
    assert looked_up == ["hooks.test"]


def test_over_tls_the_name_is_the_sni_and_the_certificates_name() -> None:
    url, headers, extensions = _target(
        httpx.URL("https://hooks.example.com/in?x=1"), "93.184.215.14"
    )
    assert str(url) == "https://93.184.215.14/in?x=1"
    assert headers == {"Host": "hooks.example.com", "Connection": "close"}
    assert extensions == {"sni_hostname": "hooks.example.com"}
    url, headers, extensions = _target(httpx.URL("https://[2606:4700::1111]:8443/"), "x")
    assert (str(url), extensions) == ("https://[2606:4700::1111]:8443/", {})
    url, _, _ = _target(httpx.URL("http://hooks.example.com:8080/"), "2606:4700::1111")
    assert str(url) == "http://[2606:4700::1111]:8080/"


def test_digest_matches_stripe_sdk_computation() -> None:
    """The SDK's own signer agrees with ours on a fixed input."""
    from payrail.events.webhooks.signing import stripe_headers

    body, secret = b'{"id": "evt_1"}', "whsec_test"
    header = stripe_headers(secret, 1700000000, body)["Stripe-Signature"]
    expected = stripe.WebhookSignature._compute_signature("1700000000." + body.decode(), secret)
    assert header == f"t=1700000000,v1={expected}"
    assert expected == hmac.new(secret.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()


async def test_a_pending_delivery_of_a_deleted_endpoint_is_canceled_not_sent(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    services: Services,
    merchant: NewMerchant,
    receiver: Receiver,
    http: httpx.AsyncClient,
) -> None:
    """What a fan-out racing a delete could once leave: a pending delivery whose endpoint
    is gone with its secret. It must neither be sent nor stop everyone else's."""
    gone, _ = await hooked(client, auth, services, merchant, f"{receiver.url}/ok?t=deleted")
    await create_endpoint(client, auth, f"{receiver.url}/ok?t=live")
    await customer(client, auth, "second@x.io")
    await fan_out_events(services.pool, services.clock, merchant.id)
    async with services.pool.connection() as conn:
        await conn.execute(
            "UPDATE webhook_endpoints SET deleted_at = %s,"
            " secret_key_id = NULL, secret_sealed = NULL WHERE id = %s",
            (services.clock.now(), gone["id"]),
        )
    done = await work(services, http)
    assert done.succeeded >= 1
    assert receiver.got("/ok?t=deleted") == []
    assert receiver.got("/ok?t=live")
    assert {row["status"] for row in await deliveries(services.pool, endpoint_id=gone["id"])} == {
        "canceled"
    }
    assert (await work(services, http)).claimed == 0


def test_payrails_own_verifier_agrees_with_the_sdk_and_refuses_forgeries() -> None:
    """`payrail demo` verifies with verify_stripe_signature; it must accept what the SDK
    accepts and refuse what the SDK refuses."""
    from payrail.events.webhooks.signing import stripe_headers, verify_stripe_signature

    body, secret, now = b'{"id": "evt_1", "object": "event"}', "whsec_test", 1_700_000_000
    header = stripe_headers(secret, now, body)["Stripe-Signature"]
    verify_stripe_signature(secret, header, body, now=now + 10)
    stripe.WebhookSignature.verify_header(body.decode(), header, secret, tolerance=None)
    forgeries = [
        (secret, header, body + b" "),  # the body changed
        ("whsec_other", header, body),  # another secret
        (secret, header.replace("v1=", "v0="), body),  # no v1 signature
        (secret, header.split(",")[1], body),  # no timestamp
    ]
    for key, forged, content in forgeries:
        with pytest.raises(ValueError):
            verify_stripe_signature(key, forged, content, now=now + 10)
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.WebhookSignature.verify_header(content.decode(), forged, key, tolerance=None)
    with pytest.raises(ValueError):
        verify_stripe_signature(secret, header, body, now=now + 301)  # too old
