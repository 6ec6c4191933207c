"""A day's settlement report, as Stripe, PayPal or Adyen would write it, and the bank
statement its payouts land on; built from what the sandbox did, by plain functions over
values (docs/sandbox-psp.md, "Settlement reports").

Day D (UTC) holds every capture of D (a charge: what was captured, less the processor's
fee), every refund of D and every dispute opened on D (money out, no fee). Each currency's
net for the day, when positive, is paid out at the end of D and reaches the bank on D+1.

Discrepancies are injected as a provider's mistakes would show: rows dropped, amounts or
fees changed, rows duplicated, rows delivered a day late. Which rows is drawn from a seed
over the day's rows in a stable order, so the same activity, seed and day always give the
same file, and day D+1 recomputes which of D's rows were late without keeping any state.
Payouts are summed over the rows a report actually holds, as a provider pays what it
reports.
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
import re
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from typing import Any, Literal, get_args

import orjson

from payrail.clock import unix
from payrail.connectors.sandbox.errors import invalid_request
from payrail.connectors.sandbox.processor import Dispute, Payment, Refund
from payrail.money import EXPONENTS, Money

Format = Literal["stripe", "paypal", "adyen"]
FORMATS: tuple[Format, ...] = get_args(Format)
Kind = Literal["charge", "refund", "dispute"]

# The days a report can be asked for: the day before and after must be days too.
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9999, 12, 30)

_DAY_SECONDS = 86_400
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True, slots=True)
class Movement:
    """One change of the merchant's balance at the sandbox, as a report row. Signs are the
    merchant's: gross is positive for money in; fee is positive when charged."""

    id: str  # the row's own id (Stripe's balance transaction); a duplicate gets another
    kind: Kind
    reference: str  # the sandbox object that moved money: payment, refund or dispute
    payment: str  # the payment it is about
    merchant_reference: str  # the payment's `reference`, as the merchant sent it; "" if none
    brand: str  # the card's, as Stripe names brands
    currency: str  # lower case, as the sandbox keeps it
    gross: int  # minor units
    fee: int
    occurred: int  # unix seconds

    @property
    def net(self) -> int:
        return self.gross - self.fee


@dataclass(frozen=True, slots=True)
class Payout:
    """What a day's report pays out in one currency, at the end of `day`."""

    id: str
    currency: str  # lower case
    amount: int  # minor units, positive
    day: date


@dataclass(frozen=True, slots=True)
class Activity:
    """What the sandbox did, as reports read it: the store's payments (by id), refunds and
    disputes."""

    payments: Mapping[str, Payment]
    refunds: Collection[Refund]
    disputes: Collection[Dispute]
    # This sandbox's own id: its payouts are its own, not those of any other sandbox (or
    # of this one before a restart) on the same day.
    account: str = ""

    def movements(self, day: date) -> list[Movement]:
        """The day's captures, refunds and disputes, ordered by reference."""
        start = midnight(day)
        end = start + _DAY_SECONDS
        made: list[Movement] = []
        for payment in self.payments.values():
            at = payment.captured_at
            if at is not None and start <= at < end and payment.amount_captured:
                captured = payment.amount_captured
                made.append(_movement("charge", payment.id, payment, captured, payment.fee, at))
        for refund in self.refunds:
            if start <= refund.created < end:
                payment = self.payments[refund.payment]
                made.append(
                    _movement("refund", refund.id, payment, -refund.amount, 0, refund.created)
                )
        for dispute in self.disputes:
            if start <= dispute.created < end:
                payment = self.payments[dispute.payment]
                made.append(
                    _movement("dispute", dispute.id, payment, -dispute.amount, 0, dispute.created)
                )
        return sorted(made, key=lambda m: m.reference)


def _movement(
    kind: Kind, reference: str, payment: Payment, gross: int, fee: int, occurred: int
) -> Movement:
    return Movement(
        id=row_id(reference, 1),
        kind=kind,
        reference=reference,
        payment=payment.id,
        merchant_reference=payment.reference or "",
        brand=payment.card.brand,
        currency=payment.currency,
        gross=gross,
        fee=fee,
        occurred=occurred,
    )


def _digest(*parts: object) -> bytes:
    # JSON keeps the parts apart whatever characters they hold.
    return hashlib.sha256(orjson.dumps(parts)).digest()


