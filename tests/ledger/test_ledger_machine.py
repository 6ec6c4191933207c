"""A stateful test: random ledger operations against the real database and a model.

Hypothesis drives the ledger service through accounts, postings, holds, partial posts,
voids, reversals, replays, conflicts and rejected overdrafts. The model predicts every
outcome (including exactly which postings a non_negative account refuses), and after
every step the database must equal the model: balances, statuses, effective entries, row
counts and outbox events, with `verify()` reporting the ledger sound.

The machine is synchronous and the service is async: coroutines run on a private event
loop in a thread, over connections opened on that loop (not the session pool's).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

import hypothesis
import psycopg
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from payrail.clock import ManualClock
from payrail.errors import Conflict, InvalidRequest, NotFound, PayrailError
from payrail.ledger import service
from payrail.ledger.schemas import AccountCreate, EntryCreate, TransactionCreate
from payrail.ledger.verify import verify
from payrail.tenants.scope import Scope
from payrail.tenants.service import create_merchant

T = TypeVar("T")
Direction = Literal["debit", "credit"]
Phase = Literal["pending", "posted"]
Status = Literal["pending", "posted", "voided"]
Row = tuple[str, Direction, int, Phase]  # account, direction, amount, phase

CURRENCIES = ["USD", "JPY", "BHD"]
NORMAL: dict[str, Direction] = {
    "asset": "debit",
    "expense": "debit",
    "liability": "credit",
    "equity": "credit",
    "revenue": "credit",
}
MACHINE_SETTINGS = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    database=None,
    # Shrinking replays hundreds of database-backed runs (Hypothesis allows it five
    # minutes); a failure is reported unshrunk, at most stateful_step_count steps long.
    # Add Phase.shrink here to minimise a failure while debugging.
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.reuse, hypothesis.Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class LoopThread:
    """An event loop of its own, in a daemon thread; `run` blocks on one coroutine."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


# --------------------------------------------------------------------------- the model


@dataclass
class AccountModel:
    id: str
    currency: str
    normal: Direction
    non_negative: bool
    shards: int
    totals: dict[tuple[Direction, Phase], int] = field(default_factory=lambda: defaultdict(int))

    def available(self, extra: dict[tuple[Direction, Phase], int] | None = None) -> int:
        t: dict[tuple[Direction, Phase], int] = defaultdict(int, self.totals)
        for key, amount in (extra or {}).items():
            t[key] += amount
        if self.normal == "credit":
            return t["credit", "posted"] - t["debit", "posted"] - t["debit", "pending"]
        return t["debit", "posted"] - t["credit", "posted"] - t["credit", "pending"]

    def balances(self) -> dict[str, dict[str, int]]:
        t = self.totals
        dp, cp = t["debit", "pending"], t["credit", "pending"]
        dpo, cpo = t["debit", "posted"], t["credit", "posted"]

        def side(debits: int, credits: int) -> dict[str, int]:
            amount = debits - credits if self.normal == "debit" else credits - debits
            return {"debits": debits, "credits": credits, "amount": amount}

        available = side(dpo, cpo + cp) if self.normal == "debit" else side(dpo + dp, cpo)
        return {
            "posted": side(dpo, cpo),
            "pending": side(dpo + dp, cpo + cp),
            "available": available,
        }


@dataclass
class TxModel:
    id: str
    external_id: str
    params: TransactionCreate | None  # None for reversals (posted through reverse())
    status: Status
    rows: list[Row]
    reverses: str | None = None
    reversed_by: str | None = None

    def holds(self) -> dict[tuple[str, Direction], int]:
        return _net(self.rows, "pending")

    def posted(self) -> list[Row]:
        """Posted entries line by line, as the API lists and a reversal swaps them."""
        return [row for row in self.rows if row[3] == "posted"]


def _net(rows: list[Row], phase: Phase) -> dict[tuple[str, Direction], int]:
    net: dict[tuple[str, Direction], int] = defaultdict(int)
    for account, direction, amount, row_phase in rows:
        if row_phase == phase:
            net[account, direction] += amount
    return {key: amount for key, amount in net.items() if amount != 0}


class Outcome(Exception):
    """What the model expects a call to raise."""

    def __init__(
        self, kind: type[PayrailError], code: str | None = None, *, any_code: bool = False
    ):
        super().__init__(kind.__name__, code)
        self.kind = kind
        self.code = code
        self.any_code = any_code


