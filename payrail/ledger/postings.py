"""Ledger decisions as plain functions over values: no I/O here.

Entries are append-only. A pending transaction holds its amounts in phase 'pending';
posting or voiding it appends the negation of those holds, and posting appends the
posted entries too. Every balance is therefore a plain sum of entries.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from payrail.errors import InvalidRequest

Direction = Literal["debit", "credit"]
Phase = Literal["pending", "posted"]
Status = Literal["pending", "posted", "voided"]

OPPOSITE: dict[Direction, Direction] = {"debit": "credit", "credit": "debit"}


@dataclass(frozen=True, slots=True)
class Entry:
    account_id: str
    currency: str
    direction: Direction
    amount: int
    phase: Phase

    @property
    def signed(self) -> int:
        return self.amount if self.direction == "debit" else -self.amount


def check_balanced(entries: Sequence[Entry], *, param: str = "entries") -> None:
    """Debits equal credits in every currency (PostgreSQL checks it again at commit)."""
    totals: dict[tuple[str, Phase], int] = defaultdict(int)
    for entry in entries:
        totals[(entry.currency, entry.phase)] += entry.signed
    unbalanced = sorted(currency for (currency, _), total in totals.items() if total != 0)
    if unbalanced:
        raise InvalidRequest(
            f"Debits and credits must be equal in each currency; they differ in "
            f"{', '.join(unbalanced)}.",
            param=param,
            code="transaction_unbalanced",
        )


def content_hash(content: dict[str, Any]) -> bytes:
    """What makes two requests with one external_id the same request."""
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).digest()


def _net(entries: Iterable[Entry], phase: Phase) -> dict[tuple[str, str, Direction], int]:
    net: dict[tuple[str, str, Direction], int] = defaultdict(int)
    for entry in entries:
        if entry.phase == phase:
            net[(entry.account_id, entry.currency, entry.direction)] += entry.amount
    return {key: amount for key, amount in net.items() if amount != 0}


def held(entries: Iterable[Entry]) -> list[Entry]:
    """The amounts a transaction still holds as pending, per account and direction."""
    return [
        Entry(account, currency, direction, amount, "pending")
        for (account, currency, direction), amount in _net(entries, "pending").items()
    ]


def release(entries: Iterable[Entry]) -> list[Entry]:
    """Entries that undo every pending hold: used by both void and post."""
    return [
        Entry(e.account_id, e.currency, e.direction, -e.amount, "pending") for e in held(entries)
    ]


def post(entries: Sequence[Entry], amount: int | None) -> list[Entry]:
    """Release the holds and post them, in full or (two-entry transactions) in part."""
    holds = held(entries)
    if amount is None:
        posted = [Entry(e.account_id, e.currency, e.direction, e.amount, "posted") for e in holds]
    else:
        if amount <= 0:
            raise InvalidRequest("amount must be a positive integer.", param="amount")
        if len(holds) != 2:
            raise InvalidRequest(
                "A partial amount can be posted only for a transaction of two entries.",
                param="amount",
            )
        if amount > holds[0].amount:
            raise InvalidRequest(
                f"amount {amount} exceeds the pending amount {holds[0].amount}.",
                param="amount",
                code="amount_too_large",
            )
        posted = [Entry(e.account_id, e.currency, e.direction, amount, "posted") for e in holds]
    return release(entries) + posted


def reversal(entries: Iterable[Entry]) -> list[Entry]:
    """The posted entries, line by line, with debit and credit swapped."""
    return [
        Entry(e.account_id, e.currency, OPPOSITE[e.direction], e.amount, "posted")
        for e in entries
        if e.phase == "posted"
    ]


def effective(status: Status, entries: Sequence[Entry]) -> list[Entry]:
    """What the transaction moves, line by line: its posted entries once posted, else the
    holds it was created with."""
    if status == "posted":
        return [e for e in entries if e.phase == "posted"]
    return [e for e in entries if e.phase == "pending" and e.amount > 0]


@dataclass(frozen=True, slots=True)
class BalanceTotals:
    debits_pending: int
    credits_pending: int
    debits_posted: int
    credits_posted: int


def balances(normal: Direction, t: BalanceTotals) -> dict[str, dict[str, int]]:
    """Modern Treasury's three balances; `amount` is signed to the normal side.

    posted: posted entries only. pending: posted plus pending. available: posted, less
    the pending amounts that would take money out of the account.
    """

    def side(debits: int, credits: int) -> dict[str, int]:
        amount = debits - credits if normal == "debit" else credits - debits
        return {"debits": debits, "credits": credits, "amount": amount}

    if normal == "debit":
        available = side(t.debits_posted, t.credits_posted + t.credits_pending)
    else:
        available = side(t.debits_posted + t.debits_pending, t.credits_posted)
    return {
        "posted": side(t.debits_posted, t.credits_posted),
        "pending": side(t.debits_posted + t.debits_pending, t.credits_posted + t.credits_pending),
        "available": available,
    }
