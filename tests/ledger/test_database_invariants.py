"""PostgreSQL itself keeps the ledger double-entry, append-only and non-negative.

Fixtures are built through the service; every attack is raw SQL on a pooled connection,
as a buggy script or a future code path would issue it. After each rejected attack the
ledger must be byte-for-byte what it was, and `verify()` must still report it sound.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg.errors
import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from payrail.clock import ManualClock
from payrail.ledger import service
from payrail.ledger.schemas import AccountCreate, Direction, EntryCreate, TransactionCreate
from payrail.ledger.verify import verify
from payrail.tenants.scope import Scope
from payrail.tenants.service import NewMerchant
from tests.conftest import new_merchant

Conn = AsyncConnection[Any]
BALANCED = "ledger_transaction_balanced"
NON_NEGATIVE = "ledger_balance_non_negative"


@dataclass(frozen=True)
class Account:
    id: str
    merchant_id: str
    livemode: bool
    currency: str


async def make_account(
    pool: AsyncConnectionPool, clock: ManualClock, scope: Scope, **fields: Any
) -> Account:
    async with pool.connection() as conn, conn.transaction():
        row = await service.create_account(conn, scope, clock, AccountCreate(**fields))
    return Account(row["id"], scope.merchant_id, scope.livemode, row["currency"].upper())


@dataclass
class Book:
    """One merchant's accounts, and the service calls that build fixtures."""

    pool: AsyncConnectionPool
    clock: ManualClock
    scope: Scope
    cash: Account
    revenue: Account  # 8 balance shards
    fees: Account
    wallet: Account  # non_negative liability
    jpy_cash: Account
    jpy_revenue: Account

    async def account(self, scope: Scope | None = None, **fields: Any) -> Account:
        return await make_account(self.pool, self.clock, scope or self.scope, **fields)

    async def transaction(
        self, legs: list[tuple[Account, Direction, int]], *, pending: bool = False
    ) -> str:
        params = TransactionCreate(
            external_id=f"fixture-{secrets.token_hex(4)}",
            entries=[EntryCreate(account=a.id, direction=d, amount=n) for a, d, n in legs],
            pending=pending,
        )
        async with self.pool.connection() as conn, conn.transaction():
            [obj] = await service.post_transactions(conn, self.scope, self.clock, [params])
        return str(obj["id"])

    async def void(self, transaction_id: str) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await service.void_pending(conn, self.scope, self.clock, transaction_id)

    async def balances(self, account: Account) -> dict[str, dict[str, int]]:
        async with self.pool.connection() as conn:
            got = await service.get_account(conn, self.scope, account.id)
        return dict(got["balances"])


@pytest.fixture
async def book(pool: AsyncConnectionPool, clock: ManualClock, merchant: NewMerchant) -> Book:
    scope = Scope(merchant.id, livemode=False)

    async def account(**fields: Any) -> Account:
        return await make_account(pool, clock, scope, **fields)

    return Book(
        pool,
        clock,
        scope,
        cash=await account(name="Cash", type="asset", currency="USD"),
        revenue=await account(name="Revenue", type="revenue", currency="USD", balance_shards=8),
        fees=await account(name="Fees", type="expense", currency="USD"),
        wallet=await account(name="Wallet", type="liability", currency="USD", non_negative=True),
        jpy_cash=await account(name="JPY cash", type="asset", currency="JPY"),
        jpy_revenue=await account(name="JPY revenue", type="revenue", currency="JPY"),
    )


# --------------------------------------------------------------------------- raw SQL


async def insert_header(
    conn: Conn,
    merchant_id: str,
    *,
    status: str = "posted",
    livemode: bool = False,
) -> str:
    tx_id = f"ltx_raw{secrets.token_hex(8)}"
    await conn.execute(
        "INSERT INTO ledger_transactions (id, merchant_id, livemode, external_id, content_hash,"
        " status, metadata, effective_at, created_at, posted_at)"
        " VALUES (%s, %s, %s, %s, '\\x00', %s, '{}', now(), now(),"
        " CASE WHEN %s = 'posted' THEN now() END)",
        (tx_id, merchant_id, livemode, f"raw-{tx_id}", status, status),
    )
    return tx_id


async def insert_entry(
    conn: Conn,
    tx_id: str,
    account: Account,
    direction: str,
    amount: int,
    phase: str = "posted",
    *,
    currency: str | None = None,
    merchant_id: str | None = None,
    livemode: bool | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO ledger_entries (transaction_id, account_id, merchant_id, livemode,"
        " currency, direction, amount, phase) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (
            tx_id,
            account.id,
            account.merchant_id if merchant_id is None else merchant_id,
            account.livemode if livemode is None else livemode,
            currency or account.currency,
            direction,
            amount,
            phase,
        ),
    )


