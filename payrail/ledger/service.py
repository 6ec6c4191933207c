"""Ledger operations. Each runs inside the caller's database transaction and writes its
outbox events there, so a change and its event commit together or not at all."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import psycopg.errors

from payrail.clock import Clock, unix
from payrail.errors import Conflict, InvalidRequest, NotFound
from payrail.events.outbox import OutboxEvent, emit
from payrail.ids import new_id
from payrail.ledger import repository as repo
from payrail.ledger.postings import (
    Entry,
    NewEntry,
    NewTransaction,
    Phase,
    balances,
    check_nets,
    check_new,
    content_hash,
    effective,
    post,
    release,
    reversal,
)
from payrail.ledger.schemas import AccountCreate, EntryCreate, TransactionCreate
from payrail.tenants.scope import Scope

Conn = repo.Conn

NORMAL_BALANCE = {
    "asset": "debit",
    "expense": "debit",
    "liability": "credit",
    "equity": "credit",
    "revenue": "credit",
}

# An account's merchant, mode and currency never change, so they may be cached. Keyed by
# the account id alone: a tuple key with the Scope dataclass cost a Python-level hash
# per entry. The scope is compared on every hit.
_account_scope_currency: dict[str, tuple[str, bool, str]] = {}
_CACHE_LIMIT = 100_000

# A transaction given to the posting path: from the API (validated by pydantic), or built
# by payrail itself (checked by postings.check_new). Both have the same fields.
Posting = TransactionCreate | NewTransaction


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
    return _transaction(
        row["id"],
        row["external_id"],
        row["status"],
        row["description"],
        [_entry_object(e) for e in effective(row["status"], row["entries"])],
        row["reverses_id"],
        row["reversed_by"],
        row["metadata"],
        unix(row["effective_at"]),
        unix(row["created_at"]),
        unix(row["posted_at"]) if row["posted_at"] else None,
        unix(row["voided_at"]) if row["voided_at"] else None,
        row["livemode"],
    )


def _transaction(
    transaction_id: str,
    external_id: str,
    status: str,
    description: str | None,
    entries: list[dict[str, Any]],
    reverses: str | None,
    reversed_by: str | None,
    metadata: dict[str, str],
    effective_at: int,
    created: int,
    posted_at: int | None,
    voided_at: int | None,
    livemode: bool,
) -> dict[str, Any]:
    """The API object, from a stored row or from what a posting is about to write."""
    return {
        "id": transaction_id,
        "object": "ledger_transaction",
        "external_id": external_id,
        "status": status,
        "description": description,
        "entries": entries,
        "reverses": reverses,
        "reversed_by": reversed_by,
        "metadata": metadata,
        "effective_at": effective_at,
        "created": created,
        "posted_at": posted_at,
        "voided_at": voided_at,
        "livemode": livemode,
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
    batch: Sequence[Posting],
    param: Callable[[int, str], str],
) -> dict[str, str]:
    wanted = {e.account for t in batch for e in t.entries}
    known: dict[str, str] = {}
    for account in wanted:
        hit = _account_scope_currency.get(account)
        if hit is not None and hit[0] == scope.merchant_id and hit[1] == scope.livemode:
            known[account] = hit[2]
    if len(known) == len(wanted):
        return known
    found = await repo.account_currencies(conn, scope, sorted(wanted - known.keys()))
    if len(_account_scope_currency) > _CACHE_LIMIT:
        _account_scope_currency.clear()
    _account_scope_currency.update(
        {a: (scope.merchant_id, scope.livemode, c) for a, c in found.items()}
    )
    known.update(found)
    for t_index, t in enumerate(batch):
        lines: Sequence[EntryCreate | NewEntry] = t.entries
        for e_index, e in enumerate(lines):
            if e.account not in known:
                raise NotFound(
                    "ledger account",
                    e.account,
                    param=param(t_index, f"entries[{e_index}][account]"),
                )
    return known


def _content_hash(t: Posting) -> str:
    """What makes two postings with one external_id the same: every parameter but the
    external_id, as TransactionCreate.model_dump gives them, so that the hashes stored
    by earlier versions, and by the API path, still match. Built from the fields
    directly, which costs a third of model_dump."""
    return content_hash(
        {
            "entries": [
                {"account": e.account, "direction": e.direction, "amount": e.amount}
                for e in t.entries
            ],
            "pending": t.pending,
            "description": t.description,
            "metadata": t.metadata,
            "effective_at": t.effective_at,
        }
    ).hex()


def _batch_param(index: int, name: str) -> str:
    """`entries[0][amount]` in a batch: `transactions[3][entries][0][amount]`."""
    head, bracket, rest = name.partition("[")
    return f"transactions[{index}][{head}]{bracket}{rest}"


def _single_param(index: int, name: str) -> str:
    return name


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
    param = _batch_param if batched else _single_param
    return await _post(
        conn,
        scope,
        clock,
        batch,
        param=param,
        overdraft_param="transactions" if batched else "entries",
    )


async def post_new(
    conn: Conn, scope: Scope, clock: Clock, batch: Sequence[NewTransaction]
) -> list[dict[str, Any]]:
    """post_transactions for transactions that payrail builds itself (billing,
    reconciliation): plain values, held to the API's limits by `check_new` instead of a
    pydantic model each. Errors name parameters as the batch endpoint does."""
    for index, t in enumerate(batch):
        check_new(t, partial(_batch_param, index))
    return await _post(
        conn, scope, clock, batch, param=_batch_param, overdraft_param="transactions"
    )


async def _post(
    conn: Conn,
    scope: Scope,
    clock: Clock,
    batch: Sequence[Posting],
    *,
    param: Callable[[int, str], str],
    overdraft_param: str,
) -> list[dict[str, Any]]:
    """The posting path of both inputs. It builds each row, API object and event once,
    as plain dicts, straight from the input: this loop is most of the client's CPU in a
    batch (docs/DESIGN.md)."""
    if len({t.external_id for t in batch}) != len(batch):
        raise InvalidRequest(
            "external_id must be unique within a batch.",
            param="transactions",
            code="duplicate_external_id",
        )
    currencies = await _currencies(conn, scope, batch, param)
    now = clock.now()
    created = unix(now)
    livemode = scope.livemode
    headers: list[repo.HeaderRow] = []
    entries: list[repo.EntryRow] = []
    written: dict[str, dict[str, Any]] = {}
    events: list[OutboxEvent] = []
    for index, t in enumerate(batch):
        transaction_id = new_id("ltx")
        phase: Phase = "pending" if t.pending else "posted"
        nets: dict[str, int] = {}
        lines: list[dict[str, Any]] = []
        for e in t.entries:
            account, direction, amount = e.account, e.direction, e.amount
            currency = currencies[account]
            nets[currency] = nets.get(currency, 0) + (amount if direction == "debit" else -amount)
            entries.append(
                {
                    "transaction_id": transaction_id,
                    "account_id": account,
                    "currency": currency,
                    "direction": direction,
                    "amount": amount,
                    "phase": phase,
                }
            )
            lines.append(
                {
                    "account": account,
                    "direction": direction,
                    "amount": amount,
                    "currency": currency.lower(),
                }
            )
        if any(nets.values()):  # the parameter's name is formatted only for the error
            check_nets(nets, param=param(index, "entries"))
        effective_at = t.effective_at
        headers.append(
            {
                "id": transaction_id,
                "external_id": t.external_id,
                "content_hash": _content_hash(t),
                "status": phase,
                "description": t.description,
                "metadata": t.metadata,
                "reverses_id": None,
                "effective_at": now
                if effective_at is None
                else datetime.fromtimestamp(effective_at, UTC),
            }
        )
        obj = written[transaction_id] = _transaction(
            transaction_id,
            t.external_id,
            phase,
            t.description,
            lines,
            None,
            None,
            t.metadata,
            created if effective_at is None else effective_at,
            created,
            created if phase == "posted" else None,
            None,
            livemode,
        )
        events.append(
            OutboxEvent(f"ledger.transaction.{phase}", "ledger_transaction", transaction_id, obj)
        )
    inserted = await _insert(
        conn,
        scope,
        now,
        headers,
        entries,
        events,
        param=param,
        overdraft_param=overdraft_param,
    )
    if len(inserted) == len(headers):
        return list(written.values())
    return await _resolve_replays(conn, scope, headers, inserted, written)


async def _resolve_replays(
    conn: Conn,
    scope: Scope,
    headers: Sequence[repo.HeaderRow],
    inserted: set[str],
    written: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """An external_id already taken with the same content: answer with the original."""
    skipped = [h["external_id"] for h in headers if h["id"] not in inserted]
    originals = await repo.existing_external_ids(conn, scope, skipped)
    known = {o["id"]: o for o in await _fetch(conn, scope, list(originals.values()))}
    return [
        written[h["id"]] if h["id"] in inserted else known[originals[h["external_id"]]]
        for h in headers
    ]


async def _insert(
    conn: Conn,
    scope: Scope,
    now: datetime,
    headers: Sequence[repo.HeaderRow],
    entries: Sequence[repo.EntryRow],
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
            index = next(i for i, h in enumerate(headers) if h["external_id"] == external_id)
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
    reversal_id = new_id("ltx")
    header: repo.HeaderRow = {
        "id": reversal_id,
        "external_id": external_id,
        "content_hash": digest.hex(),
        "status": "posted",
        "description": description,
        "metadata": metadata,
        "reverses_id": transaction_id,
        "effective_at": now,
    }
    created = unix(now)
    written = _transaction(
        reversal_id,
        external_id,
        "posted",
        description,
        [_entry_object(e) for e in entries],
        transaction_id,
        None,
        metadata,
        created,
        created,
        created,
        None,
        scope.livemode,
    )
    event = OutboxEvent("ledger.transaction.posted", "ledger_transaction", reversal_id, written)
    inserted = await _insert(
        conn,
        scope,
        now,
        [header],
        repo.entry_rows(reversal_id, entries),
        [event],
        param=_single_param,
        overdraft_param="entries",
    )
    if not inserted:
        raise Conflict(
            f"A ledger transaction with external_id '{external_id}' already exists.",
            param="external_id",
            code="external_id_conflict",
        )
    original = transaction_object({**row, "reversed_by": reversal_id})
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
