"""Where a payment's money moves in the ledger.

Per merchant, mode and currency (and, for money a provider holds, per connector account):

- `provider_balance` (asset): what the provider owes the merchant. Captures raise it;
  fees, refunds and disputes lower it; payouts (reconciliation) move it to the bank. It
  is the account reconciliation ties to the provider's settlement reports.
- `sales` (revenue): what customers paid.
- `payment_clearing` (liability): what customers paid against an invoice, until billing
  applies it to the invoice's receivable (billing/postings.py); revenue of invoices is
  billing's to recognise, not sales.
- `refunds`, `processor_fees`, `disputes` (expense): where money left again, and why.

The postings, each under an external id derived from payrail's object ids so that any
retry (janitor, webhook, replayed request) posts it once:

| event | external id | entries |
|---|---|---|
| manual authorization | `charge:{ch}:authorization` | pending: Dr provider_balance, Cr sales |
| capture of it | same transaction, posted (partly) | the rest is released |
| cancel / void | same transaction, voided | |
| automatic capture | `charge:{ch}:capture` | Dr provider_balance, Cr sales |
| (of an invoice's intent) | same | Cr payment_clearing instead of sales |
| processor fee | `charge:{ch}:fee` | Dr processor_fees, Cr provider_balance |
| refund | `refund:{re}` | pending: Dr refunds, Cr provider_balance |
| refund answered | same transaction | posted on success, voided on failure |
| dispute opened | `dispute:{dp}:withdrawal` | Dr disputes, Cr provider_balance |
| dispute won | `dispute:{dp}:reinstatement` | Dr provider_balance, Cr disputes |

Every transaction's metadata names the intent, charge and connector account, and the
provider's id, which is what reconciliation matches report rows on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from psycopg import AsyncConnection

from payrail.clock import Clock
from payrail.ledger import repository as ledger_repo
from payrail.ledger import service as ledger
from payrail.ledger.purposes import purpose_account
from payrail.ledger.schemas import AccountCreate, EntryCreate, TransactionCreate
from payrail.tenants.scope import Scope

Conn = AsyncConnection[Any]
Purpose = Literal[
    "provider_balance", "sales", "payment_clearing", "refunds", "processor_fees", "disputes"
]

_KINDS: dict[Purpose, Literal["asset", "liability", "revenue", "expense"]] = {
    "provider_balance": "asset",
    "sales": "revenue",
    "payment_clearing": "liability",
    "refunds": "expense",
    "processor_fees": "expense",
    "disputes": "expense",
}
# Every captured payment touches these three: sharded balances keep concurrent postings
# from waiting on one balance row until the other commits. A connection always uses the
# same shard (its backend's pid picks it), so more shards than the API's connections to
# the database gain nothing.
_SHARDS: dict[Purpose, int] = {"provider_balance": 16, "sales": 16, "processor_fees": 16}


@dataclass(frozen=True, slots=True)
class Accounts:
    provider_balance: str
    sales: str
    payment_clearing: str
    refunds: str
    processor_fees: str
    disputes: str


async def _account(
    conn: Conn, scope: Scope, clock: Clock, purpose: Purpose, currency: str, connector: str
) -> str:
    name = f"payments {purpose.replace('_', ' ')} {currency}"
    if connector:
        name += f" at {connector}"
    return await purpose_account(
        conn,
        scope,
        clock,
        "payment_ledger_accounts",
        {"purpose": purpose, "currency": currency, "connector_account_id": connector},
        AccountCreate(
            name=name,
            type=_KINDS[purpose],
            currency=currency,
            balance_shards=_SHARDS.get(purpose, 1),
            metadata={"payments_purpose": purpose, "connector_account": connector},
        ),
    )


async def accounts(
    conn: Conn, scope: Scope, clock: Clock, currency: str, connector_account_id: str
) -> Accounts:
    # One query once they exist (every payment but the first); made one by one before.
    cur = await conn.execute(
        "SELECT purpose, ledger_account_id FROM payment_ledger_accounts WHERE merchant_id = %s"
        " AND livemode = %s AND currency = %s AND connector_account_id = ANY(%s)"
        " AND (purpose = 'provider_balance') = (connector_account_id <> '')",
        (scope.merchant_id, scope.livemode, currency, [connector_account_id, ""]),
    )
    found: dict[str, str] = {purpose: str(account) for purpose, account in await cur.fetchall()}
    for purpose in _KINDS:
        if purpose not in found:
            connector = connector_account_id if purpose == "provider_balance" else ""
            found[purpose] = await _account(conn, scope, clock, purpose, currency, connector)
    return Accounts(**found)


async def clearing_account(conn: Conn, scope: Scope, clock: Clock, currency: str) -> str:
    """Payment clearing, for billing to apply invoice payments from."""
    return await _account(conn, scope, clock, "payment_clearing", currency, "")


@dataclass(frozen=True, slots=True)
class Reference:
    """What a posting is about, written into its metadata for reconciliation."""

    payment_intent: str
    charge: str
    connector_account: str
    provider_id: str | None
    invoice: str | None = None

    def metadata(self, **more: str) -> dict[str, str]:
        found = {
            "payment_intent": self.payment_intent,
            "charge": self.charge,
            "connector_account": self.connector_account,
            **more,
        }
        if self.invoice is not None:
            found["invoice"] = self.invoice
        if self.provider_id is not None:
            found["provider_id"] = self.provider_id
        return found


def _transfer(
    external_id: str,
    debit: str,
    credit: str,
    amount: int,
    metadata: dict[str, str],
    *,
    pending: bool = False,
) -> TransactionCreate:
    return TransactionCreate(
        external_id=external_id,
        entries=[
            EntryCreate(account=debit, direction="debit", amount=amount),
            EntryCreate(account=credit, direction="credit", amount=amount),
        ],
        pending=pending,
        metadata=metadata,
    )


def _paid_to(a: Accounts, ref: Reference) -> str:
    """Where a customer's payment is credited: an invoice's, to clearing."""
    return a.payment_clearing if ref.invoice is not None else a.sales


def authorization_hold(a: Accounts, ref: Reference, amount: int) -> TransactionCreate:
    return _transfer(
        f"charge:{ref.charge}:authorization",
        a.provider_balance,
        _paid_to(a, ref),
        amount,
        ref.metadata(kind="authorization"),
        pending=True,
    )


def automatic_capture(a: Accounts, ref: Reference, amount: int) -> TransactionCreate:
    return _transfer(
        f"charge:{ref.charge}:capture",
        a.provider_balance,
        _paid_to(a, ref),
        amount,
        ref.metadata(kind="capture"),
    )


def processor_fee(a: Accounts, ref: Reference, fee: int) -> TransactionCreate:
    return _transfer(
        f"charge:{ref.charge}:fee",
        a.processor_fees,
        a.provider_balance,
        fee,
        ref.metadata(kind="fee"),
    )


def refund_hold(a: Accounts, ref: Reference, refund_id: str, amount: int) -> TransactionCreate:
    return _transfer(
        f"refund:{refund_id}",
        a.refunds,
        a.provider_balance,
        amount,
        ref.metadata(kind="refund", refund=refund_id),
        pending=True,
    )


def dispute_withdrawal(
    a: Accounts, ref: Reference, dispute_id: str, amount: int
) -> TransactionCreate:
    return _transfer(
        f"dispute:{dispute_id}:withdrawal",
        a.disputes,
        a.provider_balance,
        amount,
        ref.metadata(kind="dispute_withdrawal", dispute=dispute_id),
    )


def dispute_reinstatement(
    a: Accounts, ref: Reference, dispute_id: str, amount: int
) -> TransactionCreate:
    return _transfer(
        f"dispute:{dispute_id}:reinstatement",
        a.provider_balance,
        a.disputes,
        amount,
        ref.metadata(kind="dispute_reinstatement", dispute=dispute_id),
    )


async def post(conn: Conn, scope: Scope, clock: Clock, *transactions: TransactionCreate) -> None:
    """Write them; one already written (same external id, same content) is left as is."""
    await ledger.post_transactions(conn, scope, clock, transactions)


async def settle_hold(
    conn: Conn, scope: Scope, clock: Clock, external_id: str, amount: int | None
) -> None:
    """Post a pending hold (`amount` of it, the rest released), or void it when `amount`
    is 0. Settling it the same way again is a no-op."""
    found = (await ledger_repo.existing_external_ids(conn, scope, [external_id])).get(external_id)
    if found is None:
        raise LookupError(f"no ledger hold {external_id}")
    if amount == 0:
        await ledger.void_pending(conn, scope, clock, found)
    else:
        await ledger.post_pending(conn, scope, clock, found, amount)
