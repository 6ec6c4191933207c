"""The sandbox's memory: payments, refunds, disputes, what each Idempotency-Key produced,
and the webhook events made and their delivery attempts.

Everything lives in one process and one event loop; nothing survives a restart, which is
what a sandbox for tests wants.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from payrail.connectors.sandbox.processor import Dispute, Payment, Refund
from payrail.connectors.sandbox.webhooks import Attempt, Event


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Record:
    """The first reply processing produced for a key, and the request it answered."""

    fingerprint: bytes
    reply: Reply


class KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)


class Store:
    def __init__(self) -> None:
        self.payments: dict[str, Payment] = {}  # in creation order
        self.refunds: dict[str, Refund] = {}
        self.disputes: dict[str, Dispute] = {}
        self.events: list[Event] = []  # in the order made
        self.deliveries: list[Attempt] = []  # in the order attempted
        self._dispute_by_payment: dict[str, str] = {}
        self._sequences: dict[str, int] = {}  # object id -> its last event's sequence
        self._payment_by_key: dict[str, str] = {}
        self._refund_by_key: dict[str, str] = {}
        self._records: dict[str, Record] = {}
        self._attempts: dict[str, int] = {}
        self.locks = KeyedLocks()
        # Request bodies hold card numbers, and a plain hash of a card number falls to brute
        # force; a key that never leaves this process makes the fingerprint useless outside.
        self._fingerprint_key = secrets.token_bytes(32)
        # Names this sandbox in the ids it makes up for reports (payouts).
        self.account = secrets.token_hex(8)

    def fingerprint(self, method: str, path: str, canonical_body: bytes) -> bytes:
        mac = hmac.new(self._fingerprint_key, digestmod=hashlib.sha256)
        for part in (method.encode(), path.encode(), canonical_body):
            mac.update(len(part).to_bytes(8, "big"))
            mac.update(part)
        return mac.digest()

    def next_attempt(self, key: str) -> int:
        """Count one more request with this key; the first is attempt 1."""
        attempt = self._attempts.get(key, 0) + 1
        self._attempts[key] = attempt
        return attempt

    def record(self, key: str) -> Record | None:
        return self._records.get(key)

    def remember(self, key: str, record: Record) -> None:
        if key in self._records:
            raise AssertionError("an Idempotency-Key's first reply is never replaced")
        self._records[key] = record

    def add_payment(self, payment: Payment) -> None:
        self.payments[payment.id] = payment
        self._payment_by_key[payment.idempotency_key] = payment.id

    def update_payment(self, payment: Payment) -> None:
        if payment.id not in self.payments:
            raise KeyError(payment.id)
        self.payments[payment.id] = payment

    def add_refund(self, payment: Payment, refund: Refund) -> None:
        self.update_payment(payment)
        self.refunds[refund.id] = refund
        self._refund_by_key[refund.idempotency_key] = refund.id

    def payment_by_key(self, key: str) -> Payment | None:
        payment_id = self._payment_by_key.get(key)
        return None if payment_id is None else self.payments[payment_id]

    def refund_by_key(self, key: str) -> Refund | None:
        refund_id = self._refund_by_key.get(key)
        return None if refund_id is None else self.refunds[refund_id]

    def add_dispute(self, dispute: Dispute) -> None:
        self.disputes[dispute.id] = dispute
        self._dispute_by_payment[dispute.payment] = dispute.id

    def disputed(self, payment_id: str) -> bool:
        return payment_id in self._dispute_by_payment

    def next_sequence(self, object_id: str) -> int:
        """The sequence of the next event about this object; the first is 1."""
        sequence = self._sequences.get(object_id, 0) + 1
        self._sequences[object_id] = sequence
        return sequence

    def add_event(self, event: Event) -> None:
        self.events.append(event)

    def add_delivery(self, attempt: Attempt) -> None:
        self.deliveries.append(attempt)
