"""Stripe's Idempotency-Key semantics.

The key is claimed in its own short transaction, so a concurrent request with the same key
sees it at once and gets 409 without executing. The handler's effects and the stored
result then commit in one transaction, which first re-checks that it still holds the
key's lease: a request that took over an expired lease and the original can never both
commit. Results (errors raised while executing included) replay for 24 hours.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import structlog
from psycopg import AsyncConnection

from payrail.errors import (
    ApiFailure,
    IdempotencyError,
    IdempotencyInProgress,
    InvalidRequest,
    PayrailError,
)
from payrail.tenants.scope import Scope

RETENTION = timedelta(hours=24)
LEASE = timedelta(seconds=60)
MAX_KEY_LENGTH = 255

Conn = AsyncConnection[Any]
Work = Callable[[Conn], Awaitable[dict[str, Any]]]
# Takes the pool's `connection` (it opens its own transactions) and its key's recovery.
StepWork = Callable[[Callable[[], Any], "Recovery"], Awaitable[dict[str, Any]]]
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
    # The object an earlier holder of the key committed before it died or lost its
    # lease: step-wise work resumes from it instead of starting again.
    recovery_point: str | None = None


def request_hash(key: bytes, method: str, path: str, params: dict[str, Any]) -> bytes:
    """Keyed: parameters may hold a card number, and a plain hash of a card number is
    found by brute force (PCI DSS asks for keyed hashes)."""
    canonical = orjson.dumps([method, path, params], option=orjson.OPT_SORT_KEYS)
    return hmac.new(key, canonical, hashlib.sha256).digest()


INSERT_KEY = """
INSERT INTO idempotency_keys (merchant_id, livemode, key, request_method, request_path,
                              request_hash, lease, locked_until, created_at)
VALUES (%(merchant_id)s, %(livemode)s, %(key)s, %(method)s, %(path)s, %(hash)s, %(lease)s,
        %(locked_until)s, %(now)s)
ON CONFLICT (merchant_id, livemode, key) DO NOTHING
RETURNING lease
"""

# A key past its 24 hours starts afresh; a request whose holder died (lease expired, no
# result) may be taken over by a retry of the same request.
TAKE_OVER = """
UPDATE idempotency_keys
   SET request_method = %(method)s, request_path = %(path)s, request_hash = %(hash)s,
       lease = %(lease)s, locked_until = %(locked_until)s, created_at = %(now)s,
       response_status = NULL, response_body = NULL,
       recovery_point = CASE WHEN created_at < %(expired_before)s THEN NULL
                             ELSE recovery_point END
 WHERE merchant_id = %(merchant_id)s AND livemode = %(livemode)s AND key = %(key)s
   AND (created_at < %(expired_before)s
        OR (response_status IS NULL AND locked_until < %(now)s AND request_method = %(method)s
            AND request_path = %(path)s AND request_hash = %(hash)s))
RETURNING lease, recovery_point
"""

READ_KEY = """
SELECT request_method, request_path, request_hash, response_status, response_body,
       created_at < %(expired_before)s OR (response_status IS NULL AND locked_until < %(now)s)
FROM idempotency_keys
WHERE merchant_id = %(merchant_id)s AND livemode = %(livemode)s AND key = %(key)s
"""


async def claim(
    conn: Conn, scope: Scope, key: str, method: str, path: str, digest: bytes, now: datetime
) -> Claim | Outcome:
    """Take the key, or say why not: a stored result to replay, or an error.

    Nothing here waits on a request that holds the key: that one keeps no row lock while
    it executes, so a concurrent duplicate is answered 409 at once."""
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
    for _ in range(3):
        if await (await conn.execute(INSERT_KEY, params)).fetchone() is not None:
            return Claim(scope, key, lease)
        row = await (await conn.execute(READ_KEY, params)).fetchone()
        if row is None:  # deleted in between: claim it afresh
            continue
        method0, path0, digest0, status, body, stale = row
        if stale:
            taken = await (await conn.execute(TAKE_OVER, params)).fetchone()
            if taken is not None:
                return Claim(scope, key, lease, taken[1])
        if (method0, path0, bytes(digest0)) != (method, path, digest):
            raise IdempotencyError(
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key}' if you meant to "
                "execute a different request.",
                code="idempotency_key_in_use",
            )
        if status is not None:
            return Outcome(status, bytes(body), replayed=True)
        if not stale:
            break
    raise IdempotencyInProgress(
        "There is currently another in-progress request using this Idempotency-Key; "
        "retry after it completes.",
        code="idempotency_key_in_use",
    )


STORE = """
UPDATE idempotency_keys SET response_status = %s, response_body = %s, locked_until = NULL
 WHERE merchant_id = %s AND livemode = %s AND key = %s AND lease = %s
   AND response_status IS NULL
