"""`payrail demo`'s subscription business: a small streaming service run for six months
through the public API, on a test clock, so that months pass in seconds and the real
clock is untouched.

The platform's billing worker does the billing (`payrail up` runs it): the demo only
advances the clock and waits until it is ready again, as a merchant's test suite would.
At each monthly stop some customers sign up, upgrade (prorated, invoiced at once), or
ask to cancel at the period end; trials end, some on a card that fails, and some of those
customers then save a working card, which dunning's next retry charges. Everything
printed is computed from what the API answers — the clock's subscriptions (status=all),
the invoices, the invoice.payment_failed events and the failed-payments report — never
from the database.

The merchant must already be connected to a PSP (the demo's first part connects it to
the sandbox): the cards here are the sandbox's test cards.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from payrail.billing.test_clocks.service import add_interval
from payrail.clock import unix
from payrail.money import Money

CLOCKS = "/v1/test_helpers/test_clocks"
START = datetime(2026, 1, 1, tzinfo=UTC)
MONTHS = 6
# The clock stops half a day after each month starts: the renewals of the 1st are done,
# and the customers act on what they see (a failed payment, a new month).
STOP_OFFSET = timedelta(hours=12)
# A pass of the billing worker over the clock's customers takes a second or two; the
# rest is room for a busy machine. Past it the demo fails, saying what it waited for.
READY_TIMEOUT = 30.0
POLL_SECONDS = 0.1
# A stop's sign-ups go a few at a time: the API and PostgreSQL then work side by side,
# which about halves their time (measured in-process, on two cores).
SIGN_UPS_AT_ONCE = 4
CURRENCIES = ("usd", "eur")
# Monthly prices in minor units per currency; a year costs ten months.
TIERS = {
    "Basic": {"usd": 900, "eur": 800},
    "Premium": {"usd": 1900, "eur": 1700},
    "Premium+": {"usd": 3900, "eur": 3500},
}
UPGRADE = {"Basic": "Premium", "Premium": "Premium+"}
MONTHS_PER_YEAR = 10
GOOD_CARD = "pm_card_visa"
FAILING_CARD = "pm_card_chargeCustomerFail"  # attaches, then every charge fails
NEW_CARD = "pm_card_mastercard"
# Subscriptions that bring revenue this month: past due ones are still customers that
# dunning may recover (as Stripe's MRR counts them); trials pay nothing yet.
PAYING = frozenset({"active", "past_due"})
PER_YEAR = {"day": 365, "week": 52, "month": 12, "year": 1}


class BusinessError(Exception):
    """A step of the business failed; the message says which and why."""


@dataclass(frozen=True)
class Member:
    """A customer of the plan: what they buy, and what they will do at which stop."""

    joins: int  # the stop at which they subscribe (0: the start)
    tier: str
    currency: str
    interval: str  # month or year
    trial_days: int = 0
    card: str = GOOD_CARD  # the test card they sign up with
    recovers: bool = False  # saves a working card once a payment of theirs has failed
    upgrades_at: int | None = None  # moves one tier up, invoiced at once (prorated)
    cancels_at: int | None = None  # asks to cancel at the end of the period


def _yearly(tier: str, currency: str, **more: Any) -> Member:
    return Member(0, tier, currency, "year", **more)


# Most pay yearly (two months free), which also keeps the demo quick: a yearly plan
# renews after the six months. The trials that end on a failing card are yearly too: the
# billing worker makes one attempt per invoice and advance, at the clock's new time, so
# on a monthly plan the next renewal would come before dunning's final action.
PLAN: tuple[Member, ...] = (
    Member(0, "Basic", "usd", "month", upgrades_at=2),
    Member(0, "Premium", "usd", "month", cancels_at=1),
    Member(0, "Premium+", "eur", "month", cancels_at=3),
    Member(0, "Premium", "eur", "month", trial_days=14),
    *(_yearly(t, c) for t in TIERS for c in ("usd", "usd", "eur", "usd")),
    _yearly("Basic", "usd", upgrades_at=3),
    _yearly("Premium", "eur", trial_days=30),
    _yearly("Premium+", "usd"),
    _yearly("Premium", "usd", trial_days=14, card=FAILING_CARD, recovers=True),
    _yearly("Basic", "eur", trial_days=14, card=FAILING_CARD),
    _yearly("Premium+", "usd", trial_days=45, card=FAILING_CARD, recovers=True),
    _yearly("Premium", "eur", trial_days=75, card=FAILING_CARD),
    _yearly("Basic", "usd", trial_days=105, card=FAILING_CARD, recovers=True),
    Member(1, "Basic", "usd", "month", cancels_at=4),
    Member(1, "Premium", "eur", "year"),
    Member(2, "Premium+", "usd", "year"),
    Member(3, "Basic", "eur", "year"),
    Member(4, "Premium", "eur", "month"),
    Member(5, "Premium+", "usd", "year"),
)


def stop_time(stop: int) -> datetime:
    """Where the clock stands at a stop: the start, then half a day into each month."""
    return START if stop == 0 else add_interval(START, "month", stop) + STOP_OFFSET


# --- What the API answers, summed up (pure) ---------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """The clock's subscriptions and invoices by id, and its invoice.payment_failed
    events (event id -> invoice id), as the API answered at one stop."""

    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Month:
    """A row of the table: the state at `clock` and what happened since the stop before."""

    clock: int  # unix seconds, the clock's frozen time
    mrr: dict[str, int]  # minor units per lowercase currency
    subscribers: int
    new: int
    upgraded: int
    churned: int
    failed: int  # failed payment attempts
    recovered: int  # invoices paid after at least one failed attempt


def _item(subscription: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = subscription["items"]["data"][0]
    return item


def monthly(subscription: dict[str, Any]) -> Fraction:
    """What the subscription brings in a month, in minor units: its price per period
    spread over the months of the period (a yearly price counts a twelfth)."""
    item = _item(subscription)
    price = item["price"]
    recurring = price["recurring"]
    per_period = price["unit_amount"] * item["quantity"]
    return Fraction(per_period * PER_YEAR[recurring["interval"]], 12 * recurring["interval_count"])


def mrr(subscriptions: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Monthly recurring revenue per currency of the paying subscriptions, in minor units,
    rounded (half to even) once per currency."""
    totals: dict[str, Fraction] = dict.fromkeys(CURRENCIES, Fraction(0))
    for subscription in subscriptions:
        if subscription["status"] in PAYING:
            currency = subscription["currency"]
            totals[currency] = totals.get(currency, Fraction(0)) + monthly(subscription)
    return {currency: round(total) for currency, total in totals.items()}


