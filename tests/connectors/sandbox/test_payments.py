"""Payments, captures, voids and refunds over real HTTP, and every way to get them wrong."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest

from payrail.clock import ManualClock, unix
from payrail.vault.test_cards import TEST_CARDS, TestCard
from tests.connectors.sandbox.helpers import (
    VISA,
    card,
    new_key,
    ok,
    pay,
    payment_body,
    payments_by_key,
    post,
    record,
    recorded_payments,
)
from tests.connectors.sandbox.test_processor import EXPECTED


@pytest.mark.parametrize("test_card", TEST_CARDS, ids=lambda c: f"{c.brand}-{c.number[-4:]}")
async def test_every_test_card_gets_its_outcome(
    psp: httpx.AsyncClient, psp_clock: ManualClock, test_card: TestCard
) -> None:
    for capture in (True, False):
        key = new_key()
        payment = ok(await pay(psp, key=key, card=card(test_card.number), capture=capture))
        expected: tuple[str, str | None, int, int]
        if test_card.outcome == "succeeded":
            status = "captured" if capture else "authorized"
            expected = (status, None, 1000 if capture else 0, 59 if capture else 0)
        else:
            want = EXPECTED[test_card.outcome]
            expected = (want.status, want.decline_code, 0, 0)
        got = (
            payment["status"],
            payment["decline_code"],
            payment["amount_captured"],
            payment["fee"],
        )
        assert got == expected
        assert payment["card"] == {"brand": test_card.brand, "last4": test_card.number[-4:]}
        assert payment["id"].startswith("sbxpay_") and payment["object"] == "payment"
        assert payment["idempotency_key"] == key
        assert payment["created"] == unix(psp_clock.now())
        assert await payments_by_key(psp, key) == [payment]


async def test_a_payment_has_the_contracts_shape(psp: httpx.AsyncClient) -> None:
    body = payment_body(currency="USD")  # any case in, lowercase out
    payment = ok(await post(psp, "/v1/payments", body, key="shape-" + new_key()))
    assert set(payment) == {
        "id", "object", "status", "amount", "currency", "amount_captured", "amount_refunded",
        "fee", "decline_code", "card", "reference", "idempotency_key", "created", "refunds",
    }  # fmt: skip
    assert (payment["currency"], payment["reference"], payment["refunds"]) == (
        "usd",
        body["reference"],
        [],
    )
    assert ok(await psp.get(f"/v1/payments/{payment['id']}")) == payment


async def test_a_card_that_is_not_a_test_card_is_declined_as_live(psp: httpx.AsyncClient) -> None:
    payment = ok(await pay(psp, card=card("4111111111111111")))
    assert (payment["status"], payment["decline_code"]) == ("declined", "test_mode_live_card")
    assert payment["card"] == {"brand": "visa", "last4": "1111"}


async def test_authorize_then_capture_part_then_refund_in_parts(
    psp: httpx.AsyncClient, psp_clock: ManualClock
) -> None:
    payment = ok(await pay(psp, capture=False, amount=2000))
    assert (payment["status"], payment["amount_captured"], payment["fee"]) == ("authorized", 0, 0)
    path = f"/v1/payments/{payment['id']}"

    captured = ok(await post(psp, f"{path}/capture", {"amount": 1500}, key=new_key()))
    assert (captured["status"], captured["amount_captured"], captured["fee"]) == (
        "captured",
        1500,
        74,  # 43.5 rounds up, plus 30
    )
    again = await post(psp, f"{path}/capture", {"amount": 1}, key=new_key())
    assert (again.status_code, again.json()["error"]["code"]) == (400, "invalid_state")

    psp_clock.advance(timedelta(hours=1))
    refunds = []
    for amount in (500, 250):
        key = new_key()
        refund = ok(await post(psp, f"{path}/refunds", {"amount": amount}, key=key))
        assert refund["id"].startswith("sbxre_")
        assert refund | {"id": None} == {
            "id": None,
            "object": "refund",
            "payment": payment["id"],
            "amount": amount,
            "status": "succeeded",
            "idempotency_key": key,
            "created": unix(psp_clock.now()),
        }
        refunds.append(refund)
    too_much = await post(psp, f"{path}/refunds", {"amount": 751}, key=new_key())
    assert (too_much.status_code, too_much.json()["error"]["code"]) == (400, "amount_too_large")
    rest = ok(await post(psp, f"{path}/refunds", None, key=new_key()))  # default: what is left
    assert rest["amount"] == 750
    refunds.append(rest)
    for body in (None, {"amount": 1}):
        nothing_left = await post(psp, f"{path}/refunds", body, key=new_key())
        assert (nothing_left.status_code, nothing_left.json()["error"]["code"]) == (
            400,
            "amount_too_large",
        )

    final = ok(await psp.get(path))
    assert (final["status"], final["amount_captured"], final["amount_refunded"]) == (
        "captured",
        1500,
        1500,
    )
    assert final["fee"] == 74, "refunds do not return the fee"
    assert final["refunds"] == refunds
    everything = await record(psp)
    assert [r for r in everything["refunds"] if r["payment"] == payment["id"]] == refunds


async def test_capture_defaults_to_everything_and_refuses_more(psp: httpx.AsyncClient) -> None:
    payment = ok(await pay(psp, capture=False, amount=700))
    path = f"/v1/payments/{payment['id']}/capture"
    too_large = await post(psp, path, {"amount": 701}, key=new_key())
    assert (too_large.status_code, too_large.json()["error"]["code"]) == (400, "amount_too_large")
    captured = ok(await post(psp, path, None, key=new_key()))
    assert (captured["amount_captured"], captured["fee"]) == (700, 50)  # 20.3 -> 20, + 30


async def test_void_only_an_authorized_payment(psp: httpx.AsyncClient) -> None:
    payment = ok(await pay(psp, capture=False))
    path = f"/v1/payments/{payment['id']}"
    voided = ok(await post(psp, f"{path}/void", {}, key=new_key()))
    assert (voided["status"], voided["amount_captured"], voided["fee"]) == ("voided", 0, 0)
    for action in ("void", "capture", "refunds"):
        reply = await post(psp, f"{path}/{action}", None, key=new_key())
        assert (reply.status_code, reply.json()["error"]["code"]) == (400, "invalid_state")


@pytest.mark.parametrize(
    ("number", "action"),
    [
        (VISA, "void"),  # captured
        ("4000000000000002", "capture"),  # declined
        ("4000002760003184", "capture"),  # requires_authentication
        ("4000000000009995", "refunds"),  # declined
    ],
)
async def test_invalid_state(psp: httpx.AsyncClient, number: str, action: str) -> None:
    payment = ok(await pay(psp, card=card(number)))
    reply = await post(psp, f"/v1/payments/{payment['id']}/{action}", None, key=new_key())
    assert (reply.status_code, reply.json()["error"]["code"]) == (400, "invalid_state")
    assert ok(await psp.get(f"/v1/payments/{payment['id']}")) == payment


async def test_zero_decimal_currencies_take_amounts_in_minor_units(psp: httpx.AsyncClient) -> None:
    yen = ok(await pay(psp, amount=500, currency="jpy"))
    assert (yen["amount"], yen["currency"], yen["fee"]) == (500, "jpy", 45)
    dinar = ok(await pay(psp, amount=1500, currency="bhd"))
    assert (dinar["amount"], dinar["fee"]) == (1500, 74)


def _without(key: str) -> dict[str, Any]:
    body = payment_body()
    del body[key]
    return body


BAD_PAYMENTS: list[tuple[str, Any, str | None]] = [
    ("no amount", _without("amount"), "amount"),
    ("no currency", _without("currency"), "currency"),
    ("no card", _without("card"), "card"),
    ("amount 0", payment_body(amount=0), "amount"),
    ("amount -5", payment_body(amount=-5), "amount"),
    ("amount 10.5", payment_body(amount=10.5), "amount"),
    ("amount 10.0", payment_body(amount=10.0), "amount"),
    ("amount string", payment_body(amount="1000"), "amount"),
    ("amount true", payment_body(amount=True), "amount"),
    ("amount past bigint", payment_body(amount=2**63), "amount"),
    ("unknown currency", payment_body(currency="xyz"), "currency"),
    ("currency without minor unit", payment_body(currency="xau"), "currency"),
    ("currency not a string", payment_body(currency=840), "currency"),
    ("capture not a bool", payment_body(capture="yes"), "capture"),
    ("reference not a string", payment_body(reference=5), "reference"),
    ("metadata not an object", payment_body(metadata=[]), "metadata"),
    ("unknown field", payment_body(customer="cus_1"), "customer"),
    ("card not an object", payment_body(card=VISA), "card"),
    ("no card number", payment_body(card={"exp_month": 1, "exp_year": 2030}), "card[number]"),
    ("grouped number", payment_body(card=card("4242 4242 4242 4242")), "card[number]"),
    ("short number", payment_body(card=card("42424242424")), "card[number]"),
    ("numeric number", payment_body(card=card(4242424242424242)), "card[number]"),
    ("month 13", payment_body(card=card(exp_month=13)), "card[exp_month]"),
    ("month 0", payment_body(card=card(exp_month=0)), "card[exp_month]"),
    ("year a string", payment_body(card=card(exp_year="2030")), "card[exp_year]"),
    ("cvc 2 digits", payment_body(card=card(cvc="12")), "card[cvc]"),
    ("cvc a number", payment_body(card=card(cvc=123)), "card[cvc]"),
    ("card unknown field", payment_body(card=card(name="A")), "card[name]"),
    ("body a list", [payment_body()], None),
]


@pytest.mark.parametrize(
    ("body", "param"), [b[1:] for b in BAD_PAYMENTS], ids=[b[0] for b in BAD_PAYMENTS]
)
async def test_bad_input_is_400_and_makes_no_payment(
    psp: httpx.AsyncClient, body: Any, param: str | None
) -> None:
    key = new_key()
    reply = await post(psp, "/v1/payments", body, key=key)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["code"] == "invalid_request" and error["message"]
    assert error.get("param") == param
    assert VISA not in reply.text
    assert await payments_by_key(psp, key) == []
    assert await recorded_payments(psp, key) == []


async def test_a_body_that_is_not_json_is_400(psp: httpx.AsyncClient) -> None:
    key = new_key()
    reply = await psp.post("/v1/payments", content=b"{amount", headers={"Idempotency-Key": key})
    assert (reply.status_code, reply.json()["error"]["code"]) == (400, "invalid_request")
    assert await payments_by_key(psp, key) == []


async def test_cvc_is_optional(psp: httpx.AsyncClient) -> None:
    without = card()
    del without["cvc"]
    assert ok(await pay(psp, card=without))["status"] == "captured"
    assert ok(await pay(psp, card=card(cvc=None)))["status"] == "captured"


@pytest.mark.parametrize("amount", [0, -1, "5", 1.5])
async def test_bad_capture_and_refund_amounts_are_400(psp: httpx.AsyncClient, amount: Any) -> None:
    authorized = ok(await pay(psp, capture=False))
    captured = ok(await pay(psp))
    for payment, action in ((authorized, "capture"), (captured, "refunds")):
        path = f"/v1/payments/{payment['id']}/{action}"
        reply = await post(psp, path, {"amount": amount}, key=new_key())
        assert (reply.status_code, reply.json()["error"]["code"]) == (400, "invalid_request")
        assert ok(await psp.get(f"/v1/payments/{payment['id']}")) == payment


async def test_a_void_takes_no_parameters(psp: httpx.AsyncClient) -> None:
    payment = ok(await pay(psp, capture=False))
    reply = await post(psp, f"/v1/payments/{payment['id']}/void", {"amount": 1}, key=new_key())
    assert (reply.status_code, reply.json()["error"]["param"]) == (400, "amount")


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer sbx_sk_wrong"}, {"Authorization": "Basic c2J4X3NrX3Rlc3Rz"}],
)
async def test_a_wrong_or_missing_secret_is_401(psp_url: str, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=psp_url, headers=headers) as stranger:
        key = new_key()
        replies = [
            await post(stranger, "/v1/payments", payment_body(), key=key),
            await stranger.get("/v1/payments/sbxpay_x"),
            await stranger.get("/v1/payments", params={"idempotency_key": key}),
            await stranger.get("/v1/refunds", params={"idempotency_key": key}),
            await stranger.get("/sandbox/record"),
            await post(stranger, "/sandbox/faults", {"rate": 1.0}),
        ]
        for reply in replies:
            assert (reply.status_code, reply.json()["error"]["code"]) == (401, "unauthorized")
        health = await stranger.get("/health")
        assert (health.status_code, health.json()) == (200, {"ok": True})


async def test_unknown_ids_and_urls_are_404(psp: httpx.AsyncClient) -> None:
    assert (await psp.get("/v1/payments/sbxpay_missing")).status_code == 404
    for action in ("capture", "void", "refunds"):
        reply = await post(psp, f"/v1/payments/sbxpay_missing/{action}", None, key=new_key())
        assert (reply.status_code, reply.json()["error"]["code"]) == (404, "resource_missing")
    unknown = await psp.get("/v1/charges")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "resource_missing")
    wrong_method = await psp.delete("/v1/payments/sbxpay_missing")
    assert wrong_method.status_code == 405


async def test_the_lists_need_a_key_and_are_empty_for_an_unknown_one(
    psp: httpx.AsyncClient,
) -> None:
    for path in ("/v1/payments", "/v1/refunds"):
        reply = await psp.get(path)
        assert (reply.status_code, reply.json()["error"]["param"]) == (400, "idempotency_key")
        empty = ok(await psp.get(path, params={"idempotency_key": new_key()}))
        assert empty == {"object": "list", "data": []}


async def test_card_numbers_and_cvcs_are_never_kept_nor_logged(
    psp: httpx.AsyncClient, capfd: pytest.CaptureFixture[str]
) -> None:
    number = "4000056655665556"
    good = ok(await pay(psp, card=card(number, cvc="7391")))
    path = f"/v1/payments/{good['id']}"
    await post(psp, f"{path}/refunds", {"amount": 100}, key=new_key(), fault="error_after")
    await pay(psp, amount=0, card=card(number, cvc="7391"))  # refused, stored as a 400
    await pay(psp, card=card(number, cvc="7391"), fault="timeout_before")
    await psp.get(f"/v1/payments/{number}")  # a number where an id goes
    everything = (await psp.get("/sandbox/record")).text
    output = capfd.readouterr()
    logs = output.out + output.err
    assert "5556" in logs and "sandbox payment" in logs, "the logs were captured"
    for text in (everything, logs):
        assert number not in text
        # As a value of its own: random ids and timestamps may hold the digits by chance.
        assert re.search(r"(?<![0-9A-Za-z])7391(?![0-9A-Za-z])", text) is None
        assert '"cvc"' not in text and "cvc=" not in text  # (incorrect_cvc is a decline)
