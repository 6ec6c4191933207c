"""PayPal's Settlement Report (STL).

data/STL-20260131.01.009.CSV is a constructed example, not a PayPal file: the research
notes' one, with PayPal's byte order mark and CRLF. The round trip's files are written
here, footers and counts included.
"""

from __future__ import annotations

import codecs
import io
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payrail.money.currencies import EXPONENTS
from payrail.recon.formats import PARSERS, paypal
from payrail.recon.formats.common import ProviderRow, ReportError

DATA = Path(__file__).parent / "data"
REPORT = (DATA / "STL-20260131.01.009.CSV").read_bytes()
TEXT = REPORT.decode("utf-8-sig")
PACIFIC = timezone(timedelta(hours=-8))


def parse(data: bytes) -> list[ProviderRow]:
    return list(paypal.read(io.BytesIO(data), "STL.CSV"))


def failure(data: bytes) -> ReportError:
    with pytest.raises(ReportError) as caught:
        parse(data)
    return caught.value


def test_the_example() -> None:
    rows = parse(REPORT)
    assert [(r.line, r.kind, r.category, r.amount, r.fee, r.net) for r in rows] == [
        (5, "charge", "T0006", 12500, 393, 12107),
        (6, "refund", "T1107", -4000, -110, -3890),  # the fee given back
        (7, "charge", "T0003", 2000, 104, 1896),
        (8, "dispute", "T1201", -7500, 0, -7500),
        (9, "payout", "T0400", -50000, 0, -50000),
    ]
    assert rows[0] == ProviderRow(
        line=5,
        kind="charge",
        category="T0006",
        reference="5TY05013RG002845M",
        payment_reference="5TY05013RG002845M",  # a charge is its own payment
        merchant_reference="INV-1001",
        payout_reference="",
        currency="USD",
        amount=12500,
        fee=393,
        net=12107,
        occurred_at=datetime(2026, 1, 31, 9, 15, 4, tzinfo=PACIFIC),
    )
    assert rows[0].occurred_at.utcoffset() == timedelta(hours=-8)
    # A refund and a chargeback name their payment (TXN); a billing agreement (PAP) is none.
    assert [r.payment_reference for r in rows[1:4]] == [
        "2GG279541U471931P",
        "0VF52814937998046",
        "5XK07425U6421582B",
    ]
    assert rows[4].payout_reference == "BR20260131001"  # what the bank statement shows
    assert sum(r.net for r in rows) == 52613 - 100000  # the balance it ended on, less the start


