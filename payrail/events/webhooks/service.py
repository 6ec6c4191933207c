"""Merchant webhooks: endpoints as Stripe keeps them, the consumer that turns events into
deliveries, and the retry schedule the delivery worker follows."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal

from payrail.api.schemas import merge_metadata
from payrail.clock import Clock, unix
from payrail.errors import InvalidRequest, NotFound
from payrail.events.consumers import Consumer
from payrail.events.outbox import OutboxEvent, emit
from payrail.events.schemas import Event
from payrail.events.webhooks import repository as repo
from payrail.events.webhooks.addresses import check_url
from payrail.events.webhooks.schemas import EndpointCreate, EndpointUpdate
from payrail.events.webhooks.signing import new_secret
from payrail.ids import new_id
from payrail.tenants.scope import Scope
from payrail.vault.envelope import Vault

Conn = repo.Conn

# --- Objects --------------------------------------------------------------------------


def endpoint_object(row: dict[str, Any]) -> dict[str, Any]:
    """Stripe's webhook_endpoint, without `secret` (shown on create only), plus payrail's
    `signature_format` and `disabled_reason`."""
    return {
        "id": row["id"],
        "object": "webhook_endpoint",
        "api_version": None,
        "application": None,
        "created": unix(row["created_at"]),
        "description": row["description"],
        "disabled_reason": row["disabled_reason"],
        "enabled_events": row["enabled_events"],
        "livemode": row["livemode"],
        "metadata": row["metadata"],
        "signature_format": row["signature_format"],
        "status": row["status"],
        "url": row["url"],
    }


def _maybe_unix(moment: datetime | None) -> int | None:
    return None if moment is None else unix(moment)


def delivery_object(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "webhook_delivery",
        "attempt_count": row["attempt_count"],
        "created": unix(row["created_at"]),
        "event": row["event_id"],
        "event_type": row["event_type"],
        "last_attempt": _maybe_unix(row["last_attempt_at"]),
        "livemode": row["livemode"],
        "next_attempt": _maybe_unix(row["next_attempt_at"]),
        "status": row["status"],
        "webhook_endpoint": row["endpoint_id"],
    }


def attempt_object(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "webhook_delivery_attempt",
        "address": row["address"],
        "created": unix(row["attempted_at"]),
        "delivery": row["delivery_id"],
        "duration_ms": row["duration_ms"],
        "error": row["error"],
        "livemode": row["livemode"],
        "response_excerpt": row["response_excerpt"],
        "status_code": row["status_code"],
    }


def secret_context(endpoint_id: str, merchant_id: str) -> str:
    """What a sealed signing secret is bound to: its endpoint and merchant."""
    return f"webhook_endpoint|{endpoint_id}|{merchant_id}"


async def _emit(conn: Conn, scope: Scope, at: datetime, kind: str, obj: dict[str, Any]) -> None:
    await emit(conn, scope, at, [OutboxEvent(kind, obj["object"], obj["id"], obj)])


# --- Endpoints ------------------------------------------------------------------------


def _checked_url(url: str, allow_private: bool) -> str:
    try:
        check_url(url, allow_private=allow_private)
    except ValueError as exc:
        raise InvalidRequest(f"Invalid url: {exc}", param="url", code="url_invalid") from None
    # Stored with its scheme in lower case (HTTPS:// is https://), as the table's CHECK
    # and the delivery worker expect.
    scheme, colon, rest = url.partition(":")
    return scheme.lower() + colon + rest


async def create_endpoint(
    conn: Conn,
    scope: Scope,
    clock: Clock,
    vault: Vault,
    params: EndpointCreate,
    *,
    allow_private: bool,
) -> dict[str, Any]:
    """The endpoint, without its secret: the caller reads that once, with `reveal_secret`,
    so that the secret never sits in clear in a stored idempotent response."""
    url = _checked_url(params.url, allow_private)
    endpoint_id = new_id("we")
    now = clock.now()
    key_id, sealed = await vault.seal(
        conn, secret_context(endpoint_id, scope.merchant_id), new_secret(), now
    )
    await repo.insert_endpoint(
        conn,
        scope,
        {
            "id": endpoint_id,
            "url": url,
            "enabled_events": params.enabled_events,
            "description": params.description,
            "metadata": params.metadata,
            "signature_format": params.signature_format,
            "secret_key_id": key_id,
            "secret_sealed": sealed,
            "created_at": now,
        },
    )
    obj = endpoint_object((await repo.fetch_endpoints(conn, scope, [endpoint_id]))[0])
    await _emit(conn, scope, now, "webhook_endpoint.created", obj)
    return obj


async def reveal_secret(conn: Conn, scope: Scope, vault: Vault, endpoint_id: str) -> str | None:
    sealed = await repo.sealed_secret(conn, scope, endpoint_id)
    if sealed is None:
        return None
    return await vault.open(conn, secret_context(endpoint_id, scope.merchant_id), *sealed)


async def get_endpoint(conn: Conn, scope: Scope, endpoint_id: str) -> dict[str, Any]:
    rows = await repo.fetch_endpoints(conn, scope, [endpoint_id])
    if not rows:
        raise NotFound("webhook endpoint", endpoint_id)
    return endpoint_object(rows[0])


async def list_endpoints(conn: Conn, scope: Scope, ids: Sequence[str]) -> list[dict[str, Any]]:
    return [endpoint_object(row) for row in await repo.fetch_endpoints(conn, scope, ids)]


async def _locked_endpoint(conn: Conn, scope: Scope, endpoint_id: str) -> dict[str, Any]:
    rows = await repo.fetch_endpoints(conn, scope, [endpoint_id], lock=True)
    if not rows:
        raise NotFound("webhook endpoint", endpoint_id)
    return rows[0]


async def update_endpoint(
    conn: Conn,
    scope: Scope,
    clock: Clock,
    endpoint_id: str,
    params: EndpointUpdate,
    *,
    allow_private: bool,
) -> dict[str, Any]:
    row = await _locked_endpoint(conn, scope, endpoint_id)
    now = clock.now()
    changes: dict[str, Any] = {}
    if params.url is not None:
        changes["url"] = _checked_url(params.url, allow_private)
    if params.enabled_events is not None:
        changes["enabled_events"] = params.enabled_events
    if params.description is not None:
        changes["description"] = params.description or None  # "" unsets, as in Stripe
    if params.metadata is not None:
        changes["metadata"] = merge_metadata(row["metadata"], params.metadata)
    if params.signature_format is not None:
        changes["signature_format"] = params.signature_format
    if params.disabled is True and row["status"] == "enabled":
        changes.update(status="disabled", disabled_reason="requested")
        await repo.cancel_pending(conn, endpoint_id, now)
    elif params.disabled is False and row["status"] == "disabled":
        # Deliveries canceled while it was disabled stay so: resend those wanted.
        changes.update(status="enabled", disabled_reason=None)
    if changes:
        await repo.update_endpoint(conn, endpoint_id, changes, now)
    obj = endpoint_object((await repo.fetch_endpoints(conn, scope, [endpoint_id]))[0])
    await _emit(conn, scope, now, "webhook_endpoint.updated", obj)
    return obj


async def delete_endpoint(
    conn: Conn, scope: Scope, clock: Clock, endpoint_id: str
) -> dict[str, Any]:
    await _locked_endpoint(conn, scope, endpoint_id)
    now = clock.now()
    await repo.cancel_pending(conn, endpoint_id, now)
    await repo.mark_deleted(conn, endpoint_id, now)
    obj = {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}
    await _emit(conn, scope, now, "webhook_endpoint.deleted", obj)
    return obj


# --- Deliveries -----------------------------------------------------------------------


async def get_delivery(conn: Conn, scope: Scope, delivery_id: str) -> dict[str, Any]:
    rows = await repo.fetch_deliveries(conn, scope, [delivery_id])
    if not rows:
        raise NotFound("webhook delivery", delivery_id)
    return delivery_object(rows[0])


async def list_deliveries(conn: Conn, scope: Scope, ids: Sequence[str]) -> list[dict[str, Any]]:
    return [delivery_object(row) for row in await repo.fetch_deliveries(conn, scope, ids)]


async def list_attempts(conn: Conn, scope: Scope, ids: Sequence[str]) -> list[dict[str, Any]]:
    return [attempt_object(row) for row in await repo.fetch_attempts(conn, scope, ids)]


async def retry_delivery(
    conn: Conn, scope: Scope, clock: Clock, delivery_id: str
) -> dict[str, Any]:
    """Send again now, on a fresh schedule, whatever became of it (given up, canceled,
    succeeded). One being attempted at this moment is left to that attempt."""
    found = await repo.fetch_deliveries(conn, scope, [delivery_id])
    if not found:
        raise NotFound("webhook delivery", delivery_id)
    # The endpoint's lock first, then the delivery's: the order disabling an endpoint
    # and the worker's 410 take them in, so that none of them deadlock.
    endpoints = await repo.fetch_endpoints(conn, scope, [found[0]["endpoint_id"]], lock=True)
    [row] = await repo.fetch_deliveries(conn, scope, [delivery_id], lock=True)
    if not endpoints or endpoints[0]["status"] != "enabled":
        raise InvalidRequest(
            "This delivery's webhook endpoint is disabled or deleted; enable it first.",
            code="webhook_endpoint_disabled",
        )
    now = clock.now()
    in_flight = row["lease"] is not None and row["next_attempt_at"] > now
    if not in_flight:
        await repo.schedule_now(conn, delivery_id, now)
    obj = delivery_object((await repo.fetch_deliveries(conn, scope, [delivery_id]))[0])
    await _emit(conn, scope, now, "webhook_delivery.retry_scheduled", obj)
    return obj


# --- The consumer ---------------------------------------------------------------------


async def fan_out(conn: Conn, event: Event) -> None:
    """A delivery of the event to every endpoint of its merchant and mode that wants it.
    Runs in the consumer's transaction, after its inbox row: once per event."""
    await repo.insert_deliveries(conn, event.id)


