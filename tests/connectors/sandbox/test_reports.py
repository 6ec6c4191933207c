"""The sandbox's settlement reports (Stripe, PayPal, Adyen), its bank statements and the
discrepancies it injects into them: as plain functions, then over HTTP."""

from __future__ import annotations

import csv
import io
import itertools
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from payrail.clock import ManualClock, unix
from payrail.connectors.sandbox import processor, reports
from payrail.connectors.sandbox.processor import Dispute, Payment, Refund
from payrail.connectors.sandbox.reports import Activity, Discrepancies, Movement
from payrail.connectors.sandbox.schemas import payment_request
from payrail.recon.formats import PARSERS, read_bank_statement
from payrail.recon.formats.common import BankLine, ProviderRow
from tests.connectors.sandbox.helpers import AUTH, new_key, ok, pay, post

DAY1 = date(2026, 3, 10)
DAY2 = date(2026, 3, 11)
DAY3 = date(2026, 3, 12)
MASTERCARD = "5555555555554444"
BOM = "\ufeff"


def at(day: date, hour: int, minute: int = 0) -> int:
    return unix(datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC))


def charge(
    id: str, amount: int, currency: str, when: int, *, capture: bool = True, number: str = ""
) -> Payment:
    request = payment_request(
        {
            "amount": amount,
            "currency": currency,
            "capture": capture,
            "card": {"number": number or "4242424242424242", "exp_month": 12, "exp_year": 2030},
            "reference": f"order-{id}",
        }
    )
    return processor.charge(request, id=id, idempotency_key=f"key-{id}", created=when)


class Book:
    """A store's worth of payments, refunds and disputes, made through the processor."""

    def __init__(self) -> None:
        self.payments: dict[str, Payment] = {}
        self.refunds: list[Refund] = []
        self.disputes: list[Dispute] = []

    def pay(self, id: str, amount: int, currency: str, when: int, **kwargs: Any) -> None:
        self.payments[id] = charge(id, amount, currency, when, **kwargs)

    def capture(self, id: str, amount: int, when: int) -> None:
        self.payments[id] = processor.capture(self.payments[id], amount, at=when)

    def refund(self, id: str, payment: str, amount: int, when: int) -> None:
        paid, made = processor.refund(
            self.payments[payment], amount, id=id, idempotency_key=f"key-{id}", created=when
        )
        self.payments[payment] = paid
        self.refunds.append(made)

    def dispute(self, id: str, payment: str, amount: int | None, when: int) -> None:
        made = processor.dispute(
            self.payments[payment], amount, "fraudulent", disputed=False, id=id, created=when
        )
        self.disputes.append(made)

    def activity(self) -> Activity:
        return Activity(self.payments, self.refunds, self.disputes)


def two_days(*, bhd: bool = True) -> Activity:
    """Day 1: USD, JPY and BHD captures, a USD authorization, a USD refund, a void and a
    decline. Day 2: the authorization captured in part, the JPY payment disputed, part of
    the BHD one refunded."""
    book = Book()
    book.pay("sbxpay_usd", 1000, "usd", at(DAY1, 9))
    book.pay("sbxpay_jpy", 5000, "jpy", at(DAY1, 10), number=MASTERCARD)
    book.pay("sbxpay_auth", 2500, "usd", at(DAY1, 12), capture=False)
    book.pay("sbxpay_void", 700, "usd", at(DAY1, 12), capture=False)
    book.payments["sbxpay_void"] = processor.void(book.payments["sbxpay_void"])
    book.pay("sbxpay_declined", 900, "usd", at(DAY1, 12), number="4000000000000002")
    book.refund("sbxre_usd", "sbxpay_usd", 300, at(DAY1, 13))
    book.capture("sbxpay_auth", 2000, at(DAY2, 8))
    book.dispute("sbxdp_jpy", "sbxpay_jpy", None, at(DAY2, 9))
    if bhd:
        book.pay("sbxpay_bhd", 1234, "bhd", at(DAY1, 11))
        book.refund("sbxre_bhd", "sbxpay_bhd", 500, at(DAY2, 10))
    return book.activity()


def report(format: reports.Format, activity: Activity, day: date, **asked: int) -> str:
    return reports.settlement_report(format, activity, day, Discrepancies(**asked))


