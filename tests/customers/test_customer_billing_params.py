"""The customer's billing parameters: Stripe's `test_clock` (at creation only, a test
clock of the same merchant that is not deleted, in test mode) and payrail's `time_zone`
extension (an IANA zone, "UTC" unless given). A refused request writes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.clock import ManualClock
from payrail.tenants.service import NewMerchant
from tests.conftest import new_merchant

Json = dict[str, Any]

CUSTOMERS = "/v1/customers"
CLOCKS = "/v1/test_helpers/test_clocks"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def ok(reply: httpx.Response) -> Json:
    assert reply.status_code == 200, reply.text
    obj: Json = reply.json()
    return obj


def assert_error(reply: httpx.Response, status: int, param: str, code: str) -> Json:
    assert reply.status_code == status, reply.text
    error: Json = reply.json()["error"]
    assert (error["type"], error.get("param"), error.get("code")) == (
        "invalid_request_error",
        param,
        code,
    ), error
    return error


async def new_clock(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    made = ok(await client.post(CLOCKS, json={"frozen_time": 1_700_000_000}, headers=headers))
    clock_id: str = made["id"]
    return clock_id


async def stored(pool: AsyncConnectionPool) -> tuple[Any, ...]:
    """Customers as stored, and the count of events: for "nothing changed" checks."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, test_clock_id, time_zone, email FROM customers ORDER BY seq"
        )
        customers = await cur.fetchall()
        count = await (await conn.execute("SELECT count(*) FROM events")).fetchone()
    return customers, count


async def test_a_customer_without_these_parameters_is_in_utc_and_on_no_clock(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool
) -> None:
    obj = ok(await client.post(CUSTOMERS, json={"email": "jo@example.com"}, headers=auth))
    assert (obj["test_clock"], obj["time_zone"]) == (None, "UTC")
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT test_clock_id, time_zone FROM customers WHERE id = %s", (obj["id"],)
            )
        ).fetchone()
    assert row == (None, "UTC")


@pytest.mark.parametrize("as_form", [False, True], ids=["json", "form"])
async def test_create_on_a_test_clock_in_a_time_zone(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool, as_form: bool
) -> None:
    clock_id = await new_clock(client, auth)
    body = {"test_clock": clock_id, "time_zone": "America/New_York"}
    if as_form:
        reply = await client.post(
            CUSTOMERS,
            content=f"test_clock={clock_id}&time_zone=America%2FNew_York".encode(),
            headers={**auth, **FORM},
        )
    else:
        reply = await client.post(CUSTOMERS, json=body, headers=auth)
    obj = ok(reply)
    assert (obj["test_clock"], obj["time_zone"]) == (clock_id, "America/New_York")
    assert ok(await client.get(f"{CUSTOMERS}/{obj['id']}", headers=auth)) == obj
    listed = ok(await client.get(CUSTOMERS, headers=auth))
    assert listed["data"] == [obj]
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT test_clock_id, time_zone FROM customers WHERE id = %s", (obj["id"],)
            )
        ).fetchone()
        payload = await (
            await conn.execute(
                "SELECT payload FROM events WHERE type = 'customer.created' AND aggregate_id = %s",
                (obj["id"],),
            )
        ).fetchone()
    assert row == (clock_id, "America/New_York")
    assert payload == (obj,)


async def test_time_zone_is_updated_and_test_clock_is_not(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool
) -> None:
    clock_id = await new_clock(client, auth)
    other_clock = await new_clock(client, auth)
    obj = ok(await client.post(CUSTOMERS, json={"test_clock": clock_id}, headers=auth))
    path = f"{CUSTOMERS}/{obj['id']}"

    updated = ok(await client.post(path, json={"time_zone": "Asia/Tokyo"}, headers=auth))
    assert updated == {**obj, "time_zone": "Asia/Tokyo"}
    assert ok(await client.post(path, json={"name": "Jo"}, headers=auth))["time_zone"] == (
        "Asia/Tokyo"
    )

    before = await stored(pool)
    # Stripe does not move a customer to another clock, nor off one.
    for value in (other_clock, clock_id, ""):
        assert_error(
            await client.post(path, json={"test_clock": value}, headers=auth),
            400,
            "test_clock",
            "parameter_unknown",
        )
    assert_error(
        await client.post(path, json={"time_zone": "Mars/Olympus_Mons"}, headers=auth),
        400,
        "time_zone",
        "parameter_invalid",
    )
    assert await stored(pool) == before


@pytest.mark.parametrize(
    "time_zone", ["Mars/Olympus_Mons", "", "utc", "localtime", "../../etc/passwd", "x" * 65]
)
async def test_an_unknown_time_zone_is_refused(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool, time_zone: str
) -> None:
    before = await stored(pool)
    error = assert_error(
        await client.post(CUSTOMERS, json={"time_zone": time_zone}, headers=auth),
        400,
        "time_zone",
        "parameter_invalid",
    )
    assert error["message"].startswith("Invalid time_zone")
    assert await stored(pool) == before


async def test_a_clock_that_is_not_attachable_is_refused(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    other = await new_merchant(pool, clock, "Globex")
    theirs = await new_clock(client, {"Authorization": f"Bearer {other.test_secret}"})
    deleted = await new_clock(client, auth)
    ok(await client.delete(f"{CLOCKS}/{deleted}", headers=auth))
    mine = await new_clock(client, auth)
    before = await stored(pool)

    for clock_id in (theirs, deleted, "clock_" + "Z" * 24):
        error = assert_error(
            await client.post(CUSTOMERS, json={"test_clock": clock_id}, headers=auth),
            404,
            "test_clock",
            "resource_missing",
        )
        assert error["message"] == f"No such test_clock: '{clock_id}'"
    live = {"Authorization": f"Bearer {merchant.live_secret}"}
    assert_error(
        await client.post(CUSTOMERS, json={"test_clock": mine}, headers=live),
        400,
        "test_clock",
        "livemode_mismatch",
    )
    assert await stored(pool) == before

    # A live customer may still choose its time zone.
    live_customer = ok(
        await client.post(CUSTOMERS, json={"time_zone": "Europe/Paris"}, headers=live)
    )
    assert (live_customer["livemode"], live_customer["test_clock"]) == (True, None)
    assert live_customer["time_zone"] == "Europe/Paris"