CONSUMER = Consumer(name="webhooks", handler=fan_out)


# --- The retry schedule ---------------------------------------------------------------

RETRY_WINDOW = timedelta(days=3)
FIRST_DELAY = timedelta(minutes=1)  # the bound of the first retry's delay; doubles each time
MAX_DELAY = timedelta(hours=6)  # the largest delay, Retry-After included
MIN_DELAY = timedelta(seconds=1)

Verdict = Literal["succeeded", "retry", "failed", "gone"]


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    next_attempt_at: datetime | None = None


def backoff(attempts: int, rng: random.Random) -> timedelta:
    """The wait after the `attempts`-th failed attempt: exponential, capped, with full
    jitter, so that the retries of one endpoint's many deliveries spread out."""
    bound = min(MAX_DELAY, FIRST_DELAY * (1 << min(attempts - 1, 20)))
    return max(MIN_DELAY, bound * rng.random())


def retry_after(value: str | None, now: datetime) -> timedelta | None:
    """A Retry-After header (seconds, or an HTTP date) as a wait from now."""
    if value is None:
        return None
    value = value.strip()
    # ASCII digits only ("²".isdigit() is true), and few of them: beyond MAX_DELAY anyway.
    if value.isascii() and value.isdigit():
        return MAX_DELAY if len(value) > 9 else min(timedelta(seconds=int(value)), MAX_DELAY)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT
        return None
    wait: timedelta = when - now
    return max(timedelta(0), wait)


def decide(
    status_code: int | None,
    wait_asked: timedelta | None,
    attempts: int,
    window_started_at: datetime,
    now: datetime,
    rng: random.Random,
) -> Decision:
    """What an attempt's answer means. `attempts` counts this one. 2xx: done. 410: the
    endpoint is gone. Anything else (no answer included): again after the backoff, or
    after the receiver's Retry-After if that is later (up to MAX_DELAY), until 3 days
    after the schedule's first attempt; the last try is made at that moment."""
    if status_code is not None and 200 <= status_code < 300:
        return Decision("succeeded")
    if status_code == 410:
        return Decision("gone")
    deadline = window_started_at + RETRY_WINDOW
    if now >= deadline:
        return Decision("failed")
    wait = backoff(attempts, rng)
    if wait_asked is not None:
        wait = max(wait, min(wait_asked, MAX_DELAY))
    return Decision("retry", min(now + wait, deadline))
