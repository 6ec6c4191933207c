"""Adyen's Settlement details report.

data/settlement_detail_report_batch_57.csv is a constructed example, not an Adyen file:
the research notes' one (an IC++ sale, a blended sale in another currency, a refund, a
chargeback, a carry-in, a fee, a deposit correction and the payout of batch 57).
"""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payrail.money.currencies import EXPONENTS
from payrail.recon.formats import PARSERS, adyen
from payrail.recon.formats.common import ProviderRow, ReportError

DATA = Path(__file__).parent / "data"
REPORT = (DATA / "settlement_detail_report_batch_57.csv").read_bytes()
TEXT = REPORT.decode()
CET = timezone(timedelta(hours=1))


def parse(data: bytes) -> list[ProviderRow]:
    return list(adyen.read(io.BytesIO(data), "batch_57.csv"))


def failure(data: bytes) -> ReportError:
    with pytest.raises(ReportError) as caught:
        parse(data)
    return caught.value


def test_the_example() -> None:
    rows = parse(REPORT)
    assert [(r.line, r.kind, r.category, r.amount, r.fee, r.net) for r in rows] == [
        (2, "transfer", "Balancetransfer", 320, 0, 320),
        (3, "charge", "Settled", 10000, 138, 9862),  # IC++: markup, scheme fees, interchange
        (4, "charge", "Settled", 4617, 92, 4525),  # USD 50.00 at 0.9234: in EUR, net + fee
        (5, "refund", "Refunded", -2500, 0, -2500),
        (6, "dispute", "Chargeback", -4000, 1500, -5500),
        (7, "adjustment", "DepositCorrection", -1000, 0, -1000),
        (8, "fee", "Fee", -84, 0, -84),
        (9, "payout", "MerchantPayout", -5623, 0, -5623),
    ]
    assert rows[1] == ProviderRow(
        line=3,
        kind="charge",
        category="Settled",
        reference="8815730000000001",  # the payment
        payment_reference="8815730000000001",
        merchant_reference="ORD-1001",
        payout_reference="57",
        currency="EUR",
        amount=10000,
        fee=138,
        net=9862,
        occurred_at=datetime(2026, 1, 27, 10, 15, 2, tzinfo=CET),
    )
    refund, chargeback = rows[3], rows[4]
    assert (refund.reference, refund.payment_reference) == ("8815730000000201", "8815730000000001")
    assert chargeback.reference == "8815730000000303"
    assert rows[6].reference == "Transaction Fees January   01 2026"  # as Adyen writes it
    assert {r.currency for r in rows} == {"EUR"}
    assert {r.payout_reference for r in rows} == {"57"}
    # The batch ties: what it carried in and settled, less the payout, is nothing.
    assert sum(r.net for r in rows) == 0


def shuffled(text: str, extra: dict[str, str]) -> bytes:
    """The same report with its columns in another order and some Adyen adds."""
    rows = list(csv.reader(io.StringIO(text)))
    order = list(range(len(rows[0])))
    random.Random(7).shuffle(order)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for number, row in enumerate(rows):
        added = list(extra) if number == 0 else list(extra.values())
        writer.writerow([row[i] for i in order] + added)
    return out.getvalue().encode()


def test_columns_in_another_order_and_more_of_them() -> None:
    extra = {"DCC Markup (NC)": "-0.10", "Booking Date": "2026-01-27 10:15:02", "Reserved11": ""}
    assert parse(shuffled(TEXT, extra)) == parse(REPORT)


def test_a_byte_order_mark_and_line_ends_change_nothing() -> None:
    assert parse(b"\xef\xbb\xbf" + REPORT.replace(b"\n", b"\r\n")) == parse(REPORT)


def test_summer_time_and_other_zones() -> None:
    summer = TEXT.replace("2026-01-27 10:15:02,CET", "2026-06-27 10:15:02,CEST")
    summer = summer.replace("2026-01-28 08:05:40,CET", "2026-01-28 08:05:40,EST")
    rows = parse(summer.encode())
    assert rows[1].occurred_at == datetime(2026, 6, 27, 8, 15, 2, tzinfo=UTC)
    assert rows[3].occurred_at.utcoffset() == timedelta(hours=-5)


def test_a_type_payrail_does_not_know_is_kept_as_other() -> None:
    rows = parse(TEXT.replace(",DepositCorrection,", ",EpaPaid,").encode())
    assert (rows[5].kind, rows[5].category, rows[5].net) == ("other", "EpaPaid", -1000)