# --------------------------------------------------------------------------- the machine


class LedgerMachine(RuleBasedStateMachine):
    database_url: ClassVar[str]
    runner: ClassVar[LoopThread]
    instances: ClassVar[itertools.count[int]] = itertools.count()

    def __init__(self) -> None:
        super().__init__()
        self.n = next(self.instances)
        self.clock = ManualClock()
        self.conns: list[psycopg.AsyncConnection[Any]] = []
        self.accounts: dict[str, AccountModel] = {}
        self.txs: dict[str, TxModel] = {}
        self.by_external_id: dict[str, str] = {}
        self.rejected: list[TransactionCreate] = []
        self.events: dict[str, list[str]] = defaultdict(list)
        self.counts = {"transactions": 0, "entries": 0, "events": 0}
        self.serial = itertools.count()
        self.scope = Scope("", livemode=False)
        self.baseline: dict[str, int] = {}
        self.foreign_account = ""
        self.foreign_tx = ""

    # ----------------------------------------------------------------- plumbing

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def conn(self, data: st.DataObject) -> psycopg.AsyncConnection[Any]:
        return self.conns[data.draw(st.integers(0, len(self.conns) - 1), label="connection")]

    async def _in_tx(self, conn: psycopg.AsyncConnection[Any], op: Any) -> Any:
        async with conn.transaction():
            return await op(conn)

    def call(self, conn: psycopg.AsyncConnection[Any], op: Any) -> Any:
        """Run `op(conn)` in its own database transaction; return a value or the error."""
        try:
            return self.run(self._in_tx(conn, op))
        except PayrailError as exc:
            return exc

    def expect(self, got: Any, outcome: Outcome | None) -> Any:
        event(f"outcome: {'ok' if outcome is None else outcome.code or outcome.kind.__name__}")
        if outcome is None:
            assert not isinstance(got, PayrailError), f"unexpected {got!r}: {got.message}"
            return got
        assert isinstance(got, outcome.kind), f"expected {outcome.kind.__name__}, got {got!r}"
        if not outcome.any_code:
            assert got.code == outcome.code, (got.code, outcome.code, got.message)
        return None

    def next_external_id(self) -> str:
        return f"tx-{self.n}-{next(self.serial)}"

    def emitted(self, aggregate_id: str, event_type: str) -> None:
        self.events[aggregate_id].append(event_type)
        self.counts["events"] += 1

    # ----------------------------------------------------------------- setup

    @initialize()
    def setup(self) -> None:
        async def open_all() -> None:
            for _ in range(2):
                self.conns.append(
                    await psycopg.AsyncConnection.connect(self.database_url, autocommit=True)
                )
            conn = self.conns[0]
            merchant = await create_merchant(conn, self.clock, f"Machine {self.n}")
            self.scope = Scope(merchant.id, livemode=False)
            foreign = await create_merchant(conn, self.clock, f"Foreign {self.n}")
            foreign_scope = Scope(foreign.id, livemode=False)
            async with conn.transaction():
                a = await service.create_account(
                    conn,
                    foreign_scope,
                    self.clock,
                    AccountCreate(name="F", type="asset", currency="USD"),
                )
                b = await service.create_account(
                    conn,
                    foreign_scope,
                    self.clock,
                    AccountCreate(name="G", type="equity", currency="USD"),
                )
                [tx] = await service.post_transactions(
                    conn,
                    foreign_scope,
                    self.clock,
                    [
                        TransactionCreate(
                            external_id="foreign",
                            entries=[
                                EntryCreate(account=a["id"], direction="debit", amount=5),
                                EntryCreate(account=b["id"], direction="credit", amount=5),
                            ],
                            pending=True,
                        )
                    ],
                )
            self.foreign_account = str(a["id"])
            self.foreign_tx = str(tx["id"])
            self.baseline = await self._counts(conn)

        self.run(open_all())
        # A funded pair to start from: USD equity and a non_negative USD wallet.
        self._create_account("USD", "equity", non_negative=False, shards=1)
        self._create_account("USD", "liability", non_negative=True, shards=1)
        equity, wallet = list(self.accounts)
        funding = TransactionCreate(
            external_id=self.next_external_id(),
            entries=[
                EntryCreate(account=equity, direction="debit", amount=1000),
                EntryCreate(account=wallet, direction="credit", amount=1000),
            ],
        )
        self.post_batch(self.conns[0], [funding])

    def teardown(self) -> None:
        async def close_all() -> None:
            for conn in self.conns:
                await conn.close()

        self.run(close_all())

    async def _counts(self, conn: psycopg.AsyncConnection[Any]) -> dict[str, int]:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM ledger_transactions WHERE merchant_id = %(m)s),"
            " (SELECT count(*) FROM ledger_entries WHERE merchant_id = %(m)s),"
            " (SELECT count(*) FROM events WHERE merchant_id = %(m)s)",
            {"m": self.scope.merchant_id},
        )
        row = await cur.fetchone()
        assert row is not None
        return {"transactions": row[0], "entries": row[1], "events": row[2]}

    # ----------------------------------------------------------------- accounts

    def _create_account(
        self, currency: str, type_: str, *, non_negative: bool, shards: int
    ) -> None:
        params = AccountCreate(
            name=f"{type_} {currency}",
            type=type_,  # type: ignore[arg-type]
            currency=currency,
            non_negative=non_negative,
            balance_shards=shards,
        )
        got = self.call(
            self.conns[0], lambda c: service.create_account(c, self.scope, self.clock, params)
        )
        obj = self.expect(got, None)
        assert obj["currency"] == currency.lower()
        assert obj["normal_balance"] == NORMAL[type_]
        assert (obj["non_negative"], obj["balance_shards"]) == (non_negative, shards)
        zero = {"debits": 0, "credits": 0, "amount": 0}
        assert obj["balances"] == {"posted": zero, "pending": zero, "available": zero}
        self.accounts[obj["id"]] = AccountModel(
            obj["id"], currency, NORMAL[type_], non_negative, shards
        )
        self.emitted(obj["id"], "ledger.account.created")

    @precondition(lambda self: len(self.accounts) < 9)
    @rule(
        currency=st.sampled_from(CURRENCIES),
        type_=st.sampled_from(sorted(NORMAL)),
        non_negative=st.booleans(),
        shards=st.sampled_from([1, 1, 3, 8]),
    )
    def create_account(self, currency: str, type_: str, non_negative: bool, shards: int) -> None:
        self._create_account(
            currency, type_, non_negative=non_negative, shards=1 if non_negative else shards
        )

    # ----------------------------------------------------------------- building requests

    def draw_entries(self, data: st.DataObject) -> list[EntryCreate]:
        """Entries balanced in each of one or two currencies, in random order."""
        by_currency: dict[str, list[str]] = defaultdict(list)
        for account in self.accounts.values():
            by_currency[account.currency].append(account.id)
        currencies = data.draw(
            st.lists(st.sampled_from(sorted(by_currency)), min_size=1, max_size=2, unique=True),
            label="currencies",
        )
        small = st.integers(1, 300)
        amount = st.one_of(small, small, small, st.integers(1, 10**6))
        entries: list[EntryCreate] = []
        for currency in currencies:
            pick = st.sampled_from(by_currency[currency])
            debits = data.draw(st.lists(amount, min_size=1, max_size=2), label="debits")
            total = sum(debits)
            credits = [total]
            if total > 1 and data.draw(st.booleans(), label="split credit"):
                cut = data.draw(st.integers(1, total - 1), label="cut")
                credits = [cut, total - cut]
            entries += [
                EntryCreate(account=data.draw(pick), direction="debit", amount=x) for x in debits
            ]
            entries += [
                EntryCreate(account=data.draw(pick), direction="credit", amount=x) for x in credits
            ]
        return list(data.draw(st.permutations(entries), label="order"))

    def draw_params(self, data: st.DataObject, external_id: str | None = None) -> TransactionCreate:
        return TransactionCreate(
            external_id=external_id or self.next_external_id(),
            entries=self.draw_entries(data),
            pending=data.draw(st.booleans(), label="pending"),
            description=data.draw(st.sampled_from([None, "rent", "payout"]), label="description"),
            metadata=data.draw(st.sampled_from([{}, {"order": "42"}]), label="metadata"),
            effective_at=data.draw(st.sampled_from([None, 1_700_000_000]), label="effective_at"),
        )

    # ----------------------------------------------------------------- predicting

    def rows_of(self, params: TransactionCreate) -> list[Row]:
        phase: Phase = "pending" if params.pending else "posted"
        return [(e.account, e.direction, e.amount, phase) for e in params.entries]

    def balanced(self, rows: list[Row]) -> bool:
        totals: dict[tuple[str, Phase], int] = defaultdict(int)
        for account, direction, amount, phase in rows:
            sign = 1 if direction == "debit" else -1
            totals[self.accounts[account].currency, phase] += sign * amount
        return all(v == 0 for v in totals.values())

    def fits(self, rows: list[Row]) -> bool:
        """Would one statement writing `rows` keep every non_negative account >= 0?"""
        deltas: dict[str, dict[tuple[Direction, Phase], int]] = defaultdict(
            lambda: defaultdict(int)
        )
        for account, direction, amount, phase in rows:
            deltas[account][direction, phase] += amount
        return all(
            self.accounts[a].available(d) >= 0
            for a, d in deltas.items()
            if self.accounts[a].non_negative
        )

    def apply(self, rows: list[Row]) -> None:
        for account, direction, amount, phase in rows:
            self.accounts[account].totals[direction, phase] += amount
        self.counts["entries"] += len(rows)

    def predict_post(
        self, batch: list[TransactionCreate]
    ) -> tuple[Outcome | None, list[tuple[TransactionCreate, str | None]]]:
        """(error or None, [(params, existing id or None for new)])."""
        ids = [t.external_id for t in batch]
        if len(set(ids)) != len(ids):
            return Outcome(InvalidRequest, "duplicate_external_id"), []
        for t in batch:
            if any(e.account not in self.accounts for e in t.entries):
                return Outcome(NotFound, "resource_missing"), []
        plan: list[tuple[TransactionCreate, str | None]] = []
        new_rows: list[Row] = []
        for t in batch:
            existing = self.by_external_id.get(t.external_id)
            if existing is not None:
                original = self.txs[existing].params
                if original is None or original.model_dump(exclude={"external_id"}) != t.model_dump(
                    exclude={"external_id"}
                ):
                    return Outcome(Conflict, "external_id_conflict"), []
                plan.append((t, existing))
                continue
            rows = self.rows_of(t)
            if not self.balanced(rows):
                return Outcome(InvalidRequest, "transaction_unbalanced"), []
            new_rows += rows
            plan.append((t, None))
        if new_rows and not self.fits(new_rows):
            return Outcome(InvalidRequest, "balance_insufficient"), []
        return None, plan

    def entries_view(self, tx: TxModel) -> list[tuple[str, str, int, str]]:
        """What transaction_object() should list, line by line in order: the posted entries
        once posted, else the holds it was created with."""
        if tx.status == "posted":
            items = [(a, d, n) for a, d, n, _ in tx.posted()]
        else:
            items = [(a, d, n) for a, d, n, p in tx.rows if p == "pending" and n > 0]
        return [(a, d, n, self.accounts[a].currency.lower()) for a, d, n in items]

    def check_object(self, obj: dict[str, Any], tx: TxModel) -> None:
        assert obj["id"] == tx.id
        assert obj["external_id"] == tx.external_id
        assert obj["status"] == tx.status
        assert obj["reverses"] == tx.reverses
        assert obj["reversed_by"] == tx.reversed_by
        got = [(e["account"], e["direction"], e["amount"], e["currency"]) for e in obj["entries"]]
        assert got == self.entries_view(tx)

    # ----------------------------------------------------------------- posting

    def post_batch(
        self, conn: psycopg.AsyncConnection[Any], batch: list[TransactionCreate]
    ) -> None:
        outcome, plan = self.predict_post(batch)
        got = self.call(
            conn,
            lambda c: service.post_transactions(
                c, self.scope, self.clock, batch, batched=len(batch) > 1
            ),
        )
        objects = self.expect(got, outcome)
        if outcome is not None:
            if outcome.code == "balance_insufficient":
                self.rejected += [t for t in batch if t.external_id not in self.by_external_id]
            return
        assert len(objects) == len(plan)
        for obj, (params, existing) in zip(objects, plan, strict=True):
            if existing is None:
                status: Status = "pending" if params.pending else "posted"
                tx = TxModel(obj["id"], params.external_id, params, status, self.rows_of(params))
                assert tx.id not in self.txs
                self.txs[tx.id] = tx
                self.by_external_id[params.external_id] = tx.id
                self.apply(tx.rows)
                self.counts["transactions"] += 1
                self.emitted(tx.id, f"ledger.transaction.{status}")
            self.check_object(obj, self.txs[obj["id"]])
            if existing is not None:
                assert obj["id"] == existing

    @precondition(lambda self: self.accounts)
    @rule(data=st.data())
    def post_transaction(self, data: st.DataObject) -> None:
        self.post_batch(self.conn(data), [self.draw_params(data)])

    @precondition(lambda self: self.accounts)
    @rule(data=st.data(), size=st.integers(2, 3), replay=st.booleans())
    def post_batch_of_transactions(self, data: st.DataObject, size: int, replay: bool) -> None:
        batch = [self.draw_params(data) for _ in range(size)]
        replayable = [t.params for t in self.txs.values() if t.params is not None]
        if replay and replayable:
            batch.insert(data.draw(st.integers(0, size)), data.draw(st.sampled_from(replayable)))
        self.post_batch(self.conn(data), batch)

    @precondition(lambda self: self.rejected)
    @rule(data=st.data())
    def retry_rejected(self, data: st.DataObject) -> None:
        params = data.draw(st.sampled_from(self.rejected))
        self.rejected.remove(params)
        self.post_batch(self.conn(data), [params])

    @precondition(lambda self: any(t.params is not None for t in self.txs.values()))
    @rule(data=st.data())
    def replay_identical(self, data: st.DataObject) -> None:
        originals = [t for t in self.txs.values() if t.params is not None]
        original = data.draw(st.sampled_from(originals))
        assert original.params is not None
        self.post_batch(self.conn(data), [original.params.model_copy()])

    @precondition(lambda self: self.accounts)
    @rule(
        data=st.data(),
        kind=st.sampled_from(
            ["conflict", "unbalanced", "foreign_account", "duplicate_in_batch", "missing_tx"]
        ),
    )
    def invalid_request(self, data: st.DataObject, kind: str) -> None:
        """Requests the ledger must refuse without writing anything."""
        conn = self.conn(data)
        params = self.draw_params(data)
        entries = list(params.entries)
        index = data.draw(st.integers(0, len(entries) - 1), label="victim")
        if kind == "conflict" and self.txs:
            # Same external_id, other content: another request, or this one changed.
            original = data.draw(st.sampled_from(list(self.txs.values())))
            change = data.draw(st.sampled_from(["entries", "description", "pending"]))
            if change == "entries" or original.params is None:
                params = params.model_copy(update={"external_id": original.external_id})
            elif change == "description":
                description = f"{original.params.description}!"
                params = original.params.model_copy(update={"description": description})
            else:
                params = original.params.model_copy(update={"pending": not original.params.pending})
            self.post_batch(conn, [params])
        elif kind == "unbalanced":
            delta = data.draw(st.integers(1, 1000), label="delta")
            entries[index] = entries[index].model_copy(
                update={"amount": entries[index].amount + delta}
            )
            self.post_batch(conn, [params.model_copy(update={"entries": entries})])
        elif kind == "foreign_account":
            ghost = data.draw(st.sampled_from([self.foreign_account, "lacc_missing"]))
            entries[index] = entries[index].model_copy(update={"account": ghost})
            self.post_batch(conn, [params.model_copy(update={"entries": entries})])
        elif kind == "duplicate_in_batch":
            again = self.draw_params(data, external_id=params.external_id)
            self.post_batch(conn, [params, again])
        else:
            self.act_on_a_missing_transaction(data, conn)

    # ----------------------------------------------------------------- settling

    def has(self, *statuses: Status) -> bool:
        return any(t.status in statuses for t in self.txs.values())

    def pick(self, data: st.DataObject, *statuses: Status) -> TxModel:
        matching = [t for t in self.txs.values() if t.status in statuses]
        return data.draw(st.sampled_from(matching), label="transaction")

    @precondition(lambda self: self.has("pending"))
    @rule(data=st.data())
    def post_pending(self, data: st.DataObject) -> None:
        self.try_post(data, self.pick(data, "pending"))

    @precondition(lambda self: self.has("pending"))
    @rule(data=st.data())
    def void_pending(self, data: st.DataObject) -> None:
        self.try_void(data, self.pick(data, "pending"))

    @precondition(lambda self: self.has("posted", "voided"))
    @rule(data=st.data(), action=st.sampled_from(["post", "void"]))
    def settle_a_settled_transaction(self, data: st.DataObject, action: str) -> None:
        """Replays (same request again) or transaction_not_pending."""
        tx = self.pick(data, "posted", "voided")
        if action == "post":
            self.try_post(data, tx)
        else:
            self.try_void(data, tx)

    def try_post(self, data: st.DataObject, tx: TxModel) -> None:
        holds = tx.holds()
        hold = max(holds.values(), default=1)
        posted_amounts = sorted({n for _, _, n, _ in tx.posted()}) or [1]
        amount = data.draw(
            st.one_of(
                st.none(),
                st.integers(1, hold),
                st.integers(hold + 1, hold + 50),
                st.sampled_from(posted_amounts),
            ),
            label="amount",
        )
        outcome: Outcome | None = None
        appended: list[Row] = []
        if tx.status == "posted":
            if not (amount is None or all(n == amount for _, _, n, _ in tx.posted())):
                outcome = Outcome(InvalidRequest, "transaction_not_pending")
        elif tx.status == "voided":
            outcome = Outcome(InvalidRequest, "transaction_not_pending")
        elif amount is not None and len(holds) != 2:
            outcome = Outcome(InvalidRequest, None)
        elif amount is not None and amount > hold:
            outcome = Outcome(InvalidRequest, "amount_too_large")
        else:
            releases: list[Row] = [(a, d, -n, "pending") for (a, d), n in holds.items()]
            posts: list[Row] = [
                (a, d, n if amount is None else amount, "posted") for (a, d), n in holds.items()
            ]
            appended = releases + posts
            if not self.fits(appended):
                outcome = Outcome(InvalidRequest, "balance_insufficient")
        got = self.call(
            self.conn(data),
            lambda c: service.post_pending(c, self.scope, self.clock, tx.id, amount),
        )
        obj = self.expect(got, outcome)
        if outcome is None:
            if appended:
                tx.rows += appended
                tx.status = "posted"
                self.apply(appended)
                self.emitted(tx.id, "ledger.transaction.posted")
            self.check_object(obj, tx)

    def try_void(self, data: st.DataObject, tx: TxModel) -> None:
        outcome: Outcome | None = None
        releases: list[Row] = []
        if tx.status == "posted":
            outcome = Outcome(InvalidRequest, "transaction_not_pending")
        elif tx.status == "pending":
            releases = [(a, d, -n, "pending") for (a, d), n in tx.holds().items()]
            if not self.fits(releases):
                outcome = Outcome(InvalidRequest, "balance_insufficient")
        got = self.call(
            self.conn(data), lambda c: service.void_pending(c, self.scope, self.clock, tx.id)
        )
        obj = self.expect(got, outcome)
        if outcome is None:
            if releases:
                tx.rows += releases
                tx.status = "voided"
                self.apply(releases)
                self.emitted(tx.id, "ledger.transaction.voided")
            self.check_object(obj, tx)

    @precondition(lambda self: self.txs)
    @rule(data=st.data(), naming=st.sampled_from(["default", "fresh", "taken"]))
    def reverse(self, data: st.DataObject, naming: str) -> None:
        """Mostly posted transactions; sometimes pending or voided ones (an error)."""
        if self.has("posted") and data.draw(st.integers(0, 3), label="posted?") > 0:
            tx = self.pick(data, "posted")
        else:
            tx = self.pick(data, "pending", "posted", "voided")
        external_id: str | None = None
        if naming == "fresh":
            external_id = f"rev-{self.next_external_id()}"
        elif naming == "taken":
            external_id = data.draw(st.sampled_from(sorted(self.by_external_id)))
        outcome: Outcome | None = None
        rows: list[Row] = []
        final_id = external_id or f"reversal:{tx.external_id}"
        if tx.reversed_by is not None:
            pass  # a replay: the existing reversal comes back
        elif tx.status != "posted":
            outcome = Outcome(InvalidRequest, "transaction_not_posted")
        elif tx.reverses is not None:
            outcome = Outcome(InvalidRequest, "transaction_is_reversal")
        elif final_id in self.by_external_id:
            outcome = Outcome(Conflict, any_code=True)
        else:
            rows = [
                (a, "credit" if d == "debit" else "debit", n, "posted")
                for a, d, n, _ in tx.posted()
            ]
            if not self.fits(rows):
                outcome = Outcome(InvalidRequest, "balance_insufficient")
        got = self.call(
            self.conn(data),
            lambda c: service.reverse(
                c,
                self.scope,
                self.clock,
                tx.id,
                external_id=external_id,
                description="undo",
                metadata={},
            ),
        )
        obj = self.expect(got, outcome)
        if outcome is not None:
            return
        if tx.reversed_by is None:
            new = TxModel(obj["id"], final_id, None, "posted", rows, reverses=tx.id)
            assert new.id not in self.txs
            self.txs[new.id] = new
            self.by_external_id[final_id] = new.id
            tx.reversed_by = new.id
            self.apply(rows)
            self.counts["transactions"] += 1
            self.emitted(new.id, "ledger.transaction.posted")
            self.emitted(tx.id, "ledger.transaction.reversed")
        self.check_object(obj, self.txs[tx.reversed_by])

    def act_on_a_missing_transaction(
        self, data: st.DataObject, conn: psycopg.AsyncConnection[Any]
    ) -> None:
        """Another merchant's transaction is as missing as one that never existed."""
        target = data.draw(st.sampled_from([self.foreign_tx, "ltx_missing"]))
        action = data.draw(st.sampled_from(["post", "void", "reverse"]))

        async def op(c: psycopg.AsyncConnection[Any]) -> Any:
            if action == "post":
                return await service.post_pending(c, self.scope, self.clock, target, None)
            if action == "void":
                return await service.void_pending(c, self.scope, self.clock, target)
            return await service.reverse(
                c, self.scope, self.clock, target, external_id=None, description=None, metadata={}
            )

        self.expect(self.call(conn, op), Outcome(NotFound, "resource_missing"))

    # ----------------------------------------------------------------- invariants

    @invariant()
    def database_equals_model(self) -> None:
        if not self.conns:
            return
        accounts, transactions, counts, events, shard_rows, report = self.run(self._observe())
        assert report.ok, report
        for obj in accounts:
            model = self.accounts[obj["id"]]
            assert obj["balances"] == model.balances(), (obj["id"], obj["balances"], model.totals)
            if model.non_negative:
                assert obj["balances"]["available"]["amount"] >= 0
        assert len(accounts) == len(self.accounts)
        for account_id, shard_count, negative_rows in shard_rows:
            assert shard_count == self.accounts[account_id].shards
            assert negative_rows == 0, f"{account_id} has a non_negative row below zero"
        for obj in transactions:
            self.check_object(obj, self.txs[obj["id"]])
        assert len(transactions) == len(self.txs)
        assert counts == {k: self.baseline[k] + v for k, v in self.counts.items()}
        assert events == dict(self.events)

    async def _observe(self) -> tuple[Any, ...]:
        conn = self.conns[0]
        accounts = await service.list_accounts(conn, self.scope, list(self.accounts))
        transactions = await service.list_transactions(conn, self.scope, list(self.txs))
        counts = await self._counts(conn)
        cur = await conn.execute(
            "SELECT aggregate_id, array_agg(type ORDER BY seq) FROM events"
            " WHERE merchant_id = %s AND aggregate_type LIKE 'ledger_%%' GROUP BY aggregate_id",
            (self.scope.merchant_id,),
        )
        events = {row[0]: list(row[1]) for row in await cur.fetchall()}
        cur = await conn.execute(
            "SELECT b.account_id, count(*), count(*) FILTER (WHERE b.non_negative AND"
            " CASE b.normal_balance WHEN 'credit'"
            " THEN b.credits_posted - b.debits_posted - b.debits_pending"
            " ELSE b.debits_posted - b.credits_posted - b.credits_pending END < 0)"
            " FROM ledger_balances b JOIN ledger_accounts a ON a.id = b.account_id"
            " WHERE a.merchant_id = %s GROUP BY b.account_id",
            (self.scope.merchant_id,),
        )
        shard_rows = await cur.fetchall()
        report = await verify(conn)
        return accounts, transactions, counts, events, shard_rows, report


def test_ledger_state_machine(database_url: str) -> None:
    runner = LoopThread()
    LedgerMachine.database_url = database_url
    LedgerMachine.runner = runner
    try:
        run_state_machine_as_test(LedgerMachine, settings=MACHINE_SETTINGS)
    finally:
        runner.close()
