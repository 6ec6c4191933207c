"""Credit notes over the API, against the sandbox PSP and the billing engine: what each
does to its invoice, the customer's balance, the card and the ledger, and that the
ledger still verifies and every invoice's money adds up after each step. The rules
themselves are plain functions, tested first without a database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.billing.engine import Engine
from payrail.billing.invoices.credit_note_schemas import CreditNoteCreate
from payrail.billing.invoices.credit_notes import (
    Split,
    check_refund,
    check_voidable,
    invoice_changes,
    split,
)
from payrail.clock import ManualClock
from payrail.errors import InvalidRequest
from payrail.ledger.verify import verify
from payrail.tenants.service import NewMerchant
from tests.billing.conftest import Api, customer_with_card, monthly_price
from tests.conftest import new_merchant

Json = dict[str, Any]


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type, misc]


# -- the rules, without a database ---------------------------------------------------


def invoice_row(**changes: Any) -> Json:
    row: Json = {
        "status": "open",
        "total": 1000,
        "amount_due": 1000,
        "amount_paid": 0,
        "amount_remaining": 1000,
        "pre_payment_credit_notes_amount": 0,
        "post_payment_credit_notes_amount": 0,
        "payment_intent_id": None,
    }
    return {**row, **changes}


PAID = invoice_row(status="paid", amount_paid=1000, amount_remaining=0)


def params(**given: Any) -> CreditNoteCreate:
    return CreditNoteCreate.model_validate({"invoice": "in_1", **given})


def refused(call: Any, *args: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as raised:
        call(*args)
    return raised.value


def test_an_open_invoice_is_credited_before_payment_up_to_what_remains() -> None:
    assert split(invoice_row(), params(amount=1000)) == Split("pre_payment")
    error = refused(split, invoice_row(amount_remaining=400, amount_paid=600), params(amount=401))
    assert (error.param, error.code) == ("amount", "amount_too_large")
    error = refused(split, invoice_row(), params(amount=10, credit_amount=10))
    assert (error.param, error.code) == ("credit_amount", "parameter_invalid")
    error = refused(split, invoice_row(payment_intent_id="pi_1"), params(amount=10))
    assert (error.param, error.code) == ("invoice", "invoice_payment_in_progress")


def test_a_paid_invoice_is_credited_to_the_balance_unless_told_where() -> None:
    assert split(PAID, params(amount=400)) == Split("post_payment", credit_amount=400)
    assert split(
        PAID, params(amount=400, refund_amount=100, credit_amount=0, out_of_band_amount=300)
    ) == Split("post_payment", 0, 100, 300)
    short = refused(split, PAID, params(amount=400, refund_amount=100))
    assert (short.param, short.code) == ("out_of_band_amount", "parameter_invalid")
    over = refused(split, PAID, params(amount=400, refund_amount=300, credit_amount=200))
    assert over.param == "amount"
    credited = invoice_row(
        status="paid", amount_paid=1000, amount_remaining=0, post_payment_credit_notes_amount=700
    )
    assert split(credited, params(amount=300)) == Split("post_payment", credit_amount=300)
    error = refused(split, credited, params(amount=301))
    assert (error.param, error.code) == ("amount", "amount_too_large")


@pytest.mark.parametrize("status", ["draft", "void", "uncollectible"])
def test_only_open_and_paid_invoices_take_credit_notes(status: str) -> None:
    error = refused(split, invoice_row(status=status), params(amount=1))
    assert (error.param, error.code) == ("invoice", "invoice_not_creditable")


def test_a_refund_needs_a_card_payment_with_that_much_left() -> None:
    check_refund(300, {"id": "pi_1", "amount_received": 1000, "amount_refunded": 700})
    error = refused(
        check_refund, 301, {"id": "pi_1", "amount_received": 1000, "amount_refunded": 700}
    )
    assert (error.param, error.code) == ("refund_amount", "amount_too_large")
    assert refused(check_refund, 1, None).param == "refund_amount"


def test_lines_are_refused_as_not_supported_yet() -> None:
    from payrail.api.schemas import parse

    with pytest.raises(InvalidRequest) as raised:
        parse(CreditNoteCreate, {"invoice": "in_1", "lines": [{"amount": 1}]})
    assert raised.value.param == "lines"
    assert "not supported yet" in raised.value.message


def test_a_pre_payment_credit_that_leaves_nothing_due_pays_and_voiding_gives_it_back() -> None:
    note = {"type": "pre_payment", "amount": 300}
    changes = invoice_changes(
        invoice_row(amount_remaining=300, amount_paid=700), note, 1, at(2026, 1, 1), at(2026, 1, 2)
    )
    assert (changes["status"], changes["amount_due"], changes["amount_remaining"]) == (
        "paid",
        700,
        0,
    )
    assert changes["paid_at"] == at(2026, 1, 1)
    back = invoice_changes(
        invoice_row(amount_due=700, amount_remaining=0, pre_payment_credit_notes_amount=300),
        note,
        -1,
        at(2026, 1, 1),
        at(2026, 1, 2),
    )
    assert (
        back["amount_due"],
        back["amount_remaining"],
        back["pre_payment_credit_notes_amount"],
    ) == (1000, 300, 0)
    assert "status" not in back


def test_what_cannot_be_undone_keeps_a_credit_note_from_being_voided() -> None:
    post = {"type": "post_payment", "refund_amount": 100, "credit_amount": 300}
    assert refused(check_voidable, post, PAID, "succeeded", -300).code == "credit_note_refunded"
    assert refused(check_voidable, post, PAID, "pending", -300).code == "credit_note_refunded"
    check_voidable(post, PAID, "failed", -300)
    assert refused(check_voidable, post, PAID, None, -299).code == "credit_note_credit_used"
    pre = {"type": "pre_payment", "refund_amount": 0, "credit_amount": 0}
    check_voidable(pre, invoice_row(), None, 0)
    assert refused(check_voidable, pre, PAID, None, 0).code == "invoice_not_open"


# -- over the API -----------------------------------------------------------------------


async def ledger(pool: AsyncConnectionPool, merchant_id: str) -> dict[str, int]:
    """Billing's and payments' ledger balances by purpose, each on its normal side."""
    async with pool.connection() as conn:
        assert (await verify(conn)).ok
        cur = await conn.execute(
            """
            SELECT purpose, sum(CASE WHEN b.normal_balance = 'debit'
                THEN b.debits_posted - b.credits_posted
                ELSE b.credits_posted - b.debits_posted END) FROM (
                SELECT purpose, ledger_account_id FROM billing_ledger_accounts
                WHERE merchant_id = %s
                UNION ALL
                SELECT purpose, ledger_account_id FROM payment_ledger_accounts
                WHERE merchant_id = %s
            ) a JOIN ledger_balances b ON b.account_id = a.ledger_account_id
            GROUP BY purpose
            """,
            (merchant_id, merchant_id),
        )
        return {purpose: int(total) for purpose, total in await cur.fetchall()}


async def customer_balance(pool: AsyncConnectionPool, customer_id: str) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT coalesce(sum(balance), 0) FROM customer_balances WHERE customer_id = %s",
            (customer_id,),
        )
        found = await cur.fetchone()
        assert found is not None
        return int(found[0])


async def invoice_of(api: Api, invoice_id: str) -> Json:
    """The invoice, after checking that its money adds up: what it bills is paid, still
    owed, credited before payment, or taken from the customer's credit balance."""
    invoice = await api.get(f"/v1/invoices/{invoice_id}")
    from_balance = invoice["ending_balance"] - invoice["starting_balance"]
    assert invoice["total"] == (
        invoice["amount_paid"]
        + invoice["amount_remaining"]
        + invoice["pre_payment_credit_notes_amount"]
        + from_balance
    )
    return invoice


