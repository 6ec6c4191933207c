"""Outgoing webhooks: an event for every state change, signed as Stripe signs them, and
delivered the way real ones arrive: late, twice, out of order, after failures.

Signing: ``Sandbox-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``,
Stripe's ``Stripe-Signature`` scheme under another name, re-signed at every attempt.

Delivery happens in tasks on the server's event loop, so it never delays an API reply.
Whether an event goes twice and how long each copy waits before its first attempt depend
only on (seed, event id, purpose), hashed as the fault draws are: a recorded event's fate
can be recomputed, and a test can predict which events arrive twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import httpx
import orjson
import structlog

from payrail.clock import Clock, unix
from payrail.connectors.sandbox.config import (
    MAX_WEBHOOK_DELAY_MS,
    SandboxConfig,
    check_webhook_url,
)
from payrail.connectors.sandbox.faults import exact_rate

log = structlog.get_logger(__name__)

SIGNATURE_HEADER: Final = "Sandbox-Signature"
USER_AGENT: Final = "payrail-sandbox-webhooks/1"

EVENT_TYPES: Final = frozenset(
    {
        "payment.authorized",
        "payment.captured",
        "payment.declined",
        "payment.requires_authentication",
        "payment.voided",
        "refund.succeeded",
        "dispute.created",
    }
)


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """Where and how events go; replaced whole by ``POST /sandbox/faults``."""

    url: str | None
    secret: str
    duplicate_rate: float
    delay_ms: int

    def __post_init__(self) -> None:
        if self.url is not None:
            check_webhook_url(self.url)
        if not self.secret:
            raise ValueError("the webhook secret must not be empty")
        exact_rate(self.duplicate_rate)
        if not 0 <= self.delay_ms <= MAX_WEBHOOK_DELAY_MS:
            raise ValueError(f"a webhook delay is 0 to {MAX_WEBHOOK_DELAY_MS} ms")

    @classmethod
    def of(cls, config: SandboxConfig) -> WebhookSettings:
        return cls(
            config.webhook_url,
            config.webhook_secret,
            config.webhook_duplicate_rate,
            config.webhook_delay_ms,
        )

    def to_json(self) -> dict[str, object]:
        # Never the secret: replies and logs are read by more people than should sign.
        return {
            "webhook_url": self.url,
            "webhook_duplicate_rate": self.duplicate_rate,
            "webhook_delay_ms": self.delay_ms,
        }


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    type: str
    created: int
    sequence: int  # per object, from 1: lets a consumer drop an event older than one it has
    object: dict[str, Any]  # the payment, refund or dispute as the API returns it

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "event",
            "type": self.type,
            "created": self.created,
            "sequence": self.sequence,
            "data": {"object": self.object},
        }


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Sandbox-Signature`` header value for ``body`` sent at ``timestamp``."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _uniform(seed: int, event_id: str, purpose: str) -> int:
    """Uniform in [0, 2**64), fixed by its inputs."""
    # JSON encodes the triple unambiguously, as the fault draws do.
    digest = hashlib.sha256(orjson.dumps([seed, event_id, purpose])).digest()
    return int.from_bytes(digest[:8], "big")


def duplicated(seed: int, event_id: str, rate: float) -> bool:
    """Whether this event is delivered twice: a share ``rate`` of events are."""
    fraction = exact_rate(rate)
    # Compared in integers, so rate 1 duplicates every event and 0 none.
    return _uniform(seed, event_id, "duplicate") * fraction.denominator < fraction.numerator << 64


def delay_ms(seed: int, event_id: str, copy: int, most: int) -> int:
    """How long copy ``copy`` (1, or 2 for a duplicate) waits before its first attempt."""
    if most == 0:
        return 0
    # The modulo's bias is below 2**-40 for any delay allowed: no test can see it.
    return _uniform(seed, event_id, f"delay:{copy}") % (most + 1)


def delays(seed: int, event_id: str, settings: WebhookSettings) -> tuple[int, ...]:
    """The initial delay of each copy of the event that will be sent (one or two)."""
    copies = 2 if duplicated(seed, event_id, settings.duplicate_rate) else 1
    return tuple(delay_ms(seed, event_id, copy, settings.delay_ms) for copy in range(1, copies + 1))


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at delivering one copy of an event, as ``GET /sandbox/record`` lists it."""

    event: str
    copy: int
    attempt: int
    status: int | None  # the receiver's HTTP status; None when no reply came
    error: str | None  # why no reply came (the exception's class name)
    delay_ms: int  # the copy's drawn delay before its first attempt

    def to_json(self) -> dict[str, object]:
        return {
            "event": self.event,
            "copy": self.copy,
            "attempt": self.attempt,
            "status": self.status,
            "error": self.error,
            "delay_ms": self.delay_ms,
        }


@dataclass(frozen=True, slots=True)
class _Copy:
    """One copy of an event on its way, with the settings it was made under (a change of
    settings affects later events, never one already on its way)."""

    event_id: str
    body: bytes
    url: str
    secret: str
    copy: int
    delay_ms: int


class Sender:
    """Delivers events in background tasks, retrying each copy on the ``retry_seconds``
    schedule until a 2xx, and reports every attempt to ``record``."""

    def __init__(
        self,
        clock: Clock,
        record: Callable[[Attempt], None],
        *,
        retry_seconds: tuple[float, ...],
        timeout_seconds: float,
    ) -> None:
        self.clock = clock
        self.record = record
        self.retry_seconds = retry_seconds
        self.timeout_seconds = timeout_seconds
        self._http: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, event: Event, settings: WebhookSettings, seed: int) -> None:
        """Start delivering ``event`` and return at once; needs a running event loop."""
        if settings.url is None:
            return
        body = orjson.dumps(event.to_json())
        loop = asyncio.get_running_loop()
        for copy, delay in enumerate(delays(seed, event.id, settings), start=1):
            item = _Copy(event.id, body, settings.url, settings.secret, copy, delay)
            task = loop.create_task(self._deliver(item))
            # The loop holds tasks weakly: keep each until it is done.
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            # Made on first use, inside the serving loop; redirects count as failures, as
            # Stripe counts them.
            self._http = httpx.AsyncClient(
                timeout=self.timeout_seconds,
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT},
            )
        return self._http

    async def _attempt(self, item: _Copy) -> tuple[int | None, str | None]:
        # Signed anew at each attempt, as Stripe does, so a late retry is not "too old".
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(item.secret, unix(self.clock.now()), item.body),
        }
        try:
            reply = await self._client().post(item.url, content=item.body, headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return None, type(exc).__name__
        return reply.status_code, None

    async def _deliver(self, item: _Copy) -> None:
        if item.delay_ms:
            await asyncio.sleep(item.delay_ms / 1000)
        attempts = len(self.retry_seconds) + 1
        for number in range(1, attempts + 1):
            status, error = await self._attempt(item)
            self.record(Attempt(item.event_id, item.copy, number, status, error, item.delay_ms))
            if status is not None and 200 <= status < 300:
                return
            if number < attempts:
                await asyncio.sleep(self.retry_seconds[number - 1])
        # Never the URL: it may carry a token.
        log.warning(
            "sandbox webhook given up",
            event_id=item.event_id,
            copy=item.copy,
            attempts=attempts,
            status=status,
            error=error,
        )

    async def aclose(self) -> None:
        """Stop every delivery still on its way and close the HTTP client."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
            self._http = None
