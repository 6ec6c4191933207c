"""Merchants and their API keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from payrail.clock import Clock, unix
from payrail.errors import InvalidRequest
from payrail.events.outbox import OutboxEvent, emit
from payrail.ids import new_id
from payrail.tenants import keys
from payrail.tenants.scope import Scope


@dataclass(frozen=True)
class NewMerchant:
    id: str
    name: str
    test_secret: str
    live_secret: str


async def create_merchant(conn: AsyncConnection[Any], clock: Clock, name: str) -> NewMerchant:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidRequest("Merchant name must be 1 to 200 characters.", param="name")
    now = clock.now()
    merchant_id = new_id("mer")
    secrets = {livemode: keys.new_secret(livemode) for livemode in (False, True)}
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO merchants (id, name, created_at) VALUES (%s, %s, %s)",
            (merchant_id, name, now),
        )
        for livemode, secret in secrets.items():
            await conn.execute(
                "INSERT INTO api_keys (id, merchant_id, livemode, secret_hash, last4, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (new_id("key"), merchant_id, livemode, keys.digest(secret), secret[-4:], now),
            )
        payload = {"id": merchant_id, "object": "merchant", "name": name, "created": unix(now)}
        for livemode in (False, True):
            event = OutboxEvent("merchant.created", "merchant", merchant_id, payload)
            await emit(conn, Scope(merchant_id, livemode), now, [event])
    return NewMerchant(merchant_id, name, secrets[False], secrets[True])


async def authenticate(conn: AsyncConnection[Any], secret: str) -> Scope | None:
    row = await (
        await conn.execute(
            "SELECT merchant_id, livemode FROM api_keys"
            " WHERE secret_hash = %s AND revoked_at IS NULL",
            (keys.digest(secret),),
        )
    ).fetchone()
    return None if row is None else Scope(row[0], row[1])