async def open_invoice(api: Api, amount: int = 1000) -> tuple[Json, Json]:
    """A subscription whose first charge was declined: incomplete, its invoice open."""
    price = await monthly_price(api, amount)
    customer = await customer_with_card(api, "pm_card_chargeCustomerFail")
    sub = await api.post(
        "/v1/subscriptions", {"customer": customer["id"], "items": [{"price": price["id"]}]}
    )
    invoice = await invoice_of(api, sub["latest_invoice"])
    assert (invoice["status"], invoice["amount_remaining"]) == ("open", amount)
    return sub, invoice


async def paid_invoice(api: Api, amount: int = 1000) -> tuple[Json, Json]:
    price = await monthly_price(api, amount)
    customer = await customer_with_card(api)
    sub = await api.post(
        "/v1/subscriptions", {"customer": customer["id"], "items": [{"price": price["id"]}]}
    )
    invoice = await invoice_of(api, sub["latest_invoice"])
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", amount)
    return sub, invoice


async def event_types(api: Api, object_id: str) -> list[str]:
    events = await api.get("/v1/events", limit=100)
    return [e["type"] for e in reversed(events["data"]) if e["data"]["object"]["id"] == object_id]


async def test_a_credit_note_lowers_an_open_invoice_and_one_for_the_rest_pays_it(
    api: Api, clock: ManualClock, pool: AsyncConnectionPool, merchant: NewMerchant
) -> None:
    clock.current = at(2026, 3, 5, 9)
    sub, invoice = await open_invoice(api)
    assert sub["status"] == "incomplete"
    first = await api.post(
        "/v1/credit_notes",
        {
            "invoice": invoice["id"],
            "amount": 300,
            "reason": "order_change",
            "memo": "Two seats were never used",
            "metadata": {"ticket": "T-17"},
        },
    )
    assert {k: first[k] for k in ("object", "type", "status", "amount", "total", "invoice")} == {
        "object": "credit_note",
        "type": "pre_payment",
        "status": "issued",
        "amount": 300,
        "total": 300,
        "invoice": invoice["id"],
    }
    assert (first["credit_amount"], first["refund_amount"], first["out_of_band_amount"]) == (
        0,
        0,
        0,
    )
    assert (first["pre_payment_amount"], first["post_payment_amount"]) == (300, 0)
    assert (first["number"], first["reason"], first["memo"], first["metadata"]) == (
        f"{invoice['number']}-CN-1",
        "order_change",
        "Two seats were never used",
        {"ticket": "T-17"},
    )
    assert (first["customer"], first["currency"], first["refund"]) == (
        invoice["customer"],
        "usd",
        None,
    )
    assert first["created"] == int(clock.current.timestamp())
    assert first["id"].startswith("cn_")
    assert await api.get(f"/v1/credit_notes/{first['id']}") == first
    invoice = await invoice_of(api, invoice["id"])
    assert (
        invoice["status"],
        invoice["amount_due"],
        invoice["amount_remaining"],
        invoice["pre_payment_credit_notes_amount"],
    ) == ("open", 700, 700, 300)
    money = await ledger(pool, merchant.id)
    assert money["receivable"] == 700
    assert money["deferred_revenue"] + money["subscription_revenue"] == 700

    # The rest credited: nothing is due, so the invoice is paid, and its subscription starts.
    clock.current = at(2026, 3, 5, 10)
    second = await api.post("/v1/credit_notes", {"invoice": invoice["id"], "amount": 700})
    assert second["number"] == f"{invoice['number']}-CN-2"
    invoice = await invoice_of(api, invoice["id"])
    assert (
        invoice["status"],
        invoice["amount_due"],
        invoice["amount_paid"],
        invoice["amount_remaining"],
        invoice["pre_payment_credit_notes_amount"],
    ) == ("paid", 0, 0, 0, 1000)
    assert invoice["status_transitions"]["paid_at"] == int(at(2026, 3, 5, 10).timestamp())
    assert invoice["next_payment_attempt"] is None
    assert (await api.get(f"/v1/subscriptions/{sub['id']}"))["status"] == "active"
    assert await event_types(api, invoice["id"]) == [
        "invoice.created",
        "invoice.finalized",
        "invoice.payment_failed",
        "invoice.updated",
        "invoice.updated",
        "invoice.paid",
    ]
    assert await event_types(api, first["id"]) == ["credit_note.created"]
    money = await ledger(pool, merchant.id)
    assert money["receivable"] == 0
    assert money["deferred_revenue"] + money["subscription_revenue"] == 0

    listed = await api.get("/v1/credit_notes", invoice=invoice["id"])
    assert [n["id"] for n in listed["data"]] == [second["id"], first["id"]]
    listed = await api.get("/v1/credit_notes", customer=invoice["customer"], limit=1)
    assert ([n["id"] for n in listed["data"]], listed["has_more"]) == ([second["id"]], True)
    listed = await api.get("/v1/credit_notes", starting_after=second["id"])
    assert [n["id"] for n in listed["data"]] == [first["id"]]

    # What it credited paid the invoice: it cannot be taken back now.
    refused = await api.post(f"/v1/credit_notes/{first['id']}/void", status=400)
    assert refused["error"]["code"] == "invoice_not_open"


