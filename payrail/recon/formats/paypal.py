"""PayPal's Settlement Report (STL-yyyymmdd.*.CSV, report version 009 and its
neighbours): every event that moved the PayPal balance, framed in header and footer
records that carry counts and per-currency totals, all of which are checked.

Encoding: UTF-8, with PayPal's byte order mark or without; UTF-16 when the file starts
with a UTF-16 byte order mark (PayPal's older files).

Framing. Field 0 of each record is its type, and a file is
    RH, FH, (SH, CH, SB*, SF*, SC)+, RF*, RC, FF
Anything else is rejected: another order, an unknown type, records after FF, no FF.
Blank lines are ignored. Each CH names the columns of the SB records after it; columns
are found by name (runs of white space, and so PayPal's "Transaction  Debit or Credit",
and letter case do not matter), and unknown ones ignored. Fields named in errors for the
other records: RH "Report Version", FH "File Sequence Number", SC "Section Record
Count", RC "Report Record Count", FF "File Record Count", and SF/RF as below.

Checks, and what they rest on:
- SC[1] is the number of SB records in its section, RC[1] the number in the file. PayPal
  splits a report of over a million records into several files, and only the last has
  RC: payrail takes a report in one file, and a part of a split one fails here, loudly,
  rather than being reconciled as if it were the whole day.
- SF: one per currency in a section, and one for each currency the section's SB records
  are in. PayPal's footer layout is inferred, not confirmed: from PayPal's field names and
  a real footer, fields 2 to 5 are "Total Gross Amount Credit", "Total Gross Amount
  Debit", "Total Fee Amount Credit" and "Total Fee Amount Debit", and each must equal the
  sum over the section's SB records in that currency (gross by Gross Transaction
  Currency, fees by Fee Currency). Had PayPal another order, a file would be refused at its SF
  line, naming the field: the check can refuse a good file, never pass a file that lost
  or changed a record.
- RF: one per currency, with the same four totals, each the sum of the file's SF records
  in that currency; a currency whose SF totals are not all zero must have one.
- Not checked, their meaning being unconfirmed: the six balance pairs of SF and RF (holds
  move money between them), the count that ends SF and RF, and FF[1] beyond being a count.

Amounts are unsigned integers in hundredths of the major unit for every currency (PayPal
writes 100 JPY and 100.00 USD alike as 10000): JPY 15000 is 150 JPY, 150 minor units; BHD
1234 is 12.34 BHD, 12340 minor units. An amount that is no whole number of minor units is
rejected. Signs come from Transaction Debit or Credit (CR into the balance, DR out) and
Fee Debit or Credit (DR a fee charged, so fee > 0; CR a fee given back, as on a refund,
so fee < 0); net = amount - fee. The fee must be in the gross currency or blank.

Kinds by Transaction Event Code (PayPal: its event group, T + 2 digits, is what
reconciliation needs):
- T00xx payments: charge when CR; a payment the merchant sent (DR) is other.
- T01xx PayPal's own fees: fee, the fee being the row's gross (so amount and net < 0).
- T0400 withdrawal to the bank, T0401 AutoSweep: payout when DR, payout_reversal when CR.
- T1106 reversal by PayPal, T1201 chargeback: dispute. T1202 chargeback reversal:
  dispute_reversal. T1107 refund: refund.
- T1108 fee reversal: fee, its gross a credit, so a fee row with net > 0, which
  reconciliation takes off the fees of the day, the way Stripe's returned fees read.
- T1200, T1900 general adjustments: adjustment.
- Any other code (currency conversions, bank funding, holds and their releases,
  transfers between PayPal accounts, codes PayPal adds): other, kept for review.

References: reference is the Transaction ID; payment_reference the PayPal Reference ID
when its type is TXN (a refund's or chargeback's payment), and a charge's own Transaction
ID when it has none; merchant_reference the Invoice ID; payout_reference, on payouts only,
the Bank Reference ID (what the bank statement shows), or the Transaction ID when there
is none. occurred_at is the Transaction Completion Date, "yyyy/mm/dd HH:MM:SS +hhmm".
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import IO, TYPE_CHECKING

from payrail.money.currencies import EXPONENTS
from payrail.recon.formats.common import (
    Kind,
    ProviderRow,
    ReportError,
    column_indexes,
    currency_code,
    empty_file,
    nul_character,
    text_lines,
)

if TYPE_CHECKING:
    from _csv import Reader

TRANSACTION_ID = "Transaction ID"
INVOICE_ID = "Invoice ID"
REFERENCE_ID = "PayPal Reference ID"
REFERENCE_TYPE = "PayPal Reference ID Type"
EVENT_CODE = "Transaction Event Code"
COMPLETED = "Transaction Completion Date"
DIRECTION = "Transaction Debit or Credit"
GROSS = "Gross Transaction Amount"
CURRENCY = "Gross Transaction Currency"
FEE_DIRECTION = "Fee Debit or Credit"
FEE = "Fee Amount"
FEE_CURRENCY = "Fee Currency"
BANK_REFERENCE = "Bank Reference ID"  # since version 8
REQUIRED = (
    TRANSACTION_ID,
    INVOICE_ID,
    REFERENCE_ID,
    REFERENCE_TYPE,
    EVENT_CODE,
    COMPLETED,
    DIRECTION,
    GROSS,
    CURRENCY,
    FEE_DIRECTION,
    FEE,
    FEE_CURRENCY,
)
OPTIONAL = (BANK_REFERENCE,)
# Fields 2 to 5 of SF and RF, in their order (inferred: see the module's docstring).
TOTALS = (
    "Total Gross Amount Credit",
    "Total Gross Amount Debit",
    "Total Fee Amount Credit",
    "Total Fee Amount Debit",
)
# What may follow each record type; "" is the start of the file.
FOLLOWS: dict[str, tuple[str, ...]] = {
    "": ("RH",),
    "RH": ("FH",),
    "FH": ("SH",),
    "SH": ("CH",),
    "CH": ("SB", "SF", "SC"),
    "SB": ("SB", "SF", "SC"),
    "SF": ("SF", "SC"),
    "SC": ("SH", "RF", "RC"),
    "RF": ("RF", "RC"),
    "RC": ("FF",),
    "FF": (),
}
# The fewest fields each framing record has for what is read of it.
FIELDS = {"RH": 5, "FH": 2, "SH": 1, "CH": 1, "SF": 6, "SC": 2, "RF": 6, "RC": 2, "FF": 2}
KINDS: dict[str, Kind] = {
    "T0400": "payout",
    "T0401": "payout",
    "T1106": "dispute",
    "T1107": "refund",
    "T1108": "fee",
    "T1200": "adjustment",
    "T1201": "dispute",
    "T1202": "dispute_reversal",
    "T1900": "adjustment",
}


def kind_of(event_code: str, credit: bool) -> Kind:
    """What a T-code did to the merchant's balance, CR (`credit`) or DR."""
    kind = KINDS.get(event_code)
    if kind == "payout":
        return "payout" if not credit else "payout_reversal"
    if kind is not None:
        return kind
    if event_code.startswith("T00"):
        return "charge" if credit else "other"
    if event_code.startswith("T01"):
        return "fee"
    return "other"


