"""post_new, the posting path for transactions payrail builds itself: the same limits as
the API's TransactionCreate, the same content hash, the same writes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from payrail.clock import ManualClock
from payrail.errors import Conflict, InvalidRequest, NotFound
from payrail.ledger import service
from payrail.ledger.postings import NewEntry, NewTransaction, check_new, content_hash
from payrail.ledger.schemas import AccountCreate, TransactionCreate
from payrail.tenants.scope import Scope
from payrail.tenants.service import NewMerchant

FAST = settings(max_examples=150, deadline=None, database=None)


def fields(**changes: Any) -> dict[str, Any]:
    """A valid transaction's parameters, as the API receives them, with `changes`."""
    params: dict[str, Any] = {
        "external_id": "order-1",
        "entries": [
            {"account": "lacc_a", "direction": "debit", "amount": 100},
            {"account": "lacc_b", "direction": "credit", "amount": 100},
        ],
    }
    params.update(changes)
    return params


def entry(**changes: Any) -> dict[str, Any]:
    return {"account": "lacc_a", "direction": "debit", "amount": 100, **changes}


def new(params: dict[str, Any]) -> NewTransaction:
    return NewTransaction(
        **{k: v for k, v in params.items() if k != "entries"},
        entries=[NewEntry(**e) for e in params["entries"]],
    )


def accepted_by_api(params: dict[str, Any]) -> bool:
    try:
        TransactionCreate.model_validate(params)
    except ValidationError:
        return False
    return True


def accepted_by_check_new(params: dict[str, Any]) -> bool:
    try:
        check_new(new(params), lambda name: name)
    except InvalidRequest:
        return False
    return True


# Each limit of TransactionCreate, at the bound and one past it.
BOUNDS = [
    fields(external_id=""),
    fields(external_id="x"),
    fields(external_id="x" * 255),
    fields(external_id="x" * 256),
    fields(entries=[entry()]),
    fields(entries=[entry()] * 100),
    fields(entries=[entry()] * 101),
    fields(entries=[entry(account=""), entry()]),
    fields(entries=[entry(account="a" * 64), entry()]),
    fields(entries=[entry(account="a" * 65), entry()]),
    fields(entries=[entry(direction="credit"), entry()]),
    fields(entries=[entry(direction="DEBIT"), entry()]),
    fields(entries=[entry(amount=0), entry()]),
    fields(entries=[entry(amount=-5), entry()]),
    fields(entries=[entry(amount=1), entry()]),
    fields(entries=[entry(amount=10**15), entry()]),
    fields(entries=[entry(amount=10**15 + 1), entry()]),
    fields(entries=[entry(amount=True), entry()]),
    fields(entries=[entry(amount=12.0), entry()]),
    fields(pending=True),
    fields(description=None),
    fields(description=""),
    fields(description="d" * 1000),
    fields(description="d" * 1001),
    fields(metadata={}),
    fields(metadata={f"k{i}": "v" for i in range(50)}),
    fields(metadata={f"k{i}": "v" for i in range(51)}),
    fields(metadata={"": "v"}),
    fields(metadata={"k" * 40: "v" * 500}),
    fields(metadata={"k" * 41: "v"}),
    fields(metadata={"k": "v" * 501}),
    fields(effective_at=None),
    fields(effective_at=0),
    fields(effective_at=-1),
    fields(effective_at=32503680000),
    fields(effective_at=32503680001),
]


@pytest.mark.parametrize("params", BOUNDS)
def test_check_new_accepts_exactly_what_the_api_accepts(params: dict[str, Any]) -> None:
    assert accepted_by_check_new(params) == accepted_by_api(params)


def test_check_new_names_the_parameter_as_the_api_does() -> None:
    bad = new(fields(entries=[entry(), entry(amount=0)]))
    with pytest.raises(InvalidRequest) as raised:
        check_new(bad, lambda name: name)
    assert raised.value.param == "entries[1][amount]"
    assert raised.value.code == "parameter_invalid"


def test_check_new_is_strict_where_forms_need_pydantic_to_be_lax() -> None:
    """The API accepts "12" for 12 (form bodies carry strings); payrail's own code must
    pass an int."""
    params = fields(entries=[entry(amount="100"), entry(direction="credit")])
    assert accepted_by_api(params)
    assert not accepted_by_check_new(params)


metadata = st.dictionaries(st.text(min_size=1, max_size=40), st.text(max_size=50), max_size=5)
entries = st.lists(
    st.fixed_dictionaries(
        {
            "account": st.text(min_size=1, max_size=64),
            "direction": st.sampled_from(["debit", "credit"]),
            "amount": st.integers(1, 10**15),
        }
    ),
    min_size=2,
    max_size=5,
)


@FAST
@given(
    st.fixed_dictionaries(
        {"external_id": st.text(min_size=1, max_size=20), "entries": entries},
        optional={
            "pending": st.booleans(),
            "description": st.none() | st.text(max_size=50),
            "metadata": metadata,
            "effective_at": st.none() | st.integers(0, 32503680000),
        },
    )
)
def test_both_inputs_hash_as_stored_hashes_were_made(params: dict[str, Any]) -> None:
    """Hashes already stored were made from model_dump: a replay must still match them,
    whichever path it takes."""
    stored = content_hash(
        TransactionCreate.model_validate(params).model_dump(exclude={"external_id"})
    )
    api = TransactionCreate.model_validate(params)
    assert service._content_hash(api) == stored.hex()
    assert service._content_hash(new(params)) == stored.hex()