async def test_credit_notes_that_ask_too_much_are_refused_and_change_nothing(
    api: Api, pool: AsyncConnectionPool, merchant: NewMerchant
) -> None:
    _, invoice = await open_invoice(api)
    _, paid = await paid_invoice(api)
    before = await ledger(pool, merchant.id)
    cases: list[tuple[Json, str, str]] = [
        ({"invoice": invoice["id"], "amount": 1001}, "amount", "amount_too_large"),
        ({"invoice": invoice["id"]}, "amount", "parameter_missing"),
        ({"invoice": invoice["id"], "amount": 0}, "amount", "parameter_invalid"),
        ({"invoice": invoice["id"], "amount": 10.5}, "amount", "parameter_invalid"),
        (
            {"invoice": invoice["id"], "amount": 100, "refund_amount": 100},
            "refund_amount",
            "parameter_invalid",
        ),
        (
            {"invoice": invoice["id"], "lines": [{"type": "custom_line_item", "amount": 5}]},
            "lines",
            "parameter_invalid",
        ),
        ({"invoice": invoice["id"], "amount": 5, "reason": "whim"}, "reason", "parameter_invalid"),
        ({"amount": 5}, "invoice", "parameter_missing"),
        ({"invoice": "in_missing", "amount": 5}, "invoice", "resource_missing"),
        ({"invoice": paid["id"], "amount": 1001}, "amount", "amount_too_large"),
        (
            {"invoice": paid["id"], "amount": 500, "credit_amount": 100, "refund_amount": 100},
            "out_of_band_amount",
            "parameter_invalid",
        ),
        (
            {"invoice": paid["id"], "amount": 500, "credit_amount": 400, "refund_amount": 200},
            "amount",
            "parameter_invalid",
        ),
        (
            {"invoice": paid["id"], "amount": 5, "credit_amount": -5},
            "credit_amount",
            "parameter_invalid",
        ),
    ]
    for body, param, code in cases:
        reply = await api.http.post("/v1/credit_notes", json=body, headers=api.headers)
        assert reply.status_code == (404 if code == "resource_missing" else 400), body
        error = reply.json()["error"]
        assert (error["param"], error["code"]) == (param, code), body
    assert (
        "not supported yet"
        in (
            await api.post("/v1/credit_notes", {"invoice": invoice["id"], "lines": []}, status=400)
        )["error"]["message"]
    )

    # A voided invoice takes no credit note.
    await api.post(f"/v1/invoices/{invoice['id']}/void")
    error = (await api.post("/v1/credit_notes", {"invoice": invoice["id"], "amount": 5}, 400))[
        "error"
    ]
    assert (error["param"], error["code"]) == ("invoice", "invoice_not_creditable")

    assert (await api.get("/v1/credit_notes"))["data"] == []
    assert (await invoice_of(api, paid["id"])) == paid
    after = await ledger(pool, merchant.id)
    # Only the void moved money: the credit notes refused moved none.
    assert after["receivable"] == before["receivable"] - 1000
    assert after["customer_credit"] == before["customer_credit"] == 0
    assert (await api.get("/v1/events", type="credit_note.created"))["data"] == []


