"""payrail's bank statement CSV.

data/bank_statement.csv is a constructed example: a Stripe payout, a bank fee, an Adyen
batch and a Stripe payout in JPY.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payrail.money.currencies import EXPONENTS
from payrail.recon.formats import read_bank_statement
from payrail.recon.formats.bank import read
from payrail.recon.formats.common import BankLine, ReportError

DATA = Path(__file__).parent / "data"
STATEMENT = (DATA / "bank_statement.csv").read_bytes()
TEXT = STATEMENT.decode()


def parse(data: bytes) -> list[BankLine]:
    return list(read(io.BytesIO(data), "statement.csv"))


def test_the_example() -> None:
    assert parse(STATEMENT) == [
        BankLine(
            2,
            date(2026, 2, 2),
            "USD",
            5455,
            "po_1QcX9yZ8wV7uT6sR",
            "STRIPE PAYOUT, ref po_1QcX9yZ8wV7uT6sR",
        ),
        BankLine(3, date(2026, 2, 2), "USD", -1200, "", "Account fee"),
        BankLine(4, date(2026, 2, 3), "EUR", 5623, "", "ADYEN N.V. batch 57"),
        BankLine(5, date(2026, 2, 3), "JPY", 4745, "po_1QdJ2kL3mN4oP5qR", "STRIPE PAYOUT"),
    ]


def test_columns_in_any_order_others_ignored_a_byte_order_mark() -> None:
    data = (
        "\ufeffBalance,Description,Reference,Currency,Amount,Value date,Date\r\n"
        '1000.00,"Transfer, in",REF1,usd,12.5,2026-02-01,2026-02-02\r\n'
    )
    assert parse(data.encode()) == [
        BankLine(2, date(2026, 2, 2), "USD", 1250, "REF1", "Transfer, in")
    ]


def test_the_registry_reads_bank_statements() -> None:
    assert read_bank_statement is read


def edit(old: str, new: str) -> bytes:
    assert old in TEXT
    return TEXT.replace(old, new, 1).encode()


@pytest.mark.parametrize(
    ("data", "line", "column"),
    [
        (edit("2026-02-02,-12.00", "02/02/2026,-12.00"), 3, "date"),
        (edit("2026-02-02,-12.00", "2026-02-30,-12.00"), 3, "date"),
        (edit("2026-02-02,-12.00", "20260202,-12.00"), 3, "date"),
        (edit("-12.00", "-12,00"), 3, None),  # a decimal comma: a field too many
        (edit("-12.00", "(12.00)"), 3, "amount"),
        (edit("-12.00", "-12.001"), 3, "amount"),
        (edit("4745,JPY", "4745.00,JPY"), 5, "amount"),  # JPY has no decimals
        (edit("56.23,eur", "56.23,euro"), 4, "currency"),
        (edit(",Account fee", ",Account fee,"), 3, None),
        (edit("date,amount", "day,amount"), 1, "date"),
        (edit(",description", ",memo"), 1, "description"),
        (b"", 1, None),
    ],
)
def test_a_bad_statement_is_refused_where_it_is_bad(
    data: bytes, line: int, column: str | None
) -> None:
    with pytest.raises(ReportError) as caught:
        parse(data)
    assert (caught.value.file, caught.value.line, caught.value.column) == (
        "statement.csv",
        line,
        column,
    )


def write(lines: list[BankLine]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["description", "reference", "currency", "date", "amount"])
    for line in lines:
        exponent = EXPONENTS[line.currency]
        digits = str(abs(line.amount)).rjust(exponent + 1, "0")
        amount = f"{digits[:-exponent]}.{digits[-exponent:]}" if exponent else digits
        writer.writerow(
            [
                line.description,
                line.reference,
                line.currency.lower(),
                line.booked_on.isoformat(),
                ("-" if line.amount < 0 else "") + amount,
            ]
        )
    return out.getvalue().encode()


text = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=20)


@st.composite
def statements(draw: st.DrawFn) -> list[BankLine]:
    return [
        BankLine(
            number + 2,
            draw(st.dates(date(1990, 1, 1), date(2100, 1, 1))),
            draw(st.sampled_from(["USD", "JPY", "BHD", "EUR"])),
            draw(st.integers(-(10**15), 10**15)),
            draw(text),
            draw(text),
        )
        for number in range(draw(st.integers(0, 6)))
    ]


@given(statements())
def test_what_is_written_is_read(lines: list[BankLine]) -> None:
    assert parse(write(lines)) == lines