def test_encodings() -> None:
    rows = parse(REPORT)
    assert REPORT.startswith(codecs.BOM_UTF8)
    assert parse(REPORT.removeprefix(codecs.BOM_UTF8)) == rows
    assert parse(TEXT.replace("\r\n", "\n").encode()) == rows
    assert parse(TEXT.encode("utf-16")) == rows
    assert parse(codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be")) == rows


def test_older_column_names() -> None:
    older = TEXT.replace('"Transaction Debit or Credit"', '"Transaction  Debit or Credit"')
    assert parse(older.encode()) == parse(REPORT)
    assert parse(TEXT.replace('"Transaction ID"', '"TransactionID"').encode()) == parse(REPORT)


def test_without_bank_reference_a_payout_is_known_by_its_transaction() -> None:
    text = TEXT.replace(',"",,,\r\n', ",,,\r\n")  # the blank Bank Reference IDs
    text = text.replace(',"Bank Reference ID"', "").replace(',"BR20260131001"', "")
    assert parse(text.encode())[4].payout_reference == "9ZX11111AA2222233"


def edit(old: str, new: str, count: int = 1) -> bytes:
    assert old in TEXT
    return TEXT.replace(old, new, count).encode()


def without_line(number: int) -> bytes:
    lines = TEXT.splitlines(keepends=True)
    return "".join(lines[: number - 1] + lines[number:]).encode()


@pytest.mark.parametrize(
    ("data", "line", "column"),
    [
        (edit('"SC",5', '"SC",4'), 11, "Section Record Count"),
        (edit('"RC",5', '"RC",6'), 13, "Report Record Count"),
        (edit("14500,61500", "14500,61400"), 10, "Total Gross Amount Debit"),  # SF
        (edit("14500,61500,110,497", "14500,61500,110,498"), 10, "Total Fee Amount Debit"),
        (edit('"RF","USD",14500', '"RF","USD",14400'), 12, "Total Gross Amount Credit"),
        (edit('"SF","USD"', '"SF","EUR"'), 10, "Total Gross Amount Credit"),  # not its rows'
        (without_line(10), 10, None),  # no SF for USD: the SC says so
        (without_line(12), 12, None),  # no RF for USD: the RC says so
        (without_line(14), 14, None),  # no FF
        (TEXT.encode() + b'"FF",5\r\n', 15, None),  # a record after FF
        (without_line(1), 1, None),  # no RH first
        (edit('"FH",01\r\n', '"FH",01\r\n"XX",1\r\n'), 3, None),  # an unknown record
        (edit('"SC",5\r\n', '"SC",5\r\n"SB",1\r\n'), 12, None),  # a body after its section
        (edit('"CR",12500', '"CX",12500'), 5, "Transaction Debit or Credit"),
        (edit('"DR",4000,"USD","CR"', '"DR",4000,"USD","XR"'), 6, "Fee Debit or Credit"),
        (edit('12500,"USD"', '125.00,"USD"'), 5, "Gross Transaction Amount"),
        (edit('12500,"USD"', '-12500,"USD"'), 5, "Gross Transaction Amount"),
        (edit('"DR",393,', '"DR",3.93,'), 5, "Fee Amount"),
        (edit('7500,"USD","",,', '7500,"USD","",75,'), 8, "Fee Amount"),  # no Fee D or C
        (edit('"DR",393,"USD"', '"DR",393,"EUR"'), 5, "Fee Currency"),
        (edit('12500,"USD"', '12500,"XYZ"'), 5, "Gross Transaction Currency"),
        (
            edit("2026/01/31 09:15:04 -0800", "2026-01-31 09:15:04"),
            5,
            "Transaction Completion Date",
        ),
        (
            edit("2026/01/31 09:15:04 -0800", "2026/01/32 09:15:04 -0800"),
            5,
            "Transaction Completion Date",
        ),
        (edit('"Fee Amount",', '"Fee Amt",'), 4, "Fee Amount"),  # CH lacks a column
        (edit(',"BR20260131001",', ',"BR20260131001",,'), 9, None),  # a field too many
        (edit('"SB","5TY05013RG002845M"', '"SB",""'), 5, "Transaction ID"),
        (edit('"RH",2026/02/01 03:12:45 -0800,"A","ABCDEFGHJKLMN",009,', '"RH",x,"A"'), 1, None),
        (edit(",009,", ",v9,"), 1, "Report Version"),
        (REPORT.replace(b"INV-1002", b"INV-\xff1002"), 7, None),  # not UTF-8
        (REPORT.replace(b"INV-1002", b"INV-\x001002"), 7, None),  # NUL
        (b"", 1, None),
    ],
)
def test_a_bad_file_is_refused_where_it_is_bad(data: bytes, line: int, column: str | None) -> None:
    error = failure(data)
    assert (error.file, error.line, error.column) == ("STL.CSV", line, column)


def test_the_footers_name_what_does_not_tie() -> None:
    error = failure(edit("14500,61500", "14500,61400"))
    assert error.message == "is 61400; the section's SB records add up to 61500"
    assert "USD" in failure(without_line(10)).message


# --- kinds ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "credit", "kind"),
    [
        ("T0006", True, "charge"),
        ("T0000", True, "charge"),
        ("T0003", True, "charge"),
        ("T0006", False, "other"),  # a payment the merchant sent
        ("T0100", False, "fee"),
        ("T0104", False, "fee"),
        ("T1108", True, "fee"),  # a fee given back
        ("T1107", False, "refund"),
        ("T1106", False, "dispute"),
        ("T1201", False, "dispute"),
        ("T1202", True, "dispute_reversal"),
        ("T0400", False, "payout"),
        ("T0401", False, "payout"),
        ("T0400", True, "payout_reversal"),
        ("T1200", False, "adjustment"),
        ("T1900", True, "adjustment"),
        ("T0200", True, "other"),  # currency conversion
        ("T1503", False, "other"),  # a hold
        ("T2001", True, "other"),
        ("T9900", True, "other"),
        ("X", True, "other"),
    ],
)
def test_kinds_by_event_code(code: str, credit: bool, kind: str) -> None:
    assert paypal.kind_of(code, credit) == kind