async def test_a_credit_to_the_balance_is_used_by_the_next_renewal(
    api: Api, engine: Engine, clock: ManualClock, pool: AsyncConnectionPool, merchant: NewMerchant
) -> None:
    clock.current = at(2026, 1, 10)
    sub, invoice = await paid_invoice(api)
    note = await api.post(
        "/v1/credit_notes",
        {"invoice": invoice["id"], "amount": 400, "reason": "product_unsatisfactory"},
    )
    assert (note["type"], note["credit_amount"], note["refund_amount"], note["refund"]) == (
        "post_payment",
        400,
        0,
        None,
    )
    assert note["customer_balance_transaction"].startswith("cbtxn_")
    invoice = await invoice_of(api, invoice["id"])
    assert (
        invoice["status"],
        invoice["amount_paid"],
        invoice["post_payment_credit_notes_amount"],
    ) == (
        "paid",
        1000,
        400,
    )
    assert await customer_balance(pool, invoice["customer"]) == -400
    money = await ledger(pool, merchant.id)
    assert money["customer_credit"] == 400
    assert money["deferred_revenue"] + money["subscription_revenue"] == 600

    # Nothing more than what was paid and not yet credited.
    error = (await api.post("/v1/credit_notes", {"invoice": invoice["id"], "amount": 601}, 400))[
        "error"
    ]
    assert (error["param"], error["code"]) == ("amount", "amount_too_large")

    clock.current = at(2026, 2, 10)
    assert (await engine.run_once()).renewed == 1
    renewal = await invoice_of(
        api, (await api.get(f"/v1/subscriptions/{sub['id']}"))["latest_invoice"]
    )
    assert (
        renewal["status"],
        renewal["total"],
        renewal["starting_balance"],
        renewal["ending_balance"],
        renewal["amount_due"],
        renewal["amount_paid"],
    ) == ("paid", 1000, -400, 0, 600, 600)
    assert await customer_balance(pool, invoice["customer"]) == 0
    money = await ledger(pool, merchant.id)
    assert (money["customer_credit"], money["receivable"], money["payment_clearing"]) == (0, 0, 0)
    assert money["deferred_revenue"] + money["subscription_revenue"] == 1600

    # The credit is spent: the credit note that gave it can no longer be voided.
    error = (await api.post(f"/v1/credit_notes/{note['id']}/void", status=400))["error"]
    assert error["code"] == "credit_note_credit_used"
    assert (await api.get(f"/v1/credit_notes/{note['id']}"))["status"] == "issued"


