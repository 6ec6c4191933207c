"""Merchants' dunning policies: loading one for the billing engine, reading and updating
it over the API."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from payrail.clock import Clock, unix
from payrail.dunning import repository as repo
from payrail.dunning.policy import DEFAULT, Policy
from payrail.dunning.schemas import PolicyUpdate
from payrail.events.outbox import OutboxEvent, emit
from payrail.tenants.scope import Scope

Conn = repo.Conn
OBJECT = "dunning_policy"


def policy_id(scope: Scope) -> str:
    """A policy is one per merchant and mode, so that pair is its id (and the aggregate id
    of its events): `mer_...:test` or `mer_...:live`."""
    return f"{scope.merchant_id}:{'live' if scope.livemode else 'test'}"


def _policy(row: dict[str, Any]) -> Policy:
    return Policy(
        retry_days=tuple(row["retry_days"]),
        technical_retry_hours=row["technical_retry_hours"],
        grace_period_days=row["grace_period_days"],
        final_action=row["final_action"],
    )


def policy_object(scope: Scope, policy: Policy, updated_at: datetime | None) -> dict[str, Any]:
    return {
        "id": policy_id(scope),
        "object": OBJECT,
        "livemode": scope.livemode,
        "retry_days": list(policy.retry_days),
        "technical_retry_hours": policy.technical_retry_hours,
        "grace_period_days": policy.grace_period_days,
        "final_action": policy.final_action,
        # null until the merchant sets a policy: the defaults apply, and follow payrail's.
        "updated": None if updated_at is None else unix(updated_at),
    }


async def load_policy(conn: Conn, scope: Scope) -> Policy:
    """The merchant's policy in this mode, or the default when it has set none."""
    row = await repo.fetch_policy(conn, scope)
    return DEFAULT if row is None else _policy(row)


async def get_policy(conn: Conn, scope: Scope) -> dict[str, Any]:
    row = await repo.fetch_policy(conn, scope)
    if row is None:
        return policy_object(scope, DEFAULT, None)
    return policy_object(scope, _policy(row), row["updated_at"])


async def update_policy(
    conn: Conn, scope: Scope, clock: Clock, params: PolicyUpdate
) -> dict[str, Any]:
    """Set the given fields. The first update stores every field, so a merchant's policy
    stays as set even if payrail's defaults change; an update that changes nothing writes
    nothing and emits nothing."""
    await repo.lock_policy(conn, scope)
    row = await repo.fetch_policy(conn, scope)
    current = DEFAULT if row is None else _policy(row)
    changes: dict[str, Any] = params.model_dump(exclude_none=True)
    if "retry_days" in changes:
        changes["retry_days"] = tuple(changes["retry_days"])
    updated = dataclasses.replace(current, **changes)
    if updated == current and (row is not None or not changes):
        return policy_object(scope, current, None if row is None else row["updated_at"])
    now = clock.now()
    await repo.upsert_policy(conn, scope, updated, now)
    obj = policy_object(scope, updated, now)
    event = OutboxEvent(f"{OBJECT}.updated", OBJECT, obj["id"], obj)
    await emit(conn, scope, now, [event])
    return obj
