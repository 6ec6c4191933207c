"""The sandbox's webhooks over real HTTP: an event per state change, signed, retried after
failures, duplicated and delayed by seeded draws, and received by a real endpoint."""

from __future__ import annotations

import asyncio
import hmac
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from payrail.clock import ManualClock, unix
from payrail.connectors.base import ProviderEvent
from payrail.connectors.sandbox import SandboxConfig
from payrail.connectors.sandbox import webhooks as hooks
from payrail.connectors.sandbox.server import run_sandbox
from payrail.connectors.sandbox_connector import SandboxConnector
from tests.connectors.sandbox.helpers import AUTH, SECRET, VISA, card, new_key, ok, pay, post

WEBHOOK_SECRET = "whsec_tests"
DECLINED = "4000000000000002"  # generic_decline
THREE_DS = "4000002760003184"  # authentication_required
AMEX = "378282246310005"
RETRIES = (0.05, 0.05, 0.05)  # four attempts, quickly
WAIT_SECONDS = 5


@dataclass(frozen=True, slots=True)
class Arrival:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        event: dict[str, Any] = orjson.loads(self.body)
        return event


@dataclass
class Receiver:
    """A webhook endpoint: records every delivery in arrival order and answers 500 to the
    first ``fail_each`` deliveries of each event id, 200 after."""

    url: str = ""
    fail_each: int = 0
    arrivals: list[Arrival] = field(default_factory=list)
    _seen: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def receive(self, request: Request) -> Response:
        body = await request.body()
        event_id = orjson.loads(body)["id"]
        with self._lock:
            self.arrivals.append(Arrival(dict(request.headers), body))
            self._seen[event_id] += 1
            failing = self._seen[event_id] <= self.fail_each
        return Response(status_code=500 if failing else 200)

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [arrival.event for arrival in self.arrivals]


def _listening() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@contextmanager
def receiver(fail_each: int = 0) -> Iterator[Receiver]:
    sock = _listening()
    host, port = sock.getsockname()
    found = Receiver(url=f"http://{host}:{port}/hooks", fail_each=fail_each)
    app = Starlette(routes=[Route("/hooks", found.receive, methods=["POST"])])
    config = uvicorn.Config(app, log_level="warning", log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=asyncio.run, args=(server.serve(sockets=[sock]),))
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the receiver did not start"
        time.sleep(0.005)
    try:
        yield found
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@asynccontextmanager
async def sandbox(clock: ManualClock, **config: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = {
        "secret": SECRET,
        "webhook_secret": WEBHOOK_SECRET,
        "webhook_retry_seconds": RETRIES,
        "webhook_timeout_seconds": 2.0,
        **config,
    }
    with run_sandbox(SandboxConfig(**settings), clock, grace_seconds=1) as url:
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=10) as psp:
            yield psp


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def connector() -> AsyncIterator[SandboxConnector]:
    made = SandboxConnector("http://127.0.0.1:9", SECRET, webhook_secret=WEBHOOK_SECRET)
    yield made
    await made.aclose()


async def record(psp: httpx.AsyncClient) -> dict[str, list[dict[str, Any]]]:
    body: dict[str, list[dict[str, Any]]] = ok(await psp.get("/sandbox/record"))
    return body