Leg = tuple[Account, str, int, str]  # account, direction, amount, phase


async def insert_entries(conn: Conn, tx_id: str, legs: list[Leg]) -> None:
    """All of a transaction's new entries in one statement, as the service writes them."""
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * len(legs))
    params: list[Any] = []
    for account, direction, amount, phase in legs:
        params += [
            tx_id,
            account.id,
            account.merchant_id,
            account.livemode,
            account.currency,
            direction,
            amount,
            phase,
        ]
    await conn.execute(
        "INSERT INTO ledger_entries (transaction_id, account_id, merchant_id, livemode,"
        f" currency, direction, amount, phase) VALUES {values}",
        params,
    )


async def snapshot(pool: AsyncConnectionPool) -> tuple[list[tuple[Any, ...]], ...]:
    """Every ledger row, in a stable order; and the ledger must verify."""
    async with pool.connection() as conn:
        tables = []
        for query in (
            "SELECT * FROM ledger_accounts ORDER BY id",
            "SELECT * FROM ledger_balances ORDER BY account_id, shard",
            "SELECT * FROM ledger_transactions ORDER BY id",
            "SELECT * FROM ledger_entries ORDER BY id",
        ):
            tables.append(await (await conn.execute(query)).fetchall())
        report = await verify(conn)
    assert report.ok, report
    return tuple(tables)


def zero() -> dict[str, int]:
    return {"debits": 0, "credits": 0, "amount": 0}


async def each_is_rejected(
    book: Book,
    subtests: pytest.Subtests,
    statements: list[str],
    params: dict[str, Any],
    error: type[psycopg.Error] = psycopg.errors.RestrictViolation,
) -> None:
    """Each statement, alone in a database transaction, is refused and changes nothing."""
    for statement in statements:
        with subtests.test(msg=statement):
            before = await snapshot(book.pool)
            async with book.pool.connection() as conn:
                with pytest.raises(error):
                    async with conn.transaction():
                        await conn.execute(statement, params if "%(" in statement else None)
            assert await snapshot(book.pool) == before


# --------------------------------------------------------------------------- balanced at commit


async def test_unbalanced_amounts_are_rejected_at_commit(book: Book) -> None:
    before = await snapshot(book.pool)
    statements_done = False
    async with book.pool.connection() as conn:
        with pytest.raises(psycopg.errors.CheckViolation) as info:
            async with conn.transaction():
                tx = await insert_header(conn, book.scope.merchant_id)
                await insert_entries(
                    conn,
                    tx,
                    [(book.cash, "debit", 100, "posted"), (book.revenue, "credit", 90, "posted")],
                )
                statements_done = True
    assert statements_done, "the check is deferred: the INSERTs themselves succeed"
    assert info.value.diag.constraint_name == BALANCED
    assert "unbalanced" in str(info.value)
    assert await snapshot(book.pool) == before


async def test_balance_is_per_currency_in_the_database(book: Book) -> None:
    """100 USD against 100 JPY nets to zero as integers; it is not balanced."""
    before = await snapshot(book.pool)
    statements_done = False
    async with book.pool.connection() as conn:
        with pytest.raises(psycopg.errors.CheckViolation) as info:
            async with conn.transaction():
                tx = await insert_header(conn, book.scope.merchant_id)
                await insert_entries(
                    conn,
                    tx,
                    [
                        (book.cash, "debit", 100, "posted"),
                        (book.jpy_revenue, "credit", 100, "posted"),
                    ],
                )
                statements_done = True
    assert statements_done
    assert info.value.diag.constraint_name == BALANCED
    assert await snapshot(book.pool) == before


async def test_balance_is_per_phase_in_the_database(book: Book) -> None:
    """A pending debit cannot be balanced by a posted credit."""
    before = await snapshot(book.pool)
    async with book.pool.connection() as conn:
        with pytest.raises(psycopg.errors.CheckViolation) as info:
            async with conn.transaction():
                tx = await insert_header(conn, book.scope.merchant_id, status="pending")
                await insert_entry(conn, tx, book.cash, "debit", 100, "pending")
                await insert_entry(conn, tx, book.revenue, "credit", 100, "posted")
    assert info.value.diag.constraint_name == BALANCED
    assert await snapshot(book.pool) == before