async def test_a_refund_goes_back_to_the_card_once_under_an_idempotency_key(
    api: Api, psp: httpx.AsyncClient, pool: AsyncConnectionPool, merchant: NewMerchant
) -> None:
    _, invoice = await paid_invoice(api)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id FROM payment_intents WHERE invoice_id = %s", (invoice["id"],)
        )
        intent_id = [row[0] for row in await cur.fetchall()]
    assert len(intent_id) == 1
    body = {
        "invoice": invoice["id"],
        "amount": 600,
        "refund_amount": 250,
        "credit_amount": 300,
        "out_of_band_amount": 50,
        "reason": "duplicate",
    }
    headers = {**api.headers, "Idempotency-Key": "cn-refund-1"}
    reply = await api.http.post("/v1/credit_notes", json=body, headers=headers)
    assert reply.status_code == 200, reply.text
    note = reply.json()
    again = await api.http.post("/v1/credit_notes", json=body, headers=headers)
    assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (200, "true")
    assert again.json() == note
    assert (
        note["type"],
        note["refund_amount"],
        note["credit_amount"],
        note["out_of_band_amount"],
    ) == ("post_payment", 250, 300, 50)
    refund = await api.get(f"/v1/refunds/{note['refund']}")
    assert (refund["amount"], refund["status"], refund["payment_intent"], refund["reason"]) == (
        250,
        "succeeded",
        intent_id[0],
        "duplicate",
    )
    assert refund["metadata"] == {"credit_note": note["id"], "invoice": invoice["id"]}
    record = (await psp.get("/sandbox/record")).json()
    assert [r["amount"] for r in record["refunds"] if r["idempotency_key"] == refund["id"]] == [250]
    assert len(record["refunds"]) == 1
    assert (await api.get("/v1/credit_notes"))["data"] == [note]

    invoice = await invoice_of(api, invoice["id"])
    assert (invoice["status"], invoice["post_payment_credit_notes_amount"]) == ("paid", 600)
    assert await customer_balance(pool, invoice["customer"]) == -300
    money = await ledger(pool, merchant.id)
    assert (money["refunds"], money["customer_credit"]) == (250, 300)
    assert money["deferred_revenue"] + money["subscription_revenue"] == 700

    # Money that went back to the card cannot be taken back.
    error = (await api.post(f"/v1/credit_notes/{note['id']}/void", status=400))["error"]
    assert error["code"] == "credit_note_refunded"
    # 400 is left to credit, 750 to refund: more than either is refused.
    error = (
        await api.post(
            "/v1/credit_notes", {"invoice": invoice["id"], "amount": 401, "refund_amount": 401}, 400
        )
    )["error"]
    assert (error["param"], error["code"]) == ("amount", "amount_too_large")
    assert len((await psp.get("/sandbox/record")).json()["refunds"]) == 1