def test_only_a_rate_of_one_is_tied() -> None:
    # 50.00 USD at 0.9234 is 46.17 EUR: a rate not 1 is Adyen's to round, not checked.
    rows = parse(TEXT.replace("50.00,0.9234", "50.00,0.9").encode())
    assert rows[2].amount == 4617
    # The same currency at rate 1: the gross must tie, within a cent.
    cent_off = TEXT.replace(",100.00,1,EUR,,98.62,", ",100.01,1,EUR,,98.62,")
    assert parse(cent_off.encode())[1].amount == 10000
    # ... and the rate may be written with decimals.
    assert parse(TEXT.replace(",100.00,1,EUR", ",100.00,1.000000,EUR").encode()) == parse(REPORT)


def edit(old: str, new: str) -> bytes:
    assert old in TEXT
    return TEXT.replace(old, new, 1).encode()


@pytest.mark.parametrize(
    ("data", "line", "column"),
    [
        (edit(",CET,Refunded,", ",XYZ,Refunded,"), 5, "TimeZone"),
        (edit(",CET,Chargeback,", ",CST,Chargeback,"), 6, "TimeZone"),  # ambiguous
        (edit(",98.62,", ",98.6x,"), 3, "Net Credit (NC)"),
        (edit(",98.62,", ",98.623,"), 3, "Net Credit (NC)"),  # EUR has two decimals
        (edit(",98.62,", ",-98.62,"), 3, "Net Credit (NC)"),  # the column is the sign
        (edit(",1,EUR,25.00,,", ",1,EUR,25.00,0.01,"), 5, "Net Debit (NC)"),  # debit and credit
        (edit(",EUR,10.00,,", ",EUR,,,"), 7, "Net Credit (NC)"),  # neither
        (edit(",100.00,1,EUR,,98.62,", ",100.02,1,EUR,,98.62,"), 3, "Net Credit (NC)"),  # no tie
        (edit(",EUR,55.00,,15.00,", ",EUR,54.00,,15.00,"), 6, "Net Debit (NC)"),  # no tie
        (edit(",0.60,0.13,", ",0.6O,0.13,"), 3, "Markup (NC)"),
        (edit(",15.00,,,,visa", ",15.00,x,,,visa"), 6, "Markup (NC)"),
        (edit(",0.92,,,,mc", ",0.92,,,1.1.1,mc"), 4, "Interchange (NC)"),
        (edit(",50.00,0.9234,", ",50.00,0.92x,"), 4, "Exchange Rate"),
        (edit(",50.00,0.9234,", ",5O.00,0.9234,"), 4, "Gross Credit (GC)"),
        (edit(",USD,,50.00,", ",USX,,50.00,"), 4, "Gross Currency"),
        (edit(",USD,,50.00,", ",,,50.00,"), 4, "Gross Currency"),
        (edit(",40.00,,1,EUR", ",40.00,1.00,1,EUR"), 6, "Gross Debit (GC)"),
        (edit(",EUR,0.84,", ",EURO,0.84,"), 8, "Net Currency"),
        (edit("2026-02-01 03:10:44", "2026-02-01T03:10"), 8, "Creation Date"),
        (edit("2026-02-01 03:10:44", "2026-02-31 03:10:44"), 8, "Creation Date"),
        (edit("Merchant Payout batch 57,", "Merchant Payout, batch 57,"), 9, None),  # a field more
        (edit(",Net Debit (NC),", ",Net Debit,"), 1, "Net Debit (NC)"),
        (edit(",TimeZone,", ",Timezone,"), 1, "TimeZone"),
        (edit(",Batch Number,", ",Batch,"), 1, "Batch Number"),
        (b"", 1, None),
    ],
)
def test_a_bad_file_is_refused_where_it_is_bad(data: bytes, line: int, column: str | None) -> None:
    error = failure(data)
    assert (error.file, error.line, error.column) == ("batch_57.csv", line, column)


def test_the_registry_reads_adyen() -> None:
    assert PARSERS["adyen"] is adyen.read


# --- round trip -----------------------------------------------------------------------------