async def test_entries_balanced_across_two_transactions_are_not_balanced(book: Book) -> None:
    """Each transaction must balance on its own, not only the whole commit."""
    before = await snapshot(book.pool)
    async with book.pool.connection() as conn:
        with pytest.raises(psycopg.errors.CheckViolation) as info:
            async with conn.transaction():
                one = await insert_header(conn, book.scope.merchant_id)
                two = await insert_header(conn, book.scope.merchant_id)
                await insert_entries(
                    conn,
                    one,
                    [(book.cash, "debit", 100, "posted"), (book.fees, "debit", 5, "posted")],
                )
                await insert_entries(
                    conn,
                    two,
                    [
                        (book.revenue, "credit", 100, "posted"),
                        (book.revenue, "credit", 5, "posted"),
                    ],
                )
    assert info.value.diag.constraint_name == BALANCED
    assert await snapshot(book.pool) == before


async def test_appending_an_unbalancing_entry_to_a_posted_transaction_is_rejected(
    book: Book,
) -> None:
    tx = await book.transaction([(book.cash, "debit", 500), (book.revenue, "credit", 500)])
    before = await snapshot(book.pool)
    async with book.pool.connection() as conn:
        # The balance check refuses it at commit (or an append guard, sooner).
        with pytest.raises((psycopg.errors.CheckViolation, psycopg.errors.RestrictViolation)):
            async with conn.transaction():
                await insert_entry(conn, tx, book.cash, "debit", 1)
    assert await snapshot(book.pool) == before


async def test_single_entry_transaction_is_rejected_at_commit(book: Book) -> None:
    before = await snapshot(book.pool)
    statements_done = False
    async with book.pool.connection() as conn:
        with pytest.raises(psycopg.errors.CheckViolation) as info:
            async with conn.transaction():
                tx = await insert_header(conn, book.scope.merchant_id)
                await insert_entry(conn, tx, book.cash, "debit", 100)
                statements_done = True
    assert statements_done
    assert info.value.diag.constraint_name == BALANCED
    assert "fewer than two entries" in str(info.value)
    assert await snapshot(book.pool) == before


@pytest.mark.parametrize("status", ["posted", "pending"])
async def test_transaction_without_entries_is_rejected_at_commit(book: Book, status: str) -> None:
    """A header alone is a transaction with zero entries: fewer than two."""
    before = await snapshot(book.pool)
    async with book.pool.connection() as conn:
        with pytest.raises(psycopg.errors.CheckViolation) as info:
            async with conn.transaction():
                await insert_header(conn, book.scope.merchant_id, status=status)
    assert info.value.diag.constraint_name == BALANCED
    assert await snapshot(book.pool) == before


async def test_entries_balanced_only_at_commit_are_accepted(book: Book) -> None:
    """Deferred means deferred: one entry per statement is fine if COMMIT sees a balance."""
    async with book.pool.connection() as conn, conn.transaction():
        tx = await insert_header(conn, book.scope.merchant_id, status="pending")
        await insert_entry(conn, tx, book.cash, "debit", 70, "pending")
        await insert_entry(conn, tx, book.cash, "debit", 30, "pending")
        await insert_entry(conn, tx, book.revenue, "credit", 100, "pending")
    assert (await book.balances(book.cash))["pending"] == {
        "debits": 100,
        "credits": 0,
        "amount": 100,
    }
    assert (await book.balances(book.revenue))["pending"] == {
        "debits": 0,
        "credits": 100,
        "amount": 100,
    }
    await snapshot(book.pool)


# --------------------------------------------------------------------------- append-only


async def test_entries_are_append_only(book: Book, subtests: pytest.Subtests) -> None:
    tx = await book.transaction([(book.cash, "debit", 250), (book.revenue, "credit", 250)])
    statements = [
        "UPDATE ledger_entries SET amount = amount + 1 WHERE transaction_id = %(tx)s",
        "UPDATE ledger_entries SET amount = amount WHERE transaction_id = %(tx)s",
        "UPDATE ledger_entries SET direction = CASE direction WHEN 'debit' THEN 'credit'"
        " ELSE 'debit' END WHERE transaction_id = %(tx)s",
        "UPDATE ledger_entries SET account_id = %(other)s"
        " WHERE transaction_id = %(tx)s AND direction = 'debit'",
        "UPDATE ledger_entries SET phase = 'pending' WHERE transaction_id = %(tx)s",
        "DELETE FROM ledger_entries WHERE transaction_id = %(tx)s",
        "DELETE FROM ledger_entries",
        "TRUNCATE ledger_entries",
        "TRUNCATE ledger_entries CASCADE",
    ]
    await each_is_rejected(book, subtests, statements, {"tx": tx, "other": book.fees.id})