def table(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


STRIPE_VALUES = (
    "created_utc",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "charge_id",
    "payment_intent_id",
)


def stripe_rows(text: str) -> list[tuple[str, ...]]:
    return [tuple(row[c] for c in STRIPE_VALUES) for row in table(text)]


# -- what a day holds, in Stripe's format -----------------------------------------------------


def test_stripe_header_is_the_documented_one() -> None:
    header = report("stripe", two_days(), DAY1).splitlines()[0]
    assert header == (
        "balance_transaction_id,created_utc,available_on_utc,currency,gross,fee,net,"
        "reporting_category,source_id,description,customer_facing_amount,"
        "customer_facing_currency,automatic_payout_id,automatic_payout_effective_at_utc,"
        "charge_id,payment_intent_id"
    )


def test_a_day_holds_its_captures_refunds_and_disputes_in_major_units() -> None:
    activity = two_days()
    assert stripe_rows(report("stripe", activity, DAY1)) == [
        # fee 2.9% + 30 minor units: 59 cents, 175 yen, 66 fils
        ("2026-03-10 09:00:00", "usd", "10.00", "0.59", "9.41", "charge", "sbxpay_usd",
         "sbxpay_usd", "order-sbxpay_usd"),
        ("2026-03-10 10:00:00", "jpy", "5000", "175", "4825", "charge", "sbxpay_jpy",
         "sbxpay_jpy", "order-sbxpay_jpy"),
        ("2026-03-10 11:00:00", "bhd", "1.234", "0.066", "1.168", "charge", "sbxpay_bhd",
         "sbxpay_bhd", "order-sbxpay_bhd"),
        ("2026-03-10 13:00:00", "usd", "-3.00", "0.00", "-3.00", "refund", "sbxre_usd",
         "sbxpay_usd", "order-sbxpay_usd"),
    ]  # fmt: skip
    # The manual capture is dated by its capture, not its authorization.
    assert stripe_rows(report("stripe", activity, DAY2)) == [
        ("2026-03-11 08:00:00", "usd", "20.00", "0.88", "19.12", "charge", "sbxpay_auth",
         "sbxpay_auth", "order-sbxpay_auth"),
        ("2026-03-11 09:00:00", "jpy", "-5000", "0", "-5000", "dispute", "sbxdp_jpy",
         "sbxpay_jpy", "order-sbxpay_jpy"),
        ("2026-03-11 10:00:00", "bhd", "-0.500", "0.000", "-0.500", "refund", "sbxre_bhd",
         "sbxpay_bhd", "order-sbxpay_bhd"),
    ]  # fmt: skip
    assert table(report("stripe", activity, DAY3)) == []


def test_stripe_rows_name_the_days_payout_of_their_currency() -> None:
    activity = two_days()
    day1 = table(report("stripe", activity, DAY1))
    by_currency = {row["currency"]: row["automatic_payout_id"] for row in day1}
    assert all(row["automatic_payout_id"] == by_currency[row["currency"]] for row in day1)
    assert all(p.startswith("sbxpo_") for p in by_currency.values())
    assert len(set(by_currency.values())) == 3
    assert {row["automatic_payout_effective_at_utc"] for row in day1} == {"2026-03-11 00:00:00"}
    assert {row["balance_transaction_id"][:7] for row in day1} == {"sbxtxn_"}
    assert len({row["balance_transaction_id"] for row in day1}) == 4

    day2 = table(report("stripe", activity, DAY2))
    paid = {row["currency"]: row["automatic_payout_id"] for row in day2}
    # Only USD is positive on day 2; JPY and BHD owe, and nothing is paid.
    assert paid["usd"].startswith("sbxpo_") and paid["usd"] != by_currency["usd"]
    assert (paid["jpy"], paid["bhd"]) == ("", "")


def test_bank_statement_lists_the_previous_days_payouts_as_credits() -> None:
    activity = two_days()
    no = Discrepancies()
    payout_ids = {
        row["currency"]: row["automatic_payout_id"]
        for row in table(report("stripe", activity, DAY1))
    }
    assert reports.statement(activity, DAY1, no).splitlines() == [
        "date,amount,currency,reference,description"
    ]
    day2 = table(reports.statement(activity, DAY2, no))
    assert [(r["date"], r["amount"], r["currency"], r["reference"]) for r in day2] == [
        ("2026-03-11", "1.168", "BHD", payout_ids["bhd"]),  # 1.234 - 0.066
        ("2026-03-11", "4825", "JPY", payout_ids["jpy"]),
        ("2026-03-11", "6.41", "USD", payout_ids["usd"]),  # 10.00 - 0.59 - 3.00
    ]
    assert [(r["date"], r["amount"], r["currency"]) for r in table(
        reports.statement(activity, DAY3, no)
    )] == [("2026-03-12", "19.12", "USD")]  # fmt: skip


def test_the_same_activity_seed_and_day_give_the_same_file_whatever_the_store_order() -> None:
    activity = two_days()
    payments = list(activity.payments.items())
    random.Random(3).shuffle(payments)
    shuffled = Activity(dict(payments), activity.refunds[::-1], activity.disputes[::-1])
    asked = {"seed": 11, "drop": 1, "amount": 1, "fee": 1, "duplicate": 1, "late": 1}
    for format in ("stripe", "adyen"):
        first = report(format, activity, DAY1, **asked)
        assert report(format, activity, DAY1, **asked) == first
        assert report(format, shuffled, DAY1, **asked) == first
        assert report(format, activity, DAY1, **(asked | {"seed": 12})) != first


# -- PayPal ---------------------------------------------------------------------------------


def paypal_lines(text: str) -> list[list[str]]:
    assert text.startswith(BOM)
    return list(csv.reader(io.StringIO(text[1:], newline="")))


def test_paypal_is_framed_and_its_counts_and_totals_tie() -> None:
    text = report("paypal", two_days(bhd=False), DAY1)
    lines = paypal_lines(text)
    kinds = [line[0] for line in lines]
    assert kinds == ["RH", "FH", "SH", "CH", *["SB"] * 5, "SF", "SF", "SC", "RF", "RF", "RC", "FF"]
    assert lines[0] == ["RH", "2026/03/11 00:00:00 +0000", "X", "SBXPSPACCOUNT", "009", ""]
    assert lines[2][1:3] == ["2026/03/10 00:00:00 +0000", "2026/03/10 23:59:59 +0000"]
    header = lines[3][1:]
    assert header[:8] == [
        "Transaction ID",
        "Invoice ID",
        "PayPal Reference ID",
        "PayPal Reference ID Type",
        "Transaction Event Code",
        "Transaction Initiation Date",
        "Transaction Completion Date",
        "Transaction Debit or Credit",
    ]
    body = [dict(zip(header, line[1:], strict=True)) for line in lines if line[0] == "SB"]
    assert [
        (b["Transaction ID"], b["Transaction Event Code"], b["Transaction Debit or Credit"],
         b["Gross Transaction Amount"], b["Gross Transaction Currency"],
         b["Fee Debit or Credit"], b["Fee Amount"], b["PayPal Reference ID"])
        for b in body[:3]
    ] == [
        # x100 for every currency: 10.00 USD is 1000, 5000 yen is 500000
        ("sbxpay_usd", "T0006", "CR", "1000", "USD", "DR", "59", ""),
        ("sbxpay_jpy", "T0006", "CR", "500000", "JPY", "DR", "17500", ""),
        ("sbxre_usd", "T1107", "DR", "300", "USD", "", "", "sbxpay_usd"),
    ]  # fmt: skip
    payouts = {
        b["Gross Transaction Currency"]: b for b in body if b["Transaction Event Code"] == "T0400"
    }
    assert {
        c: (p["Transaction Debit or Credit"], p["Gross Transaction Amount"])
        for c, p in payouts.items()
    } == {
        "USD": ("DR", "641"),
        "JPY": ("DR", "482500"),
    }  # fmt: skip
    assert all(p["Bank Reference ID"] == p["Transaction ID"] for p in payouts.values())

    def signed(dc: str, amount: str) -> int:
        return 0 if not amount else int(amount) if dc == "CR" else -int(amount)

    for footer in (line for line in lines if line[0] in ("SF", "RF")):
        currency = footer[1]
        mine = [b for b in body if b["Gross Transaction Currency"] == currency]
        credit, debit, fee_credit, fee_debit = map(int, footer[2:6])
        grosses = [
            signed(b["Transaction Debit or Credit"], b["Gross Transaction Amount"]) for b in mine
        ]
        fees = [signed(b["Fee Debit or Credit"], b["Fee Amount"]) for b in mine]
        assert (credit, debit) == (
            sum(g for g in grosses if g > 0),
            -sum(g for g in grosses if g < 0),
        )
        assert (fee_credit, fee_debit) == (
            sum(f for f in fees if f > 0),
            -sum(f for f in fees if f < 0),
        )
        begin, end = signed(footer[6], footer[7]), signed(footer[8], footer[9])
        assert begin + credit - debit + fee_credit - fee_debit == end == 0  # all paid out
        assert int(footer[-1]) == len(mine)
    counts = {line[0]: int(line[1]) for line in lines if line[0] in ("SC", "RC", "FF")}
    assert counts == {"SC": 5, "RC": 5, "FF": 5}
    assert text.encode().startswith(b"\xef\xbb\xbf")


def test_paypal_quotes_text_and_leaves_numbers_and_dates_bare() -> None:
    lines = report("paypal", two_days(bhd=False), DAY1)[1:].splitlines()
    assert lines[4] == (
        '"SB","sbxpay_usd","order-sbxpay_usd","","","T0006",2026/03/10 09:00:00 +0000,'
        '2026/03/10 09:00:00 +0000,"CR",1000,"USD","DR",59,"USD","","","","","",,,'
    )
    assert lines[1] == '"FH",01'


def test_paypal_carries_a_negative_day_as_a_debit_balance() -> None:
    lines = paypal_lines(report("paypal", two_days(bhd=False), DAY2))
    jpy = next(line for line in lines if line[:2] == ["SF", "JPY"])
    # The dispute took 5000 yen, no payout: the day ends 500000 (x100) in debit.
    assert jpy[2:10] == ["0", "500000", "0", "0", "CR", "0", "DR", "500000"]
    assert not any(line[5:6] == ["T0400"] and line[10] == "JPY" for line in lines)


def test_paypal_cannot_write_three_decimal_currencies() -> None:
    with pytest.raises(reports.Unrepresentable, match="BHD"):
        report("paypal", two_days(), DAY1)


# -- Adyen ----------------------------------------------------------------------------------


def test_adyen_rows_put_unsigned_amounts_on_their_side_and_the_batch_ties() -> None:
    text = report("adyen", two_days(), DAY1)
    assert text.splitlines()[0] == (
        "Company Account,Merchant Account,Psp Reference,Merchant Reference,Payment Method,"
        "Creation Date,TimeZone,Type,Modification Reference,Gross Currency,Gross Debit (GC),"
        "Gross Credit (GC),Exchange Rate,Net Currency,Net Debit (NC),Net Credit (NC),"
        "Commission (NC),Markup (NC),Scheme Fees (NC),Interchange (NC),Payment Method Variant,"
        "Modification Merchant Reference,Batch Number,Reserved4,Reserved5,Reserved6,Reserved7,"
        "Reserved8,Reserved9,Reserved10"
    )
    rows = table(text)
    columns = (
        "Psp Reference", "Merchant Reference", "Payment Method", "Type",
        "Modification Reference", "Gross Debit (GC)", "Gross Credit (GC)", "Net Debit (NC)",
        "Net Credit (NC)", "Commission (NC)", "Net Currency",
    )  # fmt: skip
    assert [tuple(r[c] for c in columns) for r in rows] == [
        ("sbxpay_usd", "order-sbxpay_usd", "visa", "Settled", "sbxpay_usd", "", "10.00", "",
         "9.41", "0.59", "USD"),
        ("sbxpay_jpy", "order-sbxpay_jpy", "mc", "Settled", "sbxpay_jpy", "", "5000", "",
         "4825", "175", "JPY"),
        ("sbxpay_bhd", "order-sbxpay_bhd", "visa", "Settled", "sbxpay_bhd", "", "1.234", "",
         "1.168", "0.066", "BHD"),
        ("sbxpay_usd", "order-sbxpay_usd", "visa", "Refunded", "sbxre_usd", "3.00", "", "3.00",
         "", "", "USD"),
        ("", "", "", "MerchantPayout", rows[4]["Modification Reference"], "", "", "1.168", "",
         "", "BHD"),
        ("", "", "", "MerchantPayout", rows[5]["Modification Reference"], "", "", "4825", "",
         "", "JPY"),
        ("", "", "", "MerchantPayout", rows[6]["Modification Reference"], "", "", "6.41", "",
         "", "USD"),
    ]  # fmt: skip
    assert {r["Batch Number"] for r in rows} == {str((DAY1 - date(1970, 1, 1)).days)}
    assert {r["TimeZone"] for r in rows} == {"UTC"}
    stripe_payouts = {
        r["currency"].upper(): r["automatic_payout_id"]
        for r in table(report("stripe", two_days(), DAY1))
    }
    assert {r["Net Currency"]: r["Modification Reference"] for r in rows[4:]} == stripe_payouts


def test_adyen_has_a_batch_a_day_and_no_payout_for_a_negative_currency() -> None:
    rows = table(report("adyen", two_days(), DAY2))
    assert {r["Batch Number"] for r in rows} == {str((DAY2 - date(1970, 1, 1)).days)}
    chargeback = next(r for r in rows if r["Type"] == "Chargeback")
    assert (chargeback["Psp Reference"], chargeback["Modification Reference"]) == (
        "sbxpay_jpy",
        "sbxdp_jpy",
    )
    assert (chargeback["Gross Debit (GC)"], chargeback["Net Debit (NC)"]) == ("5000", "5000")
    assert [r["Net Currency"] for r in rows if r["Type"] == "MerchantPayout"] == ["USD"]


# -- discrepancies, as a pure function ------------------------------------------------------


def movements(count: int = 20, day: date = DAY1) -> list[Movement]:
    made = []
    for i in range(count):
        kind: reports.Kind = ("charge", "refund", "dispute")[i % 3]
        gross = 1000 + 37 * i
        made.append(
            Movement(
                id=reports.row_id(f"sbxobj_{day}_{i:02}", 1),
                kind=kind,
                reference=f"sbxobj_{day}_{i:02}",
                payment=f"sbxpay_{i:02}",
                merchant_reference=f"order-{i}",
                brand="visa",
                currency=("usd", "jpy")[i % 2],
                gross=gross if kind == "charge" else -gross,
                fee=processor.fee(gross) if kind == "charge" else 0,
                occurred=at(day, i % 24),
            )
        )
    return made


def by_reference(rows: list[Movement]) -> dict[str, list[Movement]]:
    grouped: dict[str, list[Movement]] = {}
    for row in rows:
        grouped.setdefault(row.reference, []).append(row)
    return grouped


def changed(before: list[Movement], after: list[Movement]) -> dict[str, Movement]:
    """The rows whose values changed, by reference; both lists hold each reference once."""
    old = {m.reference: m for m in before}
    assert len(old) == len(after)
    return {m.reference: m for m in after if m != old[m.reference]}


def test_no_discrepancies_report_the_day_as_it_was() -> None:
    day = movements()
    assert reports.inject(day, Discrepancies(seed=5), DAY1) == reports.Injected(
        sorted(day, key=lambda m: m.reference), []
    )


def test_drop_leaves_out_that_many_rows_and_touches_no_other() -> None:
    day = movements()
    injected = reports.inject(day, Discrepancies(seed=5, drop=3), DAY1)
    assert len(injected.reported) == 17 and injected.late == []
    assert set(injected.reported) < set(day)


def test_amount_changes_gross_and_net_by_the_same_amount_and_keeps_the_fee() -> None:
    day = movements()
    injected = reports.inject(day, Discrepancies(seed=5, amount=4), DAY1)
    differ = changed(day, injected.reported)
    assert len(differ) == 4
    old = {m.reference: m for m in day}
    for reference, new in differ.items():
        was = old[reference]
        assert new.fee == was.fee
        assert new.gross != was.gross and new.net - was.net == new.gross - was.gross
        assert (new.gross > 0) == (was.gross > 0), "a charge stays money in, a refund out"
        assert replace(new, gross=was.gross) == was


def test_fee_changes_fee_and_net_and_keeps_the_amount() -> None:
    day = movements()
    injected = reports.inject(day, Discrepancies(seed=5, fee=6), DAY1)
    differ = changed(day, injected.reported)
    assert len(differ) == 6
    old = {m.reference: m for m in day}
    for reference, new in differ.items():
        was = old[reference]
        assert new.gross == was.gross and new.fee != was.fee and new.fee >= 0
        assert new.net == was.net - (new.fee - was.fee)
        assert replace(new, fee=was.fee) == was


def test_duplicate_repeats_a_row_under_a_new_row_id_with_the_same_reference() -> None:
    day = movements()
    injected = reports.inject(day, Discrepancies(seed=5, duplicate=2), DAY1)
    assert len(injected.reported) == 22
    twice = {ref: rows for ref, rows in by_reference(injected.reported).items() if len(rows) > 1}
    assert len(twice) == 2
    for first, second in twice.values():
        assert first in day and first.id != second.id
        assert replace(second, id=first.id) == first
    assert len({m.id for m in injected.reported}) == 22
    assert {m for m in injected.reported if m.reference not in twice} <= set(day)


def test_late_rows_leave_the_day_unchanged_and_come_the_next_day_once() -> None:
    book = Book()
    for day in (DAY1, DAY2):
        for i in range(12):
            book.pay(f"sbxpay_{day.day}_{i:02}", 1000 + i, "usd", at(day, i))
    activity = book.activity()
    asked = Discrepancies(seed=9, late=3)
    day1 = reports.report_rows(activity, DAY1, asked)
    day2 = reports.report_rows(activity, DAY2, asked)
    day3 = reports.report_rows(activity, DAY3, asked)
    assert (len(day1), len(day2), len(day3)) == (9, 12, 3)  # 12 - 3 of its own, + 3 late
    everything = activity.movements(DAY1) + activity.movements(DAY2)
    assert Counter(day1 + day2 + day3) == Counter(everything), "each exactly once, unchanged"
    assert Counter(m for m in day1 + day2 if m.occurred < at(DAY2, 0)) == Counter(
        activity.movements(DAY1)
    )
    late = [m for m in day2 if m.occurred < at(DAY2, 0)]
    assert len(late) == 3
    # The late rows' day-2 payout counts them, as it is paid on what is reported.
    usd = reports.payouts(day2, DAY2)[0]
    assert usd.amount == sum(m.net for m in day2)
    late_ids = {m.id for m in late}
    stripe_day2 = table(reports.stripe(day2, reports.payouts(day2, DAY2), DAY2))
    late_rows = [r for r in stripe_day2 if r["balance_transaction_id"] in late_ids]
    assert {r["created_utc"][:10] for r in late_rows} == {"2026-03-10"}
    assert {r["automatic_payout_id"] for r in stripe_day2} == {usd.id}


def test_each_row_gets_one_discrepancy_at_most_and_counts_beyond_the_day_are_capped() -> None:
    day = movements(10)
    asked = Discrepancies(seed=1, late=2, drop=2, amount=2, fee=2, duplicate=2)
    injected = reports.inject(day, asked, DAY1)
    kept = by_reference(injected.reported)
    assert len(injected.late) == 2 and len(kept) == 6  # 2 late, 2 dropped
    assert sum(len(rows) == 2 for rows in kept.values()) == 2
    assert len(changed([m for m in day if m.reference in kept], [r[0] for r in kept.values()])) == 4
    assert not set(kept) & {m.reference for m in injected.late}

    greedy = reports.inject(day, Discrepancies(seed=1, late=4, drop=100, fee=5), DAY1)
    assert (len(greedy.late), greedy.reported) == (4, [])  # late first, then drop takes the rest


def test_the_same_seed_and_day_draw_the_same_rows() -> None:
    day = movements()
    asked = Discrepancies(seed=5, drop=2, amount=2, fee=2, duplicate=2, late=2)
    first = reports.inject(day, asked, DAY1)
    assert reports.inject(list(reversed(day)), asked, DAY1) == first
    assert reports.inject(day, replace(asked, seed=6), DAY1) != first


def test_payouts_are_what_the_report_holds_after_discrepancies() -> None:
    activity = two_days()
    for asked in ({"drop": 1}, {"amount": 2}, {"fee": 2}, {"duplicate": 2}, {"late": 2}):
        rows = table(report("stripe", activity, DAY1, seed=2, **asked))
        nets: Counter[str] = Counter()
        for row in rows:
            nets[row["currency"].upper()] += Decimal(row["net"])  # type: ignore[assignment]
        statement = table(reports.statement(activity, DAY2, Discrepancies(seed=2, **asked)))
        paid = {r["currency"]: Decimal(r["amount"]) for r in statement}
        assert paid == {c: net for c, net in nets.items() if net > 0}, asked
        assert paid != {"BHD": Decimal("1.168"), "JPY": 4825, "USD": Decimal("6.41")}, asked


# -- what reconciliation reads of them -------------------------------------------------------


# The provider's own label of each kind of row, as the contract has it.
CATEGORIES: dict[str, dict[str, str]] = {
    "stripe": {"charge": "charge", "refund": "refund", "dispute": "dispute", "payout": ""},
    "paypal": {"charge": "T0006", "refund": "T1107", "dispute": "T1201", "payout": "T0400"},
    "adyen": {
        "charge": "Settled",
        "refund": "Refunded",
        "dispute": "Chargeback",
        "payout": "MerchantPayout",
    },
}


def expected_rows(format: reports.Format, rows: list[Movement], day: date) -> list[tuple[Any, ...]]:
    """What payrail's parser of `format` should read back, without line numbers: each
    movement in payrail's signs and minor units, then (PayPal, Adyen) each payout."""
    paid = reports.payouts(rows, day)
    payout_of = {p.currency: p.id for p in paid}
    batch = str(reports.batch_number(day))

    def payout_reference(m: Movement) -> str:
        if format == "stripe":
            return payout_of.get(m.currency, "")
        return batch if format == "adyen" else ""  # PayPal names a payout on its own row only

    made = [
        (
            m.kind,
            CATEGORIES[format][m.kind],
            m.reference,
            m.payment,
            m.merchant_reference,
            payout_reference(m),
            m.currency.upper(),
            m.gross,
            m.fee,
            m.net,
            datetime.fromtimestamp(m.occurred, UTC),
        )
        for m in rows
    ]
    if format == "stripe":
        return made  # Stripe leaves payouts out of this report
    end = datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=UTC)
    payout_rows = [
        (
            "payout",
            CATEGORIES[format]["payout"],
            p.id,
            "",
            "",
            batch if format == "adyen" else p.id,
            p.currency.upper(),
            -p.amount,
            0,
            -p.amount,
            end,
        )
        for p in paid
    ]
    return made + payout_rows


