"""What every settlement report parser gives reconciliation: one `ProviderRow` per money
movement, in payrail's terms, and a `ReportError` that names file, line and column.

A row is a NamedTuple, not a dataclass: a report has millions of them, and a tuple goes
to PostgreSQL's COPY as it is.

Also what the parsers share to read a file as it streams: its text, its CSV records with
their physical (LF-ended) line numbers, columns by header name, and amounts.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Collection, Iterator
from datetime import date, datetime
from itertools import chain
from typing import IO, TYPE_CHECKING, Literal, NamedTuple, get_args

if TYPE_CHECKING:
    from _csv import Reader

    from _typeshed import WriteableBuffer

from payrail.money.currencies import EXPONENTS

# What a row did to the merchant's balance at the provider.
Kind = Literal[
    "charge",  # a payment settled: money in
    "refund",  # money back to a customer
    "refund_failure",  # a refund that failed: its money comes back
    "dispute",  # a chargeback: money taken back
    "dispute_reversal",  # a dispute won: money reinstated
    "fee",  # a fee billed on its own row, not on a payment's
    "payout",  # money sent to the merchant's bank
    "payout_reversal",  # a payout that came back
    "transfer",  # balance carried between the provider's own batches; moves nothing
    "adjustment",  # a correction by the provider
    "other",  # a category payrail does not know; kept, never dropped
]
KINDS: tuple[str, ...] = get_args(Kind)


class ProviderRow(NamedTuple):
    """One money movement a provider reported, in minor units of `currency`.

    Signs are the merchant's: `amount` and `net` are positive when money came into the
    merchant's balance at the provider; `fee` is positive when the provider charged one.
    `net == amount - fee` always holds.
    """

    line: int  # the physical line of the file it came from, 1-based
    kind: Kind
    category: str  # the provider's own label: reporting_category, T-code, Type
    reference: str  # the provider's id of what the row is about (payment, refund, ...)
    payment_reference: str  # the provider's id of the original payment; "" if none
    merchant_reference: str  # the merchant's reference (order, invoice); "" if none
    payout_reference: str  # the payout or batch that settles the row; "" if none
    currency: str  # ISO 4217, upper case
    amount: int
    fee: int
    net: int
    occurred_at: datetime  # aware


class BankLine(NamedTuple):
    """One line of a bank statement: money into (+) or out of (-) the merchant's bank."""

    line: int
    booked_on: date
    currency: str
    amount: int
    reference: str
    description: str


class ReportError(ValueError):
    """A report payrail will not ingest, with where it went wrong."""

    def __init__(self, file: str, line: int, column: str | None, message: str) -> None:
        self.file, self.line, self.column, self.message = file, line, column, message
        where = f"{file}, line {line}" + (f", column {column!r}" if column else "")
        super().__init__(f"{where}: {message}")


# An amount of more minor units than this many digits is no real movement, and its sums
# would outgrow PostgreSQL's bigint: refused by line and column, not by COPY.
MAX_DIGITS = 18

_AMOUNT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def minor_units(text: str, currency: str) -> int:
    """A major-unit decimal string ("12.34", "-0.5", "5000") in `currency`'s minor units.
    Raises ValueError for anything else, or for more decimals than the currency has."""
    if _AMOUNT.fullmatch(text) is None:
        raise ValueError(f"{text!r} is not a decimal amount")
    whole, _, fraction = text.partition(".")
    exponent = EXPONENTS[currency]
    if len(fraction) > exponent:
        raise ValueError(f"{text!r} has more decimals than {currency}'s {exponent}")
    digits = whole.lstrip("-") + fraction.ljust(exponent, "0")
    if len(digits.lstrip("0")) > MAX_DIGITS:
        raise ValueError(f"{text!r} is more than payrail keeps ({MAX_DIGITS} digits)")
    return int(whole + fraction.ljust(exponent, "0"))


def currency_code(text: str) -> str:
    """An ISO 4217 code in either case, upper-cased; ValueError if payrail doesn't know it."""
    code = text.upper()
    if code not in EXPONENTS:
        raise ValueError(f"{text!r} is not an ISO 4217 currency code")
    return code


