"""What payments expects each provider to settle: one row per money movement it posted to
a provider balance (a capture, a refund, a dispute's withdrawal or reinstatement), keyed
by the provider's own id, which is what its settlement reports carry.

Written in the same transaction as the posting, so that reconciliation's view of the
ledger can never be missing a movement the ledger has. Written once: the posting paths
are retried (janitor, webhooks, replays), and the row is unique per provider object and
kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from psycopg import AsyncConnection

from payrail.clock import Clock
from payrail.connectors.base import ProviderPayment
from payrail.tenants.scope import Scope

Conn = AsyncConnection[Any]
Kind = Literal["charge", "refund", "dispute", "dispute_reversal"]


@dataclass(frozen=True, slots=True)
class Expectation:
    connector_account_id: str
    kind: Kind
    object_id: str  # payrail's charge, refund or dispute
    provider_reference: str | None
    payment_reference: str  # the provider's id of the payment; "" if it gave none
    currency: str
    amount: int  # signed: + into the provider balance
    fee: int
    ledger_external_id: str


async def expect(conn: Conn, scope: Scope, clock: Clock, *expected: Expectation) -> None:
    for e in expected:
        await conn.execute(
            "INSERT INTO settlement_expectations (merchant_id, livemode, connector_account_id,"
            " kind, object_id, provider_reference, payment_reference, currency, amount, fee,"
            " occurred_at, ledger_external_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (
                scope.merchant_id,
                scope.livemode,
                e.connector_account_id,
                e.kind,
                e.object_id,
                e.provider_reference,
                e.payment_reference,
                e.currency,
                e.amount,
                e.fee,
                clock.now(),
                e.ledger_external_id,
            ),
        )


def capture(charge: dict[str, Any], answer: ProviderPayment, posting: str) -> Expectation:
    """A charge's capture and fee, as the provider answered them; `posting` is the ledger
    transaction that moved the money."""
    return Expectation(
        connector_account_id=charge["connector_account_id"],
        kind="charge",
        object_id=charge["id"],
        provider_reference=answer.provider_id,
        payment_reference=answer.provider_id,
        currency=charge["currency"],
        amount=answer.amount_captured,
        fee=answer.fee,
        ledger_external_id=posting,
    )


def refund(charge: dict[str, Any], refund: dict[str, Any], provider_id: str | None) -> Expectation:
    return Expectation(
        connector_account_id=charge["connector_account_id"],
        kind="refund",
        object_id=refund["id"],
        provider_reference=provider_id,
        payment_reference=charge["provider_id"] or "",
        currency=refund["currency"],
        amount=-refund["amount"],
        fee=0,
        ledger_external_id=f"refund:{refund['id']}",
    )


def dispute(charge: dict[str, Any], dispute: dict[str, Any], *, withdrawn: bool) -> Expectation:
    """A dispute's withdrawal, or its reinstatement when it was won."""
    return Expectation(
        connector_account_id=charge["connector_account_id"],
        kind="dispute" if withdrawn else "dispute_reversal",
        object_id=dispute["id"],
        provider_reference=dispute["provider_id"],
        payment_reference=charge["provider_id"] or "",
        currency=charge["currency"],
        amount=-dispute["amount"] if withdrawn else dispute["amount"],
        fee=0,
        ledger_external_id=f"dispute:{dispute['id']}:"
        + ("withdrawal" if withdrawn else "reinstatement"),
    )