async def test_transactions_cannot_be_deleted(book: Book, subtests: pytest.Subtests) -> None:
    tx = await book.transaction([(book.cash, "debit", 250), (book.revenue, "credit", 250)])
    pending = await book.transaction(
        [(book.cash, "debit", 10), (book.revenue, "credit", 10)], pending=True
    )
    statements = [
        "DELETE FROM ledger_transactions WHERE id = %(tx)s",
        "DELETE FROM ledger_transactions WHERE id = %(pending)s",
        "DELETE FROM ledger_transactions",
        "TRUNCATE ledger_transactions CASCADE",
        "TRUNCATE ledger_entries, ledger_transactions",
    ]
    await each_is_rejected(book, subtests, statements, {"tx": tx, "pending": pending})


async def test_plain_truncate_of_transactions_is_rejected(book: Book) -> None:
    await book.transaction([(book.cash, "debit", 250), (book.revenue, "credit", 250)])
    before = await snapshot(book.pool)
    async with book.pool.connection() as conn:
        # Either the append-only trigger or a foreign key may refuse it; both keep the rows.
        with pytest.raises((psycopg.errors.RestrictViolation, psycopg.errors.FeatureNotSupported)):
            async with conn.transaction():
                await conn.execute("TRUNCATE ledger_transactions")
    assert await snapshot(book.pool) == before


# --------------------------------------------------------------------------- header changes


async def test_illegal_transaction_header_changes_are_rejected(
    book: Book, subtests: pytest.Subtests
) -> None:
    """A header only ever moves pending -> posted | voided, and nothing else on it changes."""
    other = await new_merchant(book.pool, book.clock, "Other")
    ids = {
        "posted": await book.transaction([(book.cash, "debit", 40), (book.revenue, "credit", 40)]),
        "pending": await book.transaction(
            [(book.cash, "debit", 10), (book.revenue, "credit", 10)], pending=True
        ),
        "voided": await book.transaction(
            [(book.cash, "debit", 5), (book.revenue, "credit", 5)], pending=True
        ),
    }
    await book.void(ids["voided"])
    changes = [
        ("posted", "status = 'pending'"),
        ("posted", "status = 'voided'"),
        ("posted", "status = 'posted'"),
        ("voided", "status = 'posted'"),
        ("voided", "status = 'pending'"),
        ("pending", "status = 'pending', description = 'changed'"),
        ("pending", "description = description"),
        ("posted", "external_id = 'rewritten'"),
        ("pending", "status = 'voided', external_id = 'rewritten'"),
        ("pending", "status = 'posted', content_hash = '\\x01'"),
        ("posted", "content_hash = '\\x01'"),
        ("posted", "description = 'rewritten'"),
        ("posted", 'metadata = \'{"k": "v"}\''),
        ("posted", "effective_at = effective_at - interval '1 day'"),
        ("posted", "created_at = created_at + interval '1 second'"),
        ("posted", "posted_at = posted_at + interval '1 day'"),
        ("posted", "reverses_id = %(pending)s"),
        ("posted", "livemode = true"),
        ("posted", "merchant_id = %(other_merchant)s"),
        ("posted", "id = 'ltx_forged'"),
    ]
    statements = [
        f"UPDATE ledger_transactions SET {assignment} WHERE id = %({which})s"
        for which, assignment in changes
    ]
    await each_is_rejected(book, subtests, statements, {**ids, "other_merchant": other.id})


@pytest.mark.parametrize("status", ["posted", "voided"])
async def test_settling_without_releasing_holds_is_rejected_at_commit(
    book: Book, status: str
) -> None:
    tx = await book.transaction(
        [(book.cash, "debit", 100), (book.revenue, "credit", 100)], pending=True
    )
    before = await snapshot(book.pool)
    statements_done = False
    async with book.pool.connection() as conn:
        with pytest.raises(psycopg.errors.CheckViolation) as info:
            async with conn.transaction():
                await conn.execute(
                    "UPDATE ledger_transactions SET status = %s WHERE id = %s", (status, tx)
                )
                statements_done = True
    assert statements_done, "the hold check is deferred to COMMIT"
    assert info.value.diag.constraint_name == BALANCED
    assert await snapshot(book.pool) == before


@pytest.mark.parametrize("attack", ["posted_only", "half_released", "released_on_wrong_legs"])
async def test_posting_must_release_each_hold_exactly(book: Book, attack: str) -> None:
    tx = await book.transaction(
        [(book.cash, "debit", 100), (book.revenue, "credit", 100)], pending=True
    )
    before = await snapshot(book.pool)
    statements_done = False
    async with book.pool.connection() as conn:
        with pytest.raises(psycopg.errors.CheckViolation) as info:
            async with conn.transaction():
                if attack == "half_released":
                    await insert_entry(conn, tx, book.cash, "debit", -50, "pending")
                    await insert_entry(conn, tx, book.revenue, "credit", -50, "pending")
                elif attack == "released_on_wrong_legs":
                    # Balanced per currency and phase, but the holds stay on their accounts.
                    await insert_entry(conn, tx, book.fees, "debit", -100, "pending")
                    await insert_entry(conn, tx, book.wallet, "credit", -100, "pending")
                await insert_entry(conn, tx, book.cash, "debit", 100, "posted")
                await insert_entry(conn, tx, book.revenue, "credit", 100, "posted")
                await conn.execute(
                    "UPDATE ledger_transactions SET status = 'posted' WHERE id = %s", (tx,)
                )
                statements_done = True
    assert statements_done
    assert info.value.diag.constraint_name == BALANCED
    assert await snapshot(book.pool) == before


