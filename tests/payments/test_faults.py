"""Every fault the sandbox PSP can inject, through payrail's API: each test asserts no
double charge at the PSP, a balanced ledger, and the intent's right final state once
the janitor has run. Also a process dying between the steps of a confirm.

Faults are forced by narrowing the sandbox's rate draw to one kind (rate 1): payrail's
connector, not the test, sends the requests that get them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.api.app import create_app
from payrail.api.context import Services
from payrail.clock import ManualClock
from payrail.db.pool import open_pool
from payrail.ledger.verify import verify
from payrail.payments import in_doubt, janitor, outcomes
from tests.connectors.accounts.helpers import create_account, send
from tests.payments.conftest import charged

Json = dict[str, Any]
INTENTS = "/v1/payment_intents"


async def fault(psp: httpx.AsyncClient, kind: str | None) -> None:
    body = {"rate": 1, "kinds": [kind]} if kind else {"rate": 0}
    assert (await psp.post("/sandbox/faults", json=body)).status_code == 200


async def pay(
    client: httpx.AsyncClient, auth: dict[str, str], *, manual: bool = False
) -> httpx.Response:
    body = {"amount": 1500, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    if manual:
        body["capture_method"] = "manual"
    return await send(client, auth, INTENTS, body)


async def intent(client: httpx.AsyncClient, auth: dict[str, str], intent_id: str) -> Json:
    reply = await client.get(f"{INTENTS}/{intent_id}", headers=auth)
    assert reply.status_code == 200, reply.text
    found: Json = reply.json()
    return found


async def charges_of(pool: AsyncConnectionPool, intent_id: str) -> list[tuple[str, str]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, status FROM charges WHERE payment_intent_id = %s ORDER BY seq",
            (intent_id,),
        )
        return [(r[0], r[1]) for r in await cur.fetchall()]


async def killed(*args: object) -> None:
    """Stands in for a step the process dies in."""
    raise RuntimeError("killed")


async def only_intent(client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    """The one intent a test made (a request that died answered without its id)."""
    [found] = (await client.get(INTENTS, headers=auth)).json()["data"]
    intent_id: str = found["id"]
    return intent_id


async def settle(services: Services, clock: ManualClock, after: timedelta) -> janitor.JanitorRun:
    clock.advance(after)
    return await janitor.run_once(services)


async def assert_sound(pool: AsyncConnectionPool, psp: httpx.AsyncClient, intent_id: str) -> int:
    """No charge made twice at the PSP, at most one successful charge for the intent, the
    ledger balanced. Returns how many payments the PSP made for the intent."""
    charge_ids = [c for c, _ in await charges_of(pool, intent_id)]
    made = await charged(psp, charge_ids)
    assert all(len(payments) <= 1 for payments in made.values()), made
    succeeded = [p for ps in made.values() for p in ps if p["status"] in ("captured", "authorized")]
    assert len(succeeded) <= 1
    async with pool.connection() as conn:
        report = await verify(conn)
    assert report.ok, report
    return sum(len(ps) for ps in made.values())


@pytest.mark.parametrize("kind", ["error_after", "timeout_after"])
async def test_an_answer_lost_after_the_charge_is_settled_by_the_janitor_not_charged_again(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
    psp: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    services: Services,
    clock: ManualClock,
    kind: str,
) -> None:
    await fault(psp, kind)
    reply = await pay(client, auth)
    assert reply.status_code == 200, reply.text
    pending = reply.json()
    assert pending["status"] == "processing"  # in doubt: the customer is not asked again
    [(_, status)] = await charges_of(pool, pending["id"])
    assert status == "in_doubt"
    # A second confirm is refused while in doubt: nothing may charge again.
    again = await send(client, auth, f"{INTENTS}/{pending['id']}/confirm", {})
    assert again.status_code == 400
    # Not due yet: the janitor leaves it alone.
    assert (await janitor.run_once(services)).checked == 0
    run = await settle(services, clock, in_doubt.SCHEDULE[0])
    assert (run.checked, run.settled) == (1, 1)
    done = await intent(client, auth, pending["id"])
    assert done["status"] == "succeeded" and done["amount_received"] == 1500
    assert await assert_sound(pool, psp, pending["id"]) == 1


@pytest.mark.parametrize("kind", ["error_before", "timeout_before"])
async def test_a_request_never_processed_fails_the_attempt_without_a_charge(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
    psp: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    services: Services,
    clock: ManualClock,
    kind: str,
) -> None:
    await fault(psp, kind)
    reply = await pay(client, auth)
    if kind == "error_before":
        # 503 before processing is certain: technical, failed at once, retryable.
        assert reply.status_code == 502, reply.text
        assert reply.json()["error"]["payment_intent"]["status"] == "requires_payment_method"
        intent_id = reply.json()["error"]["payment_intent"]["id"]
    else:
        # A timeout cannot tell: in doubt until the provider says it has no such request,
        # and that is believed only once the request cannot still be under way there.
        assert reply.status_code == 200 and reply.json()["status"] == "processing"
        intent_id = reply.json()["id"]
        run = await settle(services, clock, in_doubt.SCHEDULE[0])
        assert (run.checked, run.waiting) == (1, 1)
        assert (await intent(client, auth, intent_id))["status"] == "processing"
        await settle(services, clock, in_doubt.NOT_PROCESSED_AFTER)
        found = await intent(client, auth, intent_id)
        assert found["status"] == "requires_payment_method"
        assert found["last_payment_error"]["code"] == "connector_unreachable"
    assert await assert_sound(pool, psp, intent_id) == 0
    # The customer may try again; with the fault gone it goes through, once.
    await fault(psp, None)
    retried = await send(client, auth, f"{INTENTS}/{intent_id}/confirm", {})
    assert retried.json()["status"] == "succeeded", retried.text
    assert await assert_sound(pool, psp, intent_id) == 1


async def test_latency_below_the_timeout_is_just_slow(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
    psp: httpx.AsyncClient,
    pool: AsyncConnectionPool,
) -> None:
    await fault(psp, "latency:200")
    reply = await pay(client, auth)
    assert reply.json()["status"] == "succeeded", reply.text
    assert await assert_sound(pool, psp, reply.json()["id"]) == 1


async def test_error_before_fails_over_to_the_next_account(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
    psp_url: str,
    psp: httpx.AsyncClient,
    pool: AsyncConnectionPool,
) -> None:
    """Both accounts are at the same sandbox, so its one fault plan faults both; the
    first is unreachable instead (nothing listens on port 9): technical, so the payment
    moves on to the second, and only that one charges."""
    dead = await create_account(client, auth, base_url="http://127.0.0.1:9", currencies=[])
    rule = {"priority": 1, "connector_accounts": [dead["id"], account["id"]]}
    assert (await send(client, auth, "/v1/routing_rules", rule)).status_code == 200
    reply = await pay(client, auth)
    assert reply.json()["status"] == "succeeded", reply.text
    charges = await charges_of(pool, reply.json()["id"])
    assert [status for _, status in charges] == ["failed", "captured"]
    assert await assert_sound(pool, psp, reply.json()["id"]) == 1


async def test_an_in_doubt_attempt_never_fails_over(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
    psp: httpx.AsyncClient,
    pool: AsyncConnectionPool,
) -> None:
    second = await create_account(client, auth, base_url=str(psp.base_url), currencies=[])
    rule = {"priority": 1, "connector_accounts": [account["id"], second["id"]]}
    assert (await send(client, auth, "/v1/routing_rules", rule)).status_code == 200
    await fault(psp, "timeout_after")
    reply = await pay(client, auth)
    assert reply.json()["status"] == "processing"
    assert [s for _, s in await charges_of(pool, reply.json()["id"])] == ["in_doubt"]


async def test_retrieving_an_intent_whose_check_is_due_settles_it(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
    psp: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    await fault(psp, "error_after")
    pending = (await pay(client, auth)).json()
    assert (await intent(client, auth, pending["id"]))["status"] == "processing"  # not due
    clock.advance(in_doubt.SCHEDULE[0])
    assert (await intent(client, auth, pending["id"]))["status"] == "succeeded"
    assert await assert_sound(pool, psp, pending["id"]) == 1


@pytest.mark.parametrize("kind", ["error_after", "timeout_after"])
async def test_a_capture_answer_lost_is_completed_by_the_janitor(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
    psp: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    services: Services,
    clock: ManualClock,
    kind: str,
) -> None:
    authorized = (await pay(client, auth, manual=True)).json()
    assert authorized["status"] == "requires_capture"
    await fault(psp, kind)
    path = f"{INTENTS}/{authorized['id']}/capture"
    reply = await send(client, auth, path, {"amount_to_capture": 1000})
    assert reply.json()["status"] == "requires_capture", reply.text  # not known yet
    # Another amount while that capture is undecided is refused; cancel too.
    other = await send(client, auth, path, {"amount_to_capture": 500})
    assert other.json()["error"]["code"] == "payment_intent_operation_in_progress"
    cancel = await send(client, auth, f"{INTENTS}/{authorized['id']}/cancel", {})
    assert cancel.status_code == 400
    await fault(psp, None)
    await settle(services, clock, in_doubt.SCHEDULE[0])
    done = await intent(client, auth, authorized["id"])
    assert (done["status"], done["amount_received"]) == ("succeeded", 1000)
    assert await assert_sound(pool, psp, authorized["id"]) == 1
    [payment] = (await charged(psp, [authorized["latest_charge"]]))[authorized["latest_charge"]]
    assert payment["amount_captured"] == 1000


async def test_a_capture_never_processed_is_resent_with_its_key(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
    psp: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    services: Services,
    clock: ManualClock,
) -> None:
    authorized = (await pay(client, auth, manual=True)).json()
    await fault(psp, "timeout_before")
    path = f"{INTENTS}/{authorized['id']}/capture"
    assert (await send(client, auth, path, {})).json()["status"] == "requires_capture"
    await fault(psp, None)
    await settle(services, clock, in_doubt.SCHEDULE[0])
    assert (await intent(client, auth, authorized["id"]))["status"] == "succeeded"
    assert await assert_sound(pool, psp, authorized["id"]) == 1


@pytest.mark.parametrize("kind", ["error_after", "timeout_after", "error_before"])
async def test_a_refund_without_an_answer_is_pending_until_the_janitor_settles_it(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
    psp: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    services: Services,
    clock: ManualClock,
    kind: str,
) -> None:
    paid = (await pay(client, auth)).json()
    await fault(psp, kind)
    refund = await send(client, auth, "/v1/refunds", {"payment_intent": paid["id"], "amount": 600})
    assert refund.json()["status"] == "pending", refund.text
    # What is pending counts: no refunding more than was received meanwhile.
    over = await send(client, auth, "/v1/refunds", {"payment_intent": paid["id"], "amount": 901})
    assert over.status_code == 400
    await fault(psp, None)
    await settle(services, clock, in_doubt.SCHEDULE[0])
    found = await client.get(f"/v1/refunds/{refund.json()['id']}", headers=auth)
    assert found.json()["status"] == "succeeded"
    record = (await psp.get("/sandbox/record")).json()
    assert [
        r["amount"] for r in record["refunds"] if r["idempotency_key"] == found.json()["id"]
    ] == [600]
    await assert_sound(pool, psp, paid["id"])


async def test_a_process_dying_before_the_request_left_leaves_nothing_charged(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
    psp: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    services: Services,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(services.connectors, "get", killed)
    reply = await pay(client, auth)
    assert reply.status_code == 500
    monkeypatch.undo()
    intent_id = await only_intent(client, auth)
    assert [s for _, s in await charges_of(pool, intent_id)] == ["sending"]
    await settle(services, clock, in_doubt.SCHEDULE[0])
    assert (await intent(client, auth, intent_id))["status"] == "processing"
    await settle(services, clock, in_doubt.NOT_PROCESSED_AFTER)
    assert (await intent(client, auth, intent_id))["status"] == "requires_payment_method"
    assert await assert_sound(pool, psp, intent_id) == 0


async def test_a_process_dying_after_the_charge_is_settled_from_the_provider(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
    psp: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    services: Services,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outcomes, "record_attempt", killed)
    assert (await pay(client, auth)).status_code == 500
    monkeypatch.undo()
    intent_id = await only_intent(client, auth)
    await settle(services, clock, in_doubt.SCHEDULE[0])
    assert (await intent(client, auth, intent_id))["status"] == "succeeded"
    assert await assert_sound(pool, psp, intent_id) == 1


async def test_a_charge_the_provider_makes_after_it_was_presumed_never_made_is_recorded(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
    psp: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    services: Services,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The janitor concludes "never processed" only after NOT_PROCESSED_AFTER, and asks
    once more a day later: a provider whose queue drained late is still heard, and its
    money reaches the ledger (the intent, failed meanwhile, does not follow it)."""

    monkeypatch.setattr(services.connectors, "get", killed)
    assert (await pay(client, auth)).status_code == 500
    monkeypatch.undo()
    intent_id = await only_intent(client, auth)
    [(charge_id, _)] = await charges_of(pool, intent_id)
    await settle(services, clock, in_doubt.SCHEDULE[0] + in_doubt.NOT_PROCESSED_AFTER)
    assert (await intent(client, auth, intent_id))["status"] == "requires_payment_method"
    # The request reaches the provider after all, with the charge's own key.
    late = {
        "amount": 1500,
        "currency": "usd",
        "capture": True,
        "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2040},
        "reference": charge_id,
    }
    made = await psp.post("/v1/payments", json=late, headers={"Idempotency-Key": charge_id})
    assert made.json()["status"] == "captured"
    run = await settle(services, clock, in_doubt.LATE_CHECK)
    assert (run.checked, run.settled) == (1, 1)
    assert await charges_of(pool, intent_id) == [(charge_id, "captured")]
    assert (await intent(client, auth, intent_id))["status"] == "requires_payment_method"
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM ledger_transactions WHERE external_id = %s",
            (f"charge:{charge_id}:capture",),
        )
        assert await cur.fetchone() == (1,)
    await assert_sound(pool, psp, intent_id)
    # Asked once more, then left alone: nothing further is due.
    assert (await settle(services, clock, in_doubt.LATE_CHECK)).checked == 0


async def test_reading_an_intent_due_for_a_check_needs_one_connection_at_a_time(
    auth: dict[str, str],
    account: Json,
    psp: httpx.AsyncClient,
    database_url: str,
    services: Services,
    clock: ManualClock,
) -> None:
    """The due check asks the provider: it must not run while the read holds a
    connection, or concurrent polls of in-doubt intents drain the pool. With a pool of
    one connection, a read that did so would wait on itself until the pool timed out."""
    one = await open_pool(database_url, min_size=1, max_size=1)
    one.timeout = 5
    small = Services(pool=one, clock=clock, vault=services.vault, connectors=services.connectors)
    transport = httpx.ASGITransport(app=create_app(small))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://payrail.test") as api:
            await fault(psp, "error_after")
            pending = (await pay(api, auth)).json()
            assert pending["status"] == "processing"
            clock.advance(in_doubt.SCHEDULE[0])
            settled = await api.get(f"{INTENTS}/{pending['id']}", headers=auth)
            assert settled.status_code == 200, settled.text
            assert settled.json()["status"] == "succeeded"
    finally:
        await one.close()
