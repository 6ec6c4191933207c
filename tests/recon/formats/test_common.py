"""What every report parser stands on: amounts, the CSV records and their line numbers,
header columns, errors."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payrail.money.currencies import EXPONENTS
from payrail.recon.formats import adyen, bank, paypal, stripe
from payrail.recon.formats.common import (
    ReportError,
    column_indexes,
    decimal_minor_units,
    minor_units,
    records,
    text_lines,
)

CURRENCIES = ["USD", "JPY", "BHD", "CLF", "EUR"]


def read_records(data: bytes) -> list[tuple[int, list[str]]]:
    return list(records(io.BytesIO(data), "r.csv"))


def failure(data: bytes) -> ReportError:
    with pytest.raises(ReportError) as caught:
        read_records(data)
    return caught.value


# --- amounts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("120.00", "USD", 12000),
        ("-4.10", "USD", -410),
        ("0.00", "USD", 0),
        ("-0.00", "USD", 0),
        ("7.5", "EUR", 750),  # fewer decimals than the currency's
        ("25", "USD", 2500),
        ("5000", "JPY", 5000),
        ("-1500", "JPY", -1500),
        ("12.345", "BHD", 12345),
        ("1.2345", "CLF", 12345),
    ],
)
def test_amounts_in_minor_units(text: str, currency: str, minor: int) -> None:
    assert decimal_minor_units(text, currency, EXPONENTS[currency]) == minor


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("5000.00", "JPY"),  # JPY has no decimals
        ("12.345", "USD"),
        ("", "USD"),
        ("-", "USD"),
        (".55", "USD"),
        ("-.55", "USD"),
        ("5.", "JPY"),
        ("1,00", "EUR"),  # a decimal comma
        ("1_000.00", "USD"),
        ("+1.00", "USD"),
        (" 1.00", "USD"),
        ("1.0 ", "USD"),
        ("1.2.34", "USD"),
        ("12..3", "USD"),
        ("--1.00", "USD"),
        ("\u0661\u0662.00", "USD"),  # Arabic-Indic digits, which int() would take
        ("1e3", "USD"),
        ("NaN", "USD"),
    ],
)
def test_what_is_no_amount_is_refused(text: str, currency: str) -> None:
    with pytest.raises(ValueError):
        decimal_minor_units(text, currency, EXPONENTS[currency])


@given(st.text(alphabet="0123456789.-+_ e\u0661", max_size=8), st.sampled_from(CURRENCIES))
def test_the_quick_path_agrees_with_minor_units(text: str, currency: str) -> None:
    try:
        expected: int | None = minor_units(text, currency)
    except ValueError:
        expected = None
    try:
        quick: int | None = decimal_minor_units(text, currency, EXPONENTS[currency])
    except ValueError:
        quick = None
    assert quick == expected


@given(st.integers(min_value=-(10**15), max_value=10**15), st.sampled_from(CURRENCIES))
def test_amounts_as_reports_write_them(minor: int, currency: str) -> None:
    exponent = EXPONENTS[currency]
    digits = str(abs(minor)).rjust(exponent + 1, "0")
    text = ("-" if minor < 0 else "") + (
        f"{digits[:-exponent]}.{digits[-exponent:]}" if exponent else digits
    )
    assert decimal_minor_units(text, currency, exponent) == minor


# --- records ------------------------------------------------------------------------------


def test_records_number_physical_lines_and_skip_blank_ones() -> None:
    data = b'h1,h2\r\na,b\r\n\r\n"multi\r\nline",c\r\nd,"e ""quoted"", f"\r\n\ng,h'
    assert read_records(data) == [
        (1, ["h1", "h2"]),
        (2, ["a", "b"]),
        (5, ["multi\r\nline", "c"]),  # a record is numbered by the line it ends on
        (6, ["d", 'e "quoted", f']),
        (8, ["g", "h"]),
    ]


def test_a_byte_order_mark_is_not_part_of_the_first_name() -> None:
    assert read_records(codecs.BOM_UTF8 + b'"a",b\n1,2\n') == [(1, ["a", "b"]), (2, ["1", "2"])]
    assert read_records(codecs.BOM_UTF8 + b"a,b\n") == [(1, ["a", "b"])]


def test_an_empty_file_has_no_records() -> None:
    assert read_records(b"") == []
    assert read_records(codecs.BOM_UTF8) == []


def test_bytes_that_are_not_utf8_are_named_by_their_line() -> None:
    error = failure(b"a,b\n1,2\n3,\xff\n")
    assert (error.file, error.line, error.column) == ("r.csv", 3, None)
    assert "utf-8" in error.message
    # ... also inside a quoted field that runs over lines
    assert failure(b'a,b\n"1\n\xff",2\n').line == 3
    assert failure(b"\xfe,b\n").line == 1


def test_text_that_is_not_csv_is_named_by_its_line() -> None:
    assert failure(b'a,b\n1,2\n"open,3\nmore\n').line == 4  # the quote never closes
    assert failure(b"a,b\n1,2\x00\n").line == 2
    assert failure(b"a,b\n1,2\r3,4\n").line == 2  # a carriage return inside a line


fields = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"))


@given(st.lists(st.lists(fields, min_size=1, max_size=5), max_size=8))
def test_records_read_what_csv_reads(rows: list[list[str]]) -> None:
    text = io.StringIO(newline="")
    csv.writer(text).writerows(rows)
    data = text.getvalue()
    expected = [(line, row) for row, line in _with_lines(data) if row]
    assert read_records(data.encode()) == expected


def _with_lines(data: str) -> list[tuple[list[str], int]]:
    """csv's records with its line numbers, lines ending at LF only (as `wc -l` and
    editors count them; a lone CR inside a quoted field does not end one)."""
    reader = csv.reader(line.decode() for line in io.BytesIO(data.encode()))
    return [(row, reader.line_num) for row in reader]


def test_utf16_when_asked_and_the_file_says_so() -> None:
    for encoding in ("utf-16-le", "utf-16-be"):
        bom = codecs.BOM_UTF16_LE if encoding == "utf-16-le" else codecs.BOM_UTF16_BE
        data = bom + '"RH",ü\r\n"FH",01\r\n'.encode(encoding)
        assert list(text_lines(io.BytesIO(data), utf16=True)) == ['"RH",ü\r\n', '"FH",01\r\n']
    # Without `utf16` a UTF-16 file is bytes that are not UTF-8.
    with pytest.raises(UnicodeDecodeError):
        list(text_lines(io.BytesIO(codecs.BOM_UTF16_LE + "a".encode("utf-16-le"))))


# --- columns and errors -------------------------------------------------------------------


def test_columns_by_name_in_any_order_others_ignored() -> None:
    at = column_indexes(["x", "b", "a", "Transaction  Debit or Credit"], ["a", "b"], ["c"], "f", 1)
    assert at == {"b": 1, "a": 2}
    at = column_indexes(
        ["Transaction  Debit  or Credit"], ["Transaction Debit or Credit"], (), "f", 4
    )
    assert at == {"Transaction Debit or Credit": 0}


def test_a_missing_or_doubled_column_is_named() -> None:
    with pytest.raises(ReportError) as missing:
        column_indexes(["a", "c"], ["a", "b"], (), "f.csv", 4)
    assert (missing.value.file, missing.value.line, missing.value.column) == ("f.csv", 4, "b")
    with pytest.raises(ReportError) as doubled:
        column_indexes(["a", "b", "a"], ["a", "b"], (), "f.csv", 1)
    assert doubled.value.column == "a"
    # A column payrail does not read may be there twice.
    assert column_indexes(["x", "a", "x"], ["a"], (), "f.csv", 1) == {"a": 1}


def test_a_report_error_says_where() -> None:
    error = ReportError("STL.CSV", 12, "Fee Amount", "'x' is not a whole number")
    assert str(error) == "STL.CSV, line 12, column 'Fee Amount': 'x' is not a whole number"
    assert str(ReportError("a.csv", 1, None, "is empty")) == "a.csv, line 1: is empty"
    assert isinstance(error, ValueError)


# --- damaged files ------------------------------------------------------------------------

DATA = Path(__file__).parent / "data"
Reader = Callable[[IO[bytes], str], Iterator[Any]]
FILES: list[tuple[Reader, str]] = [
    (stripe.read, "stripe_balance_change.csv"),
    (stripe.read, "stripe_payout_reconciliation.csv"),
    (paypal.read, "STL-20260131.01.009.CSV"),
    (adyen.read, "settlement_detail_report_batch_57.csv"),
    (bank.read, "bank_statement.csv"),
]
damage = st.lists(
    st.tuples(
        st.integers(0, 2000),
        st.integers(0, 6),
        st.lists(st.sampled_from(list(b',"\r\n\x00\xff\xfe.-09aZ :/')), max_size=3).map(bytes),
    ),
    min_size=1,
    max_size=4,
)


@given(st.sampled_from(FILES), damage, st.sampled_from(["utf-8", "utf-16"]))
def test_a_damaged_file_is_read_or_refused_with_a_report_error(
    file: tuple[Reader, str], edits: list[tuple[int, int, bytes]], encoding: str
) -> None:
    read, name = file
    data = (DATA / name).read_bytes()
    if encoding == "utf-16" and read is paypal.read:
        data = data.decode("utf-8-sig").encode("utf-16")
    damaged = bytearray(data)
    for at, length, inserted in edits:
        start = at % (len(damaged) + 1)
        damaged[start : start + length] = inserted
    try:
        for _ in read(io.BytesIO(bytes(damaged)), name):
            pass
    except ReportError as error:
        assert error.file == name and error.line >= 1
