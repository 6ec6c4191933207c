"""GET and POST /v1/dunning/policy: a merchant's retry policy per mode, the default until it
sets one; partial updates in JSON or Stripe's forms; one `dunning_policy.updated` event per
change and none for a request that changes nothing or is refused; and `load_policy`, which
the billing engine reads it with."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.clock import ManualClock, unix
from payrail.dunning.policy import DEFAULT, Policy
from payrail.dunning.service import load_policy
from payrail.tenants.scope import Scope
from payrail.tenants.service import NewMerchant
from tests.conftest import new_merchant

Json = dict[str, Any]
POLICY = "/v1/dunning/policy"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def default_object(merchant: NewMerchant, *, live: bool = False) -> Json:
    return {
        "id": f"{merchant.id}:{'live' if live else 'test'}",
        "object": "dunning_policy",
        "livemode": live,
        "retry_days": [1, 3, 5, 7],
        "technical_retry_hours": 1,
        "grace_period_days": 0,
        "final_action": "cancel",
        "updated": None,
    }


def ok(reply: httpx.Response) -> Json:
    assert reply.status_code == 200, reply.text
    obj: Json = reply.json()
    return obj


async def events(pool: AsyncConnectionPool, merchant_id: str) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT type, livemode, aggregate_type, aggregate_id, payload FROM events"
            " WHERE merchant_id = %s AND type LIKE 'dunning%%' ORDER BY seq",
            (merchant_id,),
        )
        return list(await cur.fetchall())


async def stored(pool: AsyncConnectionPool) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT merchant_id, livemode, retry_days, technical_retry_hours, grace_period_days,"
            " final_action, updated_at FROM dunning_policies ORDER BY merchant_id, livemode"
        )
        return list(await cur.fetchall())


async def loaded(pool: AsyncConnectionPool, merchant: NewMerchant, live: bool = False) -> Policy:
    async with pool.connection() as conn:
        return await load_policy(conn, Scope(merchant.id, live))


async def test_a_merchant_without_a_policy_gets_the_default(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
) -> None:
    assert ok(await client.get(POLICY, headers=auth)) == default_object(merchant)
    assert await loaded(pool, merchant) == DEFAULT
    assert await stored(pool) == []


async def test_update_in_json_then_in_parts(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    set_at = clock.now()
    body = {"retry_days": [2, 4, 8], "grace_period_days": 3, "final_action": "mark_unpaid"}
    first = ok(await client.post(POLICY, headers=auth, json=body))
    expected = {
        **default_object(merchant),
        "retry_days": [2, 4, 8],
        "grace_period_days": 3,
        "final_action": "mark_unpaid",
        "updated": unix(set_at),
    }
    assert first == expected
    assert ok(await client.get(POLICY, headers=auth)) == expected
    assert await loaded(pool, merchant) == Policy((2, 4, 8), 1, 3, "mark_unpaid")

    clock.advance(timedelta(hours=1))
    second = ok(await client.post(POLICY, headers=auth, json={"technical_retry_hours": 4}))
    assert second == {**expected, "technical_retry_hours": 4, "updated": unix(clock.now())}
    assert await loaded(pool, merchant) == Policy((2, 4, 8), 4, 3, "mark_unpaid")
    assert await stored(pool) == [(merchant.id, False, [2, 4, 8], 4, 3, "mark_unpaid", clock.now())]
    test_mode = f"{merchant.id}:test"
    assert await events(pool, merchant.id) == [
        ("dunning_policy.updated", False, "dunning_policy", test_mode, first),
        ("dunning_policy.updated", False, "dunning_policy", test_mode, second),
    ]


async def test_update_as_a_stripe_form(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
) -> None:
    form = [
        ("retry_days[]", "1"),
        ("retry_days[]", "10"),
        ("retry_days[]", "30"),
        ("technical_retry_hours", "2"),
        ("final_action", "leave_past_due"),
    ]
    reply = await client.post(POLICY, headers={**auth, **FORM}, content=urlencode(form))
    assert ok(reply)["retry_days"] == [1, 10, 30]
    assert await loaded(pool, merchant) == Policy((1, 10, 30), 2, 0, "leave_past_due")
    # Indexed lists too, and an empty value for no retries at all.
    indexed = urlencode([("retry_days[0]", "5"), ("retry_days[1]", "6")])
    assert ok(await client.post(POLICY, headers={**auth, **FORM}, content=indexed))[
        "retry_days"
    ] == [5, 6]
    none = ok(await client.post(POLICY, headers={**auth, **FORM}, content="retry_days="))
    assert none["retry_days"] == []
    assert await loaded(pool, merchant) == Policy((), 2, 0, "leave_past_due")
    assert len(await events(pool, merchant.id)) == 3


async def test_an_update_that_changes_nothing_writes_nothing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    # Nothing given, no policy yet: the default is answered and nothing is stored.
    assert ok(await client.post(POLICY, headers=auth, json={})) == default_object(merchant)
    assert await stored(pool) == []
    # The first update stores every field, even one equal to the default, so that the
    # merchant keeps what it chose if payrail's defaults change.
    set_at = clock.now()
    pinned = ok(await client.post(POLICY, headers=auth, json={"final_action": "cancel"}))
    assert pinned == {**default_object(merchant), "updated": unix(set_at)}
    assert await stored(pool) == [(merchant.id, False, [1, 3, 5, 7], 1, 0, "cancel", set_at)]
    clock.advance(timedelta(days=1))
    again = {"retry_days": [1, 3, 5, 7], "grace_period_days": 0}
    assert ok(await client.post(POLICY, headers=auth, json=again)) == pinned
    assert ok(await client.post(POLICY, headers=auth, json={})) == pinned
    assert await stored(pool) == [(merchant.id, False, [1, 3, 5, 7], 1, 0, "cancel", set_at)]
    assert [row[0] for row in await events(pool, merchant.id)] == ["dunning_policy.updated"]


async def test_an_idempotency_key_replays_the_update(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
) -> None:
    headers = {**auth, "Idempotency-Key": "policy-1"}
    first = await client.post(POLICY, headers=headers, json={"grace_period_days": 5})
    ok(first)
    await client.post(POLICY, headers=auth, json={"grace_period_days": 6})
    replay = await client.post(POLICY, headers=headers, json={"grace_period_days": 5})
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert (await loaded(pool, merchant)).grace_period_days == 6
    assert len(await events(pool, merchant.id)) == 2


async def test_concurrent_updates_of_different_fields_all_land(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
) -> None:
    """Each update reads the policy, changes its field and writes the whole: without the
    lock, two first updates would both start from the default and one would undo the other."""
    bodies: list[Json] = [
        {"retry_days": [2]},
        {"technical_retry_hours": 7},
        {"grace_period_days": 5},
        {"final_action": "mark_unpaid"},
    ]
    for _ in range(3):
        async with pool.connection() as conn:
            await conn.execute("DELETE FROM dunning_policies")
        replies = await asyncio.gather(
            *(client.post(POLICY, headers=auth, json=body) for body in bodies)
        )
        assert [reply.status_code for reply in replies] == [200] * 4
        assert await loaded(pool, merchant) == Policy((2,), 7, 5, "mark_unpaid")


async def test_modes_and_merchants_each_have_their_own(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    live = {"Authorization": f"Bearer {merchant.live_secret}"}
    other = await new_merchant(pool, clock, "Other Co")
    other_auth = {"Authorization": f"Bearer {other.test_secret}"}
    ok(await client.post(POLICY, headers=auth, json={"retry_days": [2]}))
    live_set = ok(await client.post(POLICY, headers=live, json={"grace_period_days": 9}))
    assert live_set == {
        **default_object(merchant, live=True),
        "grace_period_days": 9,
        "updated": unix(clock.now()),
    }
    assert ok(await client.get(POLICY, headers=auth))["retry_days"] == [2]
    assert ok(await client.get(POLICY, headers=auth))["grace_period_days"] == 0
    assert ok(await client.get(POLICY, headers=other_auth)) == default_object(other)
    assert await loaded(pool, merchant, live=True) == Policy(grace_period_days=9)
    assert await loaded(pool, other) == DEFAULT
    [(_, livemode, _, aggregate_id, _)] = [
        e for e in await events(pool, merchant.id) if e[1] is True
    ]
    assert (livemode, aggregate_id) == (True, f"{merchant.id}:live")
    assert await events(pool, other.id) == []


@pytest.mark.parametrize(
    ("body", "param", "code", "message"),
    [
        ({"retry_days": [3, 3]}, "retry_days", "parameter_invalid", "strictly increasing"),
        ({"retry_days": [5, 2]}, "retry_days", "parameter_invalid", "strictly increasing"),
        ({"retry_days": [0, 2]}, "retry_days[0]", "parameter_invalid", "greater than or equal"),
        ({"retry_days": [1, 61]}, "retry_days[1]", "parameter_invalid", "less than or equal"),
        ({"retry_days": [1.5]}, "retry_days[0]", "parameter_invalid", "whole number"),
        ({"retry_days": [2.0]}, "retry_days[0]", "parameter_invalid", "whole number"),
        ({"retry_days": [True]}, "retry_days[0]", "parameter_invalid", "whole number"),
        ({"retry_days": "3"}, "retry_days", "parameter_invalid", "list"),
        ({"retry_days": list(range(1, 14))}, "retry_days", "parameter_invalid", "at most 12"),
        ({"technical_retry_hours": 0}, "technical_retry_hours", "parameter_invalid", "greater"),
        ({"technical_retry_hours": 73}, "technical_retry_hours", "parameter_invalid", "less"),
        ({"technical_retry_hours": "1h"}, "technical_retry_hours", "parameter_invalid", "whole"),
        ({"grace_period_days": -1}, "grace_period_days", "parameter_invalid", "greater"),
        ({"grace_period_days": 61}, "grace_period_days", "parameter_invalid", "less"),
        ({"final_action": "delete"}, "final_action", "parameter_invalid", "'cancel'"),
        ({"retry": [1]}, "retry", "parameter_unknown", "unknown parameter"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field_and_changes_nothing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    body: Json,
    param: str,
    code: str,
    message: str,
) -> None:
    ok(await client.post(POLICY, headers=auth, json={"retry_days": [2, 4]}))
    before = (await stored(pool), await events(pool, merchant.id))
    valid = {"grace_period_days": 1, "final_action": "leave_past_due"}
    reply = await client.post(POLICY, headers=auth, json={**valid, **body})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        param,
        code,
    )
    assert message in error["message"]
    assert (await stored(pool), await events(pool, merchant.id)) == before


async def test_bad_form_input_names_the_field(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool
) -> None:
    reply = await client.post(
        POLICY, headers={**auth, **FORM}, content="retry_days[]=1&retry_days[]=x"
    )
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "retry_days[1]"
    assert await stored(pool) == []


async def test_the_policy_needs_a_key(client: httpx.AsyncClient) -> None:
    assert (await client.get(POLICY)).status_code == 401
    assert (await client.post(POLICY, json={"grace_period_days": 1})).status_code == 401