async def test_raw_posting_of_a_pending_transaction_with_exact_releases_is_accepted(
    book: Book,
) -> None:
    tx = await book.transaction(
        [(book.cash, "debit", 100), (book.revenue, "credit", 100)], pending=True
    )
    async with book.pool.connection() as conn, conn.transaction():
        await insert_entries(
            conn,
            tx,
            [
                (book.cash, "debit", -100, "pending"),
                (book.revenue, "credit", -100, "pending"),
                (book.cash, "debit", 60, "posted"),
                (book.revenue, "credit", 60, "posted"),
            ],
        )
        await conn.execute("UPDATE ledger_transactions SET status = 'posted' WHERE id = %s", (tx,))
    assert await book.balances(book.cash) == {
        "posted": {"debits": 60, "credits": 0, "amount": 60},
        "pending": {"debits": 60, "credits": 0, "amount": 60},
        "available": {"debits": 60, "credits": 0, "amount": 60},
    }
    await snapshot(book.pool)


# ------------------------------------------------------------- money moves only when posted


@pytest.mark.parametrize("status", ["posted", "voided"])
async def test_a_settled_transaction_accepts_no_new_entries(book: Book, status: str) -> None:
    """Once posted or voided, a transaction's entries are final, even balanced additions."""
    tx = await book.transaction(
        [(book.cash, "debit", 100), (book.revenue, "credit", 100)], pending=status == "voided"
    )
    if status == "voided":
        await book.void(tx)
    before = await snapshot(book.pool)
    async with book.pool.connection() as conn:
        with pytest.raises(psycopg.Error):
            async with conn.transaction():
                await insert_entry(conn, tx, book.fees, "debit", 900)
                await insert_entry(conn, tx, book.revenue, "credit", 900)
    assert await snapshot(book.pool) == before


@pytest.mark.parametrize("status", ["pending", "voided"])
async def test_only_a_posted_transaction_carries_posted_entries(book: Book, status: str) -> None:
    """A pending or voided transaction must not move posted money."""
    before = await snapshot(book.pool)
    async with book.pool.connection() as conn:
        with pytest.raises(psycopg.Error):
            async with conn.transaction():
                tx = await insert_header(conn, book.scope.merchant_id, status="pending")
                await insert_entry(conn, tx, book.cash, "debit", 100, "pending")
                await insert_entry(conn, tx, book.revenue, "credit", 100, "pending")
                await insert_entry(conn, tx, book.cash, "debit", 100, "posted")
                await insert_entry(conn, tx, book.revenue, "credit", 100, "posted")
                if status == "voided":
                    await insert_entry(conn, tx, book.cash, "debit", -100, "pending")
                    await insert_entry(conn, tx, book.revenue, "credit", -100, "pending")
                    await conn.execute(
                        "UPDATE ledger_transactions SET status = 'voided' WHERE id = %s", (tx,)
                    )
    assert await snapshot(book.pool) == before


# --------------------------------------------------------------------------- balances


async def book_with_balances(book: Book) -> None:
    await book.transaction([(book.fees, "debit", 1000), (book.wallet, "credit", 1000)])
    await book.transaction([(book.cash, "debit", 1000), (book.revenue, "credit", 1000)])
    await book.transaction(
        [(book.wallet, "debit", 300), (book.revenue, "credit", 300)], pending=True
    )


