"""Stripe's Idempotency-Key semantics, attacked over real HTTP and in-process.

What Stripe documents and these tests hold the API to:
- the first request with a key executes; every later one with the same key and the same
  parameters gets the first result back, byte for byte, with `Idempotent-Replayed: true`;
- a request racing one still in flight gets 409 (`idempotency_error`) and executes nothing;
- the same key with different parameters is a 400 `idempotency_error`;
- errors raised while executing are results too, replayed even after their cause is gone;
- a request that fails validation before executing is not remembered;
- keys belong to one merchant in one mode, and are forgotten after 24 hours.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import orjson
from psycopg_pool import AsyncConnectionPool

from payrail.api import idempotency
from payrail.clock import ManualClock
from payrail.tenants.scope import Scope
from payrail.tenants.service import NewMerchant
from tests.conftest import new_merchant
from tests.vaults import fixed_vault

Json = dict[str, Any]

ACCOUNTS = "/v1/ledger/accounts"
TRANSACTIONS = "/v1/ledger/transactions"
RACERS = 200
HELD_FOR = 3.0  # seconds the original is held mid-execution, at most
REPLAYED = "idempotent-replayed"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


def transaction(external_id: str, debit: str, credit: str, amount: int = 1500) -> Json:
    return {
        "external_id": external_id,
        "entries": [
            {"account": debit, "direction": "debit", "amount": amount},
            {"account": credit, "direction": "credit", "amount": amount},
        ],
        "metadata": {"order_id": "42"},
    }


async def create_account(
    http: httpx.AsyncClient, headers: dict[str, str], type_: str, **extra: Any
) -> str:
    reply = await http.post(
        ACCOUNTS,
        json={"name": f"{type_} account", "type": type_, "currency": "usd", **extra},
        headers=headers,
    )
    assert reply.status_code == 200, reply.text
    account_id = reply.json()["id"]
    assert isinstance(account_id, str)
    return account_id


async def scalar(pool: AsyncConnectionPool, query: str, *args: object) -> Any:
    async with pool.connection() as conn:
        row = await (await conn.execute(query, args)).fetchone()
    assert row is not None
    return row[0]


async def transaction_ids(pool: AsyncConnectionPool, merchant_id: str) -> list[str]:
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT id FROM ledger_transactions WHERE merchant_id = %s ORDER BY seq",
                (merchant_id,),
            )
        ).fetchall()
    return [row[0] for row in rows]


async def table_counts(pool: AsyncConnectionPool) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in (
        "ledger_accounts",
        "ledger_transactions",
        "ledger_entries",
        "events",
        "idempotency_keys",
    ):
        counts[table] = await scalar(pool, f"SELECT count(*) FROM {table}")
    return counts


def error_of(reply: httpx.Response) -> Json:
    body = reply.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict)
    return error


def assert_replay(reply: httpx.Response, original: httpx.Response) -> None:
    assert reply.status_code == original.status_code
    assert reply.content == original.content
    assert reply.headers.get(REPLAYED) == "true"


def assert_executed(reply: httpx.Response, status: int = 200) -> None:
    assert reply.status_code == status, reply.text
    assert REPLAYED not in reply.headers


# --- Over real HTTP: 200 concurrent requests with one key -----------------------------------------


def racing_client(base_url: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=RACERS, max_keepalive_connections=RACERS)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=httpx.Timeout(60.0))


async def open_connections(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    """Open all RACERS keep-alive connections first, so the race is not one of TCP handshakes."""
    replies = await asyncio.gather(
        *(http.get(ACCOUNTS, params={"limit": 1}, headers=headers) for _ in range(RACERS))
    )
    assert {reply.status_code for reply in replies} == {200}


async def test_concurrent_same_key_same_params_execute_once(
    live_server: str, merchant: NewMerchant, pool: AsyncConnectionPool
) -> None:
    headers = bearer(merchant.test_secret)
    async with racing_client(live_server) as http:
        cash = await create_account(http, headers, "asset")
        revenue = await create_account(http, headers, "revenue")
        body = transaction("order-race", cash, revenue)
        before = await table_counts(pool)
        await open_connections(http, headers)
        replies = await asyncio.gather(
            *(
                http.post(TRANSACTIONS, json=body, headers=keyed(headers, "race"))
                for _ in range(RACERS)
            )
        )
        later = [
            await http.post(TRANSACTIONS, json=body, headers=keyed(headers, "race"))
            for _ in range(5)
        ]

    # The ledger holds exactly one transaction, with its two entries and one event.
    assert (
        await scalar(
            pool, "SELECT count(*) FROM ledger_transactions WHERE external_id = %s", "order-race"
        )
        == 1
    )
    [tx_id] = await transaction_ids(pool, merchant.id)
    after = await table_counts(pool)
    assert after == {
        **before,
        "ledger_transactions": before["ledger_transactions"] + 1,
        "ledger_entries": before["ledger_entries"] + 2,
        "events": before["events"] + 1,
        "idempotency_keys": before["idempotency_keys"] + 1,
    }
    statuses = Counter(reply.status_code for reply in replies)
    assert set(statuses) <= {200, 409}, statuses
    executed = [r for r in replies if r.status_code == 200 and REPLAYED not in r.headers]
    assert len(executed) == 1, statuses
    original = executed[0]
    assert original.json()["id"] == tx_id
    assert original.json()["external_id"] == "order-race"
    for reply in replies:
        if reply.status_code == 200 and reply is not original:
            assert_replay(reply, original)
    for reply in later:
        assert_replay(reply, original)
    assert (
        await scalar(
            pool,
            "SELECT response_status FROM idempotency_keys WHERE merchant_id = %s AND key = %s",
            merchant.id,
            "race",
        )
        == 200
    )
    # Stripe: "a 409 Conflict ... idempotency_error" for a request racing one in flight.
    for reply in replies:
        if reply.status_code == 409:
            assert error_of(reply)["type"] == "idempotency_error", reply.text


async def test_requests_racing_one_in_flight_get_409_at_once(
    live_server: str, merchant: NewMerchant, pool: AsyncConnectionPool, clock: ManualClock
) -> None:
    """The original is held mid-execution (its balance row is locked by another session):
    every racer must answer 409 at once without executing, and the API must keep serving
    other merchants meanwhile; once the original commits, retries replay it."""
    headers = bearer(merchant.test_secret)
    bystander = bearer((await new_merchant(pool, clock, "Bystander")).test_secret)
    async with racing_client(live_server) as http:
        cash = await create_account(http, headers, "asset")
        revenue = await create_account(http, headers, "revenue")
        body = transaction("order-held", cash, revenue)
        await open_connections(http, headers)
        async with pool.connection() as blocker, blocker.transaction():
            await blocker.execute(
                "SELECT 1 FROM ledger_balances WHERE account_id = %s FOR UPDATE", (cash,)
            )
            original = asyncio.create_task(
                http.post(TRANSACTIONS, json=body, headers=keyed(headers, "held"))
            )
            for _ in range(1000):  # until the original holds the key
                if await scalar(pool, "SELECT count(*) FROM idempotency_keys") == 1:
                    break
                await asyncio.sleep(0.01)
            racers = [
                asyncio.create_task(
                    http.post(TRANSACTIONS, json=body, headers=keyed(headers, "held"))
                )
                for _ in range(RACERS - 1)
            ]
            await asyncio.wait(racers, timeout=HELD_FOR)
            answered_while_held = [task.result() for task in racers if task.done()]
            try:
                other = await http.get(ACCOUNTS, headers=bystander, timeout=HELD_FOR)
                other_status: int | None = other.status_code
            except httpx.TimeoutException:
                other_status = None
            assert not original.done()
        first = await original
        replies = await asyncio.gather(*racers)
        later = await http.post(TRANSACTIONS, json=body, headers=keyed(headers, "held"))

    [tx_id] = await transaction_ids(pool, merchant.id)
    assert_executed(first)
    assert first.json()["id"] == tx_id
    assert {reply.status_code for reply in replies} <= {200, 409}
    for reply in replies:
        if reply.status_code == 200:
            assert_replay(reply, first)
    assert_replay(later, first)
    # A key in flight must not hold up anyone else's requests ...
    assert other_status == 200, "another merchant's request was starved while a key was held"
    # ... nor its own racers: they answer 409 at once rather than queueing behind it.
    assert len(answered_while_held) == RACERS - 1, (
        f"only {len(answered_while_held)} of {RACERS - 1} racers answered within {HELD_FOR}s"
    )
    assert {reply.status_code for reply in answered_while_held} == {409}
    for reply in answered_while_held:
        assert error_of(reply)["type"] == "idempotency_error", reply.text


async def test_concurrent_same_key_different_params_execute_once(
    live_server: str, merchant: NewMerchant, pool: AsyncConnectionPool
) -> None:
    headers = bearer(merchant.test_secret)
    async with racing_client(live_server) as http:
        cash = await create_account(http, headers, "asset")
        revenue = await create_account(http, headers, "revenue")
        bodies = [transaction(f"order-{i}", cash, revenue) for i in range(RACERS)]
        await open_connections(http, headers)
        replies = await asyncio.gather(
            *(http.post(TRANSACTIONS, json=b, headers=keyed(headers, "shared")) for b in bodies)
        )

    [tx_id] = await transaction_ids(pool, merchant.id)
    statuses = Counter(reply.status_code for reply in replies)
    assert set(statuses) <= {200, 400, 409}, statuses
    executed = [(b, r) for b, r in zip(bodies, replies, strict=True) if r.status_code == 200]
    assert len(executed) == 1, statuses
    [(body, original)] = executed
    assert REPLAYED not in original.headers
    assert original.json()["id"] == tx_id
    assert original.json()["external_id"] == body["external_id"]
    for reply in replies:
        if reply.status_code != 200:
            assert error_of(reply)["type"] == "idempotency_error", reply.text
    assert statuses[400] >= 1


# --- A request in flight, and a lease that runs out -----------------------------------------------


async def test_in_flight_key_is_409_then_lease_expiry_lets_a_retry_execute(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    cash = await create_account(client, auth, "asset")
    revenue = await create_account(client, auth, "revenue")
    body = transaction("order-flight", cash, revenue)
    scope = Scope(merchant.id, False)
    async with pool.connection() as conn:  # a first request that claimed the key, then stalled
        digest_key = await fixed_vault().digest_key(conn, clock.now())
        digest = idempotency.request_hash(digest_key, "POST", TRANSACTIONS, body)
        stalled = await idempotency.claim(
            conn, scope, "flight", "POST", TRANSACTIONS, digest, clock.now()
        )
    assert isinstance(stalled, idempotency.Claim)

    racing = await client.post(TRANSACTIONS, json=body, headers=keyed(auth, "flight"))
    assert racing.status_code == 409
    assert await transaction_ids(pool, merchant.id) == []

    clock.advance(idempotency.LEASE + timedelta(seconds=1))
    retry = await client.post(TRANSACTIONS, json=body, headers=keyed(auth, "flight"))
    assert_executed(retry)
    assert await transaction_ids(pool, merchant.id) == [retry.json()["id"]]

    # The stalled original wakes up: it lost its lease, so it must not run or store anything.
    ran: list[bool] = []

    async def work(conn: idempotency.Conn) -> Json:
        ran.append(True)
        return {}

    outcome = await idempotency.execute(pool.connection, stalled, work)
    assert outcome.status == 409
    assert ran == []
    assert_replay(await client.post(TRANSACTIONS, json=body, headers=keyed(auth, "flight")), retry)
    # Stripe's type for a key in use by a request still in flight.
    assert error_of(racing)["type"] == "idempotency_error", racing.text


# --- Same key, different request ------------------------------------------------------------------


async def test_same_key_different_params_is_400_and_writes_nothing(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool
) -> None:
    cash = await create_account(client, auth, "asset")
    revenue = await create_account(client, auth, "revenue")
    first = await client.post(
        TRANSACTIONS, json=transaction("order-1", cash, revenue), headers=keyed(auth, "k")
    )
    assert_executed(first)
    before = await table_counts(pool)

    variants: list[tuple[str, Json]] = [
        (TRANSACTIONS, transaction("order-2", cash, revenue)),
        (TRANSACTIONS, transaction("order-1", cash, revenue, amount=1501)),
        (TRANSACTIONS, {**transaction("order-1", cash, revenue), "metadata": {}}),
        (ACCOUNTS, {"name": "other endpoint", "type": "asset", "currency": "usd"}),
    ]
    for path, body in variants:
        reply = await client.post(path, json=body, headers=keyed(auth, "k"))
        assert reply.status_code == 400, reply.text
        error = error_of(reply)
        assert error["type"] == "idempotency_error"
        assert "'k'" in error["message"]
        assert REPLAYED not in reply.headers
    assert await table_counts(pool) == before
    # The key still replays its first request.
    assert_replay(
        await client.post(
            TRANSACTIONS, json=transaction("order-1", cash, revenue), headers=keyed(auth, "k")
        ),
        first,
    )


# --- Errors raised while executing are stored -----------------------------------------------------


async def test_execution_error_is_replayed_after_its_cause_is_fixed(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool
) -> None:
    wallet = await create_account(client, auth, "asset", non_negative=True)
    expense = await create_account(client, auth, "expense")
    equity = await create_account(client, auth, "equity")
    spend = transaction("spend-1", expense, wallet, amount=500)

    first = await client.post(TRANSACTIONS, json=spend, headers=keyed(auth, "spend"))
    assert_executed(first, 400)
    assert error_of(first) == {
        "type": "invalid_request_error",
        "code": "balance_insufficient",
        "message": "The transaction would take a non_negative account below zero.",
        "param": "entries",
    }

    funding = await client.post(
        TRANSACTIONS, json=transaction("fund-1", wallet, equity, amount=1000), headers=auth
    )
    assert funding.status_code == 200, funding.text
    balances = await client.get(f"{ACCOUNTS}/{wallet}/balances", headers=auth)
    assert balances.json()["available"]["amount"] == 1000

    replay = await client.post(TRANSACTIONS, json=spend, headers=keyed(auth, "spend"))
    assert_replay(replay, first)
    external_ids = await scalar(
        pool, "SELECT array_agg(external_id ORDER BY seq) FROM ledger_transactions"
    )
    assert external_ids == ["fund-1"]

    fresh = await client.post(TRANSACTIONS, json=spend, headers=keyed(auth, "spend-again"))
    assert_executed(fresh)
    assert fresh.json()["external_id"] == "spend-1"


async def test_not_found_while_executing_is_replayed(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool
) -> None:
    cash = await create_account(client, auth, "asset")
    body = transaction("order-ghost", cash, "lacc_doesnotexist")
    first = await client.post(TRANSACTIONS, json=body, headers=keyed(auth, "ghost"))
    assert_executed(first, 404)
    assert error_of(first) == {
        "type": "invalid_request_error",
        "code": "resource_missing",
        "message": "No such ledger account: 'lacc_doesnotexist'",
        "param": "entries[1][account]",
    }
    for _ in range(2):
        assert_replay(
            await client.post(TRANSACTIONS, json=body, headers=keyed(auth, "ghost")), first
        )
    assert await scalar(pool, "SELECT count(*) FROM ledger_transactions") == 0
    assert (
        await scalar(pool, "SELECT response_status FROM idempotency_keys WHERE key = %s", "ghost")
        == 404
    )


async def test_validation_failure_is_not_stored(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool
) -> None:
    cash = await create_account(client, auth, "asset")
    revenue = await create_account(client, auth, "revenue")
    invalid: list[Json] = [
        {"external_id": "order-1"},  # entries missing
        {**transaction("order-1", cash, revenue), "entries": []},
        {**transaction("order-1", cash, revenue), "surprise": "param"},
        transaction("order-1", cash, revenue, amount=0),
    ]
    for body in invalid:
        reply = await client.post(TRANSACTIONS, json=body, headers=keyed(auth, "v"))
        assert_executed(reply, 400)
        assert error_of(reply)["type"] == "invalid_request_error"
    assert await scalar(pool, "SELECT count(*) FROM idempotency_keys") == 0

    valid = transaction("order-1", cash, revenue)
    reply = await client.post(TRANSACTIONS, json=valid, headers=keyed(auth, "v"))
    assert_executed(reply)
    assert reply.json()["external_id"] == "order-1"
    assert_replay(await client.post(TRANSACTIONS, json=valid, headers=keyed(auth, "v")), reply)


async def test_invalid_key_is_rejected_and_not_stored(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool
) -> None:
    body = {"name": "cash", "type": "asset", "currency": "usd"}
    for key in ("", "k" * 256):
        reply = await client.post(ACCOUNTS, json=body, headers=keyed(auth, key))
        assert reply.status_code == 400, reply.text
        assert error_of(reply)["param"] == "Idempotency-Key"
    longest = await client.post(ACCOUNTS, json=body, headers=keyed(auth, "k" * 255))
    assert_executed(longest)
    assert await scalar(pool, "SELECT count(*) FROM ledger_accounts") == 1
    assert await scalar(pool, "SELECT count(*) FROM idempotency_keys") == 1


# --- Scope and expiry -----------------------------------------------------------------------------


async def test_keys_are_scoped_per_merchant_and_mode(
    client: httpx.AsyncClient,
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    other = await new_merchant(pool, clock, "Globex")
    body = {"name": "cash", "type": "asset", "currency": "usd"}
    callers = {
        "a-test": bearer(merchant.test_secret),
        "a-live": bearer(merchant.live_secret),
        "b-test": bearer(other.test_secret),
        "b-live": bearer(other.live_secret),
    }
    first: dict[str, httpx.Response] = {}
    for name, headers in callers.items():
        reply = await client.post(ACCOUNTS, json=body, headers=keyed(headers, "same-key"))
        assert_executed(reply)
        first[name] = reply
    assert len({reply.json()["id"] for reply in first.values()}) == 4
    assert {n: r.json()["livemode"] for n, r in first.items()} == {
        "a-test": False,
        "a-live": True,
        "b-test": False,
        "b-live": True,
    }
    for name, headers in callers.items():
        replay = await client.post(ACCOUNTS, json=body, headers=keyed(headers, "same-key"))
        assert_replay(replay, first[name])
    assert await scalar(pool, "SELECT count(*) FROM ledger_accounts") == 4
    assert await scalar(pool, "SELECT count(*) FROM idempotency_keys") == 4


async def test_keys_expire_after_24_hours(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool, clock: ManualClock
) -> None:
    body = {"name": "cash", "type": "asset", "currency": "usd"}
    first = await client.post(ACCOUNTS, json=body, headers=keyed(auth, "daily"))
    assert_executed(first)

    clock.advance(timedelta(hours=23))
    assert_replay(await client.post(ACCOUNTS, json=body, headers=keyed(auth, "daily")), first)

    clock.advance(timedelta(hours=2))  # 25 h after the first request
    again = await client.post(ACCOUNTS, json=body, headers=keyed(auth, "daily"))
    assert_executed(again)
    assert again.json()["id"] != first.json()["id"]
    assert again.json()["created"] == first.json()["created"] + 25 * 3600
    assert_replay(await client.post(ACCOUNTS, json=body, headers=keyed(auth, "daily")), again)
    assert await scalar(pool, "SELECT count(*) FROM ledger_accounts") == 2
    assert await scalar(pool, "SELECT count(*) FROM idempotency_keys") == 1


async def test_expired_key_cannot_double_post_a_transaction(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    cash = await create_account(client, auth, "asset")
    revenue = await create_account(client, auth, "revenue")
    body = transaction("order-1", cash, revenue)
    first = await client.post(TRANSACTIONS, json=body, headers=keyed(auth, "tx"))
    assert_executed(first)
    clock.advance(timedelta(hours=25))
    again = await client.post(TRANSACTIONS, json=body, headers=keyed(auth, "tx"))
    assert_executed(again)  # executed afresh, and external_id makes it return the original
    assert again.json() == first.json()
    assert await transaction_ids(pool, merchant.id) == [first.json()["id"]]


# --- Without a key: external_id is the idempotency token ------------------------------------------


async def test_without_key_external_id_decides(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
) -> None:
    cash = await create_account(client, auth, "asset")
    revenue = await create_account(client, auth, "revenue")

    one = await client.post(TRANSACTIONS, json=transaction("order-1", cash, revenue), headers=auth)
    two = await client.post(TRANSACTIONS, json=transaction("order-2", cash, revenue), headers=auth)
    assert_executed(one)
    assert_executed(two)
    assert one.json()["id"] != two.json()["id"]
    assert await transaction_ids(pool, merchant.id) == [one.json()["id"], two.json()["id"]]
    events_before = await scalar(pool, "SELECT count(*) FROM events")

    repeat = await client.post(
        TRANSACTIONS, json=transaction("order-1", cash, revenue), headers=auth
    )
    assert_executed(repeat)
    assert repeat.content == one.content

    clash = await client.post(
        TRANSACTIONS, json=transaction("order-1", cash, revenue, amount=99), headers=auth
    )
    assert clash.status_code == 409
    assert error_of(clash) == {
        "type": "invalid_request_error",
        "code": "external_id_conflict",
        "message": "A ledger transaction with external_id 'order-1' already exists with"
        " different content.",
        "param": "external_id",
    }
    assert await transaction_ids(pool, merchant.id) == [one.json()["id"], two.json()["id"]]
    assert await scalar(pool, "SELECT count(*) FROM events") == events_before
    balances = (await client.get(f"{ACCOUNTS}/{cash}/balances", headers=auth)).json()
    assert balances["posted"] == {"debits": 3000, "credits": 0, "amount": 3000}


def test_request_hash_is_order_independent() -> None:
    """Two JSON bodies that differ only in key order are the same request."""
    a = orjson.loads(b'{"a": 1, "b": {"c": 2, "d": 3}}')
    b = orjson.loads(b'{"b": {"d": 3, "c": 2}, "a": 1}')
    key = bytes(32)
    assert idempotency.request_hash(key, "POST", "/p", a) == idempotency.request_hash(
        key, "POST", "/p", b
    )
    assert idempotency.request_hash(bytes(range(32)), "POST", "/p", a) != (
        idempotency.request_hash(key, "POST", "/p", a)
    ), "keyed: without the key the digest cannot be recomputed"