@pytest.mark.parametrize("format", reports.FORMATS)
def test_reconciliations_parser_reads_back_the_rows_written(format: reports.Format) -> None:
    activity = two_days(bhd=format != "paypal")
    asked = Discrepancies(seed=3, amount=1, fee=1, duplicate=1, late=1)
    for day in (DAY1, DAY2, DAY3):
        text = reports.settlement_report(format, activity, day, asked)
        parsed = list(PARSERS[format](io.BytesIO(text.encode()), "report.csv"))
        assert all(isinstance(row, ProviderRow) for row in parsed)
        rows = reports.report_rows(activity, day, asked)
        assert [tuple(row)[1:] for row in parsed] == expected_rows(format, rows, day), day


def test_reconciliations_bank_reader_reads_back_the_statement() -> None:
    activity = two_days()
    text = reports.statement(activity, DAY2, Discrepancies())
    payouts = reports.payouts(reports.report_rows(activity, DAY1, Discrepancies()), DAY1)
    assert list(read_bank_statement(io.BytesIO(text.encode()), "bank.csv")) == [
        BankLine(
            i,
            DAY2,
            p.currency.upper(),
            p.amount,
            p.id,
            f"SANDBOX PSP PAYOUT {DAY1} BATCH {reports.batch_number(DAY1)}",
        )
        for i, p in enumerate(payouts, start=2)
    ]