async def test_balances_change_only_through_entries(book: Book, subtests: pytest.Subtests) -> None:
    await book_with_balances(book)
    statements = [
        "UPDATE ledger_balances SET credits_posted = credits_posted + 100"
        " WHERE account_id = %(wallet)s",
        "UPDATE ledger_balances SET debits_posted = debits_posted WHERE account_id = %(wallet)s",
        "UPDATE ledger_balances SET non_negative = false WHERE account_id = %(wallet)s",
        "UPDATE ledger_balances SET normal_balance = 'debit' WHERE account_id = %(wallet)s",
        # Moving a total between shards keeps the sum: still not the trigger's change.
        "UPDATE ledger_balances SET credits_posted = CASE shard WHEN 0 THEN 1000 ELSE 0 END"
        " WHERE account_id = %(revenue)s",
        "UPDATE ledger_balances SET debits_pending = 0",
        "DELETE FROM ledger_balances WHERE account_id = %(wallet)s",
        "INSERT INTO ledger_balances (account_id, shard, normal_balance, non_negative,"
        " credits_posted) VALUES (%(wallet)s, 1, 'credit', false, 1000)",
        "INSERT INTO ledger_balances (account_id, shard, normal_balance, non_negative,"
        " credits_posted) VALUES (%(wallet)s, 0, 'credit', true, 1000)"
        " ON CONFLICT (account_id, shard) DO UPDATE SET credits_posted = 1000",
        "INSERT INTO ledger_balances (account_id, shard, normal_balance, non_negative)"
        " VALUES (%(wallet)s, 0, 'credit', true)"
        " ON CONFLICT (account_id, shard) DO UPDATE SET credits_posted = 1000",
        "DO $$ BEGIN UPDATE ledger_balances SET credits_posted = 1000000; END $$",
    ]
    await each_is_rejected(
        book, subtests, statements, {"wallet": book.wallet.id, "revenue": book.revenue.id}
    )


async def test_balances_cannot_be_truncated(book: Book) -> None:
    """Without its rows an account has no balance and no non_negative guard: the trigger's
    UPDATE then matches nothing, so later postings vanish from balances unchecked."""
    await book_with_balances(book)
    before = await snapshot(book.pool)
    async with book.pool.connection() as conn:
        with pytest.raises(psycopg.errors.RestrictViolation):
            async with conn.transaction():
                await conn.execute("TRUNCATE ledger_balances")
    assert await snapshot(book.pool) == before


# --------------------------------------------------------------------------- references


async def test_entry_currency_must_be_its_accounts(book: Book) -> None:
    before = await snapshot(book.pool)
    async with book.pool.connection() as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            async with conn.transaction():
                # Balanced in JPY, but both accounts hold USD.
                tx = await insert_header(conn, book.scope.merchant_id)
                await insert_entry(conn, tx, book.cash, "debit", 100, currency="JPY")
                await insert_entry(conn, tx, book.revenue, "credit", 100, currency="JPY")
    assert await snapshot(book.pool) == before


async def test_entry_cannot_point_at_another_merchants_account(book: Book) -> None:
    other = await new_merchant(book.pool, book.clock, "Mallory")
    foreign = await book.account(
        Scope(other.id, livemode=False), name="Theirs", type="asset", currency="USD"
    )
    before = await snapshot(book.pool)
    async with book.pool.connection() as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            async with conn.transaction():
                tx = await insert_header(conn, book.scope.merchant_id)
                await insert_entry(conn, tx, book.cash, "credit", 100)
                # Stamped with our merchant, but the account is theirs.
                await insert_entry(
                    conn, tx, foreign, "debit", 100, merchant_id=book.scope.merchant_id
                )
    assert await snapshot(book.pool) == before

    async with book.pool.connection() as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            async with conn.transaction():
                # Stamped with their merchant (matches the account), but the transaction is ours.
                tx = await insert_header(conn, book.scope.merchant_id)
                await insert_entry(conn, tx, book.cash, "credit", 100)
                await insert_entry(conn, tx, foreign, "debit", 100)
    assert await snapshot(book.pool) == before


async def test_entry_cannot_mix_live_and_test_mode(book: Book) -> None:
    live = await book.account(
        Scope(book.scope.merchant_id, livemode=True), name="Live", type="asset", currency="USD"
    )
    before = await snapshot(book.pool)
    async with book.pool.connection() as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            async with conn.transaction():
                tx = await insert_header(conn, book.scope.merchant_id)
                await insert_entry(conn, tx, book.cash, "credit", 100)
                await insert_entry(conn, tx, live, "debit", 100, livemode=False)
    assert await snapshot(book.pool) == before


async def test_entry_must_reference_existing_rows(book: Book) -> None:
    before = await snapshot(book.pool)
    ghost = Account("lacc_doesnotexist", book.scope.merchant_id, False, "USD")
    async with book.pool.connection() as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            async with conn.transaction():
                tx = await insert_header(conn, book.scope.merchant_id)
                await insert_entry(conn, tx, book.cash, "credit", 100)
                await insert_entry(conn, tx, ghost, "debit", 100)
    async with book.pool.connection() as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            async with conn.transaction():
                await insert_entry(conn, "ltx_nope", book.cash, "credit", 100)
                await insert_entry(conn, "ltx_nope", book.fees, "debit", 100)
    assert await snapshot(book.pool) == before


