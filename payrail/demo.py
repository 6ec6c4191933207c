"""`payrail demo`: a short scripted scenario against a running payrail, with a summary.

It talks to the API over HTTP like any client. If nothing answers at the URL, it starts
the platform in this process (embedded PostgreSQL) for the length of the demo.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
from rich.console import Console
from rich.table import Table

from payrail.clock import SystemClock
from payrail.config import Settings
from payrail.db.migrate import upgrade
from payrail.money import Money
from payrail.runtime import database, serve_in_thread
from payrail.tenants.service import create_merchant
from payrail.vault.envelope import Vault
from payrail.vault.keyring import Keyring


@dataclass
class Step:
    what: str
    outcome: str


def _reachable(url: str) -> bool:
    try:
        httpx.get(f"{url}/openapi.json", timeout=2)
    except httpx.HTTPError:
        return False
    return True


async def _new_key(url: str) -> str:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    async with conn:
        merchant = await create_merchant(conn, SystemClock(), "Demo Streaming Co")
    return merchant.test_secret


def _scenario(api: httpx.Client) -> tuple[list[Step], list[dict[str, Any]]]:
    steps: list[Step] = []

    def account(name: str, kind: str, **extra: Any) -> str:
        reply = api.post(
            "/v1/ledger/accounts", data={"name": name, "type": kind, "currency": "usd", **extra}
        )
        reply.raise_for_status()
        return str(reply.json()["id"])

    def transfer(
        external_id: str,
        debit: str,
        credit: str,
        amount: int,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, str] | None = None,
    ) -> httpx.Response:
        return api.post(
            "/v1/ledger/transactions",
            headers=headers,
            data={
                "external_id": external_id,
                "entries[0][account]": debit,
                "entries[0][direction]": "debit",
                "entries[0][amount]": amount,
                "entries[1][account]": credit,
                "entries[1][direction]": "credit",
                "entries[1][amount]": amount,
                **(extra or {}),
            },
        )

    cash = account("Cash at processor", "asset")
    wallet = account("Customer wallet", "liability", non_negative="true")
    revenue = account("Subscription revenue", "revenue", balance_shards=8)
    steps.append(
        Step(
            "create accounts",
            "cash (asset), wallet (liability, never negative), revenue (revenue, 8 balance shards)",
        )
    )

    top_up = transfer("top-up-1", cash, wallet, 5000, extra={"metadata[source]": "card"})
    steps.append(
        Step(
            "top up the wallet",
            f"{top_up.json()['id']}: {Money(5000, 'USD').to_decimal_string()} USD posted",
        )
    )

    hold = transfer("order-1", wallet, revenue, 1999, extra={"pending": "true"})
    hold_id = hold.json()["id"]
    steps.append(Step("authorize an order (pending hold)", f"{hold_id}: 19.99 USD held"))
    posted = api.post(f"/v1/ledger/transactions/{hold_id}/post", data={"amount": 1500})
    steps.append(Step("capture part of it", f"{posted.json()['status']}: 15.00 of 19.99 USD"))

    overdraw = transfer("order-2", wallet, revenue, 999_999)
    steps.append(
        Step(
            "try to overdraw the wallet",
            f"HTTP {overdraw.status_code} {overdraw.json()['error']['code']}",
        )
    )

    key = {"Idempotency-Key": "demo-order-3"}
    first = transfer("order-3", wallet, revenue, 500, headers=key)
    again = transfer("order-3", wallet, revenue, 500, headers=key)
    replayed = again.headers.get("idempotent-replayed") == "true"
    steps.append(
        Step(
            "retry a request with the same Idempotency-Key",
            f"same transaction {again.json()['id']}, replayed={replayed}",
        )
    )

    reversal = api.post(f"/v1/ledger/transactions/{first.json()['id']}/reverse")
    steps.append(
        Step(
            "refund it by reversal (entries are never edited)",
            f"{reversal.json()['id']} reverses {reversal.json()['reverses']}",
        )
    )

    balances = [api.get(f"/v1/ledger/accounts/{a}").json() for a in (cash, wallet, revenue)]
    return steps, balances


def run(settings: Settings, url: str) -> None:
    console = Console()
    with database(settings) as database_url:
        upgrade(database_url)
        key = asyncio.run(_new_key(database_url))
        if _reachable(url):
            steps, balances = _run_against(url, key)
        else:
            console.print(f"nothing answers at {url}; running the API in this process")
            vault = Vault(Keyring.from_env(settings.data_dir))
            with serve_in_thread(database_url, SystemClock(), vault) as local:
                steps, balances = _run_against(local, key)
    table = Table("step", "outcome", title="payrail demo: a merchant, a ledger, postings")
    for step in steps:
        table.add_row(step.what, step.outcome)
    console.print(table)
    summary = Table("account", "posted", "pending", "available", title="balances (USD)")
    for account in balances:
        b = account["balances"]
        summary.add_row(
            account["name"],
            *(
                Money(b[kind]["amount"], "USD").to_decimal_string()
                for kind in ("posted", "pending", "available")
            ),
        )
    console.print(summary)


def _run_against(url: str, key: str) -> tuple[list[Step], list[dict[str, Any]]]:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as api:
        return _scenario(api)
