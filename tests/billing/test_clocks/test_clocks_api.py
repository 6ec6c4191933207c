"""/v1/test_helpers/test_clocks over the API, as Stripe documents them.

A clock is created at a frozen time, listed newest first, advanced only forward (and by
at most two intervals of its shortest subscription, two years without one), never while
it is still advancing, and deleted. Test mode only. A refused request writes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.billing.test_clocks.service import finish_advances
from payrail.clock import ManualClock, unix
from payrail.tenants.service import NewMerchant
from tests.billing.test_clocks.helpers import (
    CLOCKS,
    DAY,
    FROZEN,
    Json,
    advance,
    assert_error,
    bearer,
    clock_rows,
    event_count,
    events,
    new_clock,
    new_customer,
    new_price,
    new_subscription,
    ok,
)
from tests.conftest import new_merchant

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def moment(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# --- Create, retrieve, list -----------------------------------------------------------------------


@pytest.mark.parametrize("as_form", [False, True], ids=["json", "form"])
async def test_create_returns_a_stripe_test_clock_and_emits_created(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    clock: ManualClock,
    as_form: bool,
) -> None:
    body = {"frozen_time": FROZEN, "name": "Annual renewals"}
    if as_form:
        reply = await client.post(
            CLOCKS, content=urlencode(body).encode(), headers={**auth, **FORM}
        )
    else:
        reply = await client.post(CLOCKS, json=body, headers=auth)
    obj = ok(reply)

    assert obj["id"].startswith("clock_") and len(obj["id"]) == len("clock_") + 24
    created = unix(clock.now())
    assert obj == {
        "id": obj["id"],
        "object": "test_helpers.test_clock",
        "created": created,
        "deletes_after": created + 30 * DAY,
        "frozen_time": FROZEN,
        "livemode": False,
        "name": "Annual renewals",
        "status": "ready",
        "status_details": {},
    }
    assert await events(pool, obj["id"]) == [("test_helpers.test_clock.created", "test_clock", obj)]
    assert ok(await client.get(f"{CLOCKS}/{obj['id']}", headers=auth)) == obj


async def test_name_is_optional(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    obj = await new_clock(client, auth)
    assert obj["name"] is None


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({}, "frozen_time", "parameter_missing"),
        ({"frozen_time": 1.5}, "frozen_time", "parameter_invalid"),
        ({"frozen_time": True}, "frozen_time", "parameter_invalid"),
        ({"frozen_time": "soon"}, "frozen_time", "parameter_invalid"),
        ({"frozen_time": -1}, "frozen_time", "parameter_invalid"),
        ({"frozen_time": 253_402_300_800}, "frozen_time", "parameter_invalid"),
        ({"frozen_time": FROZEN, "name": "x" * 301}, "name", "parameter_invalid"),
        ({"frozen_time": FROZEN, "customer": "cus_1"}, "customer", "parameter_unknown"),
    ],
)
async def test_bad_create_parameters_are_named_and_write_nothing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    body: Json,
    param: str,
    code: str,
) -> None:
    before = (await clock_rows(pool), await event_count(pool))
    assert_error(await client.post(CLOCKS, json=body, headers=auth), 400, param, code)
    assert (await clock_rows(pool), await event_count(pool)) == before


async def test_create_under_an_idempotency_key_makes_one_clock(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool
) -> None:
    headers = {**auth, "Idempotency-Key": "clock-1"}
    first = ok(await client.post(CLOCKS, json={"frozen_time": FROZEN}, headers=headers))
    again = await client.post(CLOCKS, json={"frozen_time": FROZEN}, headers=headers)
    assert ok(again) == first
    assert again.headers["Idempotent-Replayed"] == "true"
    assert [row[0] for row in await clock_rows(pool)] == [first["id"]]


async def test_list_pages_newest_first_and_leaves_deleted_clocks_out(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    made = [(await new_clock(client, auth, FROZEN + n))["id"] for n in range(4)]
    ok(await client.delete(f"{CLOCKS}/{made[1]}", headers=auth))
    newest_first = [made[3], made[2], made[0]]

    page = ok(await client.get(CLOCKS, params={"limit": 2}, headers=auth))
    assert page["object"] == "list" and page["url"] == CLOCKS
    assert [c["id"] for c in page["data"]] == newest_first[:2]
    assert page["has_more"] is True
    after = ok(
        await client.get(CLOCKS, params={"limit": 2, "starting_after": made[2]}, headers=auth)
    )
    assert ([c["id"] for c in after["data"]], after["has_more"]) == ([made[0]], False)
    before = ok(await client.get(CLOCKS, params={"ending_before": made[0]}, headers=auth))
    assert ([c["id"] for c in before["data"]], before["has_more"]) == (newest_first[:2], False)
    assert page["data"][0] == ok(await client.get(f"{CLOCKS}/{made[3]}", headers=auth))


# --- Advance --------------------------------------------------------------------------------------


async def test_advance_sets_the_target_and_advancing_until_the_engine_is_done(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool, clock: ManualClock
) -> None:
    created = await new_clock(client, auth)
    target = FROZEN + 3 * DAY
    advancing = ok(await advance(client, auth, created["id"], target))
    assert advancing == {
        **created,
        "frozen_time": target,
        "status": "advancing",
        "status_details": {"advancing": {"target_frozen_time": target}},
    }
    assert ok(await client.get(f"{CLOCKS}/{created['id']}", headers=auth)) == advancing

    async with pool.connection() as conn:
        assert await finish_advances(conn, clock.now()) == [created["id"]]
    ready = {**advancing, "status": "ready", "status_details": {}}
    assert ok(await client.get(f"{CLOCKS}/{created['id']}", headers=auth)) == ready
    assert await events(pool, created["id"]) == [
        ("test_helpers.test_clock.created", "test_clock", created),
        ("test_helpers.test_clock.advancing", "test_clock", advancing),
        ("test_helpers.test_clock.ready", "test_clock", ready),
    ]
    # Ready again, it advances again.
    again = ok(await advance(client, auth, created["id"], target + 1))
    assert (again["frozen_time"], again["status"]) == (target + 1, "advancing")


async def test_advance_while_advancing_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool
) -> None:
    created = await new_clock(client, auth)
    ok(await advance(client, auth, created["id"], FROZEN + DAY))
    before = (await clock_rows(pool), await event_count(pool))

    error = assert_error(
        await advance(client, auth, created["id"], FROZEN + 2 * DAY),
        400,
        None,
        "test_clock_advancing",
    )
    assert created["id"] in error["message"]
    assert (await clock_rows(pool), await event_count(pool)) == before


@pytest.mark.parametrize("offset", [0, -1, -FROZEN], ids=["same", "one-second-back", "epoch"])
async def test_advance_backwards_or_to_the_same_time_is_refused(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool, offset: int
) -> None:
    created = await new_clock(client, auth)
    before = (await clock_rows(pool), await event_count(pool))
    error = assert_error(
        await advance(client, auth, created["id"], FROZEN + offset),
        400,
        "frozen_time",
        "parameter_invalid",
    )
    assert str(FROZEN) in error["message"]
    assert (await clock_rows(pool), await event_count(pool)) == before


async def test_advance_without_subscriptions_goes_at_most_two_years(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool
) -> None:
    start = unix(datetime(2024, 2, 29, 12, tzinfo=UTC))
    limit = unix(datetime(2026, 2, 28, 12, tzinfo=UTC))  # no Feb 29 in 2026
    created = await new_clock(client, auth, start)
    before = (await clock_rows(pool), await event_count(pool))
    error = assert_error(
        await advance(client, auth, created["id"], limit + 1),
        400,
        "frozen_time",
        "parameter_invalid",
    )
    assert str(limit) in error["message"]
    assert (await clock_rows(pool), await event_count(pool)) == before
    assert ok(await advance(client, auth, created["id"], limit))["frozen_time"] == limit


async def test_advance_goes_at_most_two_intervals_of_the_shortest_live_subscription(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
) -> None:
    start = datetime(2024, 1, 31, tzinfo=UTC)
    created = await new_clock(client, auth, unix(start))
    customer = await new_customer(client, auth, test_clock=created["id"])
    monthly = await new_price(pool, merchant.id, "month")
    fortnightly = await new_price(pool, merchant.id, "week", 2)
    daily = await new_price(pool, merchant.id, "day")
    end = datetime(2024, 2, 29, tzinfo=UTC)

    async def subscribe(price_id: str, *, ended: bool = False) -> None:
        await new_subscription(
            pool,
            merchant.id,
            customer,
            price_id,
            start=start,
            period_end=end,
            next_action_at=None,
            ended=ended,
        )

    await subscribe(monthly)
    await subscribe(daily, ended=True)  # an ended subscription bounds the clock no more
    two_months = unix(datetime(2024, 3, 31, tzinfo=UTC))
    assert_error(
        await advance(client, auth, created["id"], two_months + 1),
        400,
        "frozen_time",
        "parameter_invalid",
    )

    await subscribe(fortnightly)
    four_weeks = unix(start) + 28 * DAY
    error = assert_error(
        await advance(client, auth, created["id"], four_weeks + 1),
        400,
        "frozen_time",
        "parameter_invalid",
    )
    assert str(four_weeks) in error["message"]
    assert ok(await advance(client, auth, created["id"], four_weeks))["frozen_time"] == four_weeks


async def test_advance_parameters_are_checked_first(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    created = await new_clock(client, auth)
    path = f"{CLOCKS}/{created['id']}/advance"
    assert_error(
        await client.post(path, json={}, headers=auth), 400, "frozen_time", "parameter_missing"
    )
    assert_error(
        await client.post(path, json={"frozen_time": "later"}, headers=auth),
        400,
        "frozen_time",
        "parameter_invalid",
    )


# --- Delete ---------------------------------------------------------------------------------------


async def test_delete_marks_the_clock_deleted_and_keeps_its_customers(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool
) -> None:
    created = await new_clock(client, auth)
    customer = await new_customer(client, auth, test_clock=created["id"])
    path = f"{CLOCKS}/{created['id']}"

    stub = {"id": created["id"], "object": "test_helpers.test_clock", "deleted": True}
    assert ok(await client.delete(path, headers=auth)) == stub
    assert (await events(pool, created["id"]))[-1] == (
        "test_helpers.test_clock.deleted",
        "test_clock",
        stub,
    )
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT deleted_at FROM test_clocks WHERE id = %s", (created["id"],))
        ).fetchone()
    assert row is not None and row[0] is not None

    # Gone for every route; its customer stays, still naming it.
    for reply in (
        await client.get(path, headers=auth),
        await client.delete(path, headers=auth),
        await advance(client, auth, created["id"], FROZEN + DAY),
    ):
        assert_error(reply, 404, "id", "resource_missing")
    assert ok(await client.get(f"/v1/customers/{customer['id']}", headers=auth)) == customer
    assert customer["test_clock"] == created["id"]


async def test_deleting_an_advancing_clock_leaves_it_out_of_finish_advances(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool, clock: ManualClock
) -> None:
    created = await new_clock(client, auth)
    ok(await advance(client, auth, created["id"], FROZEN + DAY))
    ok(await client.delete(f"{CLOCKS}/{created['id']}", headers=auth))
    async with pool.connection() as conn:
        assert await finish_advances(conn, clock.now()) == []
    assert [e[0] for e in await events(pool, created["id"])] == [
        "test_helpers.test_clock.created",
        "test_helpers.test_clock.advancing",
        "test_helpers.test_clock.deleted",
    ]


# --- Modes, tenants, unknown ids -----------------------------------------------------------------


async def test_live_mode_keys_cannot_use_test_clocks(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
) -> None:
    test_clock = await new_clock(client, auth)
    live = bearer(merchant.live_secret)
    before = (await clock_rows(pool), await event_count(pool))

    assert_error(
        await client.post(CLOCKS, json={"frozen_time": FROZEN}, headers=live),
        400,
        None,
        "livemode_mismatch",
    )
    assert_error(await client.get(CLOCKS, headers=live), 400, None, "livemode_mismatch")
    # No clock exists in live mode: a test clock's id is not found with a live key.
    path = f"{CLOCKS}/{test_clock['id']}"
    for reply in (
        await client.get(path, headers=live),
        await advance(client, live, test_clock["id"], FROZEN + DAY),
        await client.delete(path, headers=live),
    ):
        assert_error(reply, 404, "id", "resource_missing")
    assert (await clock_rows(pool), await event_count(pool)) == before


async def test_another_merchants_clock_is_not_found(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    other = await new_merchant(pool, clock, "Globex")
    theirs = await new_clock(client, bearer(other.test_secret))
    mine = await new_clock(client, auth)
    before = (await clock_rows(pool), await event_count(pool))

    path = f"{CLOCKS}/{theirs['id']}"
    for reply in (
        await client.get(path, headers=auth),
        await advance(client, auth, theirs["id"], FROZEN + DAY),
        await client.delete(path, headers=auth),
    ):
        error = assert_error(reply, 404, "id", "resource_missing")
        assert error["message"] == f"No such test_clock: '{theirs['id']}'"
    listed = ok(await client.get(CLOCKS, headers=auth))
    assert [c["id"] for c in listed["data"]] == [mine["id"]]
    assert_error(
        await client.get(CLOCKS, params={"starting_after": theirs["id"]}, headers=auth),
        400,
        "starting_after",
        "resource_missing",
    )
    assert (await clock_rows(pool), await event_count(pool)) == before


async def test_unknown_clock_is_not_found(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    ghost = "clock_" + "Z" * 24
    for reply in (
        await client.get(f"{CLOCKS}/{ghost}", headers=auth),
        await advance(client, auth, ghost, FROZEN),
        await client.delete(f"{CLOCKS}/{ghost}", headers=auth),
    ):
        error = assert_error(reply, 404, "id", "resource_missing")
        assert error["message"] == f"No such test_clock: '{ghost}'"
