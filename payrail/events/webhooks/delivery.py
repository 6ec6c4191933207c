"""The webhook delivery worker: claims due deliveries, POSTs each event, signed, to its
endpoint, records every attempt and schedules the next.

Any number of workers share the deliveries: a claim is a lease (repository.CLAIM), so a
delivery is attempted by one worker at a time, and the deliveries of a worker that died
come back when its lease runs out. No connection is held while waiting on a receiver.
Delivery is at least once: a receiver should drop duplicates by the event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from psycopg_pool import AsyncConnectionPool

from payrail.clock import Clock, unix
from payrail.events.outbox import OutboxEvent, emit
from payrail.events.webhooks import repository as repo
from payrail.events.webhooks import service
from payrail.events.webhooks.addresses import (
    AddressRefused,
    Resolver,
    literal_address,
    pinned_address,
    system_resolve,
)
from payrail.events.webhooks.signing import signature_headers
from payrail.ops import metrics
from payrail.vault.cards import mask_card_numbers
from payrail.vault.envelope import Vault

log = structlog.get_logger(__name__)

EXCERPT = 500  # characters of a receiver's answer kept with the attempt
USER_AGENT = "payrail-webhooks/1"


@dataclass(frozen=True)
class DeliveryOptions:
    allow_private: bool = False  # Settings.webhooks_allow_private
    timeout: float = 10.0  # seconds for a whole attempt: resolving, connecting, answering
    batch: int = 20  # deliveries claimed, and attempted concurrently, at a time
    # How long a claim lasts: past the timeout, so that a live worker never loses one.
    lease: timedelta = timedelta(seconds=60)
    resolve: Resolver = system_resolve


@dataclass
class Summary:
    claimed: int = 0
    succeeded: int = 0
    retrying: int = 0
    failed: int = 0  # gave up after 3 days
    endpoints_disabled: int = 0  # answered 410
    lost: int = 0  # outcomes not recorded: the lease ran out, or the delivery was canceled


@dataclass(frozen=True)
class Answer:
    """What one attempt got: an HTTP status, or an error instead."""

    duration_ms: int
    address: str | None = None
    status_code: int | None = None
    retry_after: str | None = None
    excerpt: str | None = None
    error: str | None = None


def http_client() -> httpx.AsyncClient:
    """The client to deliver with: no redirects, and no proxy from the environment (a
    proxy would connect to the named host itself, around the address guard)."""
    return httpx.AsyncClient(follow_redirects=False, trust_env=False)


def _target(url: httpx.URL, address: str) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """The URL with the checked address as its host, and what keeps the request the one
    to the named host: its Host header and, over TLS, its SNI name, against which the
    certificate is also verified. `Connection: close`, because connections pool by
    address, and a TLS connection made for one name must not carry another's request."""
    host = url.raw_host.decode("ascii")
    headers = {"Host": url.netloc.decode("ascii"), "Connection": "close"}
    if literal_address(host) is not None:
        return url, headers, {}
    extensions: dict[str, Any] = {"sni_hostname": host} if url.scheme == "https" else {}
    return url.copy_with(host=address), headers, extensions


async def _excerpt(response: httpx.Response) -> str:
    """The start of the answer, read no further: a receiver may answer at any length.
    Raw bytes, never decompressed (a small gzip body can inflate without bound); the
    request asks for none anyway."""
    kept = bytearray()
    async for chunk in response.aiter_raw():
        kept += chunk
        if len(kept) >= EXCERPT * 4:
            break
    # Masked before it is cut, so that no card number survives in part.
    return mask_card_numbers(kept.decode("utf-8", "replace").replace("\x00", ""))[:EXCERPT]


async def attempt(
    http: httpx.AsyncClient,
    options: DeliveryOptions,
    url: str,
    headers: dict[str, str],
    body: bytes,
) -> Answer:
    """One POST, to an address checked just before connecting to it."""
    started = time.perf_counter()

    def took() -> int:
        return int((time.perf_counter() - started) * 1000)

    address: str | None = None
    try:
        async with asyncio.timeout(options.timeout):
            parsed = httpx.URL(url)
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            address = await pinned_address(
                parsed.raw_host.decode("ascii"),
                port,
                allow_private=options.allow_private,
                resolve=options.resolve,
            )
            target, pinned, extensions = _target(parsed, address)
            async with http.stream(
                "POST",
                target,
                content=body,
                headers={**headers, **pinned},
                extensions=extensions,
                follow_redirects=False,
                timeout=options.timeout,
            ) as response:
                return Answer(
                    took(),
                    address,
                    response.status_code,
                    response.headers.get("retry-after"),
                    await _excerpt(response),
                )
    except AddressRefused as refused:
        return Answer(took(), refused.address, error=f"refused: {refused}")
    except (TimeoutError, httpx.TimeoutException):
        return Answer(took(), address, error=f"timeout after {options.timeout:g} s")
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
        return Answer(took(), address, error=f"{type(exc).__name__}: {exc}"[:300])


