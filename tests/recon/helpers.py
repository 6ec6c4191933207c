"""Payments, expectations and Stripe reports the reconciliation tests share."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool

from payrail.clock import ManualClock
from payrail.payments import settlement
from payrail.recon.runs import Source
from payrail.tenants.scope import Scope
from tests.connectors.accounts.helpers import send

INTENTS = "/v1/payment_intents"
DAY = date(2026, 1, 1)


async def pay(
    client: httpx.AsyncClient, auth: dict[str, str], amount: int, *, refund: int = 0
) -> dict[str, Any]:
    body = {
        "amount": amount,
        "currency": "usd",
        "payment_method": "pm_card_visa",
        "confirm": True,
    }
    reply = await send(client, auth, INTENTS, body)
    assert reply.status_code == 200, reply.text
    intent: dict[str, Any] = reply.json()
    assert intent["status"] == "succeeded"
    if refund:
        done = await send(
            client, auth, "/v1/refunds", {"payment_intent": intent["id"], "amount": refund}
        )
        assert done.status_code == 200, done.text
    return intent


HEADER = (
    "balance_transaction_id,created_utc,available_on_utc,currency,gross,fee,net,"
    "reporting_category,source_id,description,automatic_payout_id,charge_id"
)


def stripe_row(
    txn: str,
    source: str,
    category: str,
    gross: int,
    fee: int,
    currency: str = "usd",
    day: date = DAY,
    payout: str = "po_1",
) -> str:
    def major(minor: int) -> str:
        sign = "-" if minor < 0 else ""
        return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d}"

    return (
        f"{txn},{day} 10:00:00,{day + timedelta(days=2)} 00:00:00,{currency},{major(gross)},"
        f"{major(fee)},{major(gross - fee)},{category},{source},,{payout},"
    )


def write_report(directory: Path, name: str, rows: Sequence[str]) -> Source:
    path = directory / name
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return Source(path, "stripe", name)


async def expect(
    pool: AsyncConnectionPool,
    scope: Scope,
    clock: ManualClock,
    connector: str,
    kind: settlement.Kind,
    reference: str,
    amount: int,
    fee: int = 0,
    currency: str = "USD",
    *,
    provider_gave_an_id: bool = True,
) -> None:
    async with pool.connection() as conn:
        await settlement.expect(
            conn,
            scope,
            clock,
            settlement.Expectation(
                connector_account_id=connector,
                kind=kind,
                object_id=f"obj_{kind}_{reference}",
                provider_reference=reference if provider_gave_an_id else None,
                payment_reference=reference,
                currency=currency,
                amount=amount,
                fee=fee,
                ledger_external_id=f"test:{reference}",
            ),
        )