def row_id(reference: str, copy: int) -> str:
    """A row's balance transaction id: the same for the same object in every report, and
    another for each further copy of it."""
    return f"sbxtxn_{_digest('row', reference, copy).hex()[:24]}"


def payout_id(day: date, currency: str, account: str = "") -> str:
    digest = _digest("payout", account, day.isoformat(), currency.lower())
    return f"sbxpo_{digest.hex()[:24]}"


def midnight(day: date) -> int:
    return unix(datetime(day.year, day.month, day.day, tzinfo=UTC))


# -- discrepancies -------------------------------------------------------------------------

_COUNTS = ("drop", "amount", "fee", "duplicate", "late")


@dataclass(frozen=True, slots=True)
class Discrepancies:
    """How many of a day's rows get each discrepancy, and the seed that picks them. A row
    gets one discrepancy at most; a day with fewer rows than asked for serves the kinds in
    the order late, drop, amount, fee, duplicate."""

    seed: int = 0
    drop: int = 0  # left out
    amount: int = 0  # gross and net changed, fee kept
    fee: int = 0  # fee and net changed
    duplicate: int = 0  # twice, the copy with another row id
    late: int = 0  # left out of day D's report, in day D+1's unchanged

    def to_json(self) -> dict[str, int]:
        return asdict(self)


def discrepancies_request(value: object) -> Discrepancies:
    """The body of ``POST /sandbox/report_discrepancies``: ``{"seed", "drop", "amount",
    "fee", "duplicate", "late"}``, each optional and 0 when left out."""
    if not isinstance(value, dict):
        raise invalid_request("The request body must be a JSON object.")
    for name in value:
        if name != "seed" and name not in _COUNTS:
            raise invalid_request(f"Received unknown parameter: {name}", name)
    seed = value.get("seed", 0)
    if type(seed) is not int:
        raise invalid_request("seed must be an integer.", "seed")
    counts: dict[str, int] = {}
    for name in _COUNTS:
        count = value.get(name, 0)
        if type(count) is not int or count < 0:
            raise invalid_request(f"{name} must be a whole number of rows, 0 or more.", name)
        counts[name] = count
    return Discrepancies(seed, **counts)


def plan_request(value: object, current: Plan) -> tuple[Plan, date | None]:
    """The plan after a ``POST /sandbox/report_discrepancies``: with a ``"date"``, the
    setting of that report day alone; without, the default of every other day."""
    if isinstance(value, dict) and "date" in value:
        day = value["date"]
        if not isinstance(day, str):
            raise invalid_request("date must be a date such as 2026-01-31.", "date")
        on = parse_day(day)
        asked = discrepancies_request({k: v for k, v in value.items() if k != "date"})
        return replace(current, days={**current.days, on: asked}), on
    return replace(current, default=discrepancies_request(value)), None


@dataclass(frozen=True, slots=True)
class Injected:
    reported: list[Movement]  # what the day's own report holds of the day
    late: list[Movement]  # held back for the next day's report, unchanged


def inject(movements: Sequence[Movement], asked: Discrepancies, day: date) -> Injected:
    """A day's movements with the discrepancies asked for: which rows get which is drawn
    from (seed, day) over the rows ordered by reference, and nothing else."""
    ordered = sorted(movements, key=lambda m: m.reference)
    seed = _digest("discrepancies", str(asked.seed), day.isoformat())
    rng = random.Random(int.from_bytes(seed))
    wanted = (
        ("late", asked.late),
        ("drop", asked.drop),
        ("amount", asked.amount),
        ("fee", asked.fee),
        ("duplicate", asked.duplicate),
    )
    chosen = iter(rng.sample(ordered, min(sum(n for _, n in wanted), len(ordered))))
    fate = {m.reference: kind for kind, n in wanted for m in islice(chosen, n)}
    reported: list[Movement] = []
    late: list[Movement] = []
    for movement in ordered:
        match fate.get(movement.reference):
            case None:
                reported.append(movement)
            case "late":
                late.append(movement)
            case "drop":
                pass
            case "amount":
                reported.append(_amount_changed(movement, rng))
            case "fee":
                reported.append(_fee_changed(movement, rng))
            case "duplicate":
                reported += [movement, replace(movement, id=row_id(movement.reference, 2))]
    return Injected(reported, late)