def read(stream: IO[bytes], file: str) -> Iterator[ProviderRow]:
    """The SB records of a PayPal settlement report as rows, as they are read; the
    framing, counts and totals checked as they come, the file's at its end. ReportError
    on the first problem."""
    reader = csv.reader(_without_nul(text_lines(stream, utf16=True), file), strict=True)
    with _reading(file, reader):
        yield from _Report(file).rows(reader)


@contextmanager
def _reading(file: str, reader: Reader) -> Iterator[None]:
    """What the decoder and the CSV reader raise, as a ReportError at the line they hit."""
    try:
        yield
    except UnicodeDecodeError as error:
        # The line that failed to decode is the one after the last the reader got.
        where = reader.line_num + 1
        raise ReportError(file, where, None, f"is not {error.encoding} text") from None
    except csv.Error as error:
        raise ReportError(file, reader.line_num, None, f"is not CSV: {error}") from None


def _without_nul(lines: Iterator[str], file: str) -> Iterator[str]:
    """The lines, but ReportError for one with a NUL character, which csv reads and
    PostgreSQL's text cannot hold."""
    for line, text in enumerate(lines, 1):
        if "\0" in text:
            raise nul_character(file, line)
        yield text


def _key(name: str) -> str:
    return "".join(name.split()).casefold()