async def test_account_terms_are_immutable(book: Book, subtests: pytest.Subtests) -> None:
    """Changing shards, side or guard under existing balance rows would corrupt them."""
    await book.transaction([(book.fees, "debit", 100), (book.wallet, "credit", 100)])
    statements = [
        "UPDATE ledger_accounts SET currency = 'EUR' WHERE id = %(wallet)s",
        "UPDATE ledger_accounts SET type = 'expense' WHERE id = %(wallet)s",
        "UPDATE ledger_accounts SET normal_balance = 'debit' WHERE id = %(wallet)s",
        "UPDATE ledger_accounts SET non_negative = false WHERE id = %(wallet)s",
        "UPDATE ledger_accounts SET balance_shards = 2 WHERE id = %(revenue)s",
        "UPDATE ledger_accounts SET balance_shards = 1 WHERE id = %(revenue)s",
        "UPDATE ledger_accounts SET livemode = true WHERE id = %(wallet)s",
        "UPDATE ledger_accounts SET id = 'lacc_forged' WHERE id = %(wallet)s",
        "DELETE FROM ledger_accounts WHERE id = %(wallet)s",
        "TRUNCATE ledger_accounts CASCADE",
    ]
    await each_is_rejected(
        book, subtests, statements, {"wallet": book.wallet.id, "revenue": book.revenue.id}
    )


async def test_account_name_and_metadata_may_change(book: Book) -> None:
    async with book.pool.connection() as conn, conn.transaction():
        await conn.execute(
            "UPDATE ledger_accounts SET name = 'Renamed', metadata = '{\"a\": \"b\"}'"
            " WHERE id = %s",
            (book.wallet.id,),
        )
    async with book.pool.connection() as conn:
        got = await service.get_account(conn, book.scope, book.wallet.id)
    assert (got["name"], got["metadata"]) == ("Renamed", {"a": "b"})


# --------------------------------------------------------------------------- non_negative


async def fund_wallet(book: Book, amount: int) -> None:
    await book.transaction([(book.fees, "debit", amount), (book.wallet, "credit", amount)])


@pytest.mark.parametrize("phase", ["posted", "pending"])
async def test_overdrawing_a_non_negative_account_is_rejected(book: Book, phase: str) -> None:
    await fund_wallet(book, 100)
    before = await snapshot(book.pool)
    async with book.pool.connection() as conn:
        with pytest.raises(psycopg.errors.CheckViolation) as info:
            async with conn.transaction():
                tx = await insert_header(conn, book.scope.merchant_id, status=phase)
                await insert_entries(
                    conn,
                    tx,
                    [(book.revenue, "credit", 101, phase), (book.wallet, "debit", 101, phase)],
                )
    assert info.value.diag.constraint_name == NON_NEGATIVE
    assert await snapshot(book.pool) == before


async def test_overdraw_split_across_statements_is_rejected(book: Book) -> None:
    await fund_wallet(book, 100)
    before = await snapshot(book.pool)
    async with book.pool.connection() as conn:
        with pytest.raises(psycopg.errors.CheckViolation) as info:
            async with conn.transaction():
                for _ in range(2):
                    tx = await insert_header(conn, book.scope.merchant_id)
                    await insert_entries(
                        conn,
                        tx,
                        [
                            (book.wallet, "debit", 60, "posted"),
                            (book.revenue, "credit", 60, "posted"),
                        ],
                    )
    assert info.value.diag.constraint_name == NON_NEGATIVE
    assert await snapshot(book.pool) == before


async def test_non_negative_debit_normal_account_cannot_go_below_zero(book: Book) -> None:
    float_ = await book.account(name="Float", type="asset", currency="USD", non_negative=True)
    await book.transaction([(float_, "debit", 50), (book.revenue, "credit", 50)])
    before = await snapshot(book.pool)
    async with book.pool.connection() as conn:
        with pytest.raises(psycopg.errors.CheckViolation) as info:
            async with conn.transaction():
                tx = await insert_header(conn, book.scope.merchant_id)
                await insert_entry(conn, tx, float_, "credit", 51)
                await insert_entry(conn, tx, book.fees, "debit", 51)
    assert info.value.diag.constraint_name == NON_NEGATIVE
    assert await snapshot(book.pool) == before


