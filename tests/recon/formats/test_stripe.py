"""Stripe's itemized balance change and payout reconciliation reports.

The files under data/ are constructed examples, not Stripe output: the research notes'
example (stripe_balance_change.csv) and one in the payout reconciliation column order,
with extra columns, JPY, a byte order mark, CRLF and a description over two lines
(stripe_payout_reconciliation.csv).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payrail.money.currencies import EXPONENTS
from payrail.recon.formats import PARSERS, stripe
from payrail.recon.formats.common import ProviderRow, ReportError

DATA = Path(__file__).parent / "data"
BALANCE = (DATA / "stripe_balance_change.csv").read_bytes()
PAYOUTS = (DATA / "stripe_payout_reconciliation.csv").read_bytes()


def parse(data: bytes, file: str = "stripe.csv") -> list[ProviderRow]:
    return list(stripe.read(io.BytesIO(data), file))


def failure(data: bytes) -> ReportError:
    with pytest.raises(ReportError) as caught:
        parse(data)
    return caught.value


def at(hours: str) -> datetime:
    return datetime.fromisoformat(hours).replace(tzinfo=UTC)


def test_the_balance_change_example() -> None:
    rows = parse(BALANCE)
    assert [(r.line, r.kind, r.amount, r.fee, r.net) for r in rows] == [
        (2, "charge", 12000, 378, 11622),
        (3, "charge", 5431, 188, 5243),
        (4, "refund", -2000, 0, -2000),
        (5, "dispute", -7500, 1500, -9000),
        (6, "fee", -410, 0, -410),
    ]
    assert rows[0] == ProviderRow(
        line=2,
        kind="charge",
        category="charge",
        reference="ch_3QaB1cD2eF3gH4iJ",
        payment_reference="ch_3QaB1cD2eF3gH4iJ",
        merchant_reference="pi_3QaB1cD2eF3gH4iJ",
        payout_reference="po_1QcX9yZ8wV7uT6sR",
        currency="USD",
        amount=12000,
        fee=378,
        net=11622,
        occurred_at=at("2026-01-28 14:03:11"),
    )
    refund = rows[2]
    assert (refund.reference, refund.payment_reference) == (
        "re_3QbC2dE3fG4hI5jK",
        "ch_3QaB1cD2eF3gH4iJ",
    )
    assert rows[3].reference == "du_1QbD3eF4gH5iJ6kL"
    # Stripe's own fee row has no source: its balance transaction stands for it.
    fee = rows[4]
    assert (fee.reference, fee.payment_reference, fee.merchant_reference) == (
        "txn_1QbE4fG5hI6jK7lM",
        "",
        "",
    )
    # The rows of a payout add up to it: 54.55, what the bank shows.
    assert sum(r.net for r in rows) == 5455
    assert all(r.occurred_at.utcoffset() == timedelta(0) for r in rows)


def test_the_payout_reconciliation_example() -> None:
    rows = parse(PAYOUTS)
    assert [(r.line, r.kind, r.category, r.currency, r.amount, r.fee, r.net) for r in rows] == [
        (3, "charge", "charge", "JPY", 5000, 205, 4795),  # its description runs over two lines
        (4, "refund", "refund", "JPY", -1500, 0, -1500),
        (5, "dispute_reversal", "dispute_reversal", "JPY", 800, 0, 800),
        # A Connect transfer sends money away: not a carry-over that reconciliation passes by.
        (6, "other", "transfer", "JPY", -300, 0, -300),
        (7, "other", "climate_order_purchase", "JPY", -50, 0, -50),  # a category payrail lacks
    ]
    assert {r.payout_reference for r in rows} == {"po_1QdJ2kL3mN4oP5qR"}
    # created_utc, not created (the run's own time zone)
    assert rows[0].occurred_at == at("2026-01-30 08:15:00")
    assert rows[3].payment_reference == ""


def test_the_fewest_columns() -> None:
    data = (
        b"source_id,net,fee,gross,reporting_category,currency,created_utc,balance_transaction_id\n"
        b"ch_1,9.41,0.59,10.00,charge,eur,2026-01-01 00:00:00,txn_1\n"
    )
    assert parse(data) == [
        ProviderRow(
            2, "charge", "charge", "ch_1", "", "", "", "EUR", 1000, 59, 941, at("2026-01-01")
        )
    ]


def test_a_byte_order_mark_and_line_ends_change_nothing() -> None:
    plain = parse(BALANCE)
    assert parse(b"\xef\xbb\xbf" + BALANCE) == plain
    assert parse(BALANCE.replace(b"\n", b"\r\n")) == plain


def test_a_transaction_twice_is_for_reconciliation_to_call() -> None:
    lines = BALANCE.splitlines(keepends=True)
    rows = parse(b"".join([*lines, lines[1]]))
    assert [r.reference for r in rows[-1:]] == [rows[0].reference]


def test_rows_come_as_they_are_read() -> None:
    """The first rows are out before a bad one further on is read."""
    lines = BALANCE.splitlines(keepends=True)
    rows = stripe.read(io.BytesIO(b"".join([*lines, b"bad\n"])), "stripe.csv")
    assert next(rows).line == 2
    assert len([next(rows) for _ in range(4)]) == 4
    with pytest.raises(ReportError):
        next(rows)


def replace(data: bytes, old: str, new: str) -> bytes:
    assert old.encode() in data
    return data.replace(old.encode(), new.encode(), 1)


@pytest.mark.parametrize(
    ("data", "line", "column"),
    [
        (replace(BALANCE, "120.00,3.78", "12O.00,3.78"), 2, "gross"),
        (replace(BALANCE, "-20.00,0.00", "-20.00,0.0.0"), 4, "fee"),
        (replace(BALANCE, "-4.10,0.00,-4.10", "-4.10,0.00,-4.1x"), 6, "net"),
        (replace(BALANCE, "54.31,1.88,52.43", "54.31,1.88,52.44"), 3, "net"),  # does not tie
        (replace(BALANCE, "54.31,1.88,52.43", "54,31,1.88,52.43"), 3, None),  # a field too many
        (replace(BALANCE, "2026-01-29 11:00:00", "2026-01-29T11:00"), 5, "created_utc"),
        (replace(BALANCE, "2026-01-29 11:00:00", "2026-02-30 11:00:00"), 5, "created_utc"),
        (replace(BALANCE, "usd,-75.00", "usx,-75.00"), 5, "currency"),
        (replace(BALANCE, "txn_1QbE4fG5hI6jK7lM", ""), 6, "balance_transaction_id"),
        (replace(PAYOUTS, "jpy,-1500,0,-1500", "jpy,-1500.00,0,-1500"), 4, "gross"),  # JPY: none
        (replace(BALANCE, ",created_utc,", ",created,"), 1, "created_utc"),
        (replace(BALANCE, ",net,", ",net_amount,"), 1, "net"),
        (replace(BALANCE, ",fee,net,", ",fee,fee,"), 1, "fee"),
        (replace(BALANCE, "Billing", '"Billing'), 6, None),  # a quote never closed
        (replace(BALANCE, "Order 1042,", 'Order "1042",'), 3, None),  # a quote inside a field
        (BALANCE.replace(b"Order 1041", b"Order \xff", 1), 2, None),  # not UTF-8
        (b"", 1, None),
        (b"\xef\xbb\xbf", 1, None),
    ],
)
def test_a_bad_file_is_refused_where_it_is_bad(data: bytes, line: int, column: str | None) -> None:
    error = failure(data)
    assert (error.file, error.line, error.column) == ("stripe.csv", line, column)


def test_a_currency_with_three_decimals() -> None:
    data = replace(BALANCE, "usd,-4.10,0.00,-4.10", "bhd,-4.105,0.000,-4.105")
    assert parse(data)[-1][7:11] == ("BHD", -4105, 0, -4105)
    assert failure(replace(data, "-4.105,0.000", "-4.105,0.0001")).column == "fee"


def test_the_registry_reads_stripe() -> None:
    assert PARSERS["stripe"] is stripe.read


# --- round trip -----------------------------------------------------------------------------

# reporting_category: the kind payrail gives it
CATEGORIES = {
    "charge": "charge",
    "refund": "refund",
    "refund_failure": "refund_failure",
    "dispute": "dispute",
    "dispute_reversal": "dispute_reversal",
    "fee": "fee",
    "network_cost": "fee",
    "payout": "payout",
    "payout_reversal": "payout_reversal",
    "partial_capture_reversal": "adjustment",
    "other_adjustment": "adjustment",
    "transfer": "other",
    "transfer_reversal": "other",
    "charge_failure": "other",
    "topup": "other",
    "anticipation_repayment": "other",
}
HEADER = [
    "automatic_payout_id",
    "balance_transaction_id",
    "created_utc",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "description",
    "charge_id",
    "payment_intent_id",
]


def major(minor: int, currency: str) -> str:
    exponent = EXPONENTS[currency]
    digits = str(abs(minor)).rjust(exponent + 1, "0")
    text = f"{digits[:-exponent]}.{digits[-exponent:]}" if exponent else digits
    return ("-" if minor < 0 else "") + text


def quoted(field: str) -> str:
    return '"' + field.replace('"', '""') + '"' if any(c in field for c in ',"') else field


def write(rows: list[ProviderRow]) -> bytes:
    """A report as Stripe writes one, from the rows payrail should read in it."""
    lines = [",".join(HEADER)]
    for number, row in enumerate(rows):
        fields = [
            row.payout_reference,
            f"txn_{number}",
            row.occurred_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            row.currency.lower(),
            major(row.amount, row.currency),
            major(row.fee, row.currency),
            major(row.net, row.currency),
            row.category,
            row.reference,
            "a description, with a comma",
            row.payment_reference,
            row.merchant_reference,
        ]
        lines.append(",".join(quoted(field) for field in fields))
    return ("\r\n".join(lines) + "\r\n").encode()


EARLIEST, LATEST = datetime.fromisoformat("2000-01-01"), datetime.fromisoformat("2099-12-31")
ids = st.text(
    st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="\x00"), max_size=12
)


@st.composite
def provider_rows(draw: st.DrawFn) -> list[ProviderRow]:
    rows = []
    for number in range(draw(st.integers(0, 6))):
        category = draw(st.sampled_from(sorted(CATEGORIES)))
        currency = draw(st.sampled_from(["USD", "JPY", "BHD", "EUR"]))
        amount = draw(st.integers(-(10**12), 10**12))
        fee = draw(st.integers(-(10**6), 10**6))
        moment = draw(st.datetimes(EARLIEST, LATEST, timezones=st.just(UTC)))
        rows.append(
            ProviderRow(
                line=number + 2,
                kind=CATEGORIES[category],  # type: ignore[arg-type]
                category=category,
                reference=draw(ids.filter(bool)),
                payment_reference=draw(ids),
                merchant_reference=draw(ids),
                payout_reference=draw(ids),
                currency=currency,
                amount=amount,
                fee=fee,
                net=amount - fee,
                occurred_at=moment.replace(microsecond=0),
            )
        )
    return rows


@given(provider_rows())
def test_what_is_written_is_read(rows: list[ProviderRow]) -> None:
    assert parse(write(rows)) == rows