def test_the_registry_reads_paypal() -> None:
    assert PARSERS["paypal"] is paypal.read


# --- currencies and round trip --------------------------------------------------------------

CH = (
    '"CH","Transaction ID","Invoice ID","PayPal Reference ID","PayPal Reference ID Type",'
    '"Transaction Event Code","Transaction Initiation Date","Transaction Completion Date",'
    '"Transaction Debit or Credit","Gross Transaction Amount","Gross Transaction Currency",'
    '"Fee Debit or Credit","Fee Amount","Fee Currency","Custom Field","Consumer ID",'
    '"Payment Tracking ID","Store ID","Bank Reference ID","Credit Transactional Fee",'
    '"Credit Promotional Fee","Credit Term"'
)
# kind: the event codes the writer may give it, and whether money comes in
CODES: dict[str, list[tuple[str, bool]]] = {
    "charge": [("T0006", True), ("T0003", True), ("T0000", True)],
    "refund": [("T1107", False)],
    "dispute": [("T1201", False), ("T1106", False)],
    "dispute_reversal": [("T1202", True)],
    "payout": [("T0400", False), ("T0401", False)],
    "payout_reversal": [("T0400", True)],
    "fee": [("T0100", False), ("T1108", True)],
    "adjustment": [("T1200", True), ("T1900", False)],
    "other": [("T0200", True), ("T0006", False), ("T1503", False)],
}


def quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def hundredths(minor: int, currency: str) -> int:
    """PayPal's amount: hundredths of the major unit, for every currency."""
    return minor * 100 // 10 ** EXPONENTS[currency]


def body(row: ProviderRow) -> tuple[str, bool]:
    """The SB record PayPal would write for a row, and whether its money came in."""
    code, credit = next(c for c in CODES[row.kind] if c[0] == row.category)
    if row.payment_reference == row.reference and row.kind == "charge":
        reference, reference_type = "", ""
    elif row.payment_reference:
        reference, reference_type = row.payment_reference, "TXN"
    else:
        reference, reference_type = "I-SUBSCRIPTION1", "SUB"  # not a payment: not read
    if row.fee:
        fee = f'"{"DR" if row.fee > 0 else "CR"}",{hundredths(abs(row.fee), row.currency)},'
        fee += quote(row.currency)
    else:
        fee = '"",,""'
    bank = "" if row.payout_reference == row.reference else row.payout_reference
    when = row.occurred_at.strftime("%Y/%m/%d %H:%M:%S %z")
    fields = [
        '"SB"',
        quote(row.reference),
        quote(row.merchant_reference),
        quote(reference),
        quote(reference_type),
        quote(code),
        when,
        when,
        quote("CR" if credit else "DR"),
        str(hundredths(abs(row.amount), row.currency)),
        quote(row.currency),
        fee,
        '"custom","PAYERID","","",' + quote(bank) + ",,,",
    ]
    return ",".join(fields), credit


def write(sections: list[list[ProviderRow]]) -> bytes:
    """A settlement report as PayPal writes one, its footers and counts added up."""
    out = ['"RH",2026/02/01 03:12:45 -0800,"A","ABCDEFGHJKLMN",009,', '"FH",01']
    report: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for rows in sections:
        out += ['"SH",2026/01/31 00:00:00 -0800,2026/01/31 23:59:59 -0800,"ABCDEFGHJKLMN",""', CH]
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for row in rows:
            record, credit = body(row)
            out.append(record)
            sums = totals[row.currency]
            sums[0 if credit else 1] += hundredths(abs(row.amount), row.currency)
            if row.fee:
                sums[3 if row.fee > 0 else 2] += hundredths(abs(row.fee), row.currency)
        for currency, sums in sorted(totals.items()):
            out.append(f'"SF","{currency}",{",".join(map(str, sums))},' + '"CR",0,' * 6 + "0")
            report[currency] = [a + b for a, b in zip(report[currency], sums, strict=True)]
        out.append(f'"SC",{len(rows)}')
    for currency, sums in sorted(report.items()):
        out.append(f'"RF","{currency}",{",".join(map(str, sums))},' + '"CR",0,' * 6 + "0")
    count = sum(len(rows) for rows in sections)
    out += [f'"RC",{count}', f'"FF",{count}']
    return ("\ufeff" + "\r\n".join(out) + "\r\n").encode()


