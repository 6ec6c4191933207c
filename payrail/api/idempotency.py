"""Stripe's Idempotency-Key semantics.

The key is claimed in its own short transaction, so a concurrent request with the same key
sees it at once and gets 409 without executing. The handler's effects and the stored
result then commit in one transaction, which first re-checks that it still holds the
key's lease: a request that took over an expired lease and the original can never both
commit. Results (errors raised while executing included) replay for 24 hours.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import structlog
from psycopg import AsyncConnection

from payrail.errors import ApiFailure, Conflict, IdempotencyError, InvalidRequest, PayrailError
from payrail.tenants.scope import Scope

RETENTION = timedelta(hours=24)
LEASE = timedelta(seconds=60)
MAX_KEY_LENGTH = 255

Conn = AsyncConnection[Any]
Work = Callable[[Conn], Awaitable[dict[str, Any]]]
log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Outcome:
    status: int
    body: bytes
    replayed: bool = False


@dataclass(frozen=True)
class Claim:
    scope: Scope
    key: str
    lease: str


def request_hash(method: str, path: str, params: dict[str, Any]) -> bytes:
    canonical = orjson.dumps([method, path, params], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).digest()


CLAIM = """
INSERT INTO idempotency_keys AS k (merchant_id, livemode, key, request_method, request_path,
                                   request_hash, lease, locked_until, created_at)
VALUES (%(merchant_id)s, %(livemode)s, %(key)s, %(method)s, %(path)s, %(hash)s, %(lease)s,
        %(locked_until)s, %(now)s)
ON CONFLICT (merchant_id, livemode, key) DO UPDATE
   SET request_method = EXCLUDED.request_method, request_path = EXCLUDED.request_path,
       request_hash = EXCLUDED.request_hash, lease = EXCLUDED.lease,
       locked_until = EXCLUDED.locked_until, created_at = EXCLUDED.created_at,
       response_status = NULL, response_body = NULL
 WHERE k.created_at < %(expired_before)s
    OR (k.response_status IS NULL AND k.locked_until < %(now)s
        AND k.request_hash = EXCLUDED.request_hash)
RETURNING lease
"""


async def claim(
    conn: Conn, scope: Scope, key: str, method: str, path: str, digest: bytes, now: datetime
) -> Claim | Outcome:
    """Take the key, or say why not: a stored result to replay, or an error."""
    lease = secrets.token_hex(16)
    params = {
        "merchant_id": scope.merchant_id,
        "livemode": scope.livemode,
        "key": key,
        "method": method,
        "path": path,
        "hash": digest,
        "lease": lease,
        "locked_until": now + LEASE,
        "now": now,
        "expired_before": now - RETENTION,
    }
    if await (await conn.execute(CLAIM, params)).fetchone() is not None:
        return Claim(scope, key, lease)
    row = await (
        await conn.execute(
            "SELECT request_method, request_path, request_hash, response_status, response_body"
            " FROM idempotency_keys WHERE merchant_id = %s AND livemode = %s AND key = %s",
            (scope.merchant_id, scope.livemode, key),
        )
    ).fetchone()
    if row is None:  # expired and removed in between: a retry claims it afresh
        raise Conflict("Idempotency key changed concurrently; retry.", code="lock_timeout")
    method0, path0, digest0, status, body = row
    if (method0, path0, bytes(digest0)) != (method, path, digest):
        raise IdempotencyError(
            "Keys for idempotent requests can only be used with the same parameters they "
            f"were first used with. Try using a key other than '{key}' if you meant to "
            "execute a different request.",
            code="idempotency_key_in_use",
        )
    if status is None:
        raise Conflict(
            "There is currently another in-progress request using this Idempotency-Key; "
            "retry after it completes.",
            code="idempotency_key_in_use",
        )
    return Outcome(status, bytes(body), replayed=True)


async def _hold(conn: Conn, claimed: Claim) -> None:
    row = await (
        await conn.execute(
            "SELECT 1 FROM idempotency_keys WHERE merchant_id = %s AND livemode = %s AND key = %s"
            " AND lease = %s AND response_status IS NULL FOR UPDATE",
            (claimed.scope.merchant_id, claimed.scope.livemode, claimed.key, claimed.lease),
        )
    ).fetchone()
    if row is None:
        raise Conflict(
            "This request's hold on its Idempotency-Key expired; retry to see its result.",
            code="idempotency_key_in_use",
        )


async def _store(conn: Conn, claimed: Claim, outcome: Outcome) -> None:
    await conn.execute(
        "UPDATE idempotency_keys SET response_status = %s, response_body = %s,"
        " locked_until = NULL WHERE merchant_id = %s AND livemode = %s AND key = %s"
        " AND lease = %s AND response_status IS NULL",
        (
            outcome.status,
            outcome.body,
            claimed.scope.merchant_id,
            claimed.scope.livemode,
            claimed.key,
            claimed.lease,
        ),
    )


def error_outcome(error: PayrailError) -> Outcome:
    return Outcome(error.status, orjson.dumps(error.body()))


async def execute(connect: Callable[[], Any], claimed: Claim | None, work: Work) -> Outcome:
    """Run `work` in one transaction; with a claimed key, store its result in it too."""
    error: PayrailError
    try:
        async with connect() as conn, conn.transaction():
            if claimed is not None:
                await _hold(conn, claimed)
            outcome = Outcome(200, orjson.dumps(await work(conn)))
            if claimed is not None:
                await _store(conn, claimed, outcome)
        return outcome
    except PayrailError as raised:
        error = raised
    except Exception:
        log.exception("request failed while executing")
        error = ApiFailure(
            "An internal error occurred; retry with the same Idempotency-Key to see its result."
        )
    if claimed is not None:
        try:
            async with connect() as conn:
                if isinstance(error, Conflict):
                    # Lost a race with a concurrent request: nothing ran, so free the key.
                    await _release(conn, claimed)
                else:
                    await _store(conn, claimed, error_outcome(error))
        except Exception:
            log.exception("could not record the result of an idempotent request")
    return error_outcome(error)


async def _release(conn: Conn, claimed: Claim) -> None:
    await conn.execute(
        "DELETE FROM idempotency_keys WHERE merchant_id = %s AND livemode = %s AND key = %s"
        " AND lease = %s AND response_status IS NULL",
        (claimed.scope.merchant_id, claimed.scope.livemode, claimed.key, claimed.lease),
    )


def check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidRequest(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters.",
            param="Idempotency-Key",
        )
