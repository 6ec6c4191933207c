"""Provider webhooks: checked, stored once, and applied in the same transaction.

A delivery names only the connector account it is for (`/webhooks/{account id}`); the
account says whose it is and holds the secret its provider signs with. A delivery that
does not check out changes nothing and is not stored. One that does is stored once per
provider event id: a duplicate finds its row and does nothing more. It is applied in
the transaction that stores it, so an event is stored if and only if it was applied (a
failure rolls both back, and the provider's retry tries again).

Applying is safe in any order and any number of times, as the API's own recorders are:
an answer settles a charge only while the charge still waits for it, a refund only
while pending, a dispute only moves forward. On top of that, an event no newer than the
last one applied to its object (`sequence`) is stale and ignored, so an old status can
never overwrite a newer one. See docs/payments.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import structlog
from psycopg.types.json import Jsonb

from payrail.api.context import Services
from payrail.clock import Clock, unix
from payrail.connectors import sandbox_connector
from payrail.connectors.accounts import repository as accounts_repo
from payrail.connectors.accounts.service import ConnectorNotImplemented
from payrail.connectors.base import ConnectorError, ProviderEvent, WebhookRejected
from payrail.ids import new_id
from payrail.payments import disputes, outcomes, refunds
from payrail.payments import repository as repo
from payrail.payments.repository import Conn
from payrail.payments.service import Connect
from payrail.tenants.scope import Scope

log = structlog.get_logger(__name__)

MAX_BODY = 1 << 20
# Longer than any id payrail makes; a longer one is no account's.
_MAX_ACCOUNT_ID = 100


def is_stale(last_applied: int, sequence: int) -> bool:
    """Whether an event about an object is no newer than the last one applied to it:
    overtaken in delivery by a later one, it must not undo what that one did."""
    return sequence <= last_applied


async def _verified(
    connect: Connect, services: Services, account_id: str, headers: Mapping[str, str], body: bytes
) -> tuple[Scope, ProviderEvent]:
    if len(account_id) > _MAX_ACCOUNT_ID or "\x00" in account_id:
        raise WebhookRejected("No such connector account.")
    if len(body) > MAX_BODY:
        raise WebhookRejected(f"The body is larger than {MAX_BODY} bytes.")
    async with connect() as conn:
        owner = await accounts_repo.account_scope(conn, account_id)
        if owner is None:
            raise WebhookRejected("No such connector account.")
        scope = Scope(*owner)
        try:
            connector = await services.connectors.get(conn, scope, services.vault, account_id)
        except ConnectorNotImplemented:
            raise WebhookRejected("No connector can check this account's webhooks.") from None
    return scope, connector.parse_webhook(headers, body, unix(services.clock.now()))


async def receive(
    connect: Connect, services: Services, account_id: str, headers: Mapping[str, str], body: bytes
) -> str | None:
    """Check, store and apply one delivery. Returns what applying it did, or None for a
    duplicate; raises `WebhookRejected` (and stores nothing) for one that does not check
    out, whatever the reason: the caller answers all of them alike."""
    try:
        scope, event = await _verified(connect, services, account_id, headers, body)
    except WebhookRejected as error:
        log.warning(
            "webhook rejected", connector_account=account_id[:_MAX_ACCOUNT_ID], reason=str(error)
        )
        raise
    clock = services.clock
    async with connect() as conn, conn.transaction():
        stored = await _store(conn, scope, clock, account_id, event, body)
        if stored is None:
            return None
        outcome = await _apply(conn, scope, clock, account_id, event)
        await conn.execute(
            "UPDATE provider_events SET processed_at = %s, outcome = %s WHERE id = %s",
            (clock.now(), outcome, stored),
        )
    log.info(
        "webhook applied",
        connector_account=account_id,
        provider_event=event.id,
        type=event.type,
        outcome=outcome,
    )
    return outcome


async def _store(
    conn: Conn, scope: Scope, clock: Clock, account_id: str, event: ProviderEvent, body: bytes
) -> str | None:
    """The new row's id, or None when the event is already stored. A duplicate arriving
    while the first is still being applied waits here for it to commit."""
    cur = await conn.execute(
        "INSERT INTO provider_events (id, merchant_id, livemode, connector_account_id,"
        " provider_event_id, type, object_id, sequence, payload, received_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (connector_account_id, provider_event_id) DO NOTHING RETURNING id",
        (
            new_id("pevt"),
            scope.merchant_id,
            scope.livemode,
            account_id,
            event.id,
            event.type,
            event.object_id,
            event.sequence,
            # The whole event as the provider sent it (parse_webhook read it as JSON).
            Jsonb(orjson.loads(body)),
            clock.now(),
        ),
    )
    row = await cur.fetchone()
    return str(row[0]) if row else None


async def _apply(
    conn: Conn, scope: Scope, clock: Clock, account_id: str, event: ProviderEvent
) -> str:
    kind = event.type.partition(".")[0]
    if kind == "payment":
        return await _payment(conn, scope, clock, account_id, event)
    if kind == "refund":
        return await _refund(conn, scope, clock, account_id, event)
    if kind == "dispute":
        return await disputes.record(conn, scope, clock, account_id, event)
    return "ignored"


async def _charge_of(
    conn: Conn, scope: Scope, account_id: str, event: ProviderEvent
) -> dict[str, Any] | None:
    """The charge a payment event is about: by the provider's id once payrail knows it,
    else by the payment's `reference`, payrail's charge id (the answer that would have
    told payrail the provider's id may be the one that was lost)."""
    charge = await repo.by_provider_id(conn, "charges", account_id, event.object_id)
    if charge is not None:
        return charge
    reference = event.payload.get("reference")
    if not isinstance(reference, str):
        return None
    charge = await repo.fetch_one(conn, "charges", scope, reference)
    if charge is None or charge["connector_account_id"] != account_id:
        return None
    if charge["provider_id"] not in (None, event.object_id):
        log.error(
            "a provider payment names a charge made by another payment",
            charge=charge["id"],
            provider_id=event.object_id,
        )
        return None
    return charge


async def _payment(
    conn: Conn, scope: Scope, clock: Clock, account_id: str, event: ProviderEvent
) -> str:
    try:
        # Only sandbox accounts have a connector (Connectors.get), and the sandbox's
        # events carry its API objects: read them as its connector reads its answers.
        answer = sandbox_connector._payment(event.payload)
    except ConnectorError:
        return "unreadable"
    found = await _charge_of(conn, scope, account_id, event)
    if found is None:
        return "unmatched"
    _, charge = await outcomes.locked(conn, scope, found["id"])
    if is_stale(charge["last_event_sequence"], event.sequence):
        return "stale"
    await repo.update(conn, "charges", charge["id"], {"last_event_sequence": event.sequence})
    if charge["status"] in outcomes.UNDECIDED or outcomes.late_success(charge, answer):
        await outcomes.record_attempt(conn, scope, clock, charge["id"], answer)
        return "applied"
    # A capture or void payrail sent, or one the provider made on its own (an expired
    # authorization voided, a capture in its dashboard).
    if charge["status"] == "authorized" and answer.status in ("captured", "voided"):
        await outcomes.record_operation(conn, scope, clock, charge["id"], answer)
        return "applied"
    # Already known from the API's answer (or the janitor's): nothing left to learn.
    return "no_change"


async def _pending_refund(
    conn: Conn, scope: Scope, account_id: str, event: ProviderEvent
) -> dict[str, Any] | None:
    """A refund payrail has not heard back about (so it has no provider id yet), by the
    idempotency key it was sent with: its own id."""
    key = event.payload.get("idempotency_key")
    if not isinstance(key, str):
        return None
    refund = await repo.fetch_one(conn, "refunds", scope, key)
    if refund is None:
        return None
    charge = await repo.fetch_one(conn, "charges", scope, refund["charge_id"])
    assert charge is not None
    return refund if charge["connector_account_id"] == account_id else None


async def _refund(
    conn: Conn, scope: Scope, clock: Clock, account_id: str, event: ProviderEvent
) -> str:
    try:
        answer = sandbox_connector._refund(event.payload)
    except ConnectorError:
        return "unreadable"
    refund = await repo.by_provider_id(
        conn, "refunds", account_id, answer.provider_id
    ) or await _pending_refund(conn, scope, account_id, event)
    if refund is None:
        return "unmatched"
    # `refunds.record` acts only on a pending refund, and a refund leaves pending once:
    # no sequence to keep, an old or repeated event finds it decided.
    after = await refunds.record(conn, scope, clock, refund["id"], answer)
    return "applied" if after["status"] != refund["status"] else "no_change"