def test_amounts_are_hundredths_in_every_currency() -> None:
    when = datetime(2026, 1, 31, 9, 15, 4, tzinfo=PACIFIC)
    rows = [
        ProviderRow(5, "charge", "T0006", "A", "A", "", "", "JPY", 150, 43, 107, when),
        ProviderRow(6, "charge", "T0006", "B", "B", "", "", "BHD", 12340, 410, 11930, when),
    ]
    data = write([rows])
    assert b',15000,"JPY","DR",4300,"JPY"' in data and b',1234,"BHD","DR",41,"BHD"' in data
    assert [(r.currency, r.amount, r.fee) for r in parse(data)] == [
        ("JPY", 150, 43),
        ("BHD", 12340, 410),
    ]
    half_a_yen = data.replace(b",15000,", b",15050,").replace(b'"JPY",15000,', b'"JPY",15050,')
    error = failure(half_a_yen)
    assert (error.line, error.column) == (5, "Gross Transaction Amount")


ids = st.text(
    st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="\x00"),
    min_size=1,
    max_size=10,
)
EARLIEST, LATEST = datetime.fromisoformat("2000-01-01"), datetime.fromisoformat("2099-12-31")
offsets = st.integers(-14 * 4, 14 * 4).map(lambda q: timezone(timedelta(minutes=15 * q)))


@st.composite
def amounts(draw: st.DrawFn, currency: str) -> int:
    """Minor units PayPal's hundredths can say: whole 0.01s of a three-decimal currency."""
    step = 10 ** max(EXPONENTS[currency] - 2, 0)
    return int(draw(st.integers(0, 10**10))) * step


@st.composite
def rows_of(draw: st.DrawFn, first_line: int) -> list[ProviderRow]:
    rows = []
    for number in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(sorted(CODES)))
        code, credit = draw(st.sampled_from(CODES[kind]))
        currency = draw(st.sampled_from(["USD", "JPY", "BHD", "EUR"]))
        amount = draw(amounts(currency)) * (1 if credit else -1)
        fee = draw(amounts(currency)) * draw(st.sampled_from([1, -1, 0]))
        reference = draw(ids)
        payment = draw(st.sampled_from(["", "own", "other"]))
        payment_reference = {"": "", "own": reference, "other": draw(ids)}[payment]
        if kind == "charge" and payment_reference == "":
            payment_reference = reference
        payout = draw(ids) if kind.startswith("payout") else ""
        if kind.startswith("payout") and draw(st.booleans()):
            payout = reference  # a payout without a Bank Reference ID
        moment = draw(st.datetimes(EARLIEST, LATEST, timezones=offsets))
        rows.append(
            ProviderRow(
                line=first_line + number,
                kind=kind,  # type: ignore[arg-type]
                category=code,
                reference=reference,
                payment_reference=payment_reference,
                merchant_reference=draw(ids | st.just("")),
                payout_reference=payout,
                currency=currency,
                amount=amount,
                fee=fee,
                net=amount - fee,
                occurred_at=moment.replace(microsecond=0),
            )
        )
    return rows


@st.composite
def reports(draw: st.DrawFn) -> list[list[ProviderRow]]:
    sections: list[list[ProviderRow]] = []
    line = 3  # after RH and FH
    for _ in range(draw(st.integers(1, 3))):
        rows = draw(rows_of(line + 2))  # after SH and CH
        sections.append(rows)
        line += 2 + len(rows) + len({r.currency for r in rows}) + 1  # SH, CH, SB, SF, SC
    return sections


@given(reports())
def test_what_is_written_is_read(sections: list[list[ProviderRow]]) -> None:
    assert parse(write(sections)) == [row for rows in sections for row in rows]
