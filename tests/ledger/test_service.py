"""post_transactions is one statement: on an autocommit connection a batch is its own
database transaction, all of it or none of it."""

from __future__ import annotations

import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.clock import ManualClock
from payrail.errors import Conflict, InvalidRequest
from payrail.ledger import service
from payrail.ledger.schemas import AccountCreate, EntryCreate, TransactionCreate
from payrail.tenants.scope import Scope
from payrail.tenants.service import NewMerchant


def transfer(external_id: str, debit: str, credit: str, amount: int) -> TransactionCreate:
    return TransactionCreate(
        external_id=external_id,
        entries=[
            EntryCreate(account=debit, direction="debit", amount=amount),
            EntryCreate(account=credit, direction="credit", amount=amount),
        ],
    )


@pytest.fixture
async def accounts(
    pool: AsyncConnectionPool, clock: ManualClock, merchant: NewMerchant
) -> tuple[Scope, str, str]:
    scope = Scope(merchant.id, False)
    async with pool.connection() as conn:
        wallet = await service.create_account(
            conn,
            scope,
            clock,
            AccountCreate(name="wallet", type="liability", currency="EUR", non_negative=True),
        )
        cash = await service.create_account(
            conn, scope, clock, AccountCreate(name="cash", type="asset", currency="EUR")
        )
    return scope, cash["id"], wallet["id"]


async def written(pool: AsyncConnectionPool, scope: Scope) -> tuple[list[str], int]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT external_id FROM ledger_transactions WHERE merchant_id = %s ORDER BY seq",
            (scope.merchant_id,),
        )
        external_ids = [row[0] for row in await cur.fetchall()]
        cur = await conn.execute(
            "SELECT count(*) FROM events"
            " WHERE merchant_id = %s AND aggregate_type = 'ledger_transaction'",
            (scope.merchant_id,),
        )
        row = await cur.fetchone()
        assert row is not None
    return external_ids, row[0]


async def test_a_conflict_in_a_batch_commits_none_of_it(
    pool: AsyncConnectionPool, clock: ManualClock, accounts: tuple[Scope, str, str]
) -> None:
    scope, cash, wallet = accounts
    async with pool.connection() as conn:
        await service.post_transactions(conn, scope, clock, [transfer("a", cash, wallet, 100)])
        with pytest.raises(Conflict) as raised:
            await service.post_transactions(
                conn,
                scope,
                clock,
                [transfer("b", cash, wallet, 5), transfer("a", cash, wallet, 999)],
                batched=True,
            )
    assert raised.value.param == "transactions[1][external_id]"
    assert await written(pool, scope) == (["a"], 1)


async def test_a_replay_in_a_batch_answers_with_the_original_and_writes_the_rest(
    pool: AsyncConnectionPool, clock: ManualClock, accounts: tuple[Scope, str, str]
) -> None:
    scope, cash, wallet = accounts
    async with pool.connection() as conn:
        [original] = await service.post_transactions(
            conn, scope, clock, [transfer("a", cash, wallet, 100)]
        )
        replayed, new = await service.post_transactions(
            conn,
            scope,
            clock,
            [transfer("a", cash, wallet, 100), transfer("b", cash, wallet, 5)],
            batched=True,
        )
    assert replayed == original
    assert new["external_id"] == "b"
    assert await written(pool, scope) == (["a", "b"], 2)


async def test_an_overdraft_in_a_batch_commits_none_of_it(
    pool: AsyncConnectionPool, clock: ManualClock, accounts: tuple[Scope, str, str]
) -> None:
    scope, cash, wallet = accounts
    async with pool.connection() as conn:
        with pytest.raises(InvalidRequest) as raised:
            await service.post_transactions(
                conn,
                scope,
                clock,
                [transfer("top-up", cash, wallet, 100), transfer("spend", wallet, cash, 101)],
                batched=True,
            )
    assert raised.value.code == "balance_insufficient"
    assert await written(pool, scope) == ([], 0)