_CANONICAL = {_key(name): name for name in (*REQUIRED, *OPTIONAL)}


class _Report:
    """One file, read record by record: what it has added up so far."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.width = 0  # fields of an SB record, from its CH
        self.at: dict[str, int] = {}
        self.units: dict[str, tuple[str, int, int]] = {}  # currency text: see unit()
        self.kinds: dict[str, Kind] = {}  # by event code + CR or DR
        self.bodies = 0  # SB records in the file
        self.section_bodies = 0
        self.section: dict[str, list[int]] = {}  # currency: TOTALS of its SB records
        self.footers: set[str] = set()  # currencies of the section's SF records
        self.sums: dict[str, list[int]] = {}  # currency: TOTALS over the file's SF records
        self.report_footers: set[str] = set()

    def error(self, line: int, column: str | None, message: str) -> ReportError:
        return ReportError(self.file, line, column, message)

    def rows(self, reader: Reader) -> Iterator[ProviderRow]:
        previous = ""
        for row in reader:
            if not row:
                continue
            record = row[0]
            line = reader.line_num
            if record == "SB" and (previous == "SB" or previous == "CH"):
                previous = "SB"
                yield self.body(row, line)
                continue
            if record not in FOLLOWS:
                raise self.error(line, None, f"{record!r} is not a settlement report record")
            if record not in FOLLOWS[previous]:
                expected = " or ".join(FOLLOWS[previous]) or "nothing"
                after = f"after {previous}" if previous else "at the start"
                raise self.error(line, None, f"{record} record {after}; expected {expected}")
            self.frame(record, row, line)
            previous = record
        if previous == "":
            raise empty_file(self.file)
        if previous != "FF":
            raise self.error(reader.line_num + 1, None, "the file ends without its FF record")

    def frame(self, record: str, row: list[str], line: int) -> None:
        if len(row) < FIELDS[record]:
            raise self.error(
                line, None, f"has {len(row)} fields; a {record} record has {FIELDS[record]}"
            )
        if record == "RH":
            self.count(row[4], line, "Report Version")
        elif record == "FH":
            self.count(row[1], line, "File Sequence Number")
        elif record == "SH":
            self.section_bodies, self.section, self.footers = 0, {}, set()
        elif record == "CH":
            named = [_CANONICAL.get(_key(cell), cell) for cell in row]
            self.at = column_indexes(named, REQUIRED, OPTIONAL, self.file, line)
            self.width = len(row)
        elif record == "SF":
            code = self.footer_currency(row[1], self.footers, line)
            self.tie(row, line, self.section.get(code), "the section's SB records")
            sums = self.sums.setdefault(code, [0, 0, 0, 0])
            for index in range(len(TOTALS)):
                sums[index] += int(row[2 + index])
        elif record == "SC":
            self.section_count(row, line)
        elif record == "RF":
            code = self.footer_currency(row[1], self.report_footers, line)
            self.tie(row, line, self.sums.get(code), "the file's SF records")
        elif record == "RC":
            for code, sums in sorted(self.sums.items()):
                if any(sums) and code not in self.report_footers:
                    raise self.error(line, None, f"the file has SF totals in {code} but no RF")
            if self.count(row[1], line, "Report Record Count") != self.bodies:
                raise self.error(
                    line, "Report Record Count", f"is {row[1]}; the file has {self.bodies} SB"
                )
        else:  # FF
            self.count(row[1], line, "File Record Count")

    def section_count(self, row: list[str], line: int) -> None:
        for code in sorted(self.section):
            if code not in self.footers:
                raise self.error(line, None, f"the section has SB records in {code} but no SF")
        if self.count(row[1], line, "Section Record Count") != self.section_bodies:
            raise self.error(
                line,
                "Section Record Count",
                f"is {row[1]}; the section has {self.section_bodies} SB",
            )

    def footer_currency(self, text: str, seen: set[str], line: int) -> str:
        try:
            code = currency_code(text)
        except ValueError as error:
            raise self.error(line, "Currency", str(error)) from None
        if code in seen:
            raise self.error(line, "Currency", f"a second footer for {code}")
        seen.add(code)
        return code

    def tie(self, row: list[str], line: int, sums: list[int] | None, what: str) -> None:
        for index, column in enumerate(TOTALS):
            stated = self.count(row[2 + index], line, column)
            added = sums[index] if sums else 0
            if stated != added:
                raise self.error(line, column, f"is {stated}; {what} add up to {added}")

    def count(self, text: str, line: int, column: str) -> int:
        if not (text.isdigit() and text.isascii()):
            raise self.error(line, column, f"{text!r} is not a whole number")
        return int(text)

    def body(self, row: list[str], line: int) -> ProviderRow:
        if len(row) != self.width:
            raise self.error(line, None, f"has {len(row)} fields; its CH record {self.width}")
        at = self.at
        self.bodies += 1
        self.section_bodies += 1
        direction = row[at[DIRECTION]]
        if direction != "CR" and direction != "DR":
            raise self.error(line, DIRECTION, f"{direction!r} is neither CR nor DR")
        gross = self.count(row[at[GROSS]], line, GROSS)
        unit = self.units.get(row[at[CURRENCY]])
        if unit is None:
            unit = self.units[row[at[CURRENCY]]] = self.unit(row[at[CURRENCY]], line)
        code = unit[0]
        fee_direction, fee_text = row[at[FEE_DIRECTION]], row[at[FEE]]
        if fee_direction == "DR" or fee_direction == "CR":
            fee = self.count(fee_text, line, FEE)
            fee_currency = row[at[FEE_CURRENCY]]
            if fee_currency and fee_currency.upper() != code:
                raise self.error(line, FEE_CURRENCY, f"{fee_currency!r} is not {code}")
        elif fee_direction:
            raise self.error(line, FEE_DIRECTION, f"{fee_direction!r} is neither CR nor DR")
        elif fee_text.strip("0"):
            raise self.error(line, FEE, f"{fee_text!r} without a Fee Debit or Credit")
        else:
            fee = 0
        totals = self.section.get(code)
        if totals is None:
            totals = self.section[code] = [0, 0, 0, 0]
        totals[0 if direction == "CR" else 1] += gross
        if fee:
            totals[2 if fee_direction == "CR" else 3] += fee
        amount = self.minor(gross, unit, line, GROSS)
        fee = self.minor(fee, unit, line, FEE)
        if direction == "DR":
            amount = -amount
        if fee_direction == "CR":
            fee = -fee
        event_code = row[at[EVENT_CODE]]
        kind = self.kinds.get(event_code + direction)
        if kind is None:
            kind = self.kinds[event_code + direction] = kind_of(event_code, direction == "CR")
        transaction_id = row[at[TRANSACTION_ID]]
        if not transaction_id:
            raise self.error(line, TRANSACTION_ID, "is empty")
        payment = row[at[REFERENCE_ID]] if row[at[REFERENCE_TYPE]] == "TXN" else ""
        if kind == "charge" and not payment:
            payment = transaction_id
        payout = ""
        if kind == "payout" or kind == "payout_reversal":
            bank = at.get(BANK_REFERENCE)
            payout = (row[bank] if bank is not None else "") or transaction_id
        completed = row[at[COMPLETED]]
        try:
            if len(completed) != 25 or completed[19] != " ":
                raise ValueError
            occurred_at = datetime.fromisoformat(completed[:19].replace("/", "-") + completed[20:])
        except ValueError:
            raise self.error(
                line, COMPLETED, f"{completed!r} is not yyyy/mm/dd HH:MM:SS +hhmm"
            ) from None
        return ProviderRow(
            line,
            kind,
            event_code,
            transaction_id,
            payment,
            row[at[INVOICE_ID]],
            payout,
            code,
            amount,
            fee,
            amount - fee,
            occurred_at,
        )

    def unit(self, text: str, line: int) -> tuple[str, int, int]:
        """A currency's code and how its hundredths become minor units: times, divided by."""
        try:
            code = currency_code(text)
        except ValueError as error:
            raise self.error(line, CURRENCY, str(error)) from None
        exponent = EXPONENTS[code]
        if exponent >= 2:
            return code, 10 ** (exponent - 2), 1
        return code, 1, 10 ** (2 - exponent)

    def minor(self, hundredths: int, unit: tuple[str, int, int], line: int, column: str) -> int:
        code, times, divided_by = unit
        whole, rest = divmod(hundredths * times, divided_by)
        if rest:
            raise self.error(line, column, f"{hundredths} is not a whole number of {code} units")
        return whole