async def settled(
    psp: httpx.AsyncClient, found: Receiver, arrivals: int, attempts: int | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Wait until ``arrivals`` deliveries reached the receiver and the sandbox recorded
    ``attempts`` (default: as many) attempts; the record then."""
    attempts = arrivals if attempts is None else attempts
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        made = await record(psp)
        if len(found.arrivals) >= arrivals and len(made["deliveries"]) >= attempts:
            return made
        assert time.monotonic() < deadline, (len(found.arrivals), len(made["deliveries"]))
        await asyncio.sleep(0.01)


def verified(connector: SandboxConnector, arrival: Arrival, clock: ManualClock) -> ProviderEvent:
    return connector.parse_webhook(arrival.headers, arrival.body, unix(clock.now()))


async def test_every_state_change_sends_one_signed_event_with_its_object(
    clock: ManualClock, connector: SandboxConnector
) -> None:
    with receiver() as found:
        async with sandbox(clock, webhook_url=found.url) as psp:
            captured = ok(await pay(psp, key=(key := new_key())))
            replayed = ok(await pay(psp, key=key, reference=captured["reference"]))
            assert replayed == captured, "a replay changes nothing, so sends nothing"
            held = ok(await pay(psp, capture=False))
            capture = f"/v1/payments/{held['id']}/capture"
            taken = ok(await post(psp, capture, {"amount": 600}, key=new_key()))
            voidable = ok(await pay(psp, capture=False))
            voided = ok(await post(psp, f"/v1/payments/{voidable['id']}/void", {}, key=new_key()))
            declined = ok(await pay(psp, card=card(DECLINED)))
            challenged = ok(await pay(psp, card=card(THREE_DS)))
            refunds = f"/v1/payments/{captured['id']}/refunds"
            refund = ok(await post(psp, refunds, {"amount": 300}, key=new_key()))
            # A refused request changes nothing either.
            again = await post(psp, f"/v1/payments/{voidable['id']}/void", {}, key=new_key())
            assert again.status_code == 400

            expected = [
                ("payment.captured", captured, 1),
                ("payment.authorized", held, 1),
                ("payment.captured", taken, 2),
                ("payment.authorized", voidable, 1),
                ("payment.voided", voided, 2),
                ("payment.declined", declined, 1),
                ("payment.requires_authentication", challenged, 1),
                ("refund.succeeded", refund, 1),
            ]
            made = await settled(psp, found, len(expected))

    events = made["events"]
    assert [(e["type"], e["data"]["object"], e["sequence"]) for e in events] == expected
    for event in events:
        assert event["id"].startswith("sbxevt_") and event["object"] == "event"
        assert event["created"] == unix(clock.now())
    # Delivered once each, each attempt answered 200; in any order, as deliveries run
    # concurrently, even without a delay.
    by_id = {event["id"]: event for event in events}
    assert sorted(by_id) == sorted(arrival.event["id"] for arrival in found.arrivals)
    assert sorted(
        (d["event"], d["copy"], d["attempt"], d["status"]) for d in made["deliveries"]
    ) == (sorted((event_id, 1, 1, 200) for event_id in by_id))
    for arrival in found.arrivals:
        event = by_id[arrival.event["id"]]
        assert arrival.event == event
        assert arrival.headers["content-type"] == "application/json"
        # The header is Stripe's scheme, checked here by hand and by the connector.
        stamp, signed = arrival.headers["sandbox-signature"].split(",")
        assert stamp == f"t={unix(clock.now())}"
        mac = hmac.new(WEBHOOK_SECRET.encode(), f"{stamp[2:]}.".encode() + arrival.body, "sha256")
        assert signed == f"v1={mac.hexdigest()}"
        parsed = verified(connector, arrival, clock)
        assert (parsed.id, parsed.type, parsed.sequence, parsed.created) == (
            event["id"],
            event["type"],
            event["sequence"],
            event["created"],
        )
        assert (parsed.object_id, parsed.payload) == (
            event["data"]["object"]["id"],
            event["data"]["object"],
        )


async def test_no_event_carries_a_card_number(clock: ManualClock) -> None:
    numbers = [VISA, AMEX, DECLINED, THREE_DS]
    with receiver() as found:
        async with sandbox(clock, webhook_url=found.url, webhook_duplicate_rate=1.0) as psp:
            for number in numbers:
                payment = ok(await pay(psp, card=card(number), capture=False))
                if payment["status"] == "authorized":
                    path = f"/v1/payments/{payment['id']}/capture"
                    ok(await post(psp, path, {}, key=new_key()))
            made = await settled(psp, found, 2 * (len(numbers) + 2))
    everything = b"".join(arrival.body for arrival in found.arrivals) + orjson.dumps(made)
    for number in numbers:
        assert number.encode() not in everything
    for event in made["events"]:
        assert set(event["data"]["object"]["card"]) == {"brand", "last4"}


async def test_a_failed_delivery_is_retried_until_it_succeeds(
    clock: ManualClock, connector: SandboxConnector
) -> None:
    with receiver(fail_each=2) as found:
        async with sandbox(clock, webhook_url=found.url) as psp:
            payment = ok(await pay(psp))
            made = await settled(psp, found, 3)
    (event,) = made["events"]
    assert [arrival.event for arrival in found.arrivals] == [event] * 3
    assert [(d["attempt"], d["status"]) for d in made["deliveries"]] == [
        (1, 500),
        (2, 500),
        (3, 200),
    ]
    for arrival in found.arrivals:
        assert verified(connector, arrival, clock).object_id == payment["id"]


async def test_a_delivery_gives_up_after_a_bounded_number_of_attempts(clock: ManualClock) -> None:
    # Nothing listens on a port just released: every attempt fails to connect.
    closed = _listening()
    host, port = closed.getsockname()
    closed.close()
    with receiver(fail_each=100) as found:
        async with sandbox(clock, webhook_url=found.url) as psp:
            ok(await pay(psp))
            refused = await settled(psp, found, len(RETRIES) + 1)
            url = f"http://{host}:{port}/hooks"
            assert (
                ok(await post(psp, "/sandbox/faults", {"webhook_url": url}))["webhook_url"] == url
            )
            ok(await pay(psp))
            made = await settled(psp, found, len(RETRIES) + 1, 2 * (len(RETRIES) + 1))
            await asyncio.sleep(0.2)
            assert len((await record(psp))["deliveries"]) == 2 * (len(RETRIES) + 1), "no more"
    attempts = [(d["attempt"], d["status"], d["error"]) for d in refused["deliveries"]]
    assert attempts == [(n, 500, None) for n in range(1, len(RETRIES) + 2)]
    unreachable = made["deliveries"][len(RETRIES) + 1 :]
    assert {d["event"] for d in unreachable} == {made["events"][1]["id"]}
    assert [(d["attempt"], d["status"], d["error"]) for d in unreachable] == [
        (n, None, "ConnectError") for n in range(1, len(RETRIES) + 2)
    ]


async def test_at_rate_one_every_event_arrives_twice_with_one_id(
    clock: ManualClock, connector: SandboxConnector
) -> None:
    with receiver() as found:
        async with sandbox(clock, webhook_url=found.url, webhook_duplicate_rate=1.0) as psp:
            for _ in range(3):
                ok(await pay(psp))
            made = await settled(psp, found, 6)
    ids = [event["id"] for event in made["events"]]
    assert Counter(verified(connector, a, clock).id for a in found.arrivals) == {i: 2 for i in ids}
    bodies = Counter(arrival.body for arrival in found.arrivals)
    assert set(bodies.values()) == {2}, "a duplicate is the same event, byte for byte"
    copies = Counter((d["event"], d["copy"]) for d in made["deliveries"])
    assert copies == {(i, copy): 1 for i in ids for copy in (1, 2)}


async def test_delays_deliver_out_of_order_and_sequence_restores_the_order(
    clock: ManualClock, connector: SandboxConnector
) -> None:
    most, margin = 400, 150
    with receiver() as found:
        async with sandbox(clock, webhook_url=found.url, webhook_delay_ms=most, seed=3) as psp:
            # Authorize and capture until the draws put a capture's event well ahead of its
            # authorization's: then it must arrive first (about one pair in five does).
            pairs = 0
            while True:
                pairs += 1
                assert pairs <= 100, "the draws never put a capture ahead"
                held = ok(await pay(psp, capture=False))
                path = f"/v1/payments/{held['id']}/capture"
                ok(await post(psp, path, {}, key=new_key()))
                authorized, captured = (await record(psp))["events"][-2:]
                late = hooks.delay_ms(3, authorized["id"], 1, most)
                if late - hooks.delay_ms(3, captured["id"], 1, most) > margin:
                    break
            made = await settled(psp, found, 2 * pairs)

    arrived = [verified(connector, arrival, clock) for arrival in found.arrivals]
    order = [event.id for event in arrived]
    assert order.index(captured["id"]) < order.index(authorized["id"])
    assert order != [event["id"] for event in made["events"]]
    # The delays recorded are the seeded draws.
    for delivery in made["deliveries"]:
        assert delivery["delay_ms"] == hooks.delay_ms(3, delivery["event"], 1, most) <= most
    # A consumer that keeps the highest sequence per object ends where the sandbox did.
    latest: dict[str, ProviderEvent] = {}
    for event in arrived:
        if event.object_id not in latest or event.sequence > latest[event.object_id].sequence:
            latest[event.object_id] = event
    assert {e.object_id: e.payload["status"] for e in latest.values()} == {
        p["id"]: p["status"] for p in made["payments"]
    }
    assert latest and all(e.type == "payment.captured" for e in latest.values())


async def test_duplicates_and_delays_are_drawn_from_the_seed_and_the_event_id(
    clock: ManualClock,
) -> None:
    with receiver() as found:
        async with sandbox(clock, webhook_url=found.url) as psp:
            settings = {"seed": 7, "webhook_duplicate_rate": 0.5, "webhook_delay_ms": 20}
            reply = ok(await post(psp, "/sandbox/faults", settings))
            assert reply["seed"] == 7 and reply["webhook_duplicate_rate"] == 0.5
            for _ in range(30):
                ok(await pay(psp))
            events = (await record(psp))["events"]
            twice = {e["id"] for e in events if hooks.duplicated(7, e["id"], 0.5)}
            made = await settled(psp, found, len(events) + len(twice))

    arrived = Counter(event["id"] for event in found.events())
    assert {event_id for event_id, n in arrived.items() if n == 2} == twice
    assert set(arrived.values()) <= {1, 2} and set(arrived) == {e["id"] for e in events}
    assert 5 <= len(twice) <= 25
    for delivery in made["deliveries"]:
        assert delivery["delay_ms"] == hooks.delay_ms(7, delivery["event"], delivery["copy"], 20)
    # The same inputs always draw the same; another seed draws otherwise.
    ids = [event["id"] for event in events]
    assert twice == {i for i in ids if hooks.duplicated(7, i, 0.5)}
    assert twice != {i for i in ids if hooks.duplicated(8, i, 0.5)}
    assert all(hooks.duplicated(7, i, 1.0) and not hooks.duplicated(7, i, 0.0) for i in ids)


async def test_a_dispute_is_made_through_the_control_endpoint(
    clock: ManualClock, connector: SandboxConnector
) -> None:
    with receiver() as found:
        async with sandbox(clock, webhook_url=found.url) as psp:
            payment = ok(await pay(psp, amount=2000))
            body = {"payment": payment["id"], "amount": 1500, "reason": "fraudulent"}
            dispute = ok(await psp.post("/sandbox/disputes", json=body))
            assert dispute == {
                "id": dispute["id"],
                "object": "dispute",
                "payment": payment["id"],
                "amount": 1500,
                "reason": "fraudulent",
                "status": "needs_response",
                "created": unix(clock.now()),
            }
            assert dispute["id"].startswith("sbxdp_")

            held = ok(await pay(psp, capture=False))
            other = ok(await pay(psp))
            refused = {
                "twice": (body, 400, "invalid_state"),
                "not captured": ({"payment": held["id"]}, 400, "invalid_state"),
                "too much": ({"payment": other["id"], "amount": 1001}, 400, "amount_too_large"),
                "unknown": ({"payment": "sbxpay_nope"}, 404, "resource_missing"),
                "no payment": ({"amount": 5}, 400, "invalid_request"),
                "bad reason": (
                    {"payment": other["id"], "reason": "boredom"},
                    400,
                    "invalid_request",
                ),
                "odd reason": ({"payment": other["id"], "reason": []}, 400, "invalid_request"),
                "unknown field": ({"payment": other["id"], "x": 1}, 400, "invalid_request"),
            }
            for case, (bad, status, code) in refused.items():
                reply = await psp.post("/sandbox/disputes", json=bad)
                assert (reply.status_code, reply.json()["error"]["code"]) == (status, code), case
            no_auth = await psp.post("/sandbox/disputes", json=body, headers={"Authorization": ""})
            assert no_auth.status_code == 401
            whole = ok(await psp.post("/sandbox/disputes", json={"payment": other["id"]}))
            assert (whole["amount"], whole["reason"]) == (1000, "general")
            made = await settled(psp, found, 5)

    assert made["disputes"] == [dispute, whole]
    disputed = [e for e in made["events"] if e["type"] == "dispute.created"]
    assert [(e["data"]["object"], e["sequence"]) for e in disputed] == [(dispute, 1), (whole, 1)]
    parsed = [verified(connector, arrival, clock) for arrival in found.arrivals]
    assert [(e.type, e.object_id) for e in parsed if e.type.startswith("dispute")] == [
        ("dispute.created", dispute["id"]),
        ("dispute.created", whole["id"]),
    ]


async def test_nothing_is_sent_without_a_webhook_url(clock: ManualClock) -> None:
    with receiver() as found:
        async with sandbox(clock) as psp:
            ok(await pay(psp))
            await asyncio.sleep(0.2)
            made = await record(psp)
            assert (len(made["events"]), made["deliveries"], found.arrivals) == (1, [], [])

            # Turned on, then off again, at run time.
            reply = ok(await post(psp, "/sandbox/faults", {"webhook_url": found.url}))
            assert reply["webhook_url"] == found.url and "webhook_secret" not in reply
            ok(await pay(psp))
            await settled(psp, found, 1)
            assert (
                ok(await post(psp, "/sandbox/faults", {"webhook_url": None}))["webhook_url"] is None
            )
            ok(await pay(psp))
            await asyncio.sleep(0.2)
            made = await record(psp)
    assert len(made["events"]) == 3
    assert [arrival.event["id"] for arrival in found.arrivals] == [made["events"][1]["id"]]
    assert len(made["deliveries"]) == 1


async def test_webhook_settings_change_at_run_time_and_are_checked(
    clock: ManualClock, connector: SandboxConnector
) -> None:
    with receiver() as found:
        async with sandbox(clock, webhook_url=found.url) as psp:
            ok(await post(psp, "/sandbox/faults", {"webhook_secret": "whsec_rolled"}))
            ok(await pay(psp))
            await settled(psp, found, 1)
            for bad in (
                {"webhook_url": "ftp://example.com/hooks"},
                {"webhook_url": "/hooks"},
                {"webhook_url": 5},
                {"webhook_secret": ""},
                {"webhook_duplicate_rate": 2},
                {"webhook_duplicate_rate": True},
                {"webhook_delay_ms": -1},
                {"webhook_delay_ms": 1.5},
                {"webhook_delay_ms": 10**9},
                {"webhook_delay": 5},
            ):
                reply = await post(psp, "/sandbox/faults", bad)
                assert (reply.status_code, reply.json()["error"]["code"]) == (
                    400,
                    "invalid_request",
                ), bad
            # A refused change changes nothing, the fault part included.
            mixed = await post(psp, "/sandbox/faults", {"rate": 0.5, "webhook_delay_ms": -1})
            assert mixed.status_code == 400
            assert ok(await post(psp, "/sandbox/faults", {}))["rate"] == 0.0

    (arrival,) = found.arrivals
    rolled = SandboxConnector("http://127.0.0.1:9", SECRET, webhook_secret="whsec_rolled")
    try:
        assert rolled.parse_webhook(arrival.headers, arrival.body, unix(clock.now())).type == (
            "payment.captured"
        )
    finally:
        await rolled.aclose()
    with pytest.raises(Exception, match="signature"):
        verified(connector, arrival, clock)


async def test_the_api_reply_never_waits_for_a_delivery(clock: ManualClock) -> None:
    # A receiver that accepts connections and never answers.
    silent = _listening()
    host, port = silent.getsockname()
    try:
        url = f"http://{host}:{port}/hooks"
        async with sandbox(clock, webhook_url=url, webhook_timeout_seconds=30) as psp:
            started = time.monotonic()
            for _ in range(3):
                ok(await pay(psp))
            assert time.monotonic() - started < 1
            assert (await record(psp))["deliveries"] == [], "still waiting for the receiver"
    finally:
        silent.close()