# -- over HTTP ------------------------------------------------------------------------------

_days = itertools.count()


@pytest.fixture
async def psp_day(psp: httpx.AsyncClient, psp_clock: ManualClock) -> AsyncIterator[date]:
    """A day of the sandbox's clock that no other test uses, 09:00 on it; the clock and
    the discrepancies are put back afterwards."""
    day = date(2031, 1, 1) + timedelta(days=5 * next(_days))
    saved = psp_clock.current
    psp_clock.current = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
    try:
        yield day
    finally:
        psp_clock.current = saved
        ok(await psp.post("/sandbox/report_discrepancies", json={}))


async def get_report(psp: httpx.AsyncClient, day: date, format: str) -> httpx.Response:
    reply = await psp.get(
        "/sandbox/settlement_reports", params={"date": day.isoformat(), "format": format}
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "text/csv; charset=utf-8"
    return reply


async def test_reports_and_statement_over_http(
    psp: httpx.AsyncClient, psp_clock: ManualClock, psp_day: date
) -> None:
    usd = ok(await pay(psp, amount=1000, currency="usd"))
    jpy = ok(await pay(psp, amount=5000, currency="jpy"))
    later = ok(await pay(psp, amount=2500, currency="usd", capture=False))
    refund = ok(
        await post(psp, f"/v1/payments/{usd['id']}/refunds", {"amount": 300}, key=new_key())
    )
    psp_clock.advance(timedelta(days=1))
    ok(await post(psp, f"/v1/payments/{later['id']}/capture", {}, key=new_key()))

    stripe = await get_report(psp, psp_day, "stripe")
    name = f"Itemized_balance_change_from_activity_{psp_day}_to_{psp_day}_UTC.csv"
    assert stripe.headers["content-disposition"] == f'attachment; filename="{name}"'

    rows = table(stripe.text)
    assert {(r["source_id"], r["gross"], r["payment_intent_id"]) for r in rows} == {
        (usd["id"], "10.00", usd["reference"]),
        (jpy["id"], "5000", jpy["reference"]),
        (refund["id"], "-3.00", usd["reference"]),
    }
    next_day = table((await get_report(psp, psp_day + timedelta(days=1), "stripe")).text)
    assert [(r["source_id"], r["gross"], r["fee"]) for r in next_day] == [
        (later["id"], "25.00", "1.03")
    ]

    paypal = await get_report(psp, psp_day, "paypal")
    assert paypal.content.startswith(b'\xef\xbb\xbf"RH",')
    assert f'filename="STL-{psp_day:%Y%m%d}.01.009.CSV"' in paypal.headers["content-disposition"]
    adyen = table((await get_report(psp, psp_day, "adyen")).text)
    assert [r["Type"] for r in adyen] == ["Settled", "Settled", "Refunded", *["MerchantPayout"] * 2]

    statement = await psp.get(
        "/sandbox/bank_statements", params={"date": (psp_day + timedelta(days=1)).isoformat()}
    )
    assert statement.status_code == 200 and statement.headers["content-type"].startswith("text/csv")
    payout_ids = {r["currency"].upper(): r["automatic_payout_id"] for r in rows}
    assert {(r["currency"], r["amount"], r["reference"]) for r in table(statement.text)} == {
        ("USD", "6.41", payout_ids["USD"]),
        ("JPY", "4825", payout_ids["JPY"]),
    }


async def test_discrepancies_over_http_apply_to_later_reports_until_reset(
    psp: httpx.AsyncClient, psp_day: date
) -> None:
    for amount in range(1000, 1006):
        ok(await pay(psp, amount=amount))
    clean = (await get_report(psp, psp_day, "stripe")).text

    asked = {"seed": 4, "drop": 1, "amount": 1, "fee": 1, "duplicate": 1, "late": 1}
    reply = ok(await psp.post("/sandbox/report_discrepancies", json=asked))
    assert reply == {**asked, "date": None}
    day1 = table((await get_report(psp, psp_day, "stripe")).text)
    assert len(day1) == 6 - 1 - 1 + 1  # one dropped, one late, one twice
    assert (await get_report(psp, psp_day, "stripe")).text != clean
    day2 = table((await get_report(psp, psp_day + timedelta(days=1), "stripe")).text)
    assert [r["created_utc"][:10] for r in day2] == [str(psp_day)]  # day 1's late one
    sources = Counter(r["source_id"] for r in day1 + day2)
    assert sorted(sources.values()) == [1, 1, 1, 1, 2]  # 6 made, 1 dropped, 1 twice

    assert ok(await psp.post("/sandbox/report_discrepancies", json={"seed": 4})) == {
        "seed": 4, "drop": 0, "amount": 0, "fee": 0, "duplicate": 0, "late": 0, "date": None,
    }  # fmt: skip
    assert (await get_report(psp, psp_day, "stripe")).text == clean


async def test_a_day_of_its_own_keeps_its_late_rows_whatever_is_set_after(
    psp: httpx.AsyncClient, psp_day: date
) -> None:
    """Discrepancies set for one report day: the next day's report still brings that day's
    late rows after the default changed, and other days stay clean."""
    for amount in range(1000, 1004):
        ok(await pay(psp, amount=amount))
    day = {"date": psp_day.isoformat(), "seed": 3, "late": 1}
    assert ok(await psp.post("/sandbox/report_discrepancies", json=day))["late"] == 1
    ok(await psp.post("/sandbox/report_discrepancies", json={"seed": 9}))
    first = table((await get_report(psp, psp_day, "stripe")).text)
    next_day = table((await get_report(psp, psp_day + timedelta(days=1), "stripe")).text)
    assert len(first) == 3 and len(next_day) == 1
    assert len({r["source_id"] for r in first + next_day}) == 4  # each payment once
    assert next_day[0]["created_utc"][:10] == str(psp_day)
    bad = await psp.post("/sandbox/report_discrepancies", json={"date": "yesterday"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "date"


def test_payout_ids_are_each_sandboxs_own() -> None:
    """Two sandboxes (or one restarted) never name a payout of the same day alike."""
    assert reports.payout_id(DAY1, "usd", "a") != reports.payout_id(DAY1, "usd", "b")
    assert reports.payout_id(DAY1, "usd", "a") == reports.payout_id(DAY1, "usd", "a")


async def test_paypal_refuses_a_day_with_a_three_decimal_currency(
    psp: httpx.AsyncClient, psp_day: date
) -> None:
    ok(await pay(psp, amount=1234, currency="bhd"))
    reply = await psp.get(
        "/sandbox/settlement_reports", params={"date": psp_day.isoformat(), "format": "paypal"}
    )
    assert reply.status_code == 400
    assert reply.json()["error"] | {"message": ""} == {
        "code": "invalid_request",
        "param": "format",
        "message": "",
    }
    assert "BHD" in reply.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/sandbox/settlement_reports", {"format": "stripe"}, "date"),
        ("/sandbox/settlement_reports", {"date": "2031-1-01", "format": "stripe"}, "date"),
        ("/sandbox/settlement_reports", {"date": "2031-02-30", "format": "stripe"}, "date"),
        ("/sandbox/settlement_reports", {"date": "٢٠٣١-01-01", "format": "stripe"}, "date"),
        ("/sandbox/settlement_reports", {"date": "1969-12-31", "format": "stripe"}, "date"),
        ("/sandbox/settlement_reports", {"date": "9999-12-31", "format": "stripe"}, "date"),
        ("/sandbox/settlement_reports", {"date": "2031-01-01"}, "format"),
        ("/sandbox/settlement_reports", {"date": "2031-01-01", "format": "STRIPE"}, "format"),
        ("/sandbox/settlement_reports", {"date": "2031-01-01", "format": "csv"}, "format"),
        ("/sandbox/settlement_reports", {"date": "2031-01-01", "format": "adyen", "x": "1"}, "x"),
        ("/sandbox/bank_statements", {}, "date"),
        ("/sandbox/bank_statements", {"date": "20310101"}, "date"),
        ("/sandbox/bank_statements", {"date": "2031-01-01", "format": "stripe"}, "format"),
    ],
)
async def test_a_bad_report_parameter_is_a_400_naming_it(
    psp: httpx.AsyncClient, path: str, params: dict[str, str], param: str
) -> None:
    reply = await psp.get(path, params=params)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_request", param)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"drop": -1}, "drop"),
        ({"late": 1.5}, "late"),
        ({"fee": True}, "fee"),
        ({"duplicate": "2"}, "duplicate"),
        ({"amount": None}, "amount"),
        ({"seed": "7"}, "seed"),
        ({"rate": 0.1}, "rate"),
        ([1], None),
    ],
)
async def test_bad_discrepancies_are_a_400_naming_the_field_and_change_nothing(
    psp: httpx.AsyncClient, psp_day: date, body: object, param: str | None
) -> None:
    ok(await psp.post("/sandbox/report_discrepancies", json={"drop": 1}))
    reply = await psp.post("/sandbox/report_discrepancies", json=body)
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "invalid_request"
    assert reply.json()["error"].get("param") == param
    bad_json = await psp.post("/sandbox/report_discrepancies", content=b"{")
    assert bad_json.status_code == 400
    # Still the last good setting: one row of one is dropped.
    ok(await pay(psp))
    assert table((await get_report(psp, psp_day, "stripe")).text) == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/sandbox/settlement_reports?date=2031-01-01&format=stripe"),
        ("GET", "/sandbox/bank_statements?date=2031-01-01"),
        ("POST", "/sandbox/report_discrepancies"),
    ],
)
async def test_report_routes_need_the_secret(psp_url: str, method: str, path: str) -> None:
    async with httpx.AsyncClient(base_url=psp_url) as anonymous:
        assert (await anonymous.request(method, path)).status_code == 401
        wrong = {"Authorization": AUTH["Authorization"] + "x"}
        assert (await anonymous.request(method, path, headers=wrong)).status_code == 401


def test_report_files_are_named_as_the_providers_name_them() -> None:
    assert [reports.file_name(f, DAY1) for f in (*reports.FORMATS, "bank")] == [
        "Itemized_balance_change_from_activity_2026-03-10_to_2026-03-10_UTC.csv",
        "STL-20260310.01.009.CSV",
        f"settlement_detail_report_batch_{(DAY1 - date(1970, 1, 1)).days}.csv",
        "bank_statement_2026-03-10.csv",
    ]
