"""The official `stripe` SDK's `stripe.test_helpers.TestClock`, pointed at payrail over real
HTTP: create, attach a customer, advance, poll until ready (the billing engine's pass is
run by the test), list, delete."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import psycopg
import pytest
import stripe

from payrail.billing.test_clocks.service import finish_advances
from payrail.clock import ManualClock
from payrail.tenants.service import NewMerchant
from tests.billing.test_clocks.helpers import DAY, FROZEN


@pytest.fixture
def sdk(live_server: str, merchant: NewMerchant, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The SDK's global configuration: the merchant's test key, payrail as its API base,
    no retries (a failing request fails the test) and no telemetry header."""
    monkeypatch.setattr(stripe, "api_key", merchant.test_secret)
    monkeypatch.setattr(stripe, "api_base", live_server)
    monkeypatch.setattr(stripe, "max_network_retries", 0)
    monkeypatch.setattr(stripe, "enable_telemetry", False)
    yield


def engine_pass(database_url: str, clock: ManualClock) -> list[str]:
    """What the billing engine does on each pass for test clocks."""

    async def run() -> list[str]:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            return await finish_advances(conn, clock.now())

    return asyncio.run(run())


def test_test_clock_lifecycle_through_the_sdk(
    sdk: None, database_url: str, clock: ManualClock
) -> None:
    test_clock = stripe.test_helpers.TestClock.create(frozen_time=FROZEN, name="renewals")
    assert isinstance(test_clock, stripe.test_helpers.TestClock)
    assert test_clock.id.startswith("clock_")
    assert (test_clock.frozen_time, test_clock.name, test_clock.status) == (
        FROZEN,
        "renewals",
        "ready",
    )
    assert test_clock.livemode is False
    assert test_clock.deletes_after == test_clock.created + 30 * DAY

    customer = stripe.Customer.create(email="jo@example.com", test_clock=test_clock.id)
    assert customer.test_clock == test_clock.id

    target = FROZEN + 40 * DAY
    advancing = stripe.test_helpers.TestClock.advance(test_clock.id, frozen_time=target)
    assert (advancing.status, advancing.frozen_time) == ("advancing", target)
    details = advancing.status_details.advancing
    assert details is not None and details.target_frozen_time == target
    with pytest.raises(stripe.InvalidRequestError) as refused:
        advancing.advance(frozen_time=target + DAY)
    assert (refused.value.http_status, refused.value.code) == (400, "test_clock_advancing")

    assert stripe.test_helpers.TestClock.retrieve(test_clock.id).status == "advancing"
    assert engine_pass(database_url, clock) == [test_clock.id]
    status = "advancing"
    for _ in range(50):  # as a client of Stripe polls
        status = stripe.test_helpers.TestClock.retrieve(test_clock.id).status
        if status == "ready":
            break
        time.sleep(0.05)
    assert status == "ready"
    ready = stripe.test_helpers.TestClock.retrieve(test_clock.id)
    assert (ready.frozen_time, ready.status_details.to_dict()) == (target, {})

    with pytest.raises(stripe.InvalidRequestError) as backwards:
        ready.advance(frozen_time=FROZEN)
    assert (backwards.value.http_status, backwards.value.param) == (400, "frozen_time")

    listed = stripe.test_helpers.TestClock.list(limit=3)
    assert [c.id for c in listed.data] == [test_clock.id]

    deleted = stripe.test_helpers.TestClock.delete(test_clock.id)
    assert (deleted.id, deleted.deleted) == (test_clock.id, True)
    with pytest.raises(stripe.InvalidRequestError) as gone:
        stripe.test_helpers.TestClock.retrieve(test_clock.id)
    assert (gone.value.http_status, gone.value.code) == (404, "resource_missing")
    assert stripe.Customer.retrieve(customer.id).test_clock == test_clock.id


def test_a_live_key_cannot_create_a_test_clock(
    sdk: None, merchant: NewMerchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stripe, "api_key", merchant.live_secret)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        stripe.test_helpers.TestClock.create(frozen_time=FROZEN)
    assert (refused.value.http_status, refused.value.code) == (400, "livemode_mismatch")
