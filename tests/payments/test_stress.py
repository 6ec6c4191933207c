"""Stress: 2,000 payments from concurrent clients over real HTTP while the sandbox PSP
faults one request in ten, then the janitor. Nothing may be charged twice, the ledger must
balance, no intent may stay `processing`, and every intent must end as the sandbox says its
charge went.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from payrail.api.app import create_app
from payrail.api.context import Services
from payrail.clock import ManualClock
from payrail.connectors.accounts.service import Connectors
from payrail.db.pool import open_pool
from payrail.ledger.verify import verify
from payrail.payments import janitor
from payrail.payments.in_doubt import NOT_PROCESSED_AFTER, SCHEDULE
from tests.payments.conftest import Json
from tests.vaults import fixed_vault

PAYMENTS = 1_000
CLIENTS = 24
FAULT_RATE = 0.1
SEED = 20_261_121
# payrail gives up on the sandbox after CONNECTOR_TIMEOUT; a timeout fault hangs longer,
# so every timeout fault leaves its attempt in doubt.
CONNECTOR_TIMEOUT = 0.25
HANG = 0.4
# One payment in ten is declined by the issuer: in doubt or not, a decline must settle as one.
DECLINED_EVERY = 10


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(database_url, min_size=4, max_size=2 * CLIENTS)
    yield pool
    await pool.close()


@pytest.fixture
async def services(pool: AsyncConnectionPool, clock: ManualClock) -> AsyncIterator[Services]:
    services = Services(
        pool=pool,
        clock=clock,
        vault=fixed_vault(),
        connectors=Connectors(timeout=CONNECTOR_TIMEOUT),
    )
    yield services
    await services.connectors.aclose()


@pytest.fixture
async def api_url(services: Services) -> AsyncIterator[str]:
    """The API over real HTTP, served by uvicorn from this test's event loop."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        create_app(services), log_level="warning", log_config=None, lifespan="off"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not serving.done(), "the API did not start"
        await asyncio.sleep(0.01)
    host, port = sock.getsockname()
    yield f"http://{host}:{port}"
    server.should_exit = True
    await serving
    sock.close()


async def _pay(http: httpx.AsyncClient, index: int) -> httpx.Response:
    card = "pm_card_chargeDeclined" if index % DECLINED_EVERY == 0 else "pm_card_visa"
    return await http.post(
        "/v1/payment_intents",
        json={
            "amount": 1_000 + index,
            "currency": "usd",
            "payment_method": card,
            "confirm": True,
            "metadata": {"n": str(index)},
        },
        headers={"Idempotency-Key": f"stress-{index}"},
    )


async def _load(api_url: str, auth: dict[str, str]) -> Counter[int]:
    """PAYMENTS payments from CLIENTS concurrent clients; the HTTP statuses they got."""
    statuses: Counter[int] = Counter()
    todo = iter(range(PAYMENTS))

    async def client() -> None:
        async with httpx.AsyncClient(base_url=api_url, headers=auth, timeout=30) as http:
            for index in todo:
                statuses[(await _pay(http, index)).status_code] += 1

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return statuses


async def _settle(services: Services, clock: ManualClock) -> int:
    """Move time past every in-doubt check and past the point where "no record" at the
    provider means "never processed", then run the janitor until nothing is due."""
    clock.advance(sum(SCHEDULE, NOT_PROCESSED_AFTER))
    checked = 0
    while done := (await janitor.run_once(services, limit=500)).checked:
        checked += done
    return checked


async def _intents(pool: AsyncConnectionPool) -> list[Json]:
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT p.id, p.status, p.amount, p.amount_received,"
            " array_agg(c.id ORDER BY c.seq) FILTER (WHERE c.id IS NOT NULL) AS charges,"
            " array_agg(c.status ORDER BY c.seq) FILTER (WHERE c.id IS NOT NULL) AS statuses"
            " FROM payment_intents p LEFT JOIN charges c ON c.payment_intent_id = p.id"
            " GROUP BY p.id"
        )
        return await cur.fetchall()


async def _ledger_captures(pool: AsyncConnectionPool) -> tuple[int, int]:
    """How many automatic captures the ledger posted, and their sum."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*), coalesce(sum(e.amount), 0)::bigint FROM ledger_transactions t"
            " JOIN ledger_entries e ON e.transaction_id = t.id"
            " WHERE t.external_id LIKE 'charge:%:capture' AND t.status = 'posted'"
            " AND e.direction = 'debit'"
        )
        row = await cur.fetchone()
    assert row is not None
    return row[0], row[1]


def _expected(made: list[Json]) -> str:
    """The intent's status that what the sandbox made of its charges calls for."""
    if any(p["status"] == "captured" for p in made):
        return "succeeded"
    return "requires_payment_method"  # declined, or never processed


@pytest.mark.timeout(240)
async def test_concurrent_payments_with_faults_charge_once_and_settle(
    api_url: str,
    auth: dict[str, str],
    account: Json,
    psp: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    services: Services,
    clock: ManualClock,
) -> None:
    await psp.post("/sandbox/faults", json={"rate": FAULT_RATE, "seed": SEED, "hang_seconds": HANG})
    statuses = await _load(api_url, auth)
    assert sum(statuses.values()) == PAYMENTS
    # Answered (200), declined (402) or the provider unavailable (502); never a 500.
    assert set(statuses) <= {200, 402, 502}, statuses

    in_doubt_before = sum(1 for i in await _intents(pool) if i["status"] == "processing")
    checked = await _settle(services, clock)
    assert checked >= in_doubt_before > 0

    record = (await psp.get("/sandbox/record")).json()

    intents = await _intents(pool)
    assert len(intents) == PAYMENTS
    by_charge: dict[str, list[Json]] = {}
    for payment in record["payments"]:
        by_charge.setdefault(payment["reference"], []).append(payment)
    charged: dict[str, Any] = {}
    for intent in intents:
        made = [p for c in intent["charges"] or [] for p in by_charge.get(c, [])]
        # Never two payments at the sandbox for one charge (its idempotency key), and
        # never more than one captured payment for one intent.
        for charge in intent["charges"] or []:
            assert len(by_charge.get(charge, [])) <= 1, charge
        captured = [p for p in made if p["status"] in ("captured", "authorized")]
        assert len(captured) <= 1, intent["id"]
        assert intent["status"] != "processing", intent
        assert intent["status"] == _expected(made), (intent, made)
        if captured:
            charged[intent["id"]] = captured[0]
            assert captured[0]["amount_captured"] == intent["amount"] == intent["amount_received"]
        # The charge's own status agrees with the sandbox: captured or declined as it
        # says, failed when the sandbox never processed it.
        for charge, status in zip(intent["charges"] or [], intent["statuses"] or [], strict=True):
            made_for = by_charge.get(charge)
            assert status == (made_for[0]["status"] if made_for else "failed"), (charge, status)

    assert len(charged) == sum(1 for p in record["payments"] if p["status"] == "captured")
    count, total = await _ledger_captures(pool)
    assert (count, total) == (len(charged), sum(p["amount_captured"] for p in charged.values()))
    async with pool.connection() as conn:
        report = await verify(conn)
    assert report.ok, (report.drifted, report.broken)
