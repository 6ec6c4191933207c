"""/v1/payment_methods over the API: cards in, brand and last 4 out, in Stripe's shapes.

A card number and CVC go in; only brand, last 4, expiry, funding and a per-merchant
fingerprint come back. Neither the number, its BIN nor the CVC may appear in any response,
error or event, and a refused card writes nothing at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.clock import ManualClock, unix
from payrail.tenants.service import NewMerchant
from payrail.vault.test_cards import by_name, by_number
from tests.conftest import new_merchant

Json = dict[str, Any]

PAYMENT_METHODS = "/v1/payment_methods"
FORM = "application/x-www-form-urlencoded"

VISA = "4242424242424242"
MASTERCARD = "5555555555554444"
AMEX = "378282246310005"


def luhn_complete(partial: str) -> str:
    """`partial` with the check digit that makes it pass Luhn (written out independently)."""
    total = 0
    for position, char in enumerate(reversed(partial)):
        digit = int(char)
        if position % 2 == 0:  # doubled once the check digit is appended
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return partial + str((10 - total % 10) % 10)


# Luhn-valid numbers that are not Stripe test cards: "real" cards as far as the vault knows.
REAL_VISA = luhn_complete("491761000000000")
REAL_MASTERCARD = luhn_complete("522222000000000")
SHORT = luhn_complete("4242424242")  # 11 digits
LONG = luhn_complete("4242424242424242424")  # 20 digits

STRIPE_KEYS = {
    "id",
    "object",
    "type",
    "billing_details",
    "card",
    "customer",
    "metadata",
    "created",
    "livemode",
}
CARD_KEYS = {
    "brand",
    "checks",
    "country",
    "exp_month",
    "exp_year",
    "fingerprint",
    "funding",
    "last4",
}


def test_the_real_numbers_are_luhn_valid_and_not_test_cards() -> None:
    for number in (REAL_VISA, REAL_MASTERCARD, SHORT, LONG):
        assert luhn_complete(number[:-1]) == number
        assert by_number(number) is None
    assert luhn_complete("424242424242424") == VISA  # the helper agrees with Stripe's card
    assert len(SHORT) == 11 and len(LONG) == 20


# --- Helpers --------------------------------------------------------------------------------------


def card(
    number: str = VISA, exp_month: object = 12, exp_year: object = 2030, **extra: object
) -> Json:
    return {"number": number, "exp_month": exp_month, "exp_year": exp_year, **extra}


def body(**card_fields: Any) -> Json:
    return {"type": "card", "card": card(**card_fields)}


def form_pairs(data: Json, prefix: str = "") -> list[tuple[str, str]]:
    """A nested body in Stripe's bracket notation: {"card": {"number": n}} -> card[number]=n."""
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}[{key}]" if prefix else key
        if isinstance(value, dict):
            pairs.extend(form_pairs(value, name))
        else:
            pairs.append((name, str(value)))
    return pairs


async def post(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    data: Json,
    *,
    as_form: bool = False,
    key: str | None = None,
) -> httpx.Response:
    extra = {"Idempotency-Key": key} if key else {}
    if as_form:
        return await client.post(
            PAYMENT_METHODS,
            content=urlencode(form_pairs(data)).encode(),
            headers={**headers, **extra, "Content-Type": FORM},
        )
    return await client.post(PAYMENT_METHODS, json=data, headers={**headers, **extra})