async def test_spending_exactly_the_available_balance_is_allowed(book: Book) -> None:
    await fund_wallet(book, 100)
    async with book.pool.connection() as conn, conn.transaction():
        tx = await insert_header(conn, book.scope.merchant_id, status="pending")
        await insert_entries(
            conn,
            tx,
            [(book.wallet, "debit", 40, "pending"), (book.revenue, "credit", 40, "pending")],
        )
        tx = await insert_header(conn, book.scope.merchant_id)
        await insert_entries(
            conn, tx, [(book.wallet, "debit", 60, "posted"), (book.revenue, "credit", 60, "posted")]
        )
    assert await book.balances(book.wallet) == {
        "posted": {"debits": 60, "credits": 100, "amount": 40},
        "pending": {"debits": 100, "credits": 100, "amount": 0},
        "available": {"debits": 100, "credits": 100, "amount": 0},
    }
    await snapshot(book.pool)


async def test_negative_pending_amounts_cannot_fund_a_non_negative_account(book: Book) -> None:
    """A negative pending entry is only ever the release of a hold. Used as a fresh "hold"
    it would lower debits_pending, raise the available balance, and let the posted balance
    of a non_negative wallet go below zero."""
    before = await snapshot(book.pool)
    async with book.pool.connection() as conn:
        with pytest.raises(psycopg.Error):
            async with conn.transaction():
                tx = await insert_header(conn, book.scope.merchant_id, status="pending")
                await insert_entry(conn, tx, book.wallet, "debit", -100, "pending")
                await insert_entry(conn, tx, book.fees, "credit", -100, "pending")
                spend = await insert_header(conn, book.scope.merchant_id)
                await insert_entry(conn, spend, book.wallet, "debit", 100)
                await insert_entry(conn, spend, book.revenue, "credit", 100)
    assert await snapshot(book.pool) == before
    assert (await book.balances(book.wallet))["posted"] == zero()


# --------------------------------------------------------------------------- raw postings


async def test_raw_posting_moves_balances_by_exactly_its_entries(book: Book) -> None:
    async with book.pool.connection() as conn, conn.transaction():
        tx = await insert_header(conn, book.scope.merchant_id)
        await insert_entries(
            conn,
            tx,
            [
                (book.cash, "debit", 970, "posted"),
                (book.fees, "debit", 30, "posted"),
                (book.revenue, "credit", 1000, "posted"),
                (book.jpy_cash, "debit", 500, "posted"),
                (book.jpy_revenue, "credit", 500, "posted"),
            ],
        )
        pid = conn.info.backend_pid
    assert await book.balances(book.cash) == {
        "posted": {"debits": 970, "credits": 0, "amount": 970},
        "pending": {"debits": 970, "credits": 0, "amount": 970},
        "available": {"debits": 970, "credits": 0, "amount": 970},
    }
    assert (await book.balances(book.fees))["posted"] == {"debits": 30, "credits": 0, "amount": 30}
    assert await book.balances(book.revenue) == {
        "posted": {"debits": 0, "credits": 1000, "amount": 1000},
        "pending": {"debits": 0, "credits": 1000, "amount": 1000},
        "available": {"debits": 0, "credits": 1000, "amount": 1000},
    }
    assert (await book.balances(book.jpy_cash))["posted"]["amount"] == 500
    assert (await book.balances(book.jpy_revenue))["posted"]["amount"] == 500
    async with book.pool.connection() as conn:
        shards = await (
            await conn.execute(
                "SELECT shard, credits_posted FROM ledger_balances"
                " WHERE account_id = %s ORDER BY shard",
                (book.revenue.id,),
            )
        ).fetchall()
    # The whole amount landed on the one shard this backend maps to.
    assert shards == [(s, 1000 if s == pid % 8 else 0) for s in range(8)]
    await snapshot(book.pool)


async def test_raw_postings_from_many_backends_sum_over_shards(
    book: Book, database_url: str
) -> None:
    """Each backend writes to its own shard (pid mod shards); the balance is their sum."""
    connections = [
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) for _ in range(6)
    ]
    try:
        for index, conn in enumerate(connections, start=1):
            async with conn.transaction():
                tx = await insert_header(conn, book.scope.merchant_id)
                await insert_entries(
                    conn,
                    tx,
                    [
                        (book.cash, "debit", index, "posted"),
                        (book.revenue, "credit", index, "posted"),
                    ],
                )
        pids = [c.info.backend_pid for c in connections]
    finally:
        for conn in connections:
            await conn.close()
    assert (await book.balances(book.revenue))["posted"] == {
        "debits": 0,
        "credits": 21,
        "amount": 21,
    }
    async with book.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT shard, credits_posted FROM ledger_balances WHERE account_id = %s",
            (book.revenue.id,),
        )
        rows: dict[int, int] = {shard: credits for shard, credits in await cur.fetchall()}
    expected = dict.fromkeys(range(8), 0)
    for index, pid in enumerate(pids, start=1):
        expected[pid % 8] += index
    assert rows == expected
    await snapshot(book.pool)
