"""Invoice and credit note numbers: gapless per merchant and mode.

A number is taken under the counter row's lock in the transaction that finalizes the
invoice, so a rolled-back finalization gives its number back and no two invoices share
one. The lock is held to commit: finalizations of one merchant queue on it for the few
milliseconds each takes, which is the price of gapless numbers (legal in many countries).
"""

from __future__ import annotations

import hashlib

from payrail.billing.repository import Conn
from payrail.tenants.scope import Scope


def merchant_prefix(merchant_id: str, livemode: bool) -> str:
    """Eight letters that stay the merchant's; test-mode numbers are told apart by 'T'."""
    digest = hashlib.sha256(merchant_id.encode()).hexdigest().upper()[:7]
    return ("L" if livemode else "T") + digest


async def next_invoice_number(conn: Conn, scope: Scope) -> str:
    prefix = merchant_prefix(scope.merchant_id, scope.livemode)
    cur = await conn.execute(
        "INSERT INTO invoice_number_counters (merchant_id, livemode, prefix, next_number)"
        " VALUES (%s, %s, %s, 2) ON CONFLICT (merchant_id, livemode)"
        " DO UPDATE SET next_number = invoice_number_counters.next_number + 1"
        " RETURNING prefix, next_number - 1",
        (scope.merchant_id, scope.livemode, prefix),
    )
    found = await cur.fetchone()
    assert found is not None
    return f"{found[0]}-{int(found[1]):04d}"


async def next_credit_note_number(conn: Conn, invoice_id: str, invoice_number: str) -> str:
    """`<invoice number>-CN-<n>`: the invoice's row lock (held by the caller) orders them."""
    cur = await conn.execute(
        "SELECT count(*) FROM credit_notes WHERE invoice_id = %s", (invoice_id,)
    )
    found = await cur.fetchone()
    assert found is not None
    return f"{invoice_number}-CN-{int(found[0]) + 1}"