async def create(client: httpx.AsyncClient, headers: dict[str, str], data: Json) -> Json:
    reply = await post(client, headers, data)
    assert reply.status_code == 200, reply.text
    obj: Json = reply.json()
    return obj


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def snapshot(pool: AsyncConnectionPool) -> dict[str, int]:
    """Row counts of every table in the public schema but alembic_version."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            " AND table_type = 'BASE TABLE' AND table_name <> 'alembic_version'"
            " ORDER BY table_name"
        )
        tables = [row[0] for row in await cur.fetchall()]
        counts: dict[str, int] = {}
        for table in tables:
            row = await (await conn.execute(f'SELECT count(*) FROM "{table}"')).fetchone()
            assert row is not None
            counts[table] = row[0]
    assert {"payment_methods", "events", "idempotency_keys", "vault_keys"} <= set(counts)
    return counts


async def stored_text(pool: AsyncConnectionPool, query: str) -> str:
    """The text of every row a query returns, for leak checks."""
    async with pool.connection() as conn:
        cur = await conn.execute(query)
        return "\n".join(str(row[0]) for row in await cur.fetchall())


async def event_payloads(pool: AsyncConnectionPool, aggregate_id: str) -> list[Json]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT payload FROM events WHERE aggregate_id = %s ORDER BY seq", (aggregate_id,)
        )
        return [row[0] for row in await cur.fetchall()]


# The stored results of idempotent requests, as the JSON they hold.
KEPT_RESPONSES = (
    "SELECT convert_from(response_body, 'UTF8') FROM idempotency_keys"
    " WHERE response_body IS NOT NULL"
)


def assert_no_card_data(text: str, number: str, cvc: str | None) -> None:
    """Neither the number, its BIN, nor the CVC; nor any 6+ digit run (a PAN fragment)."""
    assert number not in text
    assert number[:6] not in text
    if cvc is not None:
        assert cvc not in text
    assert re.search(r"[0-9]{6,}", text) is None, text


def scrubbed(reply: httpx.Response) -> str:
    """The response text without the values that are random or allowed to be long digit
    runs: the id, the fingerprint (hex) and the `created` timestamp."""
    obj = reply.json()
    text = reply.text
    for allowed in (obj["id"], obj["card"]["fingerprint"]):
        assert allowed in text
        text = text.replace(allowed, "")
    return re.sub(r'"created":\s*[0-9]+', '"created":0', text)


def assert_card_error(
    reply: httpx.Response, status: int, param: str, code: str | None, *entered: str | None
) -> Json:
    assert reply.status_code == status, reply.text
    error: Json = reply.json()["error"]
    assert error["param"] == param, error
    assert error.get("code") == code, error
    assert error["type"] == ("card_error" if status == 402 else "invalid_request_error"), error
    for value in entered:
        if value:
            assert value not in error["message"], error
            assert value not in reply.text, error
    return error


# --- 1. Create from a number ----------------------------------------------------------------------


@pytest.mark.parametrize("as_form", [False, True], ids=["json", "form"])
@pytest.mark.parametrize(
    ("number", "cvc", "brand", "funding"),
    [
        (VISA, "314", "visa", "credit"),
        (MASTERCARD, "271", "mastercard", "credit"),
        (AMEX, "7531", "amex", "credit"),
        ("4000056655665556", None, "visa", "debit"),
    ],
    ids=["visa", "mastercard", "amex-4-digit-cvc", "visa-debit-no-cvc"],
)
async def test_create_from_a_test_number_returns_only_brand_and_last4(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    clock: ManualClock,
    number: str,
    cvc: str | None,
    brand: str,
    funding: str,
    as_form: bool,
) -> None:
    extra = {"cvc": cvc} if cvc else {}
    data = {**body(number=number, exp_month=11, exp_year=2031, **extra), "metadata": {"k": "v"}}
    reply = await post(client, auth, data, as_form=as_form)
    assert reply.status_code == 200, reply.text
    obj = reply.json()

    assert set(obj) == STRIPE_KEYS
    assert set(obj["card"]) == CARD_KEYS
    assert obj["id"].startswith("pm_")
    assert obj["object"] == "payment_method"
    assert obj["type"] == "card"
    assert obj["livemode"] is False
    assert obj["customer"] is None
    assert obj["metadata"] == {"k": "v"}
    assert obj["created"] == unix(clock.now())
    assert obj["card"]["brand"] == brand
    assert obj["card"]["funding"] == funding
    assert obj["card"]["last4"] == number[-4:]
    assert obj["card"]["exp_month"] == 11
    assert obj["card"]["exp_year"] == 2031
    assert re.fullmatch(r"[0-9a-f]{16,}", obj["card"]["fingerprint"])
    assert obj["card"]["checks"]["cvc_check"] is None

    assert_no_card_data(scrubbed(reply), number, cvc)
    # The event carries the same object; the row holds the number sealed, and no CVC.
    assert await event_payloads(pool, obj["id"]) == [obj]
    stored = await stored_text(pool, "SELECT t::text FROM payment_methods t")
    assert number not in stored
    assert number[:6] in stored  # the BIN is kept (for routing), just never returned
    columns = await stored_text(
        pool,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'payment_methods'",
    )
    assert "cvc" not in columns


async def test_a_number_with_spaces_is_the_same_card(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    plain = await create(client, auth, body())
    spaced = await create(client, auth, body(number="4242 4242 4242 4242"))
    assert spaced["card"]["last4"] == "4242"
    assert spaced["card"]["fingerprint"] == plain["card"]["fingerprint"]


async def test_a_two_digit_expiry_year_is_this_century(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    obj = await create(client, auth, body(exp_year=30))
    assert obj["card"]["exp_year"] == 2030
    reply = await post(client, auth, body(exp_year="30"), as_form=True)
    assert reply.status_code == 200, reply.text
    assert reply.json()["card"]["exp_year"] == 2030


async def test_a_card_good_through_this_month_is_accepted(
    client: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    clock.current = datetime(2026, 6, 15, tzinfo=UTC)
    now = clock.now()
    obj = await create(client, auth, body(exp_month=now.month, exp_year=now.year))
    assert (obj["card"]["exp_month"], obj["card"]["exp_year"]) == (now.month, now.year)


# --- 2. Create from a test token ------------------------------------------------------------------


@pytest.mark.parametrize("as_form", [False, True], ids=["json", "form"])
async def test_create_from_a_test_token(
    client: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock, as_form: bool
) -> None:
    reply = await post(
        client, auth, {"type": "card", "card": {"token": "tok_visa"}}, as_form=as_form
    )
    assert reply.status_code == 200, reply.text
    obj = reply.json()
    assert obj["object"] == "payment_method" and obj["livemode"] is False
    assert obj["card"]["brand"] == "visa"
    assert obj["card"]["last4"] == "4242"
    assert obj["card"]["funding"] == "credit"
    now = clock.now()
    assert (obj["card"]["exp_month"], obj["card"]["exp_year"]) == (now.month, now.year + 1)
    assert_no_card_data(scrubbed(reply), VISA, None)
    # The token stands for the card itself: the same fingerprint as the number.
    by_number_ = await create(client, auth, body())
    assert obj["card"]["fingerprint"] == by_number_["card"]["fingerprint"]


@pytest.mark.parametrize(
    ("token", "last4", "brand"),
    [("tok_mastercard", "4444", "mastercard"), ("tok_amex", "0005", "amex")],
)
async def test_other_test_tokens(
    client: httpx.AsyncClient, auth: dict[str, str], token: str, last4: str, brand: str
) -> None:
    obj = await create(client, auth, {"type": "card", "card": {"token": token}})
    assert (obj["card"]["brand"], obj["card"]["last4"]) == (brand, last4)


def test_by_name_resolves_payment_method_names_as_well_as_tokens() -> None:
    # The table answers for pm_card_* names too (they name PaymentMethods, used elsewhere);
    # so card[token] must itself refuse what is not a tok_* name.
    card_ = by_name("pm_card_visa")
    assert card_ is not None and card_.number == VISA
    assert by_name("tok_visa") is card_
    assert by_name("visa") is None


@pytest.mark.parametrize("name", ["pm_card_visa", "pm_card_authenticationRequired"])
async def test_a_payment_method_name_is_not_a_token(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool, name: str
) -> None:
    before = await snapshot(pool)
    reply = await post(client, auth, {"type": "card", "card": {"token": name}}, as_form=True)
    error = assert_card_error(reply, 404, "card[token]", "resource_missing")
    assert error["type"] == "invalid_request_error"
    assert await snapshot(pool) == before


@pytest.mark.parametrize("token", ["tok_nope", "tok_", "card_visa"])
async def test_an_unknown_token_is_404(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool, token: str
) -> None:
    before = await snapshot(pool)
    reply = await post(client, auth, {"type": "card", "card": {"token": token}})
    assert_card_error(reply, 404, "card[token]", "resource_missing")
    assert await snapshot(pool) == before


async def test_a_card_number_sent_as_a_token_is_not_echoed_or_kept(
    client: httpx.AsyncClient, merchant: NewMerchant, pool: AsyncConnectionPool
) -> None:
    data = {"type": "card", "card": {"token": REAL_VISA}}
    reply = await post(client, bearer(merchant.live_secret), data, key="pan-as-token")
    assert reply.status_code == 404, reply.text
    assert reply.json()["error"]["param"] == "card[token]"
    kept = await stored_text(pool, KEPT_RESPONSES)
    assert REAL_VISA not in reply.text
    assert REAL_VISA not in kept


@pytest.mark.parametrize(
    "extra",
    [
        {"number": VISA},
        {"number": VISA, "exp_month": 12, "exp_year": 2030, "cvc": "314"},
        {"exp_month": 12},
        {"cvc": "314"},
    ],
    ids=["number", "all-fields", "exp_month", "cvc"],
)
@pytest.mark.parametrize("as_form", [False, True], ids=["json", "form"])
async def test_a_token_with_card_fields_is_400(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    extra: Json,
    as_form: bool,
) -> None:
    before = await snapshot(pool)
    data = {"type": "card", "card": {"token": "tok_visa", **extra}}
    reply = await post(client, auth, data, as_form=as_form)
    assert_card_error(reply, 400, "card[token]", None, VISA, "314")
    assert await snapshot(pool) == before


# --- 3. Fingerprints ------------------------------------------------------------------------------


async def test_fingerprint_is_stable_per_merchant_and_differs_across_merchants(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    first = await create(client, auth, body(cvc="314"))
    again = await create(client, auth, body(exp_month=3, exp_year=2029, cvc="159"))
    assert first["id"] != again["id"]
    assert first["card"]["fingerprint"] == again["card"]["fingerprint"]
    other_card = await create(client, auth, body(number=MASTERCARD))
    assert other_card["card"]["fingerprint"] != first["card"]["fingerprint"]

    other = await new_merchant(pool, clock, "Other")
    elsewhere = await create(client, bearer(other.test_secret), body(cvc="314"))
    assert elsewhere["card"]["last4"] == "4242"
    assert elsewhere["card"]["fingerprint"] != first["card"]["fingerprint"]
    elsewhere_again = await create(client, bearer(other.test_secret), body())
    assert elsewhere_again["card"]["fingerprint"] == elsewhere["card"]["fingerprint"]


# --- 4. Test mode takes test cards only; live mode refuses them -----------------------------------


@pytest.mark.parametrize("as_form", [False, True], ids=["json", "form"])
@pytest.mark.parametrize("number", [REAL_VISA, REAL_MASTERCARD])
async def test_a_real_card_in_test_mode_is_declined(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    number: str,
    as_form: bool,
) -> None:
    before = await snapshot(pool)
    reply = await post(client, auth, body(number=number, cvc="314"), as_form=as_form)
    error = assert_card_error(reply, 402, "card[number]", "card_declined", number, "314")
    assert error["decline_code"] == "test_mode_live_card"
    assert number[:6] not in reply.text
    assert await snapshot(pool) == before


@pytest.mark.parametrize("number", [VISA, MASTERCARD, AMEX, "6205500000000000004"])
async def test_a_test_card_in_live_mode_is_declined(
    client: httpx.AsyncClient,
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    number: str,
) -> None:
    before = await snapshot(pool)
    cvc = "7531" if number == AMEX else "314"
    reply = await post(client, bearer(merchant.live_secret), body(number=number, cvc=cvc))
    error = assert_card_error(reply, 402, "card[number]", "card_declined", number, cvc)
    assert error["decline_code"] == "live_mode_test_card"
    assert await snapshot(pool) == before


@pytest.mark.parametrize("token", ["tok_visa", "tok_chargeDeclined"])
async def test_a_test_token_in_live_mode_is_404(
    client: httpx.AsyncClient, merchant: NewMerchant, pool: AsyncConnectionPool, token: str
) -> None:
    before = await snapshot(pool)
    reply = await post(
        client, bearer(merchant.live_secret), {"type": "card", "card": {"token": token}}
    )
    assert_card_error(reply, 404, "card[token]", "resource_missing")
    assert await snapshot(pool) == before


async def test_a_real_card_in_live_mode_is_kept_apart_from_test_mode(
    client: httpx.AsyncClient, auth: dict[str, str], merchant: NewMerchant
) -> None:
    live = bearer(merchant.live_secret)
    reply = await post(client, live, body(number=REAL_VISA, cvc="314"))
    assert reply.status_code == 200, reply.text
    obj = reply.json()
    assert obj["livemode"] is True
    assert (obj["card"]["brand"], obj["card"]["last4"]) == ("visa", REAL_VISA[-4:])
    assert obj["card"]["funding"] == "unknown"
    assert_no_card_data(scrubbed(reply), REAL_VISA, "314")
    got = await client.get(f"{PAYMENT_METHODS}/{obj['id']}", headers=live)
    assert got.status_code == 200 and got.json() == obj
    assert (await client.get(f"{PAYMENT_METHODS}/{obj['id']}", headers=auth)).status_code == 404
    listed = await client.get(PAYMENT_METHODS, headers=auth)
    assert listed.json()["data"] == []


# --- 5. Bad input: the right 4xx naming the field, and nothing written ----------------------------

# Bad-input cases run at mid-year, so that "this year, an earlier month" exists.
MID_YEAR = datetime(2026, 6, 15, tzinfo=UTC)


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[datetime], Json]
    status: int
    param: str
    code: str
    forms: tuple[bool, ...] = (False, True)  # JSON, form-encoded


def fixed(data: Json) -> Callable[[datetime], Json]:
    return lambda _now: data


def without(field: str) -> Json:
    data = body(cvc="314")
    del data["card"][field]
    return data


def metadata(count: int) -> Json:
    return {**body(), "metadata": {f"k{i}": "v" for i in range(count)}}


CARD_ERROR = 402
BAD = 400

CASES = [
    Case("missing-type", fixed({"card": card(cvc="314")}), BAD, "type", "parameter_missing"),
    Case(
        "wrong-type",
        fixed({"type": "sepa_debit", "card": card(cvc="314")}),
        BAD,
        "type",
        "parameter_invalid",
    ),
    Case("missing-card", fixed({"type": "card"}), BAD, "card", "parameter_missing"),
    Case("missing-number", fixed(without("number")), BAD, "card[number]", "parameter_missing"),
    Case(
        "missing-exp_month",
        fixed(without("exp_month")),
        BAD,
        "card[exp_month]",
        "parameter_missing",
    ),
    Case(
        "missing-exp_year", fixed(without("exp_year")), BAD, "card[exp_year]", "parameter_missing"
    ),
    Case(
        "luhn-failure",
        fixed(body(number="4242424242424241", cvc="314")),
        CARD_ERROR,
        "card[number]",
        "invalid_number",
    ),
    Case(
        "letters-in-number",
        fixed(body(number="4242abcd42424242", cvc="314")),
        CARD_ERROR,
        "card[number]",
        "invalid_number",
    ),
    Case(
        "dashes-in-number",
        fixed(body(number="4242-4242-4242-4242", cvc="314")),
        CARD_ERROR,
        "card[number]",
        "invalid_number",
    ),
    Case("empty-number", fixed(body(number="")), CARD_ERROR, "card[number]", "invalid_number"),
    Case(
        "too-short",
        fixed(body(number=SHORT, cvc="314")),
        CARD_ERROR,
        "card[number]",
        "invalid_number",
    ),
    Case(
        "too-long",
        fixed(body(number=LONG, cvc="314")),
        CARD_ERROR,
        "card[number]",
        "invalid_number",
    ),
    Case(
        "far-too-long",
        fixed(body(number=VISA * 2, cvc="314")),
        BAD,
        "card[number]",
        "parameter_invalid",
    ),
    Case(
        "number-as-json-integer",
        fixed(body(number=int(VISA), cvc="314")),
        BAD,
        "card[number]",
        "parameter_invalid",
        forms=(False,),
    ),
    Case(
        "exp_month-0",
        fixed(body(exp_month=0, cvc="314")),
        CARD_ERROR,
        "card[exp_month]",
        "invalid_expiry_month",
    ),
    Case(
        "exp_month-13",
        fixed(body(exp_month=13, cvc="314")),
        CARD_ERROR,
        "card[exp_month]",
        "invalid_expiry_month",
    ),
    Case(
        "exp_month-letters",
        fixed(body(exp_month="dec", cvc="314")),
        BAD,
        "card[exp_month]",
        "parameter_invalid",
    ),
    Case(
        "exp_year-past",
        lambda now: body(exp_year=now.year - 1, cvc="314"),
        CARD_ERROR,
        "card[exp_year]",
        "invalid_expiry_year",
    ),
    Case(
        "exp_year-past-2-digits",
        lambda now: body(exp_year=now.year % 100 - 1, cvc="314"),
        CARD_ERROR,
        "card[exp_year]",
        "invalid_expiry_year",
    ),
    Case(
        "exp_year-too-far",
        lambda now: body(exp_year=now.year + 51, cvc="314"),
        CARD_ERROR,
        "card[exp_year]",
        "invalid_expiry_year",
    ),
    Case(
        "exp_year-letters",
        fixed(body(exp_year="soon", cvc="314")),
        BAD,
        "card[exp_year]",
        "parameter_invalid",
    ),
    Case(
        "this-year-past-month",
        lambda now: body(exp_month=now.month - 1, exp_year=now.year, cvc="314"),
        CARD_ERROR,
        "card[exp_month]",
        "invalid_expiry_month",
    ),
    Case(
        "cvc-too-short",
        fixed(body(cvc="31")),
        CARD_ERROR,
        "card[cvc]",
        "invalid_cvc",
    ),
    Case(
        "cvc-4-digits-on-visa",
        fixed(body(cvc="3141")),
        CARD_ERROR,
        "card[cvc]",
        "invalid_cvc",
    ),
    Case("cvc-letters", fixed(body(cvc="3a4")), CARD_ERROR, "card[cvc]", "invalid_cvc"),
    Case(
        "cvc-non-ascii-digits",
        fixed(body(cvc="\u0663\u0661\u0664")),
        CARD_ERROR,
        "card[cvc]",
        "invalid_cvc",
    ),
    Case(
        "amex-3-digit-cvc",
        fixed(body(number=AMEX, cvc="753")),
        CARD_ERROR,
        "card[cvc]",
        "invalid_cvc",
    ),
    Case(
        "amex-5-digit-cvc",
        fixed(body(number=AMEX, cvc="75319")),
        CARD_ERROR,
        "card[cvc]",
        "invalid_cvc",
    ),
    Case(
        "cvc-far-too-long",
        fixed(body(cvc="31415926535")),
        BAD,
        "card[cvc]",
        "parameter_invalid",
    ),
    Case(
        "unknown-card-param",
        fixed({"type": "card", "card": card(cvc="314", foo="bar")}),
        BAD,
        "card[foo]",
        "parameter_unknown",
    ),
    Case(
        "unknown-top-level-param",
        fixed({**body(cvc="314"), "customer_email": "a@b.c"}),
        BAD,
        "customer_email",
        "parameter_unknown",
    ),
    Case("metadata-51-keys", fixed(metadata(51)), BAD, "metadata", "parameter_invalid"),
]


def entered(data: Json) -> list[str]:
    """The card number and CVC of a request, as sent."""
    card_ = data.get("card", {})
    return [str(card_[name]) for name in ("number", "cvc") if card_.get(name) not in (None, "")]


@pytest.mark.parametrize(
    ("case", "as_form"),
    [
        pytest.param(case, as_form, id=f"{case.id}-{'form' if as_form else 'json'}")
        for case in CASES
        for as_form in case.forms
    ],
)
async def test_bad_input_is_refused_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    clock: ManualClock,
    case: Case,
    as_form: bool,
) -> None:
    clock.current = MID_YEAR
    data = case.build(clock.now())
    before = await snapshot(pool)
    reply = await post(client, auth, data, as_form=as_form)
    secrets_ = entered(data)
    error = assert_card_error(reply, case.status, case.param, case.code, *secrets_)
    assert "decline_code" not in error
    for value in secrets_:
        if len(value) >= 12:
            assert value[:6] not in reply.text and value[-8:] not in reply.text
    assert await snapshot(pool) == before


async def test_fifty_metadata_keys_are_accepted(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    obj = await create(client, auth, metadata(50))
    assert len(obj["metadata"]) == 50


def digits_of(number: str, zero: int) -> str:
    """The number written in another script's digits (str.isdigit() is true for them)."""
    return "".join(chr(zero + int(digit)) for digit in number)


