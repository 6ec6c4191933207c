"""payrail's bank statement CSV: the lines of the merchant's bank account, for tying the
payouts providers report to the money that arrived.

The format, which a merchant exports from their bank or writes from its statement:
- UTF-8, with or without a byte order mark; comma-separated, fields quoted as CSV
  quotes them (a comma or quote in a description); CRLF or LF line ends.
- Line 1 is the header. The columns, by name in either case, in any order, others
  ignored:
  date         the booking date, YYYY-MM-DD
  amount       signed, in major units with at most the currency's decimals ("1250.00",
               "-3.5", "5000" for JPY): + money into the account, - money out
  currency     ISO 4217, either case
  reference    the bank's or the payer's reference (a payout's id when the provider
               sends one); may be blank
  description  the statement's text; may be blank
- One line per booking after it; blank lines are ignored.

    date,amount,currency,reference,description
    2026-02-02,54.55,USD,po_1QcX9yZ8wV7uT6sR,"STRIPE PAYOUT, ref po_1QcX9yZ8wV7uT6sR"
    2026-02-02,-12.00,USD,,Account fee
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import IO

from payrail.money.currencies import EXPONENTS
from payrail.recon.formats.common import (
    BankLine,
    ReportError,
    column_indexes,
    currency_code,
    decimal_minor_units,
    empty_file,
    records,
)

REQUIRED = ("date", "amount", "currency", "reference", "description")


def read(stream: IO[bytes], file: str) -> Iterator[BankLine]:
    """The lines of a bank statement, as they are read; ReportError on the first
    problem."""
    rows = records(stream, file)
    header = next(rows, None)
    if header is None:
        raise empty_file(file)
    header_line, names = header
    at = column_indexes([name.lower() for name in names], REQUIRED, (), file, header_line)
    width = len(names)
    i_date, i_amount, i_currency = at["date"], at["amount"], at["currency"]
    i_reference, i_description = at["reference"], at["description"]
    for line, row in rows:
        if len(row) != width:
            raise ReportError(file, line, None, f"has {len(row)} fields; the header {width}")
        column = "currency"
        try:
            currency = currency_code(row[i_currency])
            column = "amount"
            amount = decimal_minor_units(row[i_amount], currency, EXPONENTS[currency])
            column = "date"
            if len(row[i_date]) != 10 or row[i_date][4] != "-":
                raise ValueError(f"{row[i_date]!r} is not YYYY-MM-DD")
            booked_on = date.fromisoformat(row[i_date])
        except ValueError as error:
            raise ReportError(file, line, column, str(error)) from None
        yield BankLine(line, booked_on, currency, amount, row[i_reference], row[i_description])
