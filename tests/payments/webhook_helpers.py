"""Provider webhooks for payments tests: sandbox events signed and delivered to payrail,
and what payrail stored and emitted for them."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from psycopg_pool import AsyncConnectionPool

from payrail.clock import ManualClock, unix
from payrail.connectors.sandbox import SandboxConfig
from payrail.connectors.sandbox.server import run_sandbox
from payrail.connectors.sandbox.webhooks import signature
from payrail.connectors.sandbox_connector import SIGNATURE_HEADER
from payrail.ledger.verify import verify
from tests.connectors.accounts.helpers import SECRET, bearer, create_account, send

Json = dict[str, Any]

WEBHOOK_SECRET = "whsec_payments_tests"
# Tests' manual clocks all start at this moment: sign with it unless told otherwise.
NOW = unix(ManualClock().now())


async def webhook_account(http: httpx.AsyncClient, auth: dict[str, str], psp_url: str) -> Json:
    """A sandbox account whose webhooks are signed with WEBHOOK_SECRET."""
    credentials = {"secret": SECRET, "webhook_secret": WEBHOOK_SECRET}
    return await create_account(
        http, auth, base_url=psp_url, currencies=[], credentials=credentials
    )


async def deliver(
    http: httpx.AsyncClient,
    account_id: str,
    event: Json,
    *,
    secret: str = WEBHOOK_SECRET,
    at: int = NOW,
) -> httpx.Response:
    body = orjson.dumps(event)
    headers = {SIGNATURE_HEADER: signature(secret, at, body), "Content-Type": "application/json"}
    return await http.post(f"/webhooks/{account_id}", content=body, headers=headers)


async def sandbox_events(psp: httpx.AsyncClient, object_id: str) -> list[Json]:
    """Every event the sandbox made about one of its objects, oldest first."""
    record = (await psp.get("/sandbox/record")).json()
    return [e for e in record["events"] if e["data"]["object"]["id"] == object_id]


async def provider_payment(psp: httpx.AsyncClient, charge_id: str) -> Json:
    """The one payment the sandbox made for a charge (its `reference`)."""
    record = (await psp.get("/sandbox/record")).json()
    [payment] = [p for p in record["payments"] if p["reference"] == charge_id]
    found: Json = payment
    return found


async def stored(pool: AsyncConnectionPool, account_id: str) -> list[tuple[str, str, str]]:
    """(provider event id, type, outcome) of each event stored for the account, sorted."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT provider_event_id, type, outcome FROM provider_events"
            " WHERE connector_account_id = %s ORDER BY provider_event_id",
            (account_id,),
        )
        return [(r[0], r[1], r[2]) for r in await cur.fetchall()]


async def emitted(pool: AsyncConnectionPool, aggregate_id: str) -> list[str]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT type FROM events WHERE aggregate_id = %s ORDER BY seq", (aggregate_id,)
        )
        return [r[0] for r in await cur.fetchall()]


async def ledger_balanced(pool: AsyncConnectionPool) -> bool:
    async with pool.connection() as conn:
        return (await verify(conn)).ok


async def make_dispute(http: httpx.AsyncClient, auth: dict[str, str]) -> str:
    """A dispute of a captured payment, opened at a sandbox of its own and reported to
    payrail by its signed webhook; returns payrail's dispute id."""
    config = SandboxConfig(secret=SECRET, webhook_secret=WEBHOOK_SECRET)
    with run_sandbox(config, ManualClock(), grace_seconds=1) as psp_url:
        account = await webhook_account(http, auth, psp_url)
        # The merchant may have other accounts: route this payment, and only it, here.
        rule = {"priority": 0, "connector_accounts": [account["id"]]}
        rule["conditions"] = {"currencies": ["jpy"]}
        assert (await send(http, auth, "/v1/routing_rules", rule)).status_code == 200
        body = {"amount": 900, "currency": "jpy", "payment_method": "pm_card_visa", "confirm": True}
        reply = await send(http, auth, "/v1/payment_intents", body)
        assert reply.status_code == 200, reply.text
        intent = reply.json()
        async with httpx.AsyncClient(base_url=psp_url, headers=bearer(SECRET)) as psp:
            payment = await provider_payment(psp, intent["latest_charge"])
            opened = await psp.post("/sandbox/disputes", json={"payment": payment["id"]})
            assert opened.status_code == 200, opened.text
            [event] = await sandbox_events(psp, opened.json()["id"])
    assert (await deliver(http, account["id"], event)).status_code == 200
    # Its sandbox is gone: no later payment may be routed to it.
    update = {"enabled": False}
    assert (await send(http, auth, f"/v1/connector_accounts/{account['id']}", update)).is_success
    listed = await http.get("/v1/disputes", params={"payment_intent": intent["id"]}, headers=auth)
    [dispute] = listed.json()["data"]
    dispute_id: str = dispute["id"]
    return dispute_id
