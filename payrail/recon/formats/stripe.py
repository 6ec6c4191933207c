"""Stripe's itemized reports: "Itemized balance change from activity"
(`balance_change_from_activity.itemized.*`) and "Itemized payout reconciliation"
(`payout_reconciliation.itemized.*`), one parser for both.

Columns are found by header name: Stripe's report versions and the `columns[]` a report
run asks for change which columns there are and in what order. Required:
balance_transaction_id, created_utc, currency, gross, fee, net, reporting_category,
source_id. Read when present: charge_id, payment_intent_id, automatic_payout_id. Others
are ignored.

Amounts are major-unit decimals ("10.00" USD, "5000" JPY) in the balance's currency,
lower-case in the file; gross, fee and net are Stripe's `amount`, `fee` and `net`, already
in the merchant's signs, and `net == gross - fee` is checked on every row. created_utc is
"YYYY-MM-DD HH:MM:SS" in UTC.

A row's reference is its source_id (ch_, re_, du_, po_...), or its balance_transaction_id
when Stripe gives none (its own fee rows); payment_reference is charge_id (a refund's or
dispute's charge), merchant_reference payment_intent_id, payout_reference
automatic_payout_id, each "" when blank or not in the file. A balance_transaction_id twice
in a file is not the parser's business: reconciliation calls it a duplicate.

Kinds by reporting_category. Connect transfers and their reversals are "other", not
"transfer": they send money to another account, where payrail's "transfer" is a
carry-over that moves nothing, and reconciliation would pass them by unseen. Stripe's
set of categories is open; one payrail does not know is "other", kept for review.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import IO

from payrail.money.currencies import EXPONENTS
from payrail.recon.formats.common import (
    Kind,
    ProviderRow,
    ReportError,
    column_indexes,
    currency_code,
    decimal_minor_units,
    empty_file,
    records,
)

REQUIRED = (
    "balance_transaction_id",
    "created_utc",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
)
OPTIONAL = ("charge_id", "payment_intent_id", "automatic_payout_id")

KINDS: dict[str, Kind] = {
    "charge": "charge",
    "refund": "refund",
    "refund_failure": "refund_failure",
    "dispute": "dispute",
    "dispute_reversal": "dispute_reversal",
    "fee": "fee",
    # Card network costs Stripe bills on rows of their own, like its other fees.
    "network_cost": "fee",
    "payout": "payout",
    "payout_reversal": "payout_reversal",
    "partial_capture_reversal": "adjustment",
    "other_adjustment": "adjustment",
}


def read(stream: IO[bytes], file: str) -> Iterator[ProviderRow]:
    """The rows of a Stripe itemized report, as they are read; ReportError on the first
    problem."""
    rows = records(stream, file)
    header = next(rows, None)
    if header is None:
        raise empty_file(file)
    header_line, names = header
    at = column_indexes(names, REQUIRED, OPTIONAL, file, header_line)
    width = len(names)
    i_txn, i_created, i_currency = at["balance_transaction_id"], at["created_utc"], at["currency"]
    i_gross, i_fee, i_net = at["gross"], at["fee"], at["net"]
    i_category, i_source = at["reporting_category"], at["source_id"]
    i_charge = at.get("charge_id")
    i_intent = at.get("payment_intent_id")
    i_payout = at.get("automatic_payout_id")
    units: dict[str, tuple[str, int]] = {}  # the file's currency text: (code, exponent)
    kinds = KINDS.get
    parse_time = datetime.fromisoformat
    new_row = tuple.__new__  # ProviderRow(...) without its Python-level __new__
    for line, row in rows:
        if len(row) != width:
            raise ReportError(file, line, None, f"has {len(row)} fields; the header {width}")
        unit = units.get(row[i_currency])
        if unit is None:
            unit = units[row[i_currency]] = _unit(row[i_currency], file, line)
        currency, exponent = unit
        column = "gross"
        try:
            gross = decimal_minor_units(row[i_gross], currency, exponent)
            column = "fee"
            fee = decimal_minor_units(row[i_fee], currency, exponent)
            column = "net"
            net = decimal_minor_units(row[i_net], currency, exponent)
            column = "created_utc"
            created = row[i_created]
            if len(created) != 19:
                raise ValueError(f"{created!r} is not YYYY-MM-DD HH:MM:SS")
            occurred_at = parse_time(created + "+00:00")
        except ValueError as error:
            raise ReportError(file, line, column, str(error)) from None
        if gross - fee != net:
            raise ReportError(
                file, line, "net", f"{row[i_net]} is not gross {row[i_gross]} less fee {row[i_fee]}"
            )
        txn = row[i_txn]
        if not txn:
            raise ReportError(file, line, "balance_transaction_id", "is empty")
        category = row[i_category]
        yield new_row(
            ProviderRow,
            (
                line,
                kinds(category, "other"),
                category,
                row[i_source] or txn,
                "" if i_charge is None else row[i_charge],
                "" if i_intent is None else row[i_intent],
                "" if i_payout is None else row[i_payout],
                currency,
                gross,
                fee,
                net,
                occurred_at,
            ),
        )


def _unit(text: str, file: str, line: int) -> tuple[str, int]:
    try:
        code = currency_code(text)
    except ValueError as error:
        raise ReportError(file, line, "currency", str(error)) from None
    return code, EXPONENTS[code]
