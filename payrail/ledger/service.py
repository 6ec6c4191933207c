"""Ledger operations. Each runs inside the caller's database transaction and writes its
outbox events there, so a change and its event commit together or not at all."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg.errors

from payrail.clock import Clock, unix
from payrail.errors import Conflict, InvalidRequest, NotFound
from payrail.events.outbox import OutboxEvent, emit
from payrail.ids import new_id
from payrail.ledger import repository as repo
from payrail.ledger.postings import (
    Entry,
    Phase,
    balances,
    check_balanced,
    content_hash,
    effective,
    post,
    release,
    reversal,
)
from payrail.ledger.schemas import AccountCreate, TransactionCreate
from payrail.tenants.scope import Scope

Conn = repo.Conn

NORMAL_BALANCE = {
    "asset": "debit",
    "expense": "debit",
    "liability": "credit",
    "equity": "credit",
    "revenue": "credit",
}

# An account's merchant, mode and currency never change, so they may be cached.
_account_currency: dict[tuple[Scope, str], str] = {}
_CACHE_LIMIT = 100_000


def account_object(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "ledger_account",
        "name": row["name"],
        "type": row["type"],
        "currency": row["currency"].lower(),
        "normal_balance": row["normal_balance"],
        "non_negative": row["non_negative"],
        "balance_shards": row["balance_shards"],
        "balances": balances(row["normal_balance"], repo.totals(row)),
        "metadata": row["metadata"],
        "created": unix(row["created_at"]),
        "livemode": row["livemode"],
    }


def _entry_object(entry: Entry) -> dict[str, Any]:
    return {
        "account": entry.account_id,
        "direction": entry.direction,
        "amount": entry.amount,
        "currency": entry.currency.lower(),
    }


def transaction_object(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "ledger_transaction",
        "external_id": row["external_id"],
        "status": row["status"],
        "description": row["description"],
        "entries": [_entry_object(e) for e in effective(row["status"], row["entries"])],
        "reverses": row["reverses_id"],
        "reversed_by": row["reversed_by"],
        "metadata": row["metadata"],
        "effective_at": unix(row["effective_at"]),
        "created": unix(row["created_at"]),
        "posted_at": unix(row["posted_at"]) if row["posted_at"] else None,
        "voided_at": unix(row["voided_at"]) if row["voided_at"] else None,
        "livemode": row["livemode"],
    }


async def create_account(
    conn: Conn, scope: Scope, clock: Clock, params: AccountCreate
) -> dict[str, Any]:
    now = clock.now()
    account_id = new_id("lacc")
    fields = params.model_dump()
    fields["normal_balance"] = params.normal_balance or NORMAL_BALANCE[params.type]
    await repo.insert_account(conn, scope, account_id, fields, now)
    account = await get_account(conn, scope, account_id)
    await emit(
        conn,
        scope,
        now,
        [OutboxEvent("ledger.account.created", "ledger_account", account_id, account)],
    )
    return account


async def get_account(conn: Conn, scope: Scope, account_id: str) -> dict[str, Any]:
    rows = await repo.fetch_accounts(conn, scope, [account_id])
    if not rows:
        raise NotFound("ledger account", account_id)
    return account_object(rows[0])


async def list_accounts(conn: Conn, scope: Scope, ids: Sequence[str]) -> list[dict[str, Any]]:
    return [account_object(row) for row in await repo.fetch_accounts(conn, scope, ids)]


async def _currencies(
    conn: Conn,
    scope: Scope,
    batch: Sequence[TransactionCreate],
    param: Callable[[int, str], str],
) -> dict[str, str]:
    wanted = {e.account for t in batch for e in t.entries}
    known = {a: c for a in wanted if (c := _account_currency.get((scope, a))) is not None}
    missing = wanted - known.keys()
    if missing:
        found = await repo.account_currencies(conn, scope, sorted(missing))
        if len(_account_currency) > _CACHE_LIMIT:
            _account_currency.clear()
        _account_currency.update({(scope, a): c for a, c in found.items()})
        known.update(found)
    for t_index, t in enumerate(batch):
        for e_index, e in enumerate(t.entries):
            if e.account not in known:
                raise NotFound(
                    "ledger account",
                    e.account,
                    param=param(t_index, f"entries[{e_index}][account]"),
                )
    return known


def _content(params: TransactionCreate) -> dict[str, Any]:
    return params.model_dump(exclude={"external_id"})


async def post_transactions(
    conn: Conn,
    scope: Scope,
    clock: Clock,
    batch: Sequence[TransactionCreate],
    *,
    batched: bool = False,
) -> list[dict[str, Any]]:
    """Write new transactions; an external_id seen before returns the original when the
    content is the same, and is an error when it differs. One statement writes a batch of
    any size, so without a surrounding transaction the call is its own."""

    def param(index: int, name: str) -> str:
        """`entries[0][amount]`, or in a batch `transactions[3][entries][0][amount]`."""
        if not batched:
            return name
        head, bracket, rest = name.partition("[")
        return f"transactions[{index}][{head}]{bracket}{rest}"

    external_ids = [t.external_id for t in batch]
    if len(set(external_ids)) != len(external_ids):
        raise InvalidRequest(
            "external_id must be unique within a batch.",
            param="transactions",
            code="duplicate_external_id",
        )
    currencies = await _currencies(conn, scope, batch, param)
    now = clock.now()
    headers: list[repo.TransactionHeader] = []
    entries: list[tuple[str, Entry]] = []
    for index, t in enumerate(batch):
        phase: Phase = "pending" if t.pending else "posted"
        rows = [
            Entry(e.account, currencies[e.account], e.direction, e.amount, phase) for e in t.entries
        ]
        check_balanced(rows, param=param(index, "entries"))
        effective_at = (
            datetime.fromtimestamp(t.effective_at, UTC) if t.effective_at is not None else now
        )
        header = repo.TransactionHeader(
            new_id("ltx"),
            t.external_id,
            content_hash(_content(t)),
            phase,
            t.description,
            t.metadata,
            None,
            effective_at,
        )
        headers.append(header)
        entries.extend((header.id, row) for row in rows)
    written = _objects(scope, now, headers, entries)
    inserted = await _insert(
        conn,
        scope,
        now,
        headers,
        entries,
        [
            OutboxEvent(f"ledger.transaction.{o['status']}", "ledger_transaction", o["id"], o)
            for o in written.values()
        ],
        param=param,
        overdraft_param="transactions" if batched else "entries",
    )
    if len(inserted) == len(headers):
        return list(written.values())
    return await _resolve_replays(conn, scope, headers, inserted, written)


async def _resolve_replays(
    conn: Conn,
    scope: Scope,
    headers: Sequence[repo.TransactionHeader],
    inserted: set[str],
    written: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """An external_id already taken with the same content: answer with the original."""
    skipped = [h.external_id for h in headers if h.id not in inserted]
    originals = await repo.existing_external_ids(conn, scope, skipped)
    known = {o["id"]: o for o in await _fetch(conn, scope, list(originals.values()))}
    return [written[h.id] if h.id in inserted else known[originals[h.external_id]] for h in headers]


def _row(
    scope: Scope, now: datetime, header: repo.TransactionHeader, entries: list[Entry]
) -> dict[str, Any]:
    """The row a new transaction will have, to answer without reading it back."""
    return {
        "id": header.id,
        "livemode": scope.livemode,
        "external_id": header.external_id,
        "status": header.status,
        "description": header.description,
        "metadata": header.metadata,
        "reverses_id": header.reverses_id,
        "effective_at": header.effective_at,
        "created_at": now,
        "posted_at": now if header.status == "posted" else None,
        "voided_at": None,
        "reversed_by": None,
        "entries": entries,
    }


def _objects(
    scope: Scope,
    now: datetime,
    headers: Sequence[repo.TransactionHeader],
    entries: Sequence[tuple[str, Entry]],
) -> dict[str, dict[str, Any]]:
    by_transaction: dict[str, list[Entry]] = {h.id: [] for h in headers}
    for transaction_id, entry in entries:
        by_transaction[transaction_id].append(entry)
    return {h.id: transaction_object(_row(scope, now, h, by_transaction[h.id])) for h in headers}


async def _insert(
    conn: Conn,
    scope: Scope,
    now: datetime,
    headers: Sequence[repo.TransactionHeader],
    entries: Sequence[tuple[str, Entry]],
    events: Sequence[OutboxEvent],
    *,
    param: Callable[[int, str], str],
    overdraft_param: str,
) -> set[str]:
    try:
        return await repo.post_transactions(conn, scope, now, headers, entries, events)
    except psycopg.errors.CheckViolation as exc:
        if exc.diag.constraint_name == "ledger_balance_non_negative":
            raise InvalidRequest(
                "The transaction would take a non_negative account below zero.",
                param=overdraft_param,
                code="balance_insufficient",
            ) from exc
        raise
    except psycopg.errors.UniqueViolation as exc:
        if exc.diag.constraint_name == "ledger_transactions_external_id_content":
            external_id = exc.diag.message_detail
            index = next(i for i, h in enumerate(headers) if h.external_id == external_id)
            raise Conflict(
                f"A ledger transaction with external_id '{external_id}' already exists"
                " with different content.",
                param=param(index, "external_id"),
                code="external_id_conflict",
            ) from exc
        raise


async def _fetch(conn: Conn, scope: Scope, ids: Sequence[str]) -> list[dict[str, Any]]:
    return [transaction_object(row) for row in await repo.fetch_transactions(conn, scope, ids)]


async def get_transaction(conn: Conn, scope: Scope, transaction_id: str) -> dict[str, Any]:
    rows = await _fetch(conn, scope, [transaction_id])
    if not rows:
        raise NotFound("ledger transaction", transaction_id)
    return rows[0]


async def list_transactions(conn: Conn, scope: Scope, ids: Sequence[str]) -> list[dict[str, Any]]:
    return await _fetch(conn, scope, ids)


async def _locked(conn: Conn, scope: Scope, transaction_id: str) -> dict[str, Any]:
    if not await repo.lock_transaction(conn, scope, transaction_id):
        raise NotFound("ledger transaction", transaction_id)
    [row] = await repo.fetch_transactions(conn, scope, [transaction_id])
    return row


async def _settle(
    conn: Conn,
    scope: Scope,
    clock: Clock,
    transaction_id: str,
    status: str,
    new_entries: Sequence[Entry],
) -> dict[str, Any]:
    now = clock.now()
    try:
        await repo.append_entries(conn, scope, transaction_id, new_entries)
    except psycopg.errors.CheckViolation as exc:
        if exc.diag.constraint_name == "ledger_balance_non_negative":
            raise InvalidRequest(
                "Posting would take a non_negative account below zero.",
                param="amount",
                code="balance_insufficient",
            ) from exc
        raise
    await repo.set_status(conn, transaction_id, "posted" if status == "posted" else "voided", now)
    obj = await get_transaction(conn, scope, transaction_id)
    await emit(
        conn,
        scope,
        now,
        [OutboxEvent(f"ledger.transaction.{status}", "ledger_transaction", transaction_id, obj)],
    )
    return obj


def _not_pending(row: dict[str, Any], action: str) -> InvalidRequest:
    return InvalidRequest(
        f"Ledger transaction {row['id']} is {row['status']}; only a pending transaction can"
        f" be {action}.",
        param="id",
        code="transaction_not_pending",
    )


async def post_pending(
    conn: Conn, scope: Scope, clock: Clock, transaction_id: str, amount: int | None
) -> dict[str, Any]:
    row = await _locked(conn, scope, transaction_id)
    if row["status"] == "posted":
        posted = effective("posted", row["entries"])
        if amount is None or all(e.amount == amount for e in posted):
            return transaction_object(row)  # posting twice is a replay, not an error
    if row["status"] != "pending":
        raise _not_pending(row, "posted")
    return await _settle(conn, scope, clock, transaction_id, "posted", post(row["entries"], amount))


async def void_pending(
    conn: Conn, scope: Scope, clock: Clock, transaction_id: str
) -> dict[str, Any]:
    row = await _locked(conn, scope, transaction_id)
    if row["status"] == "voided":
        return transaction_object(row)
    if row["status"] != "pending":
        raise _not_pending(row, "voided")
    return await _settle(conn, scope, clock, transaction_id, "voided", release(row["entries"]))


async def reverse(
    conn: Conn,
    scope: Scope,
    clock: Clock,
    transaction_id: str,
    *,
    external_id: str | None,
    description: str | None,
    metadata: dict[str, str],
) -> dict[str, Any]:
    """A posted transaction is corrected by a new one with the entries swapped."""
    row = await _locked(conn, scope, transaction_id)
    if row["reversed_by"] is not None:
        return await get_transaction(conn, scope, row["reversed_by"])
    if row["status"] != "posted":
        raise InvalidRequest(
            f"Ledger transaction {transaction_id} is {row['status']}; only a posted transaction"
            " can be reversed (void a pending one).",
            param="id",
            code="transaction_not_posted",
        )
    if row["reverses_id"] is not None:
        raise InvalidRequest(
            "A reversal cannot itself be reversed; post a new transaction.",
            param="id",
            code="transaction_is_reversal",
        )
    now = clock.now()
    entries = reversal(row["entries"])
    external_id = external_id or f"reversal:{row['external_id']}"
    digest = content_hash(
        {"reverses": transaction_id, "description": description, "metadata": metadata}
    )
    header = repo.TransactionHeader(
        new_id("ltx"), external_id, digest, "posted", description, metadata, transaction_id, now
    )
    rows = [(header.id, e) for e in entries]
    written = _objects(scope, now, [header], rows)[header.id]
    event = OutboxEvent("ledger.transaction.posted", "ledger_transaction", header.id, written)
    inserted = await _insert(
        conn,
        scope,
        now,
        [header],
        rows,
        [event],
        param=lambda _, name: name,
        overdraft_param="entries",
    )
    if not inserted:
        raise Conflict(
            f"A ledger transaction with external_id '{external_id}' already exists.",
            param="external_id",
            code="external_id_conflict",
        )
    original = transaction_object({**row, "reversed_by": header.id})
    await emit(
        conn,
        scope,
        now,
        [
            OutboxEvent(
                "ledger.transaction.reversed", "ledger_transaction", transaction_id, original
            )
        ],
    )
    return written