async def _prepare(
    pool: AsyncConnectionPool, vault: Vault, claimed: repo.Claimed
) -> tuple[str, bytes] | None:
    """The endpoint's secret and the event's envelope; None if the event is gone."""
    async with pool.connection() as conn:
        body = await repo.envelope(conn, claimed.event_id)
        if body is None:
            return None
        secret = await vault.open(
            conn,
            service.secret_context(claimed.endpoint_id, claimed.scope.merchant_id),
            claimed.secret_key_id,
            claimed.secret_sealed,
        )
    return secret, body


async def _record(
    pool: AsyncConnectionPool,
    clock: Clock,
    claimed: repo.Claimed,
    lease: str,
    attempted_at: datetime,
    answer: Answer,
    rng: random.Random,
    summary: Summary,
) -> None:
    now = clock.now()
    decision = service.decide(
        answer.status_code,
        service.retry_after(answer.retry_after, now),
        claimed.attempt_count + 1,
        claimed.window_started_at or attempted_at,
        now,
        rng,
    )
    status = {"succeeded": "succeeded", "retry": "pending", "failed": "failed", "gone": "canceled"}
    async with pool.connection() as conn, conn.transaction():
        if decision.verdict == "gone":
            # The endpoint's lock before the delivery's, as the API takes them.
            await repo.fetch_endpoints(conn, claimed.scope, [claimed.endpoint_id], lock=True)
        await repo.insert_attempt(
            conn,
            claimed,
            {
                "attempted_at": attempted_at,
                "address": answer.address,
                "status_code": answer.status_code,
                "error": answer.error,
                "duration_ms": answer.duration_ms,
                "response_excerpt": answer.excerpt,
            },
        )
        recorded = await repo.record_outcome(
            conn, claimed, lease, attempted_at, status[decision.verdict], decision.next_attempt_at
        )
        if decision.verdict == "gone" and await repo.disable_gone(conn, claimed.endpoint_id, now):
            # Gone for good: its other deliveries stop too, and the merchant hears of it.
            await repo.cancel_pending(conn, claimed.endpoint_id, now)
            [row] = await repo.fetch_endpoints(conn, claimed.scope, [claimed.endpoint_id])
            obj = service.endpoint_object(row)
            event = OutboxEvent("webhook_endpoint.updated", "webhook_endpoint", obj["id"], obj)
            await emit(conn, claimed.scope, now, [event])
            summary.endpoints_disabled += 1
    metrics.webhook_attempts.labels(decision.verdict if recorded else "lost").inc()
    metrics.webhook_attempt_seconds.observe(answer.duration_ms / 1000)
    if not recorded:
        summary.lost += 1
    elif decision.verdict == "succeeded":
        summary.succeeded += 1
    elif decision.verdict == "retry":
        summary.retrying += 1
    elif decision.verdict == "failed":
        summary.failed += 1
    log.info(
        "webhook attempt",
        delivery_id=claimed.id,
        endpoint_id=claimed.endpoint_id,
        event_id=claimed.event_id,
        status_code=answer.status_code,
        error=answer.error,
        verdict=decision.verdict,
        duration_ms=answer.duration_ms,
    )


async def _deliver(
    pool: AsyncConnectionPool,
    clock: Clock,
    vault: Vault,
    http: httpx.AsyncClient,
    options: DeliveryOptions,
    claimed: repo.Claimed,
    lease: str,
    rng: random.Random,
    summary: Summary,
) -> None:
    prepared = await _prepare(pool, vault, claimed)
    attempted_at = clock.now()
    if prepared is None:
        answer = Answer(0, error="the event is no longer stored")
    else:
        secret, body = prepared
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "identity",
            **signature_headers(
                claimed.signature_format, secret, claimed.event_id, unix(attempted_at), body
            ),
        }
        answer = await attempt(http, options, claimed.url, headers, body)
    await _record(pool, clock, claimed, lease, attempted_at, answer, rng, summary)


async def run_once(
    pool: AsyncConnectionPool,
    clock: Clock,
    vault: Vault,
    http: httpx.AsyncClient,
    options: DeliveryOptions = DeliveryOptions(),
    *,
    rng: random.Random | None = None,
) -> Summary:
    """Claim one batch of due deliveries and attempt each, concurrently."""
    rng = rng or random.Random()
    lease = secrets.token_hex(16)
    now = clock.now()
    async with pool.connection() as conn, conn.transaction():
        metrics.webhook_due.set(await repo.count_due(conn, now))
        claimed = await repo.claim(conn, now, now + options.lease, lease, options.batch)
    summary = Summary(claimed=len(claimed))

    async def deliver(one: repo.Claimed) -> None:
        try:
            await _deliver(pool, clock, vault, http, options, one, lease, rng, summary)
        except Exception:
            # Its lease runs out and it is attempted again; the others carry on.
            log.exception("webhook delivery failed", delivery_id=one.id)

    await asyncio.gather(*(deliver(one) for one in claimed))
    return summary


async def run(
    pool: AsyncConnectionPool,
    clock: Clock,
    vault: Vault,
    stop: asyncio.Event,
    options: DeliveryOptions = DeliveryOptions(),
    *,
    interval: float = 1.0,
) -> None:
    """Batches until `stop` is set; a full batch is followed at once by the next."""
    async with http_client() as http:
        while not stop.is_set():
            try:
                done = await run_once(pool, clock, vault, http, options)
            except Exception:
                log.exception("webhook delivery batch failed")
                done = Summary()
            if done.claimed < options.batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval)
