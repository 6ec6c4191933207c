"""A real webhook receiver on a loopback port, and what webhook tests share: endpoints
made through the API, events fanned out through the real consumer, the worker's runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool

from payrail.clock import Clock
from payrail.events import consumers
from payrail.events.transport import Delivered
from payrail.events.webhooks.service import CONSUMER

Json = dict[str, Any]
ENDPOINTS = "/v1/webhook_endpoints"
DELIVERIES = "/v1/webhook_deliveries"
HANG = 1.5  # seconds a /slow answer takes; the worker's timeout in tests is shorter


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers by path, scripted: /ok 200; /flaky 500 then 200; /fail always 500;
    /slow hangs past the worker's timeout; /gone 410; /busy 429 with Retry-After: 120
    then 200. A query string (?t=test) keeps each test's requests apart. Keeps every
    request it got."""

    url: str
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def got(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def answer(self, path: str) -> tuple[int, dict[str, str], bytes]:
        seen = len(self.got(path))  # this request included
        route = path.partition("?")[0]
        if route == "/ok":
            return 200, {}, b'{"received": true}'
        if route == "/flaky":
            return (500, {}, b"boom") if seen == 1 else (200, {}, b"ok")
        if route == "/fail":
            return 500, {}, b"x" * 5000  # a long answer: only its start is kept
        if route == "/slow":
            time.sleep(HANG)
            return 200, {}, b"too late"
        if route == "/gone":
            return 410, {}, b"gone"
        if route == "/busy":
            return (429, {"Retry-After": "120"}, b"slow down") if seen == 1 else (200, {}, b"")
        return 404, {}, b"no such hook"


@contextmanager
def run_receiver() -> Iterator[Receiver]:
    receiver = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            with receiver.lock:
                receiver.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
            status, headers, answer = receiver.answer(self.path)
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except OSError:
                pass  # the worker gave up waiting (/slow)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


async def create_endpoint(
    client: httpx.AsyncClient, auth: dict[str, str], url: str, **fields: Any
) -> Json:
    body = {"url": url, "enabled_events": ["*"], **fields}
    reply = await client.post(ENDPOINTS, json=body, headers=auth)
    assert reply.status_code == 200, reply.text
    obj: Json = reply.json()
    return obj


async def fan_out_events(
    pool: AsyncConnectionPool,
    clock: Clock,
    merchant_id: str | None = None,
    *,
    aggregate_id: str | None = None,
) -> list[str]:
    """Runs the webhooks consumer over every event of the merchant, or about one object,
    as the transport would hand them over; the outcomes, in event order."""
    assert merchant_id or aggregate_id
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT event_envelope(e) FROM events e"
            " WHERE (%(merchant)s::text IS NULL OR merchant_id = %(merchant)s)"
            " AND (%(aggregate)s::text IS NULL OR aggregate_id = %(aggregate)s) ORDER BY seq",
            {"merchant": merchant_id, "aggregate": aggregate_id},
        )
        values = [str(row[0]).encode() for row in await cur.fetchall()]
    outcomes: list[str] = []
    for offset, value in enumerate(values):
        delivered = Delivered("payrail.events", 0, offset, "", value, {})
        outcomes.append(await consumers.handle(pool, CONSUMER, delivered, clock))
    return outcomes


async def deliveries(pool: AsyncConnectionPool, **where: Any) -> list[Json]:
    """Delivery rows, oldest first, filtered by equal columns."""
    clauses = " AND ".join(f"{column} = %s" for column in where) or "true"
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, endpoint_id, event_id, event_type, status, attempt_count,"
            " next_attempt_at, window_started_at FROM webhook_deliveries"
            f" WHERE {clauses} ORDER BY seq",
            list(where.values()),
        )
        names = [c.name for c in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]
