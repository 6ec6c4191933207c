"""Adyen's Settlement details report (settlement_detail_report_batch_<N>.csv): one row per
booking of a payable batch, line 1 its header.

Columns are found by name: Adyen adds columns (DCC Markup (NC), booking dates, metadata)
and lets their order change. Required, as Adyen spells them: Merchant Account, Psp
Reference, Merchant Reference, Creation Date, TimeZone, Type, Modification Reference,
Gross Currency, Gross Debit (GC), Gross Credit (GC), Exchange Rate, Net Currency, Net
Debit (NC), Net Credit (NC), Commission (NC), Markup (NC), Scheme Fees (NC), Interchange
(NC), Batch Number. Others are ignored, DCC Markup (NC) among them.

Money is in the net (settlement) currency: net is Net Credit (NC) or minus Net Debit (NC),
exactly one of them filled, unsigned; fee is the sum of Commission, Markup, Scheme Fees
and Interchange (NC), blank being 0 and a sign allowed; amount = net + fee, which is the
gross in the net currency (Adyen: net credit = gross x rate - fees, net debit = gross x
rate + fees). When Gross Currency is not Net Currency, the gross has no exact value in the
net currency: the row is still in the net currency, its amount net + fee, and the gross
itself is not kept. Where Exchange Rate is exactly 1 and the two currencies are one, the
gross must tie: |signed gross - amount| <= 0.01 of the currency (the research notes'
rounding allowance; 0 for a currency without cents); other rates are not checked.

Creation Date is "YYYY-MM-DD HH:MM:SS" in the zone TimeZone abbreviates, which follows
daylight saving row by row (CET in winter, CEST in summer). Abbreviations are ambiguous
(CST, IST, AST each name several zones), so only those in ZONES are read, and any other is
rejected rather than guessed.

Kinds by Type: Settled charge; Refunded refund; RefundedReversed refund_failure;
Chargeback and SecondChargeback dispute; ChargebackReversed dispute_reversal; Fee,
MiscCosts, PaymentCost and AuthorisationSchemeFee fee; MerchantPayout payout;
BankInstructionReturned (a payout the bank sent back) payout_reversal; Balancetransfer
(carried from or to another batch) transfer; DepositCorrection, InvoiceDeduction and
ManualCorrected adjustment; any other Type (Adyen's list is longer than its
documentation) other, kept.

References: reference is the Psp Reference for Settled (the payment), and for the other
rows the Modification Reference (the refund's, chargeback's... own reference; free text
on batch rows such as Fee) or, when that is blank, the Psp Reference; payment_reference
the Psp Reference; merchant_reference the Merchant Reference; payout_reference the Batch
Number.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
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

MERCHANT_ACCOUNT = "Merchant Account"
PSP_REFERENCE = "Psp Reference"
MERCHANT_REFERENCE = "Merchant Reference"
CREATED = "Creation Date"
TIME_ZONE = "TimeZone"
TYPE = "Type"
MODIFICATION_REFERENCE = "Modification Reference"
GROSS_CURRENCY = "Gross Currency"
GROSS_DEBIT = "Gross Debit (GC)"
GROSS_CREDIT = "Gross Credit (GC)"
RATE = "Exchange Rate"
NET_CURRENCY = "Net Currency"
NET_DEBIT = "Net Debit (NC)"
NET_CREDIT = "Net Credit (NC)"
FEES = ("Commission (NC)", "Markup (NC)", "Scheme Fees (NC)", "Interchange (NC)")
BATCH = "Batch Number"
REQUIRED = (
    MERCHANT_ACCOUNT,
    PSP_REFERENCE,
    MERCHANT_REFERENCE,
    CREATED,
    TIME_ZONE,
    TYPE,
    MODIFICATION_REFERENCE,
    GROSS_CURRENCY,
    GROSS_DEBIT,
    GROSS_CREDIT,
    RATE,
    NET_CURRENCY,
    NET_DEBIT,
    NET_CREDIT,
    *FEES,
    BATCH,
)

KINDS: dict[str, Kind] = {
    "Settled": "charge",
    "Refunded": "refund",
    "RefundedReversed": "refund_failure",
    "Chargeback": "dispute",
    "SecondChargeback": "dispute",
    "ChargebackReversed": "dispute_reversal",
    "Fee": "fee",
    "MiscCosts": "fee",
    "PaymentCost": "fee",
    "AuthorisationSchemeFee": "fee",
    "MerchantPayout": "payout",
    "BankInstructionReturned": "payout_reversal",
    "Balancetransfer": "transfer",
    "DepositCorrection": "adjustment",
    "InvoiceDeduction": "adjustment",
    "ManualCorrected": "adjustment",
}

# TimeZone abbreviations payrail reads, as UTC offsets: Europe's, North America's
# (but CST/CDT: also China's and Cuba's), and the unambiguous ones of Asia-Pacific.
ZONES = {
    "UTC": "+00:00",
    "GMT": "+00:00",
    "WET": "+00:00",
    "WEST": "+01:00",
    "BST": "+01:00",
    "CET": "+01:00",
    "CEST": "+02:00",
    "EET": "+02:00",
    "EEST": "+03:00",
    "MSK": "+03:00",
    "EST": "-05:00",
    "EDT": "-04:00",
    "MST": "-07:00",
    "MDT": "-06:00",
    "PST": "-08:00",
    "PDT": "-07:00",
    "AKST": "-09:00",
    "AKDT": "-08:00",
    "HST": "-10:00",
    "BRT": "-03:00",
    "JST": "+09:00",
    "KST": "+09:00",
    "HKT": "+08:00",
    "SGT": "+08:00",
    "AWST": "+08:00",
    "ACST": "+09:30",
    "ACDT": "+10:30",
    "AEST": "+10:00",
    "AEDT": "+11:00",
    "NZST": "+12:00",
    "NZDT": "+13:00",
}

_RATE = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def read(stream: IO[bytes], file: str) -> Iterator[ProviderRow]:
    """The rows of an Adyen settlement details report, as they are read; ReportError on
    the first problem."""
    rows = records(stream, file)
    header = next(rows, None)
    if header is None:
        raise empty_file(file)
    header_line, names = header
    at = column_indexes(names, REQUIRED, (), file, header_line)
    width = len(names)
    units: dict[str, tuple[str, int]] = {}  # currency text: code, exponent

    def unit(text: str, line: int, column: str) -> tuple[str, int]:
        found = units.get(text)
        if found is None:
            try:
                code = currency_code(text)
            except ValueError as error:
                raise ReportError(file, line, column, str(error)) from None
            found = units[text] = (code, EXPONENTS[code])
        return found

    i_type, i_psp, i_modification = at[TYPE], at[PSP_REFERENCE], at[MODIFICATION_REFERENCE]
    fees = [(name, at[name]) for name in FEES]
    for line, row in rows:
        if len(row) != width:
            raise ReportError(file, line, None, f"has {len(row)} fields; the header {width}")
        currency, exponent = unit(row[at[NET_CURRENCY]], line, NET_CURRENCY)
        offset = ZONES.get(row[at[TIME_ZONE]])
        if offset is None:
            raise ReportError(
                file, line, TIME_ZONE, f"{row[at[TIME_ZONE]]!r} is no zone payrail knows"
            )
        net_debit, net_credit = row[at[NET_DEBIT]], row[at[NET_CREDIT]]
        gross_debit, gross_credit = row[at[GROSS_DEBIT]], row[at[GROSS_CREDIT]]
        net_column = NET_DEBIT if net_debit else NET_CREDIT
        column = net_column
        try:
            net = _signed(net_debit, net_credit, currency, exponent)
            if net is None:
                raise ValueError(f"is blank, and so is {NET_DEBIT}")
            fee = 0
            for name, index in fees:
                if row[index]:
                    column = name
                    fee += decimal_minor_units(row[index], currency, exponent)
            column = RATE
            rate = row[at[RATE]]
            if rate and rate != "1" and _RATE.fullmatch(rate) is None:
                raise ValueError(f"{rate!r} is not a decimal exchange rate")
            column = CREATED
            created = row[at[CREATED]]
            if len(created) != 19:
                raise ValueError(f"{created!r} is not YYYY-MM-DD HH:MM:SS")
            occurred_at = datetime.fromisoformat(created + offset)
            gross, gross_currency = None, ""
            if gross_debit or gross_credit:
                gross_currency, gross_exponent = unit(row[at[GROSS_CURRENCY]], line, GROSS_CURRENCY)
                column = GROSS_DEBIT if gross_debit else GROSS_CREDIT
                gross = _signed(gross_debit, gross_credit, gross_currency, gross_exponent)
        except ReportError:
            raise
        except ValueError as error:
            raise ReportError(file, line, column, str(error)) from None
        amount = net + fee
        if (
            gross is not None
            and gross_currency == currency
            and (rate == "1" or (rate and Decimal(rate) == 1))
            and abs(gross - amount) > 10**exponent // 100
        ):
            raise ReportError(
                file,
                line,
                net_column,
                f"{net_debit or net_credit} does not tie: gross {gross_debit or gross_credit}"
                f" at rate 1 and fees of {fee} minor units make {abs(gross - fee)}",
            )
        kind_text = row[i_type]
        yield ProviderRow(
            line,
            KINDS.get(kind_text, "other"),
            kind_text,
            row[i_psp] if kind_text == "Settled" else row[i_modification] or row[i_psp],
            row[i_psp],
            row[at[MERCHANT_REFERENCE]],
            row[at[BATCH]],
            currency,
            amount,
            fee,
            net,
            occurred_at,
        )


def _signed(debit: str, credit: str, currency: str, exponent: int) -> int | None:
    """A debit-or-credit pair of unsigned amounts as one signed; None when both are blank."""
    if debit and credit:
        raise ValueError(f"is filled, and so is the credit beside it ({credit!r})")
    text = debit or credit
    if not text:
        return None
    if text[:1] == "-":
        raise ValueError(f"{text!r} has a sign; whether it is a debit is the column's")
    value = decimal_minor_units(text, currency, exponent)
    return -value if debit else value
