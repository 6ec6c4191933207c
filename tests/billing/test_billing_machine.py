"""A stateful test: random subscriptions, price changes, cancels, paused collection, card
switches, payments and clock advances through the real API, billing engine, sandbox PSP
and database.

Each example gets a database of its own (the engine works across merchants, so one
example's subscriptions must not fall due in the next one's run). After every step, with
the engine run until it has nothing left to do:

(a) every finalized invoice accounts for its total: paid + still owed + credited + the
    customer credit it used (a credit invoice's total went to the customer's balance);
(b) per currency, over the merchant, money is conserved: invoiced = paid + open
    receivables + written off + voided + credit used - credit created, and the ledger
    agrees account by account (receivable, bad debt, deferred + earned revenue, customer
    credit, payment clearing at zero, earned revenue = the lines' recognised amounts);
(c) every period is billed exactly once: a subscription's period invoices tile its life
    from its start to its current period end, with no gap and no overlap (but a change
    of interval, which starts a new period inside the old one and credits its unused
    time), and PostgreSQL holds one invoice per (subscription, period start);
(d) the ledger verifies;
(e) the sandbox PSP never charged an invoice twice: each invoice's captured payments at
    the PSP sum to its amount_paid, in at most one capture, and no charge was sent twice;
and nothing is left leased, in flight or overdue once the engine has finished.
"""

from __future__ import annotations

import itertools
import secrets
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, LiteralString

import httpx
import hypothesis
import psycopg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from payrail.api.app import create_app
from payrail.api.context import Services
from payrail.billing.engine import Engine, EngineOptions
from payrail.clock import ManualClock, unix
from payrail.connectors.accounts.service import Connectors
from payrail.db.migrate import with_database
from payrail.db.pool import open_pool
from payrail.ledger.verify import verify
from payrail.tenants.service import create_merchant
from tests.billing.conftest import Api, customer_with_card, monthly_price
from tests.billing.test_subscription_flows import balances, merchant_of
from tests.connectors.accounts.helpers import SECRET, bearer, create_account
from tests.ledger.test_ledger_machine import LoopThread
from tests.vaults import fixed_vault

Json = dict[str, Any]

MACHINE_SETTINGS = settings(
    max_examples=10,
    stateful_step_count=40,
    deadline=None,
    database=None,
    derandomize=True,
    # As the ledger machine: a failure is reported unshrunk (add Phase.shrink to minimise
    # one while debugging: it replays hundreds of database-backed runs).
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.reuse, hypothesis.Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
START = datetime(2026, 1, 31, 12, tzinfo=UTC)
# (currency, unit amount, interval): tiers in three currencies, JPY without minor units.
PRICES: dict[str, tuple[str, int, str]] = {
    "usd_basic": ("usd", 1000, "month"),
    "usd_premium": ("usd", 2500, "month"),
    "usd_yearly": ("usd", 24000, "year"),
    "jpy_basic": ("jpy", 980, "month"),
    "jpy_premium": ("jpy", 1980, "month"),
    "jpy_yearly": ("jpy", 19800, "year"),
    "eur_basic": ("eur", 899, "month"),
    "eur_yearly": ("eur", 8999, "year"),
}
PRICE_KEYS = st.sampled_from(sorted(PRICES))
TRIALS = st.sampled_from([None, None, 7, 30])
# One customer per zone: periods are cut at month ends in the customer's zone, across
# daylight saving changes.
ZONES = ["UTC", "America/New_York", "Asia/Tokyo"]
CUSTOMERS = len(ZONES)
# The customer's default card: one that works, one the issuer declines, one that needs
# the cardholder (3D Secure) and so fails off-session.
CARDS = {
    "working": "pm_card_visa",
    "failing": "pm_card_chargeCustomerFail",
    "authentication": "pm_card_authenticationRequired",
}
CARD_KINDS = st.sampled_from(["working", "working", "failing", "authentication"])
MAX_SUBSCRIPTIONS = 6
ENGINE_PASSES = 60  # more passes than this without running dry is a livelock


@dataclass(frozen=True)
class Base:
    """What every example starts from, cloned: a database holding a merchant with a
    sandbox account, the catalog, and customers each with a card of every kind in CARDS."""

    database: str
    merchant_id: str
    secret: str
    prices: dict[str, str]  # key -> price id
    customers: list[str]
    cards: dict[str, dict[str, str]]  # customer -> kind -> payment method


def admin(server_url: str, statement: sql.Composed) -> None:
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(statement)


def clone(server_url: str, template: str, name: str) -> None:
    admin(
        server_url,
        sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY file_copy").format(
            sql.Identifier(name), sql.Identifier(template)
        ),
    )