HEADER = TEXT.splitlines()[0].split(",")
# Type: the kind payrail gives it, and whether the row is a payment's (has a gross)
TYPES = {
    "Settled": ("charge", True),
    "Refunded": ("refund", True),
    "RefundedReversed": ("refund_failure", True),
    "Chargeback": ("dispute", True),
    "SecondChargeback": ("dispute", True),
    "ChargebackReversed": ("dispute_reversal", True),
    "Fee": ("fee", False),
    "MiscCosts": ("fee", False),
    "PaymentCost": ("fee", False),
    "MerchantPayout": ("payout", False),
    "BankInstructionReturned": ("payout_reversal", False),
    "Balancetransfer": ("transfer", False),
    "DepositCorrection": ("adjustment", False),
    "InvoiceDeduction": ("adjustment", False),
    "ManualCorrected": ("adjustment", False),
    "MatchedStatement": ("other", False),
    "SomethingNew": ("other", True),
}
ZONES = {"CET": 60, "CEST": 120, "UTC": 0, "EST": -300, "AEDT": 660, "ACST": 570}


def major(minor: int, currency: str) -> str:
    exponent = EXPONENTS[currency]
    digits = str(abs(minor)).rjust(exponent + 1, "0")
    text = f"{digits[:-exponent]}.{digits[-exponent:]}" if exponent else digits
    return ("-" if minor < 0 else "") + text


def write(rows: list[tuple[ProviderRow, str]]) -> bytes:
    """A report as Adyen writes one, from the rows payrail should read in it, each with
    its TimeZone."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for row, zone in rows:
        payment = TYPES[row.category][1]
        money = {name: "" for name in HEADER}
        money["Net Credit (NC)" if row.net >= 0 else "Net Debit (NC)"] = major(
            abs(row.net), row.currency
        )
        if row.fee:
            money["Commission (NC)"] = major(row.fee, row.currency)
        if payment:  # the gross in the same currency, at rate 1
            gross = row.amount
            money["Gross Credit (GC)" if gross >= 0 else "Gross Debit (GC)"] = major(
                abs(gross), row.currency
            )
            money["Gross Currency"], money["Exchange Rate"] = row.currency, "1"
        local = row.occurred_at.astimezone(timezone(timedelta(minutes=ZONES[zone])))
        fields = {
            **money,
            "Company Account": "PayrailCo",
            "Merchant Account": "PayrailEU",
            "Psp Reference": row.payment_reference,
            "Merchant Reference": row.merchant_reference,
            "Creation Date": local.strftime("%Y-%m-%d %H:%M:%S"),
            "TimeZone": zone,
            "Type": row.category,
            "Modification Reference": "" if row.category == "Settled" else row.reference,
            "Net Currency": row.currency,
            "Batch Number": row.payout_reference,
        }
        writer.writerow([fields[name] for name in HEADER])
    return out.getvalue().encode()


ids = st.text(
    st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="\x00"), max_size=12
)
EARLIEST, LATEST = datetime.fromisoformat("2000-01-01"), datetime.fromisoformat("2099-12-31")


@st.composite
def provider_rows(draw: st.DrawFn) -> list[tuple[ProviderRow, str]]:
    rows = []
    for number in range(draw(st.integers(0, 6))):
        category = draw(st.sampled_from(sorted(TYPES)))
        kind, payment = TYPES[category]
        currency = draw(st.sampled_from(["EUR", "JPY", "BHD", "USD"]))
        net = draw(st.integers(-(10**12), 10**12))
        fee = draw(st.integers(-(10**6), 10**6)) if payment else 0
        # A row with no money is no booking: Adyen writes one net amount, zero or not.
        payment_reference = draw(ids.filter(bool)) if payment else draw(ids)
        reference = payment_reference if category == "Settled" else draw(ids.filter(bool))
        zone = draw(st.sampled_from(sorted(ZONES)))
        moment = draw(st.datetimes(EARLIEST, LATEST, timezones=st.just(UTC)))
        offset = timezone(timedelta(minutes=ZONES[zone]))
        rows.append(
            (
                ProviderRow(
                    line=number + 2,
                    kind=kind,  # type: ignore[arg-type]
                    category=category,
                    reference=reference,
                    payment_reference=payment_reference,
                    merchant_reference=draw(ids),
                    payout_reference=draw(st.integers(1, 10**6).map(str)),
                    currency=currency,
                    amount=net + fee,
                    fee=fee,
                    net=net,
                    occurred_at=moment.replace(microsecond=0).astimezone(offset),
                ),
                zone,
            )
        )
    return rows


@given(provider_rows())
def test_what_is_written_is_read(rows: list[tuple[ProviderRow, str]]) -> None:
    assert parse(write(rows)) == [row for row, _ in rows]