def month(clock: int, before: Snapshot, after: Snapshot) -> Month:
    subscriptions = after.subscriptions
    earlier = before.subscriptions
    failed_invoices = set(after.failures.values())

    def upgraded(sub_id: str, subscription: dict[str, Any]) -> bool:
        return sub_id in earlier and monthly(subscription) > monthly(earlier[sub_id])

    def churned(sub_id: str, subscription: dict[str, Any]) -> bool:
        was = earlier.get(sub_id, {}).get("status")
        return subscription["status"] == "canceled" and was != "canceled"

    def recovered(invoice_id: str, invoice: dict[str, Any]) -> bool:
        was = before.invoices.get(invoice_id, {}).get("status")
        return invoice["status"] == "paid" and was != "paid" and invoice_id in failed_invoices

    return Month(
        clock=clock,
        mrr=mrr(subscriptions.values()),
        subscribers=sum(s["status"] in PAYING for s in subscriptions.values()),
        new=len(subscriptions.keys() - earlier.keys()),
        upgraded=sum(upgraded(i, s) for i, s in subscriptions.items()),
        churned=sum(churned(i, s) for i, s in subscriptions.items()),
        failed=len(after.failures.keys() - before.failures.keys()),
        recovered=sum(recovered(i, inv) for i, inv in after.invoices.items()),
    )


def prorations(invoices: Iterable[dict[str, Any]]) -> dict[str, int]:
    """The prorated lines billed (net: credits for unused time included), per currency."""
    totals: dict[str, int] = {}
    for invoice in invoices:
        for line in invoice["lines"]["data"]:
            if line["proration"]:
                totals[line["currency"]] = totals.get(line["currency"], 0) + line["amount"]
    return totals


# --- Through the API --------------------------------------------------------------------


@dataclass
class Business:
    """What the demo's business did: filled as it goes, so that a failure still shows the
    months before it."""

    customers: int = 0
    clock_id: str | None = None
    months: list[Month] = field(default_factory=list)
    prorations: dict[str, int] = field(default_factory=dict)
    report: dict[str, Any] | None = None
    seconds: float = 0.0
    error: str | None = None


def _call(
    api: httpx.Client, method: str, path: str, data: dict[str, Any] | None = None, **params: Any
) -> dict[str, Any]:
    try:
        reply = api.request(method, path, data=data, params=params or None)
    except httpx.HTTPError as exc:
        raise BusinessError(f"{method} {path}: no answer ({exc})") from exc
    if reply.status_code != 200:
        try:
            error = reply.json()["error"]
            why = f"{error.get('message')} (param: {error.get('param')})"
        except (ValueError, KeyError, TypeError):
            why = reply.text[:200]
        raise BusinessError(f"{method} {path}: HTTP {reply.status_code}: {why}")
    body: dict[str, Any] = reply.json()
    return body