@pytest.mark.parametrize("live", [False, True], ids=["test-mode", "live-mode"])
@pytest.mark.parametrize(
    "number",
    [
        # Luhn computed on ord(char) - 48 would pass this one: the check must be ASCII-only.
        digits_of(VISA, 0xFF10),
        digits_of(REAL_VISA, 0xFF10),
        digits_of(VISA, 0x0660),
        "4242424242424\u00b2\u00b2\u00b2",  # superscript two: isdigit(), but not int()
    ],
    ids=["fullwidth-test-card", "fullwidth-real-card", "arabic-indic", "superscript"],
)
async def test_non_ascii_digits_are_an_invalid_number(
    client: httpx.AsyncClient,
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    number: str,
    live: bool,
) -> None:
    headers = bearer(merchant.live_secret if live else merchant.test_secret)
    before = await snapshot(pool)
    reply = await post(client, headers, body(number=number, cvc="314"))
    assert_card_error(reply, 402, "card[number]", "invalid_number", number, "314")
    assert await snapshot(pool) == before


# --- 6. Retrieve and list -------------------------------------------------------------------------


async def test_retrieve_returns_the_created_object_and_only_to_its_merchant(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    created = await create(client, auth, {**body(cvc="314"), "metadata": {"order": "42"}})
    reply = await client.get(f"{PAYMENT_METHODS}/{created['id']}", headers=auth)
    assert reply.status_code == 200, reply.text
    assert reply.json() == created
    assert_no_card_data(scrubbed(reply), VISA, "314")

    other = await new_merchant(pool, clock, "Other")
    theirs = await create(client, bearer(other.test_secret), body())
    for headers, payment_method_id in [
        (bearer(other.test_secret), created["id"]),
        (auth, theirs["id"]),
    ]:
        missing = await client.get(f"{PAYMENT_METHODS}/{payment_method_id}", headers=headers)
        assert missing.status_code == 404, missing.text
        error = missing.json()["error"]
        assert error["code"] == "resource_missing"
        assert error["param"] == "id"
        assert payment_method_id in error["message"]
    unknown = await client.get(f"{PAYMENT_METHODS}/pm_doesnotexist", headers=auth)
    assert unknown.status_code == 404


async def test_list_is_newest_first_with_pagination_and_a_customer_filter(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    empty = await client.get(PAYMENT_METHODS, headers=auth)
    assert empty.status_code == 200, empty.text
    assert empty.json() == {
        "object": "list",
        "url": PAYMENT_METHODS,
        "has_more": False,
        "data": [],
    }

    created = [
        await create(client, auth, body(number=number))
        for number in (VISA, MASTERCARD, "6011111111111117")
    ]
    other = await new_merchant(pool, clock, "Other")
    await create(client, bearer(other.test_secret), body())
    newest_first = [obj["id"] for obj in reversed(created)]

    everything = await client.get(PAYMENT_METHODS, headers=auth)
    assert everything.status_code == 200, everything.text
    page = everything.json()
    assert [obj["id"] for obj in page["data"]] == newest_first
    assert page["data"] == list(reversed(created))
    assert page["has_more"] is False

    first = (await client.get(PAYMENT_METHODS, headers=auth, params={"limit": 1})).json()
    assert [obj["id"] for obj in first["data"]] == newest_first[:1]
    assert first["has_more"] is True
    second = (
        await client.get(
            PAYMENT_METHODS,
            headers=auth,
            params={"limit": 1, "starting_after": first["data"][0]["id"]},
        )
    ).json()
    assert [obj["id"] for obj in second["data"]] == newest_first[1:2]
    assert second["has_more"] is True
    last = (
        await client.get(
            PAYMENT_METHODS,
            headers=auth,
            params={"limit": 2, "starting_after": second["data"][0]["id"]},
        )
    ).json()
    assert [obj["id"] for obj in last["data"]] == newest_first[2:]
    assert last["has_more"] is False

    by_customer = await client.get(
        PAYMENT_METHODS, headers=auth, params={"customer": "cus_unknown"}
    )
    assert by_customer.status_code == 200, by_customer.text
    assert by_customer.json()["data"] == []
    assert by_customer.json()["has_more"] is False
    typed = await client.get(PAYMENT_METHODS, headers=auth, params={"type": "card"})
    assert [obj["id"] for obj in typed.json()["data"]] == newest_first

    for query, param in [({"limit": 0}, "limit"), ({"type": "sepa_debit"}, "type")]:
        refused = await client.get(PAYMENT_METHODS, headers=auth, params=query)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"] == param


# --- 7. Idempotency-Key ---------------------------------------------------------------------------


@pytest.mark.parametrize("as_form", [False, True], ids=["json", "form"])
async def test_the_same_idempotency_key_and_body_create_one_card(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    as_form: bool,
) -> None:
    data = body(cvc="314")
    before = await snapshot(pool)
    first = await post(client, auth, data, as_form=as_form, key="pm-once")
    assert first.status_code == 200, first.text
    again = await post(client, auth, data, as_form=as_form, key="pm-once")
    assert again.status_code == 200, again.text
    assert again.content == first.content
    assert again.headers.get("Idempotent-Replayed") == "true"
    after = await snapshot(pool)
    assert after["payment_methods"] == before["payment_methods"] + 1
    assert after["events"] == before["events"] + 1
    assert after["idempotency_keys"] == before["idempotency_keys"] + 1

    # The key with another body is refused, and writes nothing.
    other = await post(client, auth, body(cvc="271"), as_form=as_form, key="pm-once")
    assert other.status_code == 400, other.text
    assert other.json()["error"]["type"] == "idempotency_error"
    assert "271" not in other.text and VISA not in other.text
    assert await snapshot(pool) == after

    # What the key keeps is the response, not the card.
    kept = await stored_text(pool, KEPT_RESPONSES)
    assert kept == first.text
    assert VISA not in kept and "314" not in kept


async def test_a_declined_card_under_an_idempotency_key_replays_and_writes_no_card(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool
) -> None:
    data = body(number=REAL_VISA, cvc="314")
    before = await snapshot(pool)
    first = await post(client, auth, data, key="pm-declined")
    assert_card_error(first, 402, "card[number]", "card_declined", REAL_VISA, "314")
    again = await post(client, auth, data, key="pm-declined")
    assert again.status_code == 402
    assert again.content == first.content
    assert again.headers.get("Idempotent-Replayed") == "true"
    after = await snapshot(pool)
    # Only the key (holding the error) is written.
    assert after == {**before, "idempotency_keys": before["idempotency_keys"] + 1}
    kept = await stored_text(pool, KEPT_RESPONSES)
    assert kept == first.text
    assert REAL_VISA not in kept and REAL_VISA[:6] not in kept and "314" not in kept