def drop(server_url: str, name: str) -> None:
    admin(
        server_url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    )


async def _ok(http: httpx.AsyncClient, path: str, body: Json) -> Json:
    reply = await http.post(path, json=body)
    assert reply.status_code == 200, reply.text
    found: Json = reply.json()
    return found


async def prepare(server_url: str, database: str, psp_url: str) -> Base:
    clock = ManualClock(START)
    pool = await open_pool(with_database(server_url, database), min_size=1, max_size=2)
    try:
        services = Services(pool=pool, clock=clock, vault=fixed_vault())
        async with pool.connection() as conn:
            merchant = await create_merchant(conn, clock, "Billing machine")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(services)),
            base_url="http://payrail.test",
            headers={"Authorization": f"Bearer {merchant.test_secret}"},
        ) as http:
            await create_account(http, {}, base_url=psp_url, currencies=[])
            prices: dict[str, str] = {}
            for key, (currency, amount, interval) in PRICES.items():
                price = await _ok(
                    http,
                    "/v1/prices",
                    {
                        "currency": currency,
                        "unit_amount": amount,
                        "recurring": {"interval": interval},
                        "product_data": {"name": key.split("_")[1].title()},
                    },
                )
                prices[key] = price["id"]
            customers: list[str] = []
            cards: dict[str, dict[str, str]] = {}
            for zone in ZONES:
                customer = await _ok(
                    http,
                    "/v1/customers",
                    {
                        "email": "jenny@example.com",
                        "time_zone": zone,
                        "payment_method": "pm_card_visa",
                        "invoice_settings": {"default_payment_method": "pm_card_visa"},
                    },
                )
                customers.append(customer["id"])
                cards[customer["id"]] = {
                    "working": customer["invoice_settings"]["default_payment_method"]
                }
                for kind, test_card in CARDS.items():
                    if kind != "working":
                        attached = await _ok(
                            http,
                            f"/v1/payment_methods/{test_card}/attach",
                            {"customer": customer["id"]},
                        )
                        cards[customer["id"]][kind] = attached["id"]
        await services.connectors.aclose()
    finally:
        await pool.close()
    return Base(database, merchant.id, merchant.test_secret, prices, customers, cards)


