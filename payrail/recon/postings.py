"""Where reconciliation moves money in the ledger, so that it ties out to the provider's
and the bank's view.

Per merchant, mode and currency, beside payments' `provider_balance` and
`processor_fees` (per connector account):

- `suspense` (liability): differences nobody has explained yet. A break moves the
  provider's side of it against the provider balance here; resolving it by hand leaves
  the amount for an accountant to move on; a break that closes by itself (the late row
  arrived) moves it back.
- `payouts_in_transit` (asset): paid out by the provider, not yet seen at the bank.
- `bank` (asset): arrived at the merchant's bank.

One transaction per run and currency, `recon:{run}:{currency}`, netted per account, so a
run posts once whatever it contains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from payrail.clock import Clock
from payrail.ledger import service as ledger
from payrail.ledger.purposes import Conn, movement, purpose_account
from payrail.ledger.schemas import AccountCreate, TransactionCreate
from payrail.payments import postings as payment_postings
from payrail.tenants.scope import Scope

Purpose = Literal["suspense", "payouts_in_transit", "bank"]
_TYPES: dict[Purpose, Literal["asset", "liability"]] = {
    "suspense": "liability",
    "payouts_in_transit": "asset",
    "bank": "asset",
}


async def account(conn: Conn, scope: Scope, clock: Clock, purpose: Purpose, currency: str) -> str:
    return await purpose_account(
        conn,
        scope,
        clock,
        "recon_ledger_accounts",
        {"purpose": purpose, "currency": currency},
        AccountCreate(
            name=f"reconciliation {purpose.replace('_', ' ')} {currency}",
            type=_TYPES[purpose],
            currency=currency,
            metadata={"recon_purpose": purpose},
        ),
    )


@dataclass(slots=True)
class Movements:
    """What a run moves in one currency, as signed amounts to the provider balance's
    side: + raises it (money the provider says it holds that payrail had not booked)."""

    connector_account_id: str | None
    to_suspense: int = 0  # provider balance (or in transit) -> suspense, for breaks
    fees: int = 0  # provider balance -> processor fees
    payouts: int = 0  # provider balance -> payouts in transit
    arrived: int = 0  # payouts in transit -> bank
    bank_unexplained: int = 0  # suspense -> bank: money at the bank nobody expected
    notes: dict[str, str] = field(default_factory=dict)


async def transaction(
    conn: Conn, scope: Scope, clock: Clock, run_id: str, currency: str, m: Movements
) -> TransactionCreate | None:
    """The run's one transaction in `currency`; None when it moves nothing."""
    suspense = await account(conn, scope, clock, "suspense", currency)
    debits: list[tuple[str, int]] = []
    if m.connector_account_id is not None:
        a = await payment_postings.accounts(conn, scope, clock, currency, m.connector_account_id)
        in_transit = await account(conn, scope, clock, "payouts_in_transit", currency)
        debits += [
            # A positive difference: the provider holds more than payrail booked.
            (a.provider_balance, m.to_suspense),
            (suspense, -m.to_suspense),
            (a.processor_fees, m.fees),
            (a.provider_balance, -m.fees),
            (in_transit, m.payouts),
            (a.provider_balance, -m.payouts),
        ]
    else:
        in_transit = await account(conn, scope, clock, "payouts_in_transit", currency)
        bank = await account(conn, scope, clock, "bank", currency)
        debits += [
            # A payout that never arrived: in transit written down against suspense.
            (in_transit, m.to_suspense),
            (suspense, -m.to_suspense),
            (bank, m.arrived),
            (in_transit, -m.arrived),
            (bank, m.bank_unexplained),
            (suspense, -m.bank_unexplained),
        ]
    return movement(f"recon:{run_id}:{currency}", debits, {"reconciliation_run": run_id, **m.notes})


async def post(conn: Conn, scope: Scope, clock: Clock, batch: list[TransactionCreate]) -> None:
    if batch:
        await ledger.post_transactions(conn, scope, clock, batch)