async def test_voiding_undoes_what_a_credit_note_did(
    api: Api, clock: ManualClock, pool: AsyncConnectionPool, merchant: NewMerchant
) -> None:
    clock.current = at(2026, 4, 1)
    _, invoice = await open_invoice(api)
    _, paid = await paid_invoice(api)
    before = await ledger(pool, merchant.id)
    pre = await api.post("/v1/credit_notes", {"invoice": invoice["id"], "amount": 250})
    post = await api.post("/v1/credit_notes", {"invoice": paid["id"], "amount": 400})
    assert await customer_balance(pool, paid["customer"]) == -400

    clock.current = at(2026, 4, 2)
    voided = await api.post(f"/v1/credit_notes/{pre['id']}/void")
    assert (voided["status"], voided["voided_at"]) == ("void", int(at(2026, 4, 2).timestamp()))
    assert (voided["number"], voided["amount"]) == (pre["number"], 250)
    invoice = await invoice_of(api, invoice["id"])
    assert (
        invoice["status"],
        invoice["amount_due"],
        invoice["amount_remaining"],
        invoice["pre_payment_credit_notes_amount"],
    ) == ("open", 1000, 1000, 0)
    voided = await api.post(f"/v1/credit_notes/{post['id']}/void")
    assert voided["status"] == "void"
    paid = await invoice_of(api, paid["id"])
    assert paid["post_payment_credit_notes_amount"] == 0
    assert await customer_balance(pool, paid["customer"]) == 0
    assert await ledger(pool, merchant.id) == before

    # Voiding again changes nothing more; a new credit note takes the next number.
    assert await api.post(f"/v1/credit_notes/{pre['id']}/void") == await api.get(
        f"/v1/credit_notes/{pre['id']}"
    )
    assert await event_types(api, pre["id"]) == ["credit_note.created", "credit_note.voided"]
    again = await api.post("/v1/credit_notes", {"invoice": invoice["id"], "amount": 1000})
    assert again["number"] == f"{invoice['number']}-CN-2"
    assert (await invoice_of(api, invoice["id"]))["status"] == "paid"
    error = (await api.post("/v1/credit_notes/cn_missing/void", status=404))["error"]
    assert (error["code"], error["param"]) == ("resource_missing", "id")
    await ledger(pool, merchant.id)


async def test_another_merchant_sees_no_credit_note_and_credits_no_invoice(
    api: Api, pool: AsyncConnectionPool, clock: ManualClock
) -> None:
    _, invoice = await paid_invoice(api)
    note = await api.post("/v1/credit_notes", {"invoice": invoice["id"], "amount": 100})
    other = await new_merchant(pool, clock, "Other Streaming")
    theirs = Api(api.http, {"Authorization": f"Bearer {other.test_secret}"})
    assert (await theirs.get(f"/v1/credit_notes/{note['id']}", status=404))["error"][
        "param"
    ] == "id"
    await theirs.post(f"/v1/credit_notes/{note['id']}/void", status=404)
    error = (await theirs.post("/v1/credit_notes", {"invoice": invoice["id"], "amount": 1}, 404))[
        "error"
    ]
    assert (error["param"], error["code"]) == ("invoice", "resource_missing")
    assert (await theirs.get("/v1/credit_notes"))["data"] == []
    assert (await api.get(f"/v1/credit_notes/{note['id']}"))["status"] == "issued"