def _all(api: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every object of a list endpoint, page by page."""
    objects: list[dict[str, Any]] = []
    while True:
        page = _call(api, "GET", path, limit=100, **params)
        objects += page["data"]
        if not page["has_more"]:
            return objects
        params["starting_after"] = objects[-1]["id"]


def _snapshot(api: httpx.Client, clock_id: str) -> Snapshot:
    subscriptions = _all(api, "/v1/subscriptions", status="all", test_clock=clock_id)
    invoices = [i for i in _all(api, "/v1/invoices") if i["test_clock"] == clock_id]
    failures = {
        e["id"]: e["data"]["object"]["id"]
        for e in _all(api, "/v1/events", type="invoice.payment_failed")
        if e["data"]["object"]["test_clock"] == clock_id
    }
    return Snapshot({s["id"]: s for s in subscriptions}, {i["id"]: i for i in invoices}, failures)


Prices = dict[tuple[str, str, str], str]  # (tier, currency, interval) -> price id


def _catalog(api: httpx.Client) -> Prices:
    """The tiers, each monthly and yearly in every currency."""
    prices = {}
    for tier, monthly_amounts in TIERS.items():
        product = _call(api, "POST", "/v1/products", {"name": tier})
        for currency, amount in monthly_amounts.items():
            for interval, months in (("month", 1), ("year", MONTHS_PER_YEAR)):
                price = _call(
                    api,
                    "POST",
                    "/v1/prices",
                    {
                        "product": product["id"],
                        "currency": currency,
                        "unit_amount": amount * months,
                        "recurring[interval]": interval,
                        "nickname": f"{tier} {interval}ly {currency.upper()}",
                    },
                )
                prices[tier, currency, interval] = price["id"]
    return prices


def _advance(api: httpx.Client, clock_id: str, to: datetime) -> None:
    """Advance the clock and wait (up to READY_TIMEOUT) for the billing worker to bill
    its customers up to the new time."""
    _call(api, "POST", f"{CLOCKS}/{clock_id}/advance", {"frozen_time": unix(to)})
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        status = _call(api, "GET", f"{CLOCKS}/{clock_id}")["status"]
        if status == "ready":
            return
        if status != "advancing":
            raise BusinessError(f"test clock {clock_id} is {status} after advancing to {to:%F}")
        if time.monotonic() > deadline:
            raise BusinessError(
                f"test clock {clock_id} was still advancing to {to:%F} after"
                f" {READY_TIMEOUT:.0f} s: is a billing worker running? (`payrail up` runs"
                " one; a fleet needs `payrail worker billing`)"
            )
        time.sleep(POLL_SECONDS)


@dataclass
class Subscriber:
    member: Member
    customer_id: str
    subscription: dict[str, Any]


def _sign_up(
    api: httpx.Client, clock_id: str, prices: Prices, number: int, member: Member
) -> Subscriber:
    customer = _call(
        api,
        "POST",
        "/v1/customers",
        {
            "name": f"Subscriber {number}",
            "email": f"subscriber{number}@example.com",
            "payment_method": member.card,
            "invoice_settings[default_payment_method]": member.card,
            "test_clock": clock_id,
        },
    )
    params = {
        "customer": customer["id"],
        "items[0][price]": prices[member.tier, member.currency, member.interval],
    }
    if member.trial_days:
        params["trial_period_days"] = str(member.trial_days)
    return Subscriber(member, customer["id"], _call(api, "POST", "/v1/subscriptions", params))


def _act(
    api: httpx.Client, clock_id: str, stop: int, subscribers: list[Subscriber], prices: Prices
) -> None:
    """What the customers do at a stop, once the clock got there."""
    past_due = {
        s["id"] for s in _all(api, "/v1/subscriptions", status="past_due", test_clock=clock_id)
    }
    for subscriber in subscribers:
        member, sub_id = subscriber.member, subscriber.subscription["id"]
        if member.recovers and sub_id in past_due:
            card = _call(
                api,
                "POST",
                f"/v1/payment_methods/{NEW_CARD}/attach",
                {"customer": subscriber.customer_id},
            )
            _call(
                api,
                "POST",
                f"/v1/customers/{subscriber.customer_id}",
                {"invoice_settings[default_payment_method]": card["id"]},
            )
        if member.upgrades_at == stop:
            new_price = prices[UPGRADE[member.tier], member.currency, member.interval]
            subscriber.subscription = _call(
                api,
                "POST",
                f"/v1/subscriptions/{sub_id}",
                {
                    "items[0][id]": _item(subscriber.subscription)["id"],
                    "items[0][price]": new_price,
                    "proration_behavior": "always_invoice",
                },
            )
        if member.cancels_at == stop:
            _call(api, "POST", f"/v1/subscriptions/{sub_id}", {"cancel_at_period_end": "true"})


# The business's dunning policy: Stripe's default retries, then a month's grace before
# canceling, so that a customer whose card failed has until the next monthly stop to
# save another one (which is then charged at once).
DUNNING = {"grace_period_days": 30}


def _run(api: httpx.Client, business: Business) -> None:
    _call(api, "POST", "/v1/dunning/policy", DUNNING)
    prices = _catalog(api)
    clock = _call(
        api, "POST", CLOCKS, {"frozen_time": unix(START), "name": "payrail demo business"}
    )
    business.clock_id = clock_id = clock["id"]
    subscribers: list[Subscriber] = []
    before = Snapshot()
    for stop in range(MONTHS + 1):
        if stop:
            _advance(api, clock_id, stop_time(stop))
            _act(api, clock_id, stop, subscribers, prices)
        joining = [m for m in PLAN if m.joins == stop]
        numbers = range(len(subscribers) + 1, len(subscribers) + 1 + len(joining))
        with ThreadPoolExecutor(SIGN_UPS_AT_ONCE) as pool:
            subscribers += pool.map(
                lambda n, m: _sign_up(api, clock_id, prices, n, m), numbers, joining
            )
        business.customers = len(subscribers)
        after = _snapshot(api, clock_id)
        business.months.append(month(unix(stop_time(stop)), before, after))
        before = after
    business.prorations = prorations(before.invoices.values())
    business.report = _call(
        api,
        "GET",
        "/v1/reports/failed_payments",
        since=unix(START),
        until=unix(stop_time(MONTHS)) + 1,
    )


def run(api: httpx.Client) -> Business:
    """Run the business with the merchant's API client (a test mode key). A step that
    fails ends it: the Business then says why in `error`."""
    business = Business()
    started = time.monotonic()
    try:
        _run(api, business)
    except BusinessError as exc:
        business.error = str(exc)
    business.seconds = time.monotonic() - started
    return business


# --- Printing ---------------------------------------------------------------------------


def _money(amount: int, currency: str) -> str:
    return Money(amount, currency).to_decimal_string()


def _percent(rate: str | None) -> str:
    return "-" if rate is None else f"{Decimal(rate) * 100:.2f}%"


def show(console: Console, business: Business) -> None:
    """Print the months and the failed-payments report. A business that did not run to
    its end exits with status 1, after what it did and why it stopped."""
    console.print(
        f"subscription business: {business.customers} customers on test clock"
        f" {business.clock_id or '(none)'}, {max(len(business.months) - 1, 0)} of"
        f" {MONTHS} simulated months in {business.seconds:.0f} s"
    )
    table = Table(title="subscriptions, month by month", pad_edge=False)
    table.add_column("clock", no_wrap=True)
    for currency in CURRENCIES:
        table.add_column(f"MRR {currency.upper()}", justify="right", no_wrap=True)
    for name in ("subs", "new", "upgr", "churn", "failed", "recov"):
        table.add_column(name, justify="right", no_wrap=True)
    for row in business.months:
        day = datetime.fromtimestamp(row.clock, UTC)
        counts = (row.subscribers, row.new, row.upgraded, row.churned, row.failed, row.recovered)
        table.add_row(
            f"{day:%Y-%m-%d}",
            *(_money(row.mrr.get(c, 0), c) for c in CURRENCIES),
            *map(str, counts),
        )
    console.print(table)
    console.print(
        "MRR: active and past-due subscriptions, a yearly price counting a twelfth; subs:"
        " those subscribers; failed: payment attempts that failed; recov: invoices paid"
        " after a failed attempt"
    )
    if business.prorations:
        billed = ", ".join(
            f"{c.upper()} {_money(a, c)}" for c, a in sorted(business.prorations.items())
        )
        console.print(f"prorations billed for upgrades: {billed}")
    if business.report is not None:
        report = business.report
        console.print(
            f"failed-payments report: {report['failed_invoices']} invoices failed,"
            f" {report['recovered']['invoices']} recovered, {report['lost']['invoices']}"
            f" lost, {report['at_risk']['invoices']} at risk; recovery rate"
            f" {_percent(report['recovery_rate'])}"
        )
    if business.error is not None:
        console.print(f"[red]the subscription business failed: {escape(business.error)}[/red]")
        raise SystemExit(1)