def _amount_changed(movement: Movement, rng: random.Random) -> Movement:
    """Up to a tenth more or less (one minor unit at least), never to zero or past it."""
    size = abs(movement.gross)
    change = rng.randint(1, max(1, size // 10))
    if rng.random() < 0.5 and size > change:
        change = -change
    gross = size + change if movement.gross > 0 else -(size + change)
    return replace(movement, gross=gross)


def _fee_changed(movement: Movement, rng: random.Random) -> Movement:
    """A fee where there was none (up to a twentieth of the amount), or up to half more or
    less of the one there was."""
    if movement.fee == 0:
        return replace(movement, fee=rng.randint(1, max(1, abs(movement.gross) // 20)))
    change = rng.randint(1, max(1, movement.fee // 2))
    return replace(movement, fee=movement.fee + (change if rng.random() < 0.5 else -change))


# -- what a day's report holds ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """The discrepancies of each day: a day's own when one was set for it, else the
    default. A day's late rows appear in the next day's report, which finds them by the
    day's own setting, whatever was set since."""

    default: Discrepancies = field(default_factory=Discrepancies)
    days: Mapping[date, Discrepancies] = field(default_factory=dict)

    def on(self, day: date) -> Discrepancies:
        return self.days.get(day, self.default)


def _on(asked: Discrepancies | Plan, day: date) -> Discrepancies:
    return asked.on(day) if isinstance(asked, Plan) else asked


def report_rows(activity: Activity, day: date, asked: Discrepancies | Plan) -> list[Movement]:
    """Day D's rows: D's own after injection, and the rows of D-1 that came late."""
    previous = day - timedelta(days=1)
    today = inject(activity.movements(day), _on(asked, day), day)
    late = inject(activity.movements(previous), _on(asked, previous), previous).late
    return sorted([*today.reported, *late], key=lambda m: (m.occurred, m.reference, m.id))


def payouts(rows: Iterable[Movement], day: date, account: str = "") -> list[Payout]:
    """One payout per currency of the rows' net, when it is positive; by currency."""
    nets: dict[str, int] = defaultdict(int)
    for row in rows:
        nets[row.currency] += row.net
    return [
        Payout(payout_id(day, c, account), c, net, day)
        for c, net in sorted(nets.items())
        if net > 0
    ]


def batch_number(day: date) -> int:
    """Adyen's batch for a day: one a day, counted from 1970-01-01."""
    return (day - FIRST_DAY).days


class Unrepresentable(ValueError):
    """A report format cannot carry an amount of this currency."""


def _major(amount: int, currency: str) -> str:
    return Money(amount, currency).to_decimal_string()


def _stamp(at: int) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _csv(header: Sequence[str], rows: Iterable[Mapping[str, str]]) -> str:
    """A CSV file, RFC 4180: the header, then each row by column name (blank if absent)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, header, restval="", lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


# -- Stripe: itemized balance change from activity -------------------------------------------

STRIPE_COLUMNS = (
    "balance_transaction_id",
    "created_utc",
    "available_on_utc",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "description",
    "customer_facing_amount",
    "customer_facing_currency",
    "automatic_payout_id",
    "automatic_payout_effective_at_utc",
    "charge_id",
    "payment_intent_id",
)


def _stripe_description(row: Movement) -> str:
    if row.kind == "charge":
        return row.merchant_reference
    if row.kind == "refund":
        return f"REFUND FOR CHARGE ({row.merchant_reference})"
    return f"Chargeback withdrawal for {row.payment}"


def stripe(rows: Sequence[Movement], paid: Sequence[Payout], day: date) -> str:
    """``balance_change_from_activity.itemized.3`` with the linkage columns. A charge's
    funds are available the next midnight, a refund's or dispute's at once; each row of a
    currency that is paid out names the payout, which arrives the next midnight."""
    by_currency = {p.currency: p for p in paid}
    arrives = _stamp(midnight(day + timedelta(days=1)))

    def line(row: Movement) -> dict[str, str]:
        c = row.currency
        available = midnight(_day_of(row.occurred) + timedelta(days=1))
        settled = by_currency.get(c)
        return {
            "balance_transaction_id": row.id,
            "created_utc": _stamp(row.occurred),
            "available_on_utc": _stamp(available if row.kind == "charge" else row.occurred),
            "currency": c,
            "gross": _major(row.gross, c),
            "fee": _major(row.fee, c),
            "net": _major(row.net, c),
            "reporting_category": row.kind,
            "source_id": row.reference,
            "description": _stripe_description(row),
            "customer_facing_amount": _major(abs(row.gross), c),
            "customer_facing_currency": c,
            "automatic_payout_id": settled.id if settled else "",
            "automatic_payout_effective_at_utc": arrives if settled else "",
            "charge_id": row.payment,
            # Where a Stripe integration finds its own id for the payment (payrail's
            # parser reads the merchant's reference from it).
            "payment_intent_id": row.merchant_reference,
        }

    return _csv(STRIPE_COLUMNS, map(line, rows))


def _day_of(at: int) -> date:
    return datetime.fromtimestamp(at, UTC).date()


# -- PayPal: settlement report (STL) ---------------------------------------------------------

PAYPAL_COLUMNS = (
    "Transaction ID",
    "Invoice ID",
    "PayPal Reference ID",
    "PayPal Reference ID Type",
    "Transaction Event Code",
    "Transaction Initiation Date",
    "Transaction Completion Date",
    "Transaction Debit or Credit",
    "Gross Transaction Amount",
    "Gross Transaction Currency",
    "Fee Debit or Credit",
    "Fee Amount",
    "Fee Currency",
    "Custom Field",
    "Consumer ID",
    "Payment Tracking ID",
    "Store ID",
    "Bank Reference ID",
    "Credit Transactional Fee",
    "Credit Promotional Fee",
    "Credit Term",
)
PAYPAL_EVENT_CODES: dict[Kind, str] = {"charge": "T0006", "refund": "T1107", "dispute": "T1201"}
PAYPAL_PAYOUT_CODE = "T0400"
PAYPAL_ACCOUNT = "SBXPSPACCOUNT"  # 13 characters, as PayPal's encrypted account ids
PAYPAL_VERSION = "009"
PAYPAL_WINDOW = "X"  # the sandbox reports UTC days


def _q(text: str) -> str:
    """A PayPal text field: always quoted. Numbers and dates are written bare."""
    return '"' + text.replace('"', '""') + '"'


def _paypal_stamp(at: int) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y/%m/%d %H:%M:%S %z")


def _hundredths(amount: int, currency: str) -> int:
    """PayPal writes every currency's amount in hundredths of its major unit: 100 yen is 10000."""
    exponent = EXPONENTS[currency.upper()]
    if exponent > 2:
        raise Unrepresentable(
            f"PayPal writes amounts in hundredths; {currency.upper()} has {exponent} decimals."
        )
    scale: int = 10 ** (2 - exponent)
    return amount * scale


def _signed_pair(amount: int, currency: str) -> list[str]:
    return [_q("CR" if amount >= 0 else "DR"), str(_hundredths(abs(amount), currency))]


def _paypal_body(row: Movement) -> list[str]:
    c = row.currency
    linked = row.kind != "charge"
    fee = (
        [_q("DR" if row.fee > 0 else "CR"), str(_hundredths(abs(row.fee), c)), _q(c.upper())]
        if row.fee
        else [_q(""), "", _q("")]
    )
    return [
        _q("SB"),
        _q(row.reference),
        _q(row.merchant_reference),
        _q(row.payment if linked else ""),
        _q("TXN" if linked else ""),
        _q(PAYPAL_EVENT_CODES[row.kind]),
        _paypal_stamp(row.occurred),
        _paypal_stamp(row.occurred),
        *_signed_pair(row.gross, c),
        _q(c.upper()),
        *fee,
        *(_q("") for _ in range(5)),  # custom, consumer, tracking, store, bank reference
        "",
        "",
        "",
    ]


def _paypal_payout(payout: Payout, at: int) -> list[str]:
    return [
        _q("SB"),
        _q(payout.id),
        *(_q("") for _ in range(3)),
        _q(PAYPAL_PAYOUT_CODE),
        _paypal_stamp(at),
        _paypal_stamp(at),
        _q("DR"),
        str(_hundredths(payout.amount, payout.currency)),
        _q(payout.currency.upper()),
        _q(""),
        "",
        _q(""),
        *(_q("") for _ in range(4)),
        _q(payout.id),  # Bank Reference ID: what the bank statement shows
        "",
        "",
        "",
    ]


def paypal(rows: Sequence[Movement], paid: Sequence[Payout], day: date) -> str:
    """An STL file, ``RH, FH, SH, CH, SB*, SF per currency, SC, RF per currency, RC, FF``,
    starting with a UTF-8 BOM. One section, the day in UTC; a T0400 withdrawal per payout
    at the day's last second. The balance starts each day at 0 and ends at what was not
    paid out: 0, or a day's negative net."""
    start = midnight(day)
    end = start + _DAY_SECONDS
    bodies = [_paypal_body(row) for row in rows]
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])  # cr, dr, fee cr/dr, n
    for row in rows:
        t = totals[row.currency]
        t[0 if row.gross >= 0 else 1] += _hundredths(abs(row.gross), row.currency)
        t[2 if row.fee < 0 else 3] += _hundredths(abs(row.fee), row.currency)
        t[4] += 1
    for payout in paid:
        bodies.append(_paypal_payout(payout, end - 1))
        t = totals[payout.currency]
        t[1] += _hundredths(payout.amount, payout.currency)
        t[4] += 1

    def footer(kind: str, currency: str) -> list[str]:
        credit, debit, fee_credit, fee_debit, count = totals[currency]
        ending = credit - debit + fee_credit - fee_debit
        balances = [_q("CR"), "0", *_pair(ending)] * 2 + [_q("CR"), "0", _q("CR"), "0"]
        amounts = [str(credit), str(debit), str(fee_credit), str(fee_debit)]
        return [_q(kind), _q(currency.upper()), *amounts, *balances, str(count)]

    lines = [
        [_q("RH"), _paypal_stamp(end), _q(PAYPAL_WINDOW), _q(PAYPAL_ACCOUNT), PAYPAL_VERSION, ""],
        [_q("FH"), "01"],
        [_q("SH"), _paypal_stamp(start), _paypal_stamp(end - 1), _q(PAYPAL_ACCOUNT), _q("")],
        [_q("CH"), *map(_q, PAYPAL_COLUMNS)],
        *bodies,
        *(footer("SF", c) for c in sorted(totals)),
        [_q("SC"), str(len(bodies))],
        *(footer("RF", c) for c in sorted(totals)),
        [_q("RC"), str(len(bodies))],
        [_q("FF"), str(len(bodies))],
    ]
    return "\ufeff" + "".join(",".join(line) + "\r\n" for line in lines)


def _pair(balance: int) -> list[str]:
    # Balances are already in PayPal's hundredths.
    return [_q("CR" if balance >= 0 else "DR"), str(abs(balance))]


# -- Adyen: settlement details report --------------------------------------------------------

ADYEN_COLUMNS = (
    "Company Account",
    "Merchant Account",
    "Psp Reference",
    "Merchant Reference",
    "Payment Method",
    "Creation Date",
    "TimeZone",
    "Type",
    "Modification Reference",
    "Gross Currency",
    "Gross Debit (GC)",
    "Gross Credit (GC)",
    "Exchange Rate",
    "Net Currency",
    "Net Debit (NC)",
    "Net Credit (NC)",
    "Commission (NC)",
    "Markup (NC)",
    "Scheme Fees (NC)",
    "Interchange (NC)",
    "Payment Method Variant",
    "Modification Merchant Reference",
    "Batch Number",
    *(f"Reserved{n}" for n in range(4, 11)),
)
ADYEN_TYPES: dict[Kind, str] = {"charge": "Settled", "refund": "Refunded", "dispute": "Chargeback"}
ADYEN_COMPANY = "SandboxCompany"
ADYEN_MERCHANT = "SandboxMerchant"
ADYEN_TIME_ZONE = "UTC"
# Adyen's payment method names for the brands Stripe names otherwise.
_ADYEN_METHODS = {"mastercard": "mc", "unionpay": "cup"}


def _debit_credit(side: str, unit: str, amount: int, currency: str) -> dict[str, str]:
    """An unsigned amount in its Debit or Credit column."""
    column = f"{side} {'Credit' if amount >= 0 else 'Debit'} ({unit})"
    return {column: _major(abs(amount), currency)}


def adyen(rows: Sequence[Movement], paid: Sequence[Payout], day: date) -> str:
    """A settlement details report of the day's batch: a Settled, Refunded or Chargeback
    row per movement (a payment's rows carry its id as Psp Reference; the modification is
    the payment itself, the refund or the dispute), the fee as blended Commission, then a
    MerchantPayout row per payout naming it. Amounts unsigned, their column the side."""
    batch = str(batch_number(day))
    account = {"Company Account": ADYEN_COMPANY, "Merchant Account": ADYEN_MERCHANT}

    def line(row: Movement) -> dict[str, str]:
        c = row.currency
        method = _ADYEN_METHODS.get(row.brand, row.brand)
        return {
            **account,
            "Psp Reference": row.payment,
            "Merchant Reference": row.merchant_reference,
            "Payment Method": method,
            "Creation Date": _stamp(row.occurred),
            "TimeZone": ADYEN_TIME_ZONE,
            "Type": ADYEN_TYPES[row.kind],
            "Modification Reference": row.reference,
            "Gross Currency": c.upper(),
            **_debit_credit("Gross", "GC", row.gross, c),
            "Exchange Rate": "1",
            "Net Currency": c.upper(),
            **_debit_credit("Net", "NC", row.net, c),
            "Commission (NC)": _major(row.fee, c) if row.fee else "",
            "Payment Method Variant": method,
            "Batch Number": batch,
        }

    at = _stamp(midnight(day + timedelta(days=1)) - 1)
    payout_lines = [
        {
            **account,
            "Creation Date": at,
            "TimeZone": ADYEN_TIME_ZONE,
            "Type": "MerchantPayout",
            "Modification Reference": p.id,
            "Net Currency": p.currency.upper(),
            "Net Debit (NC)": _major(p.amount, p.currency),
            "Batch Number": batch,
        }
        for p in paid
    ]
    return _csv(ADYEN_COLUMNS, [*map(line, rows), *payout_lines])


# -- the bank ------------------------------------------------------------------------------

BANK_COLUMNS = ("date", "amount", "currency", "reference", "description")


def bank_statement(arrived: Sequence[Payout], day: date) -> str:
    """Day D's statement: the payouts that arrived on D, as credits naming each payout."""
    return _csv(
        BANK_COLUMNS,
        [
            {
                "date": day.isoformat(),
                "amount": _major(p.amount, p.currency),
                "currency": p.currency.upper(),
                "reference": p.id,
                "description": f"SANDBOX PSP PAYOUT {p.day} BATCH {batch_number(p.day)}",
            }
            for p in arrived
        ],
    )


# -- the files -------------------------------------------------------------------------------

_WRITERS: dict[Format, Callable[[Sequence[Movement], Sequence[Payout], date], str]] = {
    "stripe": stripe,
    "paypal": paypal,
    "adyen": adyen,
}


def settlement_report(
    format: Format, activity: Activity, day: date, asked: Discrepancies | Plan
) -> str:
    """Day D's settlement report in `format`; Unrepresentable if the format cannot carry
    one of its currencies."""
    rows = report_rows(activity, day, asked)
    return _WRITERS[format](rows, payouts(rows, day, activity.account), day)


def statement(activity: Activity, day: date, asked: Discrepancies | Plan) -> str:
    """Day D's bank statement: the payouts of D-1's report."""
    previous = day - timedelta(days=1)
    rows = report_rows(activity, previous, asked)
    return bank_statement(payouts(rows, previous, activity.account), day)


def file_name(format: Format | Literal["bank"], day: date) -> str:
    """What the provider (or the bank) would call the file."""
    names: dict[str, str] = {
        "stripe": f"Itemized_balance_change_from_activity_{day}_to_{day}_UTC.csv",
        "paypal": f"STL-{day:%Y%m%d}.01.{PAYPAL_VERSION}.CSV",
        "adyen": f"settlement_detail_report_batch_{batch_number(day)}.csv",
        "bank": f"bank_statement_{day}.csv",
    }
    return names[format]


def parse_day(value: Any) -> date:
    """A report's ``date`` parameter, YYYY-MM-DD."""
    try:
        if not isinstance(value, str) or _DAY.fullmatch(value) is None:
            raise ValueError
        day = date.fromisoformat(value)
    except ValueError:
        raise invalid_request("date must be a day as YYYY-MM-DD.", "date") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise invalid_request(f"date must be from {FIRST_DAY} to {LAST_DAY}.", "date")
    return day
