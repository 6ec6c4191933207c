"""Where billing's money moves in the ledger.

Per merchant, mode and currency:

- `receivable` (asset): what customers owe on open invoices.
- `deferred_revenue` (liability): invoiced for service not yet delivered (a prepaid
  period); moved to revenue as the period passes (billing/revenue.py).
- `subscription_revenue` (revenue): earned.
- `customer_credit` (liability): credit a customer holds (downgrade prorations, credit
  notes) until a later invoice uses it.
- `bad_debt` (expense): receivables written off when an invoice is marked uncollectible.
- payments' `payment_clearing` (liability): what an invoice's payment brought in, until
  it is applied to the receivable here.

| event | external id | entries |
|---|---|---|
| invoice finalized | `invoice:{in}:finalized` | Dr receivable, Dr customer_credit (used), |
| | | Cr deferred_revenue (total) |
| invoice paid | `invoice:{in}:payment:{pi}` | Dr payment_clearing, Cr receivable |
| revenue recognised | `revrec:{run}:{currency}` | Dr deferred_revenue, Cr subscription_revenue |
| invoice voided | `invoice:{in}:void` | the finalization reversed for what is unpaid |
| marked uncollectible | `invoice:{in}:uncollectible` | Dr bad_debt, Cr receivable |
| credit note | `credit_note:{cn}` | Dr subscription_revenue, Cr receivable or customer_credit |

A negative line (a proration credit) runs the same entries the other way. Each posting
is one transaction whose entries net per account, so a retried step posts it once
(same external id, same content).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from payrail.clock import Clock
from payrail.ledger import service as ledger
from payrail.ledger.purposes import movement, purpose_account
from payrail.ledger.schemas import AccountCreate, TransactionCreate
from payrail.payments import postings as payment_postings
from payrail.tenants.scope import Scope

Conn = payment_postings.Conn
Purpose = Literal[
    "receivable", "deferred_revenue", "subscription_revenue", "customer_credit", "bad_debt"
]
_KINDS: dict[Purpose, Literal["asset", "liability", "revenue", "expense"]] = {
    "receivable": "asset",
    "deferred_revenue": "liability",
    "subscription_revenue": "revenue",
    "customer_credit": "liability",
    "bad_debt": "expense",
}
# Every renewal touches receivable and deferred revenue: shards keep concurrent billing
# workers from queueing on one balance row (as payments' sales account does).
_SHARDS: dict[Purpose, int] = {"receivable": 16, "deferred_revenue": 16}


@dataclass(frozen=True, slots=True)
class Accounts:
    receivable: str
    deferred_revenue: str
    subscription_revenue: str
    customer_credit: str
    bad_debt: str
    payment_clearing: str


async def _account(conn: Conn, scope: Scope, clock: Clock, purpose: Purpose, currency: str) -> str:
    return await purpose_account(
        conn,
        scope,
        clock,
        "billing_ledger_accounts",
        {"purpose": purpose, "currency": currency},
        AccountCreate(
            name=f"billing {purpose.replace('_', ' ')} {currency}",
            type=_KINDS[purpose],
            currency=currency,
            balance_shards=_SHARDS.get(purpose, 1),
            metadata={"billing_purpose": purpose},
        ),
    )


async def accounts(conn: Conn, scope: Scope, clock: Clock, currency: str) -> Accounts:
    cur = await conn.execute(
        "SELECT purpose, ledger_account_id FROM billing_ledger_accounts WHERE merchant_id = %s"
        " AND livemode = %s AND currency = %s",
        (scope.merchant_id, scope.livemode, currency),
    )
    found: dict[str, str] = {purpose: str(account) for purpose, account in await cur.fetchall()}
    for purpose in _KINDS:
        if purpose not in found:
            found[purpose] = await _account(conn, scope, clock, purpose, currency)
    clearing = await payment_postings.clearing_account(conn, scope, clock, currency)
    return Accounts(**found, payment_clearing=clearing)


def finalized(a: Accounts, invoice: dict[str, Any], credit_used: int) -> TransactionCreate | None:
    """The invoice's total deferred, owed as receivable less the customer credit it used.
    A negative total (a credit invoice) becomes customer credit instead."""
    total = invoice["total"]
    credit_made = -total if total < 0 else 0
    return movement(
        f"invoice:{invoice['id']}:finalized",
        [
            (a.receivable, invoice["amount_due"]),
            (a.customer_credit, credit_used - credit_made),
            (a.deferred_revenue, -total),
        ],
        {"invoice": invoice["id"], "kind": "invoice_finalized"},
    )


def payment_applied(
    a: Accounts, invoice_id: str, intent_id: str, amount: int, *, written_off: bool = False
) -> TransactionCreate | None:
    """A payment applied from clearing; to a receivable written off, it recovers the
    bad debt instead."""
    return movement(
        f"invoice:{invoice_id}:payment:{intent_id}",
        [(a.payment_clearing, amount), (a.bad_debt if written_off else a.receivable, -amount)],
        {"invoice": invoice_id, "payment_intent": intent_id, "kind": "invoice_payment"},
    )


def voided(
    a: Accounts, invoice_id: str, *, owed: int, credit_used: int, unrecognized: int
) -> TransactionCreate | None:
    """The finalization taken back: what is owed leaves receivable, the credit used goes
    back to the customer; deferred revenue gives back what it still holds of the
    invoice, and revenue the rest (what was recognised, less credit notes already
    taken out of it)."""
    taken_back = owed + credit_used
    return movement(
        f"invoice:{invoice_id}:void",
        [
            (a.receivable, -owed),
            (a.customer_credit, -credit_used),
            (a.deferred_revenue, unrecognized),
            (a.subscription_revenue, taken_back - unrecognized),
        ],
        {"invoice": invoice_id, "kind": "invoice_void"},
    )


def written_off(a: Accounts, invoice: dict[str, Any]) -> TransactionCreate | None:
    owed = invoice["amount_remaining"]
    return movement(
        f"invoice:{invoice['id']}:uncollectible",
        [(a.bad_debt, owed), (a.receivable, -owed)],
        {"invoice": invoice["id"], "kind": "invoice_uncollectible"},
    )


def credited(
    a: Accounts, credit_note_id: str, invoice_id: str, *, off_receivable: int, to_balance: int
) -> TransactionCreate | None:
    return movement(
        f"credit_note:{credit_note_id}",
        [
            (a.subscription_revenue, off_receivable + to_balance),
            (a.receivable, -off_receivable),
            (a.customer_credit, -to_balance),
        ],
        {"invoice": invoice_id, "credit_note": credit_note_id, "kind": "credit_note"},
    )


def recognized(a: Accounts, run_id: str, currency: str, amount: int) -> TransactionCreate | None:
    return movement(
        f"revrec:{run_id}:{currency}",
        [(a.deferred_revenue, amount), (a.subscription_revenue, -amount)],
        {"kind": "revenue_recognition", "run": run_id},
    )


async def post(conn: Conn, scope: Scope, clock: Clock, *moves: TransactionCreate | None) -> None:
    batch = [m for m in moves if m is not None]
    if batch:
        await ledger.post_transactions(conn, scope, clock, batch)
