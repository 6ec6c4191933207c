"""Where reconciliation moves money in the ledger, so that it ties out to the provider's
and the bank's view.

Per merchant, mode and currency, beside payments' `provider_balance` and
`processor_fees` (per connector account):

- `suspense` (liability): differences nobody has explained yet. A break moves the
  provider's (or the bank's) side of it against the provider balance (payouts in transit,
  the bank) here; resolving it by hand leaves the amount for an accountant to move on; a
  break that closes by itself (the late row arrived) moves it back, and so does the
  item of a break resolved by hand turning up after all, as a break of its own.
- `payouts_in_transit` (asset): paid out by the provider, not yet seen at the bank.
- `bank` (asset): arrived at the merchant's bank.

One transaction per run and currency, `recon:{run}:{currency}`, netted per account, so a
run posts once whatever it contains.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

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
    """What a run moves in one currency. An amount against suspense is signed to the other
    account's side: + raises it (money the provider or the bank holds that payrail had not
    booked there)."""

    connector_account_id: str | None
    to_suspense: int = 0  # provider balance -> suspense, for a provider's breaks
    in_transit_to_suspense: int = 0  # payouts in transit -> suspense, for a payout's breaks
    bank_to_suspense: int = 0  # bank -> suspense, for a bank line's breaks
    fees: int = 0  # provider balance -> processor fees
    payouts: int = 0  # provider balance -> payouts in transit
    arrived: int = 0  # payouts in transit -> bank
    notes: dict[str, str] = field(default_factory=dict)

    def against_suspense(self, brk: Mapping[str, Any], amount: int) -> None:
        """`amount` of a break's, between suspense and the account its item is in: the
        provider balance for a provider's break, payouts in transit for a payout's (a
        provider run closes one when the payout comes back), the bank for a bank line's."""
        if brk["stage"] == "provider":
            self.to_suspense += amount
        elif brk.get("payout_id") is not None:
            self.in_transit_to_suspense += amount
        else:
            self.bank_to_suspense += amount

    @property
    def suspense(self) -> int:
        return self.to_suspense + self.in_transit_to_suspense + self.bank_to_suspense


async def transaction(
    conn: Conn, scope: Scope, clock: Clock, run_id: str, currency: str, m: Movements
) -> TransactionCreate | None:
    """The run's one transaction in `currency`; None when it moves nothing."""
    suspense = await account(conn, scope, clock, "suspense", currency)
    in_transit = await account(conn, scope, clock, "payouts_in_transit", currency)
    debits = [
        # A payout that never arrived: in transit written down against suspense.
        (in_transit, m.in_transit_to_suspense),
        (suspense, -m.in_transit_to_suspense),
    ]
    if m.connector_account_id is not None:
        a = await payment_postings.accounts(conn, scope, clock, currency, m.connector_account_id)
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
        bank = await account(conn, scope, clock, "bank", currency)
        debits += [
            (bank, m.arrived),
            (in_transit, -m.arrived),
            # Money at the bank nobody expected, or a payout that arrived short or long.
            (bank, m.bank_to_suspense),
            (suspense, -m.bank_to_suspense),
        ]
    return movement(f"recon:{run_id}:{currency}", debits, {"reconciliation_run": run_id, **m.notes})


async def post(conn: Conn, scope: Scope, clock: Clock, batch: list[TransactionCreate]) -> None:
    if batch:
        await ledger.post_transactions(conn, scope, clock, batch)
