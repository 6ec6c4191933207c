"""Subscriptions: create, change price, cancel, pause, resume; and the steps the billing
engine applies when one falls due (states.py decides which).

Billing time is the customer's test clock's frozen time when it has one, the real clock
otherwise: periods, trials and invoices follow it. Events and bookkeeping timestamps
(`updated_at`) use the real clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from payrail.api.schemas import merge_metadata
from payrail.billing import periods, proration
from payrail.billing import repository as repo
from payrail.billing.catalog import service as catalog
from payrail.billing.invoices import service as invoices
from payrail.billing.repository import Conn
from payrail.billing.subscriptions import states
from payrail.billing.subscriptions.schemas import (
    SubscriptionCancel,
    SubscriptionCreate,
    SubscriptionResume,
    SubscriptionUpdate,
)
from payrail.clock import Clock, unix
from payrail.customers import repository as customers_repo
from payrail.errors import InvalidRequest, NotFound
from payrail.events.outbox import OutboxEvent, emit
from payrail.ids import new_id
from payrail.money import Money
from payrail.payments import service as payments
from payrail.tenants.scope import Scope
from payrail.vault import repository as vault_repo

# How soon an expiry held up by a payment under way is looked at again.
INCOMPLETE_RECHECK = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Terms:
    """A price as billing needs it: what, how much, how periods are cut."""

    price_id: str
    product_name: str
    currency: str
    unit_amount: int
    interval: periods.Interval
    interval_count: int
    trial_period_days: int | None

    def line_description(self, quantity: int) -> str:
        # Stripe's own wording, multiplication sign included.
        amount = Money(self.unit_amount, self.currency).to_decimal_string()
        every = (
            self.interval if self.interval_count == 1 else f"{self.interval_count} {self.interval}s"
        )
        return f"{quantity} × {self.product_name} (at {amount} {self.currency} / {every})"  # noqa: RUF001


def _ts(moment: datetime | None) -> int | None:
    return unix(moment) if moment is not None else None


def subscription_object(row: dict[str, Any], price: dict[str, Any]) -> dict[str, Any]:
    pause = (
        {"behavior": row["pause_behavior"], "resumes_at": _ts(row["pause_resumes_at"])}
        if row["pause_behavior"] is not None
        else None
    )
    item = {
        "id": row["item_id"],
        "object": "subscription_item",
        "created": unix(row["created_at"]),
        "current_period_end": unix(row["current_period_end"]),
        "current_period_start": unix(row["current_period_start"]),
        "metadata": {},
        "price": price,
        "quantity": row["quantity"],
        "subscription": row["id"],
    }
    return {
        "id": row["id"],
        "object": "subscription",
        "billing_cycle_anchor": unix(row["billing_cycle_anchor"]),
        "cancel_at": _ts(row["cancel_at"]),
        "cancel_at_period_end": row["cancel_at_period_end"],
        "canceled_at": _ts(row["canceled_at"]),
        "cancellation_details": {
            "comment": row["cancellation_comment"],
            "feedback": row["cancellation_feedback"],
            "reason": row["cancellation_reason"],
        },
        "collection_method": row["collection_method"],
        "created": unix(row["created_at"]),
        "currency": row["currency"].lower(),
        "current_period_end": unix(row["current_period_end"]),
        "current_period_start": unix(row["current_period_start"]),
        "customer": row["customer_id"],
        "default_payment_method": row["default_payment_method_id"],
        "ended_at": _ts(row["ended_at"]),
        "items": {
            "object": "list",
            "data": [item],
            "has_more": False,
            "total_count": 1,
            "url": f"/v1/subscription_items?subscription={row['id']}",
        },
        "latest_invoice": row["latest_invoice_id"],
        "livemode": row["livemode"],
        "metadata": row["metadata"],
        "pause_collection": pause,
        "pending_update": None,
        "quantity": row["quantity"],
        "schedule": None,
        "start_date": unix(row["start_date"]),
        "status": row["status"],
        "test_clock": row["test_clock_id"],
        "time_zone": row["time_zone"],
        "trial_end": _ts(row["trial_end"]),
        "trial_settings": {
            "end_behavior": {"missing_payment_method": row["missing_payment_method"]}
        },
        "trial_start": _ts(row["trial_start"]),
    }


async def render(conn: Conn, scope: Scope, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    prices = {
        p["id"]: catalog.price_object(p)
        for p in await catalog.fetch_prices(conn, scope, list({r["price_id"] for r in rows}))
    }
    return [subscription_object(r, prices[r["price_id"]]) for r in rows]


async def _publish(
    conn: Conn, scope: Scope, clock: Clock, row: dict[str, Any], *kinds: str
) -> dict[str, Any]:
    obj = (await render(conn, scope, [row]))[0]
    await emit(
        conn,
        scope,
        clock.now(),
        [OutboxEvent(kind, "subscription", row["id"], obj) for kind in kinds],
    )
    return obj


async def terms(conn: Conn, scope: Scope, price_id: str, *, param: str) -> Terms:
    """A price a subscription may be put on now: active, recurring, of an active product."""
    return await _terms_of(conn, await catalog.recurring_price(conn, scope, price_id, param=param))


async def current_terms(conn: Conn, scope: Scope, price_id: str) -> Terms:
    """The price a subscriber has: billed as it is even once archived, for a price that
    has been used never changes and its subscribers keep it until moved."""
    [price] = await catalog.fetch_prices(conn, scope, [price_id])
    return await _terms_of(conn, price)


async def _terms_of(conn: Conn, price: dict[str, Any]) -> Terms:
    cur = await conn.execute("SELECT name FROM products WHERE id = %s", (price["product_id"],))
    product = await cur.fetchone()
    assert product is not None
    return Terms(
        price_id=price["id"],
        product_name=str(product[0]),
        currency=price["currency"],
        unit_amount=price["unit_amount"],
        interval=price["recurring_interval"],
        interval_count=price["recurring_interval_count"],
        trial_period_days=price["trial_period_days"],
    )


async def billing_now(conn: Conn, clock: Clock, test_clock_id: str | None) -> datetime:
    """The time a customer is billed by: the real one, or its test clock's — while the
    clock advances, the moment billing has stepped to (engine.py), then its frozen time."""
    if test_clock_id is None:
        return clock.now()
    cur = await conn.execute(
        "SELECT CASE WHEN status = 'advancing' THEN billing_time ELSE frozen_time END"
        " FROM test_clocks WHERE id = %s",
        (test_clock_id,),
    )
    found = await cur.fetchone()
    assert found is not None
    moment: datetime = found[0]
    return moment.astimezone(UTC)


def period_end(row: dict[str, Any], t: Terms, start: datetime) -> datetime:
    """The end of the period starting at `start`, cut from the billing cycle anchor."""
    anchor = row["billing_cycle_anchor"]
    zone = row["time_zone"]
    index = periods.period_index_at(anchor, t.interval, t.interval_count, start, zone)
    return periods.period_start_at(anchor, t.interval, t.interval_count, index + 1, zone)


def _state(row: dict[str, Any]) -> states.Subscription:
    return states.Subscription(
        status=row["status"],
        created_at=row["created_at"],
        current_period_end=row["current_period_end"],
        cancel_at_period_end=row["cancel_at_period_end"],
        cancel_at=row["cancel_at"],
        pause_resumes_at=row["pause_resumes_at"],
    )


def _scheduled(row: dict[str, Any]) -> dict[str, Any]:
    """The row with `next_action_at` set from what it now is."""
    return {**row, "next_action_at": states.next_action_at(_state(row))}


async def _save(
    conn: Conn, clock: Clock, before: dict[str, Any], after: dict[str, Any]
) -> dict[str, Any]:
    after = _scheduled({**after, "updated_at": clock.now()})
    changes = {k: v for k, v in after.items() if before.get(k) != v}
    if changes:
        await repo.update(conn, "subscriptions", after["id"], changes)
    return after


async def subscription(
    conn: Conn, scope: Scope, sub_id: str, *, lock: bool = False
) -> dict[str, Any]:
    row = await repo.fetch_one(conn, "subscriptions", scope, sub_id, lock=lock)
    if row is None:
        raise NotFound("subscription", sub_id)
    return row


async def get(conn: Conn, scope: Scope, sub_id: str) -> dict[str, Any]:
    return (await render(conn, scope, [await subscription(conn, scope, sub_id)]))[0]


async def _payment_method(
    conn: Conn, scope: Scope, customer_id: str, payment_method_id: str, param: str
) -> str:
    rows = await vault_repo.fetch_payment_methods(conn, scope, [payment_method_id])
    if not rows:
        raise NotFound("payment_method", payment_method_id, param=param)
    if rows[0]["customer_id"] != customer_id:
        raise InvalidRequest(
            "The payment method must be attached to the subscription's customer first.",
            param=param,
            code="payment_method_not_attached",
        )
    return payment_method_id


def _in_future(moment: int, now: datetime, param: str) -> datetime:
    at = datetime.fromtimestamp(moment, UTC)
    if at <= now:
        raise InvalidRequest(f"Invalid {param}: it must be in the future.", param=param)
    return at


async def _cycle_invoice(
    conn: Conn,
    scope: Scope,
    clock: Clock,
    row: dict[str, Any],
    t: Terms,
    start: datetime,
    end: datetime,
    reason: str,
    *,
    trial: bool = False,
    served: tuple[datetime, datetime] | None = None,
) -> dict[str, Any]:
    """The invoice of the period [start, end) — made once, whatever retries (its key and
    the database's unique (subscription, period start) see to it) — finalized unless
    collection is paused with keep_as_draft. `served`: the part of the period the
    subscription will have (a resume mid-period, a cancel before its end), billed
    prorated as Stripe does."""
    full = 0 if trial else t.unit_amount * row["quantity"]
    amount, prorated = full, False
    if served is not None and served != (start, end):
        first, last = served
        amount = proration.prorate(full, start, end, first) - proration.prorate(
            full, start, end, last
        )
        start, end, prorated = first, last, True
    line = invoices.LineDraft(
        price_id=t.price_id,
        quantity=row["quantity"],
        amount=amount,
        description=(
            f"Trial period for {t.product_name}" if trial else t.line_description(row["quantity"])
        ),
        period_start=start,
        period_end=end,
        proration=prorated,
    )
    spec = invoices.InvoiceDraft(
        customer_id=row["customer_id"],
        subscription_id=row["id"],
        test_clock_id=row["test_clock_id"],
        currency=row["currency"],
        billing_reason=reason,
        billing_key=f"{reason}:{row['id']}:{start.isoformat()}",
        period_start=start,
        period_end=end,
        collection_method=row["collection_method"],
        default_payment_method_id=row["default_payment_method_id"],
        lines=(line,),
    )
    return await _issue(conn, scope, clock, row, spec, start)


async def _issue(
    conn: Conn,
    scope: Scope,
    clock: Clock,
    row: dict[str, Any],
    spec: invoices.InvoiceDraft,
    at: datetime,
) -> dict[str, Any]:
    made, _ = await invoices.draft(conn, scope, clock, at, spec)
    if row["pause_behavior"] == "keep_as_draft":
        return made
    made = await invoices.finalize(conn, scope, clock, made["id"], at)
    if made["status"] == "open":
        if row["pause_behavior"] == "void":
            made = await invoices.void(conn, scope, clock, made["id"], at)
        elif row["pause_behavior"] == "mark_uncollectible":
            made = await invoices.mark_uncollectible(conn, scope, clock, made["id"], at)
        elif row["status"] == "unpaid":
            # Stripe's unpaid: invoices are still made, no longer collected.
            await repo.update(conn, "invoices", made["id"], {"next_payment_attempt": None})
            made = {**made, "next_payment_attempt": None}
        elif row["collection_method"] == "send_invoice":
            due = at + timedelta(days=row["days_until_due"])
            await repo.update(conn, "invoices", made["id"], {"due_date": due})
            made = {**made, "due_date": due}
    return made


async def create(
    conn: Conn, scope: Scope, clock: Clock, params: SubscriptionCreate
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The subscription and its first invoice (finalized; due now unless there is a
    trial). Collecting it is the caller's next step, after this transaction commits."""
    customers = await customers_repo.fetch_customers(conn, scope, [params.customer], lock=True)
    if not customers or customers[0]["deleted_at"] is not None:
        raise NotFound("customer", params.customer, param="customer")
    customer = customers[0]
    t = await terms(conn, scope, params.items[0].price, param="items[0][price]")
    now = await billing_now(conn, clock, customer["test_clock_id"])
    # Stripe's order: the subscription's own card if given, else the customer's default
    # at the time each invoice is collected.
    payment_method: str | None = None
    if params.default_payment_method is not None:
        payment_method = await _payment_method(
            conn, scope, customer["id"], params.default_payment_method, "default_payment_method"
        )
    trial_end: datetime | None = None
    if params.trial_end is not None and params.trial_end != "now":
        trial_end = _in_future(params.trial_end, now, "trial_end")
    elif params.trial_end is None:
        days = params.trial_period_days
        if days is None and params.trial_from_plan:
            days = t.trial_period_days
        if days:
            trial_end = periods.add_days(now, days, customer["time_zone"])
    cancel_at = _in_future(params.cancel_at, now, "cancel_at") if params.cancel_at else None
    if (
        params.collection_method == "charge_automatically"
        and (payment_method or customer["default_payment_method_id"]) is None
        and (
            trial_end is None
            and params.payment_behavior == "allow_incomplete"
            and t.unit_amount > 0
        )
    ):
        raise InvalidRequest(
            "This customer has no default payment method: attach one, or pass"
            " default_payment_method, payment_behavior=default_incomplete or a trial.",
            param="default_payment_method",
            code="resource_missing",
        )
    charged_now = (
        trial_end is None
        and params.collection_method == "charge_automatically"
        and params.payment_behavior == "allow_incomplete"
        and t.unit_amount > 0
    )
    if charged_now:
        # Refused here, before anything is written, rather than after the subscription
        # and its invoice commit: a currency no connector account takes is a 400.
        cards = await vault_repo.fetch_payment_methods(
            conn, scope, [payment_method or customer["default_payment_method_id"]]
        )
        await payments.route(conn, scope, t.unit_amount, t.currency, cards[0])
    anchor = trial_end or now
    row: dict[str, Any] = {
        "id": new_id("sub"),
        "customer_id": customer["id"],
        "test_clock_id": customer["test_clock_id"],
        "status": "trialing" if trial_end else "incomplete",
        "item_id": new_id("si"),
        "price_id": t.price_id,
        "quantity": params.items[0].quantity,
        "currency": t.currency,
        "collection_method": params.collection_method,
        "days_until_due": params.days_until_due if params.days_until_due is not None else 30,
        "default_payment_method_id": payment_method,
        "billing_cycle_anchor": anchor,
        "time_zone": customer["time_zone"],
        "current_period_start": now,
        "current_period_end": trial_end or now,
        "trial_start": now if trial_end else None,
        "trial_end": trial_end,
        "cancel_at_period_end": params.cancel_at_period_end,
        "cancel_at": cancel_at,
        "missing_payment_method": params.trial_settings.end_behavior.missing_payment_method,
        "metadata": params.metadata,
        "start_date": now,
        "created_at": now,
        "updated_at": clock.now(),
    }
    if trial_end is None:
        row["current_period_end"] = period_end(row, t, now)
        if params.collection_method == "send_invoice":
            row["status"] = "active"
    await repo.insert(conn, "subscriptions", scope, row)
    row = await subscription(conn, scope, row["id"])
    await catalog.mark_used(conn, [t.price_id])
    first = await _cycle_invoice(
        conn,
        scope,
        clock,
        row,
        t,
        now,
        row["current_period_end"],
        "subscription_create",
        trial=trial_end is not None,
    )
    if params.payment_behavior == "default_incomplete" and first["status"] == "open":
        # The customer confirms the payment: nothing is charged until the invoice is paid.
        await repo.update(conn, "invoices", first["id"], {"next_payment_attempt": None})
        first = {**first, "next_payment_attempt": None}
    after = {**row, "latest_invoice_id": first["id"]}
    if first["status"] == "paid" and row["status"] == "incomplete":
        after["status"] = "active"
    after = await _save(conn, clock, row, after)
    await _publish(conn, scope, clock, after, "customer.subscription.created")
    return after, first


async def _require_clock_ready(conn: Conn, row: dict[str, Any]) -> None:
    if row["test_clock_id"] is None:
        return
    cur = await conn.execute(
        "SELECT status FROM test_clocks WHERE id = %s", (row["test_clock_id"],)
    )
    found = await cur.fetchone()
    if found is not None and found[0] == "advancing":
        raise InvalidRequest(
            f"The test clock {row['test_clock_id']} is advancing: change this subscription"
            " once it is ready.",
            code="test_clock_advancing",
        )


def _require_caught_up(row: dict[str, Any], now: datetime) -> None:
    """A change lands on a subscription billed up to now: one with a step due (its test
    clock advancing, the engine behind) would skip or misprice a period."""
    if row["next_action_at"] is not None and row["next_action_at"] <= now:
        raise InvalidRequest(
            "This subscription has billing due that the billing engine has not applied"
            " yet (a test clock advancing, or workers catching up); retry in a moment.",
            code="subscription_billing_due",
        )


def _require_live(row: dict[str, Any]) -> None:
    if row["status"] in states.ENDED:
        raise InvalidRequest(
            f"This subscription is {row['status']}: it can no longer be changed.",
            code="subscription_ended",
        )


async def _price_change(
    conn: Conn,
    scope: Scope,
    clock: Clock,
    row: dict[str, Any],
    params: SubscriptionUpdate,
    now: datetime,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A new price or quantity. Returns the row as changed and the invoice made now
    (always_invoice, or a change of interval that starts a new period), if any."""
    assert params.items is not None
    item = params.items[0]
    if item.id is not None and item.id != row["item_id"]:
        raise NotFound("subscription_item", item.id, param="items[0][id]")
    old = await current_terms(conn, scope, row["price_id"])
    new = (
        await terms(conn, scope, item.price, param="items[0][price]")
        if item.price is not None and item.price != row["price_id"]
        else old
    )
    quantity = item.quantity or row["quantity"]
    if new.currency != old.currency:
        raise InvalidRequest(
            f"The new price is in {new.currency} and this subscription in {old.currency}:"
            " a subscription keeps its currency. Cancel it and start another.",
            param="items[0][price]",
            code="currency_mismatch",
        )
    if (new.price_id, quantity) == (row["price_id"], row["quantity"]):
        # Asking for what it has clears a change scheduled for the period end.
        return {**row, "pending_price_id": None, "pending_quantity": None}, None
    await catalog.mark_used(conn, [new.price_id])
    if params.change_at == "period_end":
        return {**row, "pending_price_id": new.price_id, "pending_quantity": quantity}, None
    changed = {
        **row,
        "price_id": new.price_id,
        "quantity": quantity,
        "pending_price_id": None,
        "pending_quantity": None,
    }
    if row["status"] == "trialing" or row["status"] == "paused":
        # Nothing was charged for a trial: nothing to prorate; the new price bills at
        # the trial's end.
        return changed, None
    at = now
    if params.proration_date is not None:
        at = datetime.fromtimestamp(params.proration_date, UTC)
        if not row["current_period_start"] <= at <= row["current_period_end"]:
            raise InvalidRequest(
                "Invalid proration_date: it must fall in the current period.",
                param="proration_date",
            )
    change_id = new_id("chg")
    same_cycle = (new.interval, new.interval_count) == (old.interval, old.interval_count)
    lines = proration.price_change_prorations(
        old.price_id,
        old.unit_amount,
        row["quantity"],
        new.price_id,
        new.unit_amount,
        quantity,
        row["current_period_start"],
        row["current_period_end"],
        at,
    )
    if not same_cycle:
        # A new interval starts a new cycle now (as Stripe does): the unused time of the
        # old price is credited, the new one billed for a full period from now.
        lines = [line for line in lines if line.description_kind == "unused_time"]
    if params.proration_behavior != "none":
        names = {old.price_id: old.product_name, new.price_id: new.product_name}
        for index, line in enumerate(lines):
            await _pending_item(
                conn,
                scope,
                clock,
                changed,
                line,
                f"proration:{change_id}:{index}",
                proration.describe(line, names[line.price_id], at),
                now,
            )
    if same_cycle:
        if params.proration_behavior != "always_invoice" or not lines:
            return changed, None
        spec = _update_invoice(changed, change_id, at, row["current_period_end"], ())
        return changed, await _issue(conn, scope, clock, changed, spec, now)
    changed.update(billing_cycle_anchor=now, current_period_start=now, trial_end=row["trial_end"])
    changed["current_period_end"] = period_end(changed, new, now)
    full = invoices.LineDraft(
        price_id=new.price_id,
        quantity=quantity,
        amount=new.unit_amount * quantity,
        description=new.line_description(quantity),
        period_start=now,
        period_end=changed["current_period_end"],
    )
    spec = _update_invoice(changed, change_id, now, changed["current_period_end"], (full,))
    return changed, await _issue(conn, scope, clock, changed, spec, now)


def _update_invoice(
    row: dict[str, Any],
    change_id: str,
    start: datetime,
    end: datetime,
    lines: tuple[invoices.LineDraft, ...],
) -> invoices.InvoiceDraft:
    return invoices.InvoiceDraft(
        customer_id=row["customer_id"],
        subscription_id=row["id"],
        test_clock_id=row["test_clock_id"],
        currency=row["currency"],
        billing_reason="subscription_update",
        billing_key=f"subscription_update:{row['id']}:{change_id}",
        period_start=start,
        period_end=end,
        collection_method=row["collection_method"],
        default_payment_method_id=row["default_payment_method_id"],
        lines=lines,
    )


async def _pending_item(
    conn: Conn,
    scope: Scope,
    clock: Clock,
    row: dict[str, Any],
    line: proration.ProrationLine,
    source_key: str,
    description: str,
    now: datetime,
) -> None:
    await repo.insert_returning(
        conn,
        "invoice_items",
        scope,
        {
            "id": new_id("ii"),
            "customer_id": row["customer_id"],
            "subscription_id": row["id"],
            "price_id": line.price_id,
            "currency": row["currency"],
            "amount": line.amount,
            "quantity": line.quantity,
            "description": description,
            "proration": True,
            "period_start": line.period_start,
            "period_end": line.period_end,
            "source_key": source_key,
            "created_at": now,
        },
        "merchant_id, livemode, source_key",
    )


async def update(
    conn: Conn, scope: Scope, clock: Clock, sub_id: str, params: SubscriptionUpdate
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Returns the subscription and the invoice to collect now, if the change made one."""
    row = await subscription(conn, scope, sub_id, lock=True)
    _require_live(row)
    now = await billing_now(conn, clock, row["test_clock_id"])
    _require_caught_up(row, now)
    await _require_clock_ready(conn, row)
    if params.items is not None and row["status"] == "incomplete":
        # Nothing was paid yet to prorate against: Stripe too allows only payment
        # settings and metadata to change until the first invoice is paid.
        raise InvalidRequest(
            "This subscription is incomplete: its first invoice must be paid before its"
            " price or quantity can change.",
            param="items",
            code="subscription_incomplete",
        )
    after = dict(row)
    made: dict[str, Any] | None = None
    if params.default_payment_method is not None:
        after["default_payment_method_id"] = (
            await _payment_method(
                conn,
                scope,
                row["customer_id"],
                params.default_payment_method,
                "default_payment_method",
            )
            if params.default_payment_method
            else None
        )
        if after["default_payment_method_id"] is not None:
            await invoices.retry_in_dunning(
                conn, scope, now, customer_id=row["customer_id"], subscription_id=row["id"]
            )
    if params.cancel_at_period_end is not None:
        after["cancel_at_period_end"] = params.cancel_at_period_end
        # Stripe's canceled_at: when the cancellation was asked for, cleared if taken back.
        if params.cancel_at_period_end != row["cancel_at_period_end"]:
            after["canceled_at"] = now if params.cancel_at_period_end else None
    if params.cancel_at is not None:
        after["cancel_at"] = (
            _in_future(params.cancel_at, now, "cancel_at") if params.cancel_at != "" else None
        )
    if params.pause_collection is not None:
        pause = params.pause_collection
        after["pause_behavior"] = pause.behavior if pause != "" else None
        after["pause_resumes_at"] = (
            _in_future(pause.resumes_at, now, "pause_collection[resumes_at]")
            if pause != "" and pause.resumes_at is not None
            else None
        )
    if params.description is not None:
        after["description"] = params.description or None
    if params.metadata is not None:
        after["metadata"] = merge_metadata(row["metadata"], params.metadata)
    if params.items is not None:
        after, made = await _price_change(conn, scope, clock, after, params, now)
        if made is not None:
            after["latest_invoice_id"] = made["id"]
    if params.trial_end == "now" and after["status"] == "trialing":
        after.update(trial_end=now, current_period_end=now, billing_cycle_anchor=now)
        after = await _save(conn, clock, row, after)
        # Its own event: updated, or paused / deleted when the trial ends without a card.
        return await _renew(conn, scope, clock, after, now)
    if _scheduled(after) == _scheduled(row):
        return row, made  # an update that changes nothing writes nothing, emits nothing
    saved = await _save(conn, clock, row, after)
    await _publish(conn, scope, clock, saved, "customer.subscription.updated")
    return saved, made


async def _end(
    conn: Conn,
    scope: Scope,
    clock: Clock,
    row: dict[str, Any],
    at: datetime,
    reason: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    after = {
        **row,
        **(extra or {}),
        "status": "canceled",
        "canceled_at": row["canceled_at"] or at,
        "ended_at": at,
        "cancellation_reason": reason,
        "pending_price_id": None,
        "pending_quantity": None,
    }
    # Pending prorations have no invoice left to ride on: they lapse, as in Stripe.
    after = await _save(conn, clock, row, after)
    await invoices.stop_collection(conn, row["id"])
    await _publish(conn, scope, clock, after, "customer.subscription.deleted")
    return after


async def cancel(
    conn: Conn, scope: Scope, clock: Clock, sub_id: str, params: SubscriptionCancel
) -> dict[str, Any]:
    row = await subscription(conn, scope, sub_id, lock=True)
    if row["status"] in states.ENDED:
        return row
    now = await billing_now(conn, clock, row["test_clock_id"])
    _require_caught_up(row, now)
    await _require_clock_ready(conn, row)
    details = params.cancellation_details
    extra = {"cancellation_comment": details.comment, "cancellation_feedback": details.feedback}
    return await _end(conn, scope, clock, row, now, "cancellation_requested", extra)


async def resume(
    conn: Conn, scope: Scope, clock: Clock, sub_id: str, params: SubscriptionResume
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A paused subscription (its trial ended without a payment method) starts again."""
    row = await subscription(conn, scope, sub_id, lock=True)
    if row["status"] != "paused":
        raise InvalidRequest(
            f"Only a paused subscription can be resumed; this one is {row['status']}.",
            code="subscription_not_paused",
        )
    now = await billing_now(conn, clock, row["test_clock_id"])
    _require_caught_up(row, now)
    await _require_clock_ready(conn, row)
    t = await current_terms(conn, scope, row["price_id"])
    after = {**row, "status": "active"}
    if params.billing_cycle_anchor == "now":
        after["billing_cycle_anchor"] = now
    anchor, zone = after["billing_cycle_anchor"], after["time_zone"]
    index = periods.period_index_at(anchor, t.interval, t.interval_count, now, zone)
    start, end = periods.period_bounds(anchor, t.interval, t.interval_count, index, zone)
    after.update(current_period_start=start, current_period_end=end)
    # With the anchor kept, only the rest of the period is billed (none: in full).
    served = (now, end) if params.proration_behavior != "none" else None
    made = await _cycle_invoice(
        conn, scope, clock, after, t, start, end, "subscription_cycle", served=served
    )
    after["latest_invoice_id"] = made["id"]
    after = await _save(conn, clock, row, after)
    await _publish(conn, scope, clock, after, "customer.subscription.resumed")
    return after, made


async def _renew(
    conn: Conn, scope: Scope, clock: Clock, row: dict[str, Any], at: datetime
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The period that starts `at`: a pending change applied, the trial ended, invoiced;
    its one event published (updated; paused or deleted for a trial ending without a
    card)."""
    after = dict(row)
    if row["pending_price_id"] is not None:
        before = await current_terms(conn, scope, row["price_id"])
        after.update(
            price_id=row["pending_price_id"],
            quantity=row["pending_quantity"],
            pending_price_id=None,
            pending_quantity=None,
        )
    t = await current_terms(conn, scope, after["price_id"])
    if row["pending_price_id"] is not None and (before.interval, before.interval_count) != (
        t.interval,
        t.interval_count,
    ):
        after["billing_cycle_anchor"] = at  # a new interval starts its own cycle
    if row["status"] == "trialing":
        if row["collection_method"] == "charge_automatically" and not await _has_card(conn, row):
            if row["missing_payment_method"] == "cancel":
                return await _end(conn, scope, clock, row, at, "payment_failed"), None
            if row["missing_payment_method"] == "pause":
                after["status"] = "paused"
                after = await _save(conn, clock, row, after)
                await _publish(conn, scope, clock, after, "customer.subscription.paused")
                return after, None
        after["status"] = "active"
    after["current_period_start"] = at
    end = after["current_period_end"] = period_end(after, t, at)
    # A cancel_at inside the new period bills only the part before it.
    cancel = after["cancel_at"]
    served = (at, cancel) if cancel is not None and at < cancel < end else None
    made = await _cycle_invoice(
        conn, scope, clock, after, t, at, end, "subscription_cycle", served=served
    )
    after["latest_invoice_id"] = made["id"]
    after = await _save(conn, clock, row, after)
    await _publish(conn, scope, clock, after, "customer.subscription.updated")
    return after, made


async def _has_card(conn: Conn, row: dict[str, Any]) -> bool:
    """A card collection would use: the subscription's, or its customer's default."""
    if row["default_payment_method_id"] is not None:
        return True
    cur = await conn.execute(
        "SELECT default_payment_method_id FROM customers WHERE id = %s", (row["customer_id"],)
    )
    found = await cur.fetchone()
    return found is not None and found[0] is not None


async def apply_step(
    conn: Conn, scope: Scope, clock: Clock, row: dict[str, Any], now: datetime
) -> tuple[dict[str, Any], dict[str, Any] | None, bool]:
    """The engine's work on a locked subscription at billing time `now`: one due step.
    Returns the row, the invoice made (to collect), and whether a step was applied."""
    step = states.due_step(_state(row), now)
    if step is None:
        return await _save(conn, clock, row, row), None, False
    if isinstance(step, states.Expire):
        in_flight = await repo.select(
            conn,
            "SELECT 1 FROM invoices WHERE subscription_id = %s AND status = 'open'"
            " AND payment_intent_id IS NOT NULL",
            (row["id"],),
        )
        if in_flight:
            # Its first payment may yet succeed: look again once it has an outcome.
            later = now + INCOMPLETE_RECHECK
            await repo.update(conn, "subscriptions", row["id"], {"next_action_at": later})
            return {**row, "next_action_at": later}, None, False
        for open_invoice in await repo.select(
            conn,
            "SELECT id FROM invoices WHERE subscription_id = %s AND status = 'open'"
            " AND payment_intent_id IS NULL",
            (row["id"],),
        ):
            await invoices.void(conn, scope, clock, open_invoice["id"], step.at)
        after = await _save(
            conn, clock, row, {**row, "status": "incomplete_expired", "ended_at": step.at}
        )
        # An attempt under way is left to finish; nothing more is tried after it.
        await invoices.stop_collection(conn, row["id"])
        await _publish(conn, scope, clock, after, "customer.subscription.updated")
        return after, None, True
    if isinstance(step, states.Cancel):
        return await _end(conn, scope, clock, row, step.at, "cancellation_requested"), None, True
    if isinstance(step, states.ResumeCollection):
        after = await _save(
            conn, clock, row, {**row, "pause_behavior": None, "pause_resumes_at": None}
        )
        await _publish(conn, scope, clock, after, "customer.subscription.updated")
        return after, None, True
    after, made = await _renew(conn, scope, clock, row, step.at)
    return after, made, True


async def after_invoice_paid(conn: Conn, scope: Scope, clock: Clock, sub_id: str) -> dict[str, Any]:
    row = await subscription(conn, scope, sub_id, lock=True)
    unpaid = await repo.select(
        conn,
        "SELECT 1 FROM invoices WHERE subscription_id = %s AND status = 'open'"
        " AND attempt_count > 0 LIMIT 1",
        (sub_id,),
    )
    if unpaid:
        return row  # another invoice of it is still in dunning
    status = states.after_payment(row["status"])
    if status == row["status"]:
        return row
    after = await _save(conn, clock, row, {**row, "status": status})
    await _publish(conn, scope, clock, after, "customer.subscription.updated")
    return after


async def after_invoice_failed(
    conn: Conn, scope: Scope, clock: Clock, sub_id: str, billing_reason: str
) -> dict[str, Any]:
    row = await subscription(conn, scope, sub_id, lock=True)
    status = states.after_failed_payment(row["status"], billing_reason)
    if status == row["status"]:
        return row
    after = await _save(conn, clock, row, {**row, "status": status})
    await _publish(conn, scope, clock, after, "customer.subscription.updated")
    return after


async def final_action(
    conn: Conn, scope: Scope, clock: Clock, sub_id: str, action: str, at: datetime
) -> dict[str, Any]:
    """Dunning gave up on an invoice: cancel, mark unpaid, or leave past due."""
    row = await subscription(conn, scope, sub_id, lock=True)
    if row["status"] in states.ENDED or action == "leave_past_due":
        return row
    if action == "cancel":
        return await _end(conn, scope, clock, row, at, "payment_failed")
    if row["status"] == "unpaid":
        return row
    after = await _save(conn, clock, row, {**row, "status": "unpaid"})
    await _publish(conn, scope, clock, after, "customer.subscription.updated")
    return after