"""


def _lease_lost() -> IdempotencyInProgress:
    return IdempotencyInProgress(
        "This request's hold on its Idempotency-Key expired and a retry took it over; "
        "retry to see the result.",
        code="idempotency_key_in_use",
    )


async def _still_held(conn: Conn, claimed: Claim) -> bool:
    """A plain read, no lock: skip the work early when a retry has taken the key over."""
    cur = await conn.execute(
        "SELECT 1 FROM idempotency_keys WHERE merchant_id = %s AND livemode = %s AND key = %s"
        " AND lease = %s AND response_status IS NULL",
        (claimed.scope.merchant_id, claimed.scope.livemode, claimed.key, claimed.lease),
    )
    return await cur.fetchone() is not None


async def _store(conn: Conn, claimed: Claim, outcome: Outcome) -> bool:
    """Record the result if this request still holds the key's lease."""
    cur = await conn.execute(
        STORE,
        (
            outcome.status,
            outcome.body,
            claimed.scope.merchant_id,
            claimed.scope.livemode,
            claimed.key,
            claimed.lease,
        ),
    )
    return cur.rowcount == 1


def error_outcome(error: PayrailError) -> Outcome:
    return Outcome(error.status, orjson.dumps(error.body()))


def _failure(raised: Exception) -> PayrailError:
    if isinstance(raised, PayrailError):
        return raised
    log.error("request failed while executing", exc_info=raised)
    return ApiFailure("An internal error occurred.")


async def _store_error(connect: Callable[[], Any], claimed: Claim, error: PayrailError) -> None:
    # As Stripe does, an error raised while executing is the request's result, 500s
    # included. (If the store fails too, the lease expires and a retry runs anew.)
    try:
        async with connect() as conn:
            await _store(conn, claimed, error_outcome(error))
    except Exception:
        log.exception("could not record the result of an idempotent request")


async def execute(connect: Callable[[], Any], claimed: Claim | None, work: Work) -> Outcome:
    """Run `work` in one transaction; with a claimed key, store its result in it too."""
    try:
        async with connect() as conn, conn.transaction():
            if claimed is not None and not await _still_held(conn, claimed):
                raise _lease_lost()
            outcome = Outcome(200, orjson.dumps(await work(conn)))
            # Another request took over an expired lease: it owns the result now, so
            # this one's effects roll back rather than commit a second time.
            if claimed is not None and not await _store(conn, claimed, outcome):
                raise _lease_lost()
        return outcome
    except Exception as raised:
        error = _failure(raised)
    if claimed is not None:
        await _store_error(connect, claimed, error)
    return error_outcome(error)


@dataclass(frozen=True)
class Recovery:
    """What step-wise work needs to be safe under its Idempotency-Key: where an earlier
    holder of the key got to, and a way to record where this one gets to."""

    claimed: Claim | None

    @property
    def resume_from(self) -> str | None:
        """The object an earlier, unfinished run of this request committed, if any."""
        return self.claimed.recovery_point if self.claimed else None

    async def checkpoint(self, conn: Conn, object_id: str) -> None:
        """Record, in the transaction that commits the object, that this request made
        it. Fails (rolling the step back) if this request no longer holds the key."""
        if self.claimed is None:
            return
        cur = await conn.execute(
            "UPDATE idempotency_keys SET recovery_point = %s WHERE merchant_id = %s"
            " AND livemode = %s AND key = %s AND lease = %s AND response_status IS NULL",
            (
                object_id,
                self.claimed.scope.merchant_id,
                self.claimed.scope.livemode,
                self.claimed.key,
                self.claimed.lease,
            ),
        )
        if cur.rowcount != 1:
            raise _lease_lost()


# Work called without an Idempotency-Key: nothing to resume, nothing to record.
NO_KEY = Recovery(None)


async def execute_steps(
    connect: Callable[[], Any], claimed: Claim | None, work: StepWork
) -> Outcome:
    """Run `work` that commits in several transactions of its own, because it calls a
    provider between them and what it sent must be on record before it is sent. Its
    first step checkpoints the object it makes; a retry that takes over the key after
    this run died or outlived its lease resumes from that object (`Recovery`) instead of
    making another. The result is stored after the last step."""
    recovery = Recovery(claimed)
    try:
        if claimed is not None:
            async with connect() as conn:
                if not await _still_held(conn, claimed):
                    raise _lease_lost()
        outcome = Outcome(200, orjson.dumps(await work(connect, recovery)))
    except Exception as raised:
        error = _failure(raised)
        if claimed is not None:
            await _store_error(connect, claimed, error)
        return error_outcome(error)
    if claimed is not None:
        try:
            async with connect() as conn:
                if not await _store(conn, claimed, outcome):
                    # A retry took the key over and resumed from our checkpoint: its
                    # answer is the key's; this one is still true of the moment it left.
                    log.warning("idempotent request finished after losing its key")
        except Exception:
            log.exception("could not record the result of an idempotent request")
    return outcome


def check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidRequest(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters.",
            param="Idempotency-Key",
        )