class BillingMachine(RuleBasedStateMachine):
    server_url: ClassVar[str]
    base: ClassVar[Base]
    psp_url: ClassVar[str]
    runner: ClassVar[LoopThread]
    instances: ClassVar[Iterator[int]] = itertools.count()

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(START)
        self.database = ""
        self.merchant_id = ""
        self.subs: list[tuple[str, str]] = []  # (subscription id, currency)

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)

    # ------------------------------------------------------------------ set-up

    @initialize(
        cards=st.lists(CARD_KINDS, min_size=CUSTOMERS, max_size=CUSTOMERS),
        first=st.lists(
            st.tuples(st.integers(0, CUSTOMERS - 1), PRICE_KEYS, TRIALS), min_size=1, max_size=3
        ),
    )
    def start(self, cards: list[str], first: list[tuple[int, str, int | None]]) -> None:
        """The base merchant, its customers' default cards drawn, and a few subscriptions."""
        self.database = f"{self.base.database}_{next(self.instances)}"
        clone(self.server_url, self.base.database, self.database)
        self.run(self._open())
        for customer, card in enumerate(cards):
            if card != "working":
                self.switch_card(customer, card)
        for customer, price, trial in first:
            self.subscribe(customer, price, trial)

    async def _open(self) -> None:
        url = with_database(self.server_url, self.database)
        self.pool: AsyncConnectionPool = await open_pool(url, min_size=1, max_size=6)
        self.services = Services(
            pool=self.pool, clock=self.clock, vault=fixed_vault(), connectors=Connectors()
        )
        self.engine = Engine(
            self.pool, self.services, EngineOptions(batch=50, lease=timedelta(seconds=30))
        )
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(self.services)),
            base_url="http://payrail.test",
            headers={"Authorization": f"Bearer {self.base.secret}"},
        )
        self.psp = httpx.AsyncClient(base_url=self.psp_url, headers=bearer(SECRET))
        self.merchant_id = self.base.merchant_id

    def teardown(self) -> None:
        async def close() -> None:
            if hasattr(self, "pool"):
                await self.http.aclose()
                await self.psp.aclose()
                await self.services.connectors.aclose()
                await self.pool.close()

        self.run(close())
        if self.database:
            drop(self.server_url, self.database)

    # ------------------------------------------------------------------ the API

    async def _call(self, method: str, path: str, body: Json | None = None) -> httpx.Response:
        if method == "DELETE":
            return await self.http.delete(path)
        return await self.http.post(path, json=body or {})

    def request(
        self,
        method: str,
        path: str,
        body: Json | None = None,
        refusals: frozenset[str] = frozenset(),
    ) -> Json | None:
        """A request that must succeed, or be refused (400) with one of these codes."""
        reply = self.run(self._call(method, path, body))
        self.bill()  # the workers run beside the API: what a request made due is done
        if reply.status_code == 400 and reply.json()["error"].get("code") in refusals:
            return None
        assert reply.status_code == 200, reply.text
        found: Json = reply.json()
        return found

    def _sub(self, pick: int) -> tuple[str, str]:
        return self.subs[pick % len(self.subs)]

    # ------------------------------------------------------------------ rules

    @precondition(lambda self: len(self.subs) < MAX_SUBSCRIPTIONS)
    @rule(
        customer=st.integers(0, CUSTOMERS - 1),
        price=PRICE_KEYS,
        trial=TRIALS,
    )
    def subscribe(self, customer: int, price: str, trial: int | None) -> None:
        body: Json = {
            "customer": self.base.customers[customer],
            "items": [{"price": self.base.prices[price]}],
        }
        if trial is not None:
            body["trial_period_days"] = trial
        made = self.request("POST", "/v1/subscriptions", body)
        assert made is not None
        assert made["status"] in ("active", "incomplete", "trialing"), made["status"]
        self.subs.append((made["id"], PRICES[price][0]))

    @precondition(lambda self: bool(self.subs))
    @rule(
        pick=st.integers(0, 1000),
        price=st.integers(0, 10),
        quantity=st.integers(1, 3),
        proration=st.sampled_from(["create_prorations", "always_invoice", "none"]),
        change_at=st.sampled_from(["now", "now", "period_end"]),
    )
    def change_price(
        self, pick: int, price: int, quantity: int, proration: str, change_at: str
    ) -> None:
        sub_id, currency = self._sub(pick)
        same = [k for k in sorted(PRICES) if PRICES[k][0] == currency]
        body = {
            "items": [{"price": self.base.prices[same[price % len(same)]], "quantity": quantity}],
            "proration_behavior": proration,
            "change_at": change_at,
        }
        # Stripe's refusals: an ended subscription, or one whose first invoice is unpaid.
        refusals = frozenset({"subscription_ended", "subscription_incomplete"})
        self.request("POST", f"/v1/subscriptions/{sub_id}", body, refusals)

    @precondition(lambda self: bool(self.subs))
    @rule(pick=st.integers(0, 1000))
    def cancel_now(self, pick: int) -> None:
        sub_id, _ = self._sub(pick)
        canceled = self.request("DELETE", f"/v1/subscriptions/{sub_id}")
        assert canceled is not None
        assert canceled["status"] in ("canceled", "incomplete_expired")

    @precondition(lambda self: bool(self.subs))
    @rule(pick=st.integers(0, 1000), flag=st.booleans())
    def cancel_at_period_end(self, pick: int, flag: bool) -> None:
        sub_id, _ = self._sub(pick)
        self.request(
            "POST",
            f"/v1/subscriptions/{sub_id}",
            {"cancel_at_period_end": flag},
            frozenset({"subscription_ended"}),
        )

    @precondition(lambda self: bool(self.subs))
    @rule(
        pick=st.integers(0, 1000),
        behavior=st.sampled_from([None, "keep_as_draft", "void", "mark_uncollectible"]),
        resumes_in=st.sampled_from([None, 3, 45]),
    )
    def pause_collection(self, pick: int, behavior: str | None, resumes_in: int | None) -> None:
        """Stripe's pause_collection (None: collection resumes now)."""
        sub_id, _ = self._sub(pick)
        pause: Json | str = ""
        if behavior is not None:
            pause = {"behavior": behavior}
            if resumes_in is not None:
                pause["resumes_at"] = unix(self.clock.now() + timedelta(days=resumes_in))
        self.request(
            "POST",
            f"/v1/subscriptions/{sub_id}",
            {"pause_collection": pause},
            frozenset({"subscription_ended"}),
        )

    @rule(customer=st.integers(0, CUSTOMERS - 1), card=CARD_KINDS)
    def switch_card(self, customer: int, card: str) -> None:
        customer_id = self.base.customers[customer]
        self.request(
            "POST",
            f"/v1/customers/{customer_id}",
            {"invoice_settings": {"default_payment_method": self.base.cards[customer_id][card]}},
        )

    @rule(pick=st.integers(0, 1000))
    def customer_pays_an_invoice(self, pick: int) -> None:
        """Stripe's pay: an open or uncollectible invoice paid now, outside the schedule."""
        rows = self.run(
            self._rows(
                "SELECT id FROM invoices WHERE merchant_id = %s"
                " AND status IN ('open', 'uncollectible') ORDER BY seq",
                (self.merchant_id,),
            )
        )
        if rows:
            invoice_id = rows[pick % len(rows)][0]
            self.request(
                "POST", f"/v1/invoices/{invoice_id}/pay", {}, frozenset({"invoice_not_payable"})
            )

    # Time passing is three rules, so that it is drawn as often as the API calls together.
    @rule(hours=st.integers(1, 47), recognise=st.booleans())
    def hours_pass(self, hours: int, recognise: bool) -> None:
        self.clock.advance(timedelta(hours=hours))
        self.bill(recognise=recognise)

    @rule(days=st.integers(2, 40), recognise=st.booleans())
    def days_pass(self, days: int, recognise: bool) -> None:
        self.clock.advance(timedelta(days=days))
        self.bill(recognise=recognise)

    @rule(months=st.integers(1, 14), recognise=st.booleans())
    def months_pass(self, months: int, recognise: bool) -> None:
        self.clock.advance(timedelta(days=30 * months + 1))
        self.bill(recognise=recognise)

    def bill(self, *, recognise: bool = False) -> None:
        """The billing workers catch up: passes until one finds nothing to do."""

        async def passes() -> None:
            for _ in range(ENGINE_PASSES):
                if (await self.engine.run_once()).work == 0:
                    break
            else:
                raise AssertionError(f"the engine still had work after {ENGINE_PASSES} passes")
            if recognise:
                await self.engine.housekeeping()

        self.run(passes())

    # ------------------------------------------------------------------ checks

    async def _rows(self, query: LiteralString, params: Any) -> list[tuple[Any, ...]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall()

    @invariant()
    def sound(self) -> None:
        if not self.merchant_id:
            return
        self.run(self._check())

    async def _check(self) -> None:
        invoices = await self._invoices()
        self._each_invoice_accounts_for_its_total(invoices)
        await self._money_is_conserved(invoices)
        await self._every_period_billed_once()
        await self._charged_once(invoices)
        await self._nothing_left_over()
        async with self.pool.connection() as conn:
            report = await verify(conn)
        assert report.ok, report

    async def _invoices(self) -> list[Json]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, status, currency, billing_reason, total, amount_due, amount_paid,"
                " amount_remaining, starting_balance, ending_balance,"
                " pre_payment_credit_notes_amount, payment_intent_id"
                " FROM invoices WHERE merchant_id = %s ORDER BY seq",
                (self.merchant_id,),
            )
            assert cur.description is not None
            names = [c.name for c in cur.description]
            return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]

    @staticmethod
    def _credit(invoice: Json) -> tuple[int, int]:
        """(customer credit the invoice used, credit it created)."""
        moved = invoice["ending_balance"] - invoice["starting_balance"]
        return (moved, 0) if invoice["total"] > 0 else (0, -moved)

    def _each_invoice_accounts_for_its_total(self, invoices: list[Json]) -> None:
        for inv in invoices:
            if inv["status"] == "draft":
                # Kept as a draft by paused collection: nothing owed, posted or used yet.
                assert (inv["amount_due"], inv["amount_paid"]) == (0, 0), inv
                continue
            used, created = self._credit(inv)
            assert used >= 0 and created >= 0, inv
            if inv["total"] < 0:
                # A credit invoice: all of it to the customer's balance, nothing owed.
                assert created == -inv["total"], inv
                assert (inv["amount_due"], inv["amount_paid"], inv["amount_remaining"]) == (
                    0,
                    0,
                    0,
                ), inv
                continue
            assert inv["amount_due"] == inv["total"] - used, inv
            if inv["status"] == "void":
                assert (inv["amount_paid"], inv["amount_remaining"]) == (0, 0), inv
                continue
            assert inv["total"] == (
                inv["amount_paid"]
                + inv["amount_remaining"]
                + inv["pre_payment_credit_notes_amount"]
                + used
            ), inv
            if inv["status"] == "paid":
                assert inv["amount_remaining"] == 0, inv

    async def _ledger(self) -> dict[tuple[str, str], int]:
        """Billing's and payments' ledger balances by (purpose, currency), each in its
        normal direction."""
        rows = await self._rows(
            """
            SELECT a.purpose, a.currency, sum(CASE WHEN b.normal_balance = 'debit'
                THEN b.debits_posted - b.credits_posted
                ELSE b.credits_posted - b.debits_posted END) FROM (
                SELECT purpose, currency, ledger_account_id FROM billing_ledger_accounts
                WHERE merchant_id = %s
                UNION ALL
                SELECT purpose, currency, ledger_account_id FROM payment_ledger_accounts
                WHERE merchant_id = %s
            ) a JOIN ledger_balances b ON b.account_id = a.ledger_account_id
            GROUP BY a.purpose, a.currency
            """,
            (self.merchant_id, self.merchant_id),
        )
        return {(purpose, currency): int(total) for purpose, currency, total in rows}

    async def _money_is_conserved(self, invoices: list[Json]) -> None:
        ledger = await self._ledger()
        balances = {
            currency: int(total)
            for currency, total in await self._rows(
                "SELECT currency, sum(balance) FROM customer_balances WHERE merchant_id = %s"
                " GROUP BY currency",
                (self.merchant_id,),
            )
        }
        recognised = {
            currency: int(total)
            for currency, total in await self._rows(
                "SELECT l.currency, sum(l.recognized_amount) FROM invoice_lines l"
                " JOIN invoices i ON i.id = l.invoice_id WHERE i.merchant_id = %s"
                " AND i.status <> 'void' GROUP BY l.currency",
                (self.merchant_id,),
            )
        }
        sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for inv in invoices:
            if inv["status"] == "draft":
                continue
            s = sums[inv["currency"]]
            used, created = self._credit(inv)
            s["invoiced"] += inv["total"]
            s["paid"] += inv["amount_paid"]
            s["credited"] += inv["pre_payment_credit_notes_amount"]
            s["credit_used"] += used
            s["credit_created"] += created
            if inv["status"] == "open":
                s["open"] += inv["amount_remaining"]
            elif inv["status"] == "uncollectible":
                s["written_off"] += inv["amount_remaining"]
            elif inv["status"] == "void":
                s["voided"] += inv["amount_due"]
                s["void_total"] += inv["total"]
                s["credit_returned"] += used
        for currency, s in sums.items():
            where = {k: v for k, v in s.items()}
            assert s["invoiced"] == (
                s["paid"]
                + s["open"]
                + s["written_off"]
                + s["voided"]
                + s["credited"]
                + s["credit_used"]
                - s["credit_created"]
            ), (currency, where)

            def account(purpose: str, currency: str = currency) -> int:
                return ledger.get((purpose, currency), 0)

            found = {
                "receivable": account("receivable"),
                "bad_debt": account("bad_debt"),
                "revenue": account("deferred_revenue") + account("subscription_revenue"),
                "earned": account("subscription_revenue"),
                "customer_credit": account("customer_credit"),
                "payment_clearing": account("payment_clearing"),
            }
            expected = {
                "receivable": s["open"],
                "bad_debt": s["written_off"],
                "revenue": s["invoiced"] - s["void_total"],
                "earned": recognised.get(currency, 0),
                "customer_credit": s["credit_created"] + s["credit_returned"] - s["credit_used"],
                "payment_clearing": 0,
            }
            assert found == expected, (currency, where)
            assert -balances.get(currency, 0) == expected["customer_credit"], (currency, balances)

    async def _every_period_billed_once(self) -> None:
        duplicates = await self._rows(
            "SELECT count(*) - count(DISTINCT (subscription_id, period_start)) FROM invoices"
            " WHERE merchant_id = %s AND billing_reason IN"
            " ('subscription_create', 'subscription_cycle')",
            (self.merchant_id,),
        )
        assert duplicates == [(0,)]
        subs = await self._rows(
            "SELECT id, start_date, current_period_end FROM subscriptions WHERE merchant_id = %s",
            (self.merchant_id,),
        )
        lines = await self._rows(
            "SELECT i.subscription_id, l.period_start, l.period_end, i.billing_reason, i.id"
            " FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id"
            " WHERE i.merchant_id = %s AND l.type = 'subscription' AND NOT l.proration"
            " ORDER BY i.seq, l.seq",
            (self.merchant_id,),
        )
        periods: dict[str, list[tuple[datetime, datetime, str, str]]] = defaultdict(list)
        for sub_id, start, end, reason, invoice_id in lines:
            periods[sub_id].append((start, end, reason, invoice_id))
        for sub_id, started, period_end in subs:
            billed = periods[sub_id]
            assert billed, f"{sub_id}: no period billed"
            assert billed[0][0] == started and billed[0][2] == "subscription_create", billed
            for (start, end, _, _), (next_start, _, reason, _) in itertools.pairwise(billed):
                if reason == "subscription_update":
                    # A new interval: a new period from the change, inside the old one.
                    assert start <= next_start < end, (sub_id, billed)
                else:
                    assert next_start == end, (sub_id, billed)  # no gap, no overlap
            assert billed[-1][1] == period_end, (sub_id, billed, period_end)

    async def _charged_once(self, invoices: list[Json]) -> None:
        charges = await self._rows(
            "SELECT pi.invoice_id, c.id FROM charges c"
            " JOIN payment_intents pi ON pi.id = c.payment_intent_id"
            " WHERE pi.merchant_id = %s AND pi.invoice_id IS NOT NULL",
            (self.merchant_id,),
        )
        record = (await self.psp.get("/sandbox/record")).json()
        at_psp: dict[str, list[Json]] = defaultdict(list)
        for payment in record["payments"]:
            at_psp[payment["reference"]].append(payment)
        captured: dict[str, list[int]] = defaultdict(list)
        for invoice_id, charge_id in charges:
            made = at_psp.get(charge_id, [])
            assert len(made) <= 1, f"charge {charge_id} sent to the PSP twice"
            captured[invoice_id] += [
                p["amount_captured"] for p in made if p["status"] == "captured"
            ]
        for inv in invoices:
            got = captured.get(inv["id"], [])
            assert len(got) <= 1, f"invoice {inv['id']} captured {len(got)} times: {got}"
            assert sum(got) == inv["amount_paid"], (inv, got)

    async def _nothing_left_over(self) -> None:
        """Once the engine has run dry: no lease held, no attempt in flight, nothing due."""
        now = self.clock.now()
        left = await self._rows(
            "SELECT (SELECT count(*) FROM subscriptions WHERE merchant_id = %(m)s"
            "        AND (lease_owner IS NOT NULL OR next_action_at <= %(now)s)),"
            " (SELECT count(*) FROM invoices WHERE merchant_id = %(m)s"
            "        AND (lease_owner IS NOT NULL OR payment_intent_id IS NOT NULL"
            "             OR next_payment_attempt <= %(now)s OR final_action_at <= %(now)s))",
            {"m": self.merchant_id, "now": now},
        )
        assert left == [(0, 0)], left