def decimal_minor_units(text: str, currency: str, exponent: int) -> int:
    """`minor_units`, with `exponent` the currency's, quicker for the shape reports write
    (exactly `exponent` decimals, or none for a zero-decimal currency): this runs for
    every amount of million-row files."""
    if exponent:
        cut = len(text) - exponent - 1
        # The point removed, only digits are left if it was the only one.
        digits = text.replace(".", "", 1) if cut > 0 and text[cut] == "." else ""
    else:
        cut, digits = len(text), text
    # isascii: int() would take other scripts' digits, which no report format has.
    if (
        text.isascii()
        and len(digits) <= MAX_DIGITS
        and (digits.isdigit() or (cut > 1 and digits[:1] == "-" and digits[1:].isdigit()))
    ):
        return int(digits)
    return minor_units(text, currency)


class _Prefixed(io.RawIOBase):
    """The bytes already read from a stream, then the rest of it."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._head[: len(view)] or self._rest.read(len(view))
        self._head = self._head[len(data) :]
        view[: len(data)] = data
        return len(data)


def text_lines(stream: IO[bytes], *, utf16: bool = False) -> Iterator[str]:
    """The lines of a report as text: UTF-8 with or without a byte order mark, or, with
    `utf16`, UTF-16 when the file starts with its byte order mark. Decoded lazily, line by
    line, so that a bad byte raises UnicodeDecodeError at its own line (see `records`)."""
    head = stream.readline()
    if utf16 and head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raw = io.BufferedReader(_Prefixed(head, stream))
        return io.TextIOWrapper(raw, encoding="utf-16", newline="")
    if not head:
        return iter(())
    return map(bytes.decode, chain((head.removeprefix(codecs.BOM_UTF8),), stream))


def records(stream: IO[bytes], file: str) -> Iterator[tuple[int, list[str]]]:
    """The records of a UTF-8 CSV report with the physical line each ends on, blank lines
    left out; ReportError for bytes that are not UTF-8 or text that is not CSV.

    A line without quotes is split at its commas: what csv makes of it, in half the
    time. A line with one goes to csv, which reads on into the next lines when a quoted
    field holds a line break."""
    lines = text_lines(stream)
    line = 0
    reader: Reader | None = None  # of a record that has quotes, while it is read
    try:
        for text in lines:
            line += 1
            fields = text.rstrip("\r\n")
            if '"' in fields or "\r" in fields or "\0" in fields:
                reader = csv.reader(chain((text,), lines), strict=True)
                row = next(reader, [])
                line += reader.line_num - 1
                reader = None
                if "\0" in "".join(row):
                    raise nul_character(file, line)
                yield line, row
            elif fields:
                yield line, fields.split(",")
    except UnicodeDecodeError as error:
        # The line that failed to decode is the one after the last one read.
        where = line + 1 if reader is None else line + reader.line_num
        raise ReportError(file, where, None, f"is not {error.encoding} text") from None
    except csv.Error as error:
        where = line if reader is None else line + reader.line_num - 1
        raise ReportError(file, where, None, f"is not CSV: {error}") from None


def nul_character(file: str, line: int) -> ReportError:
    return ReportError(file, line, None, "has a NUL character")


def column_name(text: str) -> str:
    """A header cell as a name: runs of white space are one space (PayPal's older files
    have "Transaction  Debit or Credit")."""
    return " ".join(text.split())


def column_indexes(
    header: list[str],
    required: Collection[str],
    optional: Collection[str],
    file: str,
    line: int,
) -> dict[str, int]:
    """Where each column payrail reads is in a header row, by name: the required ones,
    and those of `optional` the file has. Other columns are ignored; a column payrail
    reads must not be there twice."""
    found: dict[str, int] = {}
    for index, cell in enumerate(header):
        name = column_name(cell)
        if name in required or name in optional:
            if name in found:
                raise ReportError(file, line, name, "the header has this column twice")
            found[name] = index
    for name in required:
        if name not in found:
            raise ReportError(file, line, name, "the header has no such column")
    return found


def empty_file(file: str) -> ReportError:
    return ReportError(file, 1, None, "is empty: it has no header row")