# --------------------------------------------------------------------------- with PostgreSQL


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


def transfer(external_id: str, debit: str, credit: str, amount: int) -> NewTransaction:
    return NewTransaction(
        external_id, (NewEntry(debit, "debit", amount), NewEntry(credit, "credit", amount))
    )


async def events_of(pool: AsyncConnectionPool, scope: Scope) -> list[tuple[str, str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT type, aggregate_id, payload FROM events"
            " WHERE merchant_id = %s AND aggregate_type = 'ledger_transaction' ORDER BY seq",
            (scope.merchant_id,),
        )
        return list(await cur.fetchall())


async def test_post_new_writes_what_the_api_path_writes(
    pool: AsyncConnectionPool, clock: ManualClock, accounts: tuple[Scope, str, str]
) -> None:
    scope, cash, wallet = accounts
    async with pool.connection() as conn:
        written = await service.post_new(
            conn,
            scope,
            clock,
            [
                transfer("a", cash, wallet, 100),
                NewTransaction(
                    "b",
                    (NewEntry(wallet, "debit", 40), NewEntry(cash, "credit", 40)),
                    pending=True,
                    description="hold",
                    metadata={"order": "7"},
                    effective_at=1_700_000_000,
                ),
            ],
        )
        fetched = [await service.get_transaction(conn, scope, t["id"]) for t in written]
    assert written == fetched
    assert [(t["status"], t["effective_at"]) for t in written] == [
        ("posted", int(clock.now().timestamp())),
        ("pending", 1_700_000_000),
    ]
    assert await events_of(pool, scope) == [
        ("ledger.transaction.posted", written[0]["id"], written[0]),
        ("ledger.transaction.pending", written[1]["id"], written[1]),
    ]


async def test_an_external_id_is_one_transaction_whichever_path_posts_it(
    pool: AsyncConnectionPool, clock: ManualClock, accounts: tuple[Scope, str, str]
) -> None:
    scope, cash, wallet = accounts
    async with pool.connection() as conn:
        [original] = await service.post_new(conn, scope, clock, [transfer("a", cash, wallet, 100)])
        api = TransactionCreate.model_validate(
            {
                "external_id": "a",
                "entries": [
                    {"account": cash, "direction": "debit", "amount": 100},
                    {"account": wallet, "direction": "credit", "amount": 100},
                ],
            }
        )
        assert await service.post_transactions(conn, scope, clock, [api]) == [original]
        assert await service.post_new(conn, scope, clock, [transfer("a", cash, wallet, 100)]) == [
            original
        ]
        with pytest.raises(Conflict) as raised:
            await service.post_new(
                conn,
                scope,
                clock,
                [transfer("b", cash, wallet, 1), transfer("a", cash, wallet, 999)],
            )
    assert raised.value.param == "transactions[1][external_id]"
    assert len(await events_of(pool, scope)) == 1


async def test_post_new_refuses_before_writing_anything(
    pool: AsyncConnectionPool, clock: ManualClock, accounts: tuple[Scope, str, str]
) -> None:
    scope, cash, wallet = accounts
    async with pool.connection() as conn:
        with pytest.raises(InvalidRequest) as invalid:
            await service.post_new(
                conn, scope, clock, [transfer("a", cash, wallet, 1), transfer("b", cash, wallet, 0)]
            )
        assert invalid.value.param == "transactions[1][entries][0][amount]"
        with pytest.raises(InvalidRequest) as unbalanced:
            await service.post_new(
                conn,
                scope,
                clock,
                [
                    transfer("a", cash, wallet, 1),
                    NewTransaction(
                        "b", (NewEntry(cash, "debit", 2), NewEntry(wallet, "credit", 1))
                    ),
                ],
            )
        assert unbalanced.value.code == "transaction_unbalanced"
        assert unbalanced.value.param == "transactions[1][entries]"
        with pytest.raises(NotFound) as missing:
            await service.post_new(conn, scope, clock, [transfer("a", cash, "lacc_nope", 1)])
        assert missing.value.param == "transactions[0][entries][1][account]"
        with pytest.raises(InvalidRequest) as overdraft:
            await service.post_new(conn, scope, clock, [transfer("a", wallet, cash, 1)])
        assert overdraft.value.code == "balance_insufficient"
    assert await events_of(pool, scope) == []


async def test_an_account_of_another_scope_is_not_found_even_once_cached(
    pool: AsyncConnectionPool, clock: ManualClock, accounts: tuple[Scope, str, str]
) -> None:
    """The currency cache is keyed by account id; the scope must still match."""
    scope, cash, wallet = accounts
    live = Scope(scope.merchant_id, True)
    async with pool.connection() as conn:
        await service.post_new(conn, scope, clock, [transfer("a", cash, wallet, 5)])
        with pytest.raises(NotFound):
            await service.post_new(conn, live, clock, [transfer("a", cash, wallet, 5)])