def test_billing_state_machine(server_url: str, template: str, psp_url: str) -> None:
    runner = LoopThread()
    base = f"billing_machine_{secrets.token_hex(4)}"
    clone(server_url, template, base)
    try:
        BillingMachine.server_url = server_url
        BillingMachine.base = runner.run(prepare(server_url, base, psp_url))
        BillingMachine.psp_url = psp_url
        BillingMachine.runner = runner
        run_state_machine_as_test(BillingMachine, settings=MACHINE_SETTINGS)
    finally:
        runner.close()
        drop(server_url, base)


async def test_paying_an_uncollectible_invoice_recovers_its_bad_debt(
    api: Api, engine: Engine, clock: ManualClock, pool: AsyncConnectionPool
) -> None:
    clock.current = START
    price = await monthly_price(api, 1000)
    customer = await customer_with_card(api, "pm_card_chargeCustomerFail")
    sub = await api.post(
        "/v1/subscriptions", {"customer": customer["id"], "items": [{"price": price["id"]}]}
    )
    assert sub["status"] == "incomplete"
    invoice_id = sub["latest_invoice"]
    written_off = await api.post(f"/v1/invoices/{invoice_id}/mark_uncollectible")
    assert (written_off["status"], written_off["amount_remaining"]) == ("uncollectible", 1000)
    merchant_id = await merchant_of(pool, sub["id"])
    money = await balances(pool, merchant_id)
    assert (money["receivable"], money["bad_debt"]) == (0, 1000)

    working = await api.post(
        "/v1/payment_methods/pm_card_visa/attach", {"customer": customer["id"]}
    )
    await api.post(
        f"/v1/customers/{customer['id']}",
        {"invoice_settings": {"default_payment_method": working["id"]}},
    )
    paid = await api.post(f"/v1/invoices/{invoice_id}/pay")
    assert (paid["status"], paid["amount_paid"], paid["amount_remaining"]) == ("paid", 1000, 0)
    money = await balances(pool, merchant_id)
    # The customer paid what had been written off: the debt is recovered, nothing is owed.
    assert (money["receivable"], money["bad_debt"], money["payment_clearing"]) == (0, 0, 0)
    async with pool.connection() as conn:
        assert (await verify(conn)).ok


async def test_an_expired_subscription_leaves_the_engine_nothing_to_do(
    api: Api, engine: Engine, clock: ManualClock
) -> None:
    clock.current = START
    price = await monthly_price(api, 1000)
    customer = await customer_with_card(api, "pm_card_authenticationRequired")
    sub = await api.post(
        "/v1/subscriptions", {"customer": customer["id"], "items": [{"price": price["id"]}]}
    )
    assert sub["status"] == "incomplete"
    clock.advance(timedelta(days=8))
    passes = [(await engine.run_once()).work for _ in range(5)]
    sub = await api.get(f"/v1/subscriptions/{sub['id']}")
    invoice = await api.get(f"/v1/invoices/{sub['latest_invoice']}")
    assert (sub["status"], invoice["status"]) == ("incomplete_expired", "void")
    assert passes[-1] == 0, passes
