"""Bad input to payment intents and refunds: a clear 4xx naming the field, and nothing
written — no intent, charge, refund, ledger transaction or event, and no call to the PSP.
Also Stripe's form-encoded bodies, and refunds racing for the last units of a payment."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.api.context import Services
from payrail.clock import ManualClock
from payrail.connectors.accounts.service import Connectors
from tests.conftest import new_merchant
from tests.connectors.accounts.helpers import ok, send
from tests.payments.conftest import charged
from tests.vaults import fixed_vault

Json = dict[str, Any]

INTENTS = "/v1/payment_intents"
REFUNDS = "/v1/refunds"
TABLES = ("payment_intents", "charges", "refunds", "ledger_transactions", "events")


@pytest.fixture
async def services(pool: AsyncConnectionPool, clock: ManualClock) -> AsyncIterator[Services]:
    """No faults are injected here: a roomy timeout keeps a loaded machine from turning a
    slow answer into one in doubt."""
    services = Services(
        pool=pool, clock=clock, vault=fixed_vault(), connectors=Connectors(timeout=20)
    )
    yield services
    await services.connectors.aclose()


async def snapshot(pool: AsyncConnectionPool, psp: httpx.AsyncClient) -> Json:
    """Row counts of every table a payment writes, and everything the sandbox did."""
    async with pool.connection() as conn:
        counts = {}
        for table in TABLES:
            row = await (await conn.execute(f"SELECT count(*) FROM {table}")).fetchone()
            assert row is not None
            counts[table] = row[0]
    record = (await psp.get("/sandbox/record")).json()
    return {**counts, "psp_payments": record["payments"], "psp_refunds": record["refunds"]}


class Api:
    def __init__(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        pool: AsyncConnectionPool,
        psp: httpx.AsyncClient,
    ) -> None:
        self.client, self.auth, self.pool, self.psp = client, auth, pool, psp

    async def post(self, path: str, data: Json, **options: Any) -> Json:
        return await ok(await send(self.client, self.auth, path, data, **options))

    async def refused(
        self,
        path: str,
        data: Json,
        *,
        status: int = 400,
        code: str | None,
        param: str | None,
        as_form: bool = False,
    ) -> Json:
        """Post bad input: it gets `status` with `code` naming `param`, and writes nothing."""
        before = await snapshot(self.pool, self.psp)
        reply = await send(self.client, self.auth, path, data, as_form=as_form)
        assert reply.status_code == status, (path, data, reply.text)
        error: Json = reply.json()["error"]
        assert error.get("code") == code, (path, data, error)
        assert error.get("param") == param, (path, data, error)
        assert error["message"]
        assert await snapshot(self.pool, self.psp) == before, (path, data, "wrote something")
        return error

    async def intent(self, **fields: Any) -> Json:
        body = {"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", **fields}
        return await self.post(INTENTS, body)


@pytest.fixture
def api(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    psp: httpx.AsyncClient,
) -> Api:
    return Api(client, auth, pool, psp)


GOOD = {"amount": 1000, "currency": "usd"}


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"currency": "usd"}, "parameter_missing", "amount"),
        ({**GOOD, "amount": 0}, "parameter_invalid", "amount"),
        ({**GOOD, "amount": -100}, "parameter_invalid", "amount"),
        ({**GOOD, "amount": 10.5}, "parameter_invalid", "amount"),
        ({**GOOD, "amount": 10.0}, "parameter_invalid", "amount"),
        ({**GOOD, "amount": "10.5"}, "parameter_invalid", "amount"),
        ({**GOOD, "amount": True}, "parameter_invalid", "amount"),
        ({**GOOD, "amount": 10**16}, "parameter_invalid", "amount"),
        ({**GOOD, "amount": 10**40}, "parameter_invalid", "amount"),
        ({"amount": 1000}, "parameter_missing", "currency"),
        ({**GOOD, "currency": "xyz"}, "parameter_invalid", "currency"),
        ({**GOOD, "currency": "us"}, "parameter_invalid", "currency"),
        ({**GOOD, "amonut": 5}, "parameter_unknown", "amonut"),
        ({**GOOD, "capture_method": "later"}, "parameter_invalid", "capture_method"),
        (
            {**GOOD, "payment_method_types": ["bank"]},
            "parameter_invalid",
            "payment_method_types[0]",
        ),
        ({**GOOD, "confirm": "perhaps"}, "parameter_invalid", "confirm"),
        ({**GOOD, "metadata": {"k": "v" * 501}}, "parameter_invalid", "metadata[k]"),
    ],
)
async def test_bad_create_parameters_name_the_field(
    api: Api, account: Json, body: Json, code: str, param: str
) -> None:
    await api.refused(INTENTS, {**body, "payment_method": "pm_card_visa"}, code=code, param=param)


async def test_unknown_or_foreign_customers_and_payment_methods_are_404(
    api: Api, account: Json, pool: AsyncConnectionPool, clock: ManualClock
) -> None:
    other = await new_merchant(pool, clock, "Globex")
    foreign = {"Authorization": f"Bearer {other.test_secret}"}
    their_customer = await ok(await send(api.client, foreign, "/v1/customers", {}))
    their_card = await ok(
        await send(
            api.client,
            foreign,
            "/v1/payment_methods",
            {"type": "card", "card": {"token": "tok_visa"}},
        )
    )
    for customer in ("cus_nope", their_customer["id"]):
        error = await api.refused(
            INTENTS,
            {**GOOD, "customer": customer},
            status=404,
            code="resource_missing",
            param="customer",
        )
        assert customer in error["message"]
    for card in ("pm_nope", their_card["id"]):
        for body in (
            {**GOOD, "payment_method": card},
            {**GOOD, "payment_method": card, "confirm": True},
        ):
            await api.refused(
                INTENTS, body, status=404, code="resource_missing", param="payment_method"
            )
    # Nor at confirm time.
    waiting = await api.post(INTENTS, GOOD)
    await api.refused(
        f"{INTENTS}/{waiting['id']}/confirm",
        {"payment_method": their_card["id"]},
        status=404,
        code="resource_missing",
        param="payment_method",
    )


async def test_a_payment_method_of_another_customer_is_refused(api: Api, account: Json) -> None:
    jo = await api.post("/v1/customers", {"email": "jo@example.com"})
    al = await api.post("/v1/customers", {"email": "al@example.com"})
    card = await api.post("/v1/payment_methods", {"type": "card", "card": {"token": "tok_visa"}})
    await api.post(f"/v1/payment_methods/{card['id']}/attach", {"customer": jo["id"]})
    for body in (
        {**GOOD, "customer": al["id"], "payment_method": card["id"]},
        {**GOOD, "customer": al["id"], "payment_method": card["id"], "confirm": True},
        # An intent for no customer cannot charge a customer's saved card either.
        {**GOOD, "payment_method": card["id"], "confirm": True},
    ):
        await api.refused(
            INTENTS, body, code="payment_method_customer_mismatch", param="payment_method"
        )
    waiting = await api.post(INTENTS, {**GOOD, "customer": al["id"]})
    await api.refused(
        f"{INTENTS}/{waiting['id']}/confirm",
        {"payment_method": card["id"]},
        code="payment_method_customer_mismatch",
        param="payment_method",
    )
    # Jo's own intent may use it.
    mine = await api.post(
        INTENTS, {**GOOD, "customer": jo["id"], "payment_method": card["id"], "confirm": True}
    )
    assert mine["status"] == "succeeded"


async def test_confirm_without_a_payment_method(api: Api, account: Json) -> None:
    # With confirm=true the intent is not even created: a 400 leaves nothing behind.
    await api.refused(
        INTENTS,
        {**GOOD, "confirm": True},
        code="payment_intent_unexpected_state",
        param="payment_method",
    )
    waiting = await api.post(INTENTS, GOOD)
    assert waiting["status"] == "requires_payment_method"
    await api.refused(
        f"{INTENTS}/{waiting['id']}/confirm",
        {},
        code="payment_intent_unexpected_state",
        param="payment_method",
    )


async def test_confirm_without_a_connector_account(api: Api) -> None:
    """No `account` fixture here: the merchant has no connector account at all."""
    await api.refused(
        INTENTS,
        {**GOOD, "payment_method": "pm_card_visa", "confirm": True},
        code="no_connector_account",
        param=None,
    )
    waiting = await api.intent()
    await api.refused(
        f"{INTENTS}/{waiting['id']}/confirm", {}, code="no_connector_account", param=None
    )
    assert (await api.client.get(f"{INTENTS}/{waiting['id']}", headers=api.auth)).json() == waiting


async def test_a_disabled_or_other_currency_account_is_no_account(api: Api, account: Json) -> None:
    await api.post(f"/v1/connector_accounts/{account['id']}", {"currencies": ["eur"]})
    waiting = await api.intent()
    await api.refused(
        f"{INTENTS}/{waiting['id']}/confirm", {}, code="no_connector_account", param=None
    )
    await api.post(f"/v1/connector_accounts/{account['id']}", {"currencies": [], "enabled": False})
    await api.refused(
        f"{INTENTS}/{waiting['id']}/confirm", {}, code="no_connector_account", param=None
    )


async def test_bad_parameters_of_confirm_capture_cancel_and_update(api: Api, account: Json) -> None:
    held = await api.intent(capture_method="manual", confirm=True)
    assert held["status"] == "requires_capture"
    pi = f"{INTENTS}/{held['id']}"
    await api.refused(
        f"{pi}/cancel",
        {"cancellation_reason": "bored"},
        code="parameter_invalid",
        param="cancellation_reason",
    )
    await api.refused(
        f"{pi}/cancel", {"reason": "duplicate"}, code="parameter_unknown", param="reason"
    )
    for amount in (0, -1, 1.5, "all"):
        await api.refused(
            f"{pi}/capture",
            {"amount_to_capture": amount},
            code="parameter_invalid",
            param="amount_to_capture",
        )
    await api.refused(f"{pi}/capture", {"amount": 5}, code="parameter_unknown", param="amount")
    await api.refused(f"{pi}", {"amount": 5}, code="parameter_unknown", param="amount")
    await api.refused(
        f"{pi}", {"metadata": {"": "x"}}, code="parameter_invalid", param="metadata[]"
    )
    waiting = await api.intent()
    await api.refused(
        f"{INTENTS}/{waiting['id']}/confirm",
        {"capture_method": "whenever"},
        code="parameter_invalid",
        param="capture_method",
    )
    await api.refused(
        f"{INTENTS}/{waiting['id']}/confirm",
        {"return_url": 5},
        code="parameter_unknown",
        param="return_url",
    )
    # Unknown intents.
    for path in ("", "/confirm", "/capture", "/cancel"):
        await api.refused(
            f"{INTENTS}/pi_nope{path}", {}, status=404, code="resource_missing", param="id"
        )


async def test_illegal_transitions_are_400_and_change_nothing(api: Api, account: Json) -> None:
    unexpected = "payment_intent_unexpected_state"
    held = await api.intent(capture_method="manual", confirm=True)
    paid = await api.intent(confirm=True)
    canceled = await api.intent()
    await api.post(f"{INTENTS}/{canceled['id']}/cancel", {})
    waiting = await api.intent()
    assert [i["status"] for i in (held, paid, waiting)] == [
        "requires_capture",
        "succeeded",
        "requires_confirmation",
    ]
    for intent in (held, paid, canceled):
        await api.refused(f"{INTENTS}/{intent['id']}/confirm", {}, code=unexpected, param=None)
    for intent in (paid, canceled, waiting):
        await api.refused(f"{INTENTS}/{intent['id']}/capture", {}, code=unexpected, param=None)
    for intent in (paid, canceled):
        await api.refused(f"{INTENTS}/{intent['id']}/cancel", {}, code=unexpected, param=None)
    # Capturing more than was authorized.
    await api.refused(
        f"{INTENTS}/{held['id']}/capture",
        {"amount_to_capture": 1001},
        code="amount_too_large",
        param="amount_to_capture",
    )
    # Refunds of what received nothing.
    for intent in (held, canceled, waiting):
        await api.refused(
            REFUNDS,
            {"payment_intent": intent["id"]},
            code="charge_not_refundable",
            param="payment_intent",
        )
    # The intents are as they were.
    for intent in (held, paid, canceled, waiting):
        now = (await api.client.get(f"{INTENTS}/{intent['id']}", headers=api.auth)).json()
        assert now["status"] == intent["status"] or intent is canceled
        assert now["amount_received"] == intent["amount_received"]


async def test_refunds_never_exceed_what_was_received(api: Api, account: Json) -> None:
    held = await api.intent(amount=1000, capture_method="manual", confirm=True)
    await api.post(f"{INTENTS}/{held['id']}/capture", {"amount_to_capture": 600})
    # Only what was captured can be refunded, not what was authorized.
    await api.refused(
        REFUNDS,
        {"payment_intent": held["id"], "amount": 601},
        code="amount_too_large",
        param="amount",
    )
    await api.post(REFUNDS, {"payment_intent": held["id"], "amount": 400})
    await api.refused(
        REFUNDS,
        {"payment_intent": held["id"], "amount": 201},
        code="amount_too_large",
        param="amount",
    )
    last = await api.post(REFUNDS, {"payment_intent": held["id"]})
    assert last["amount"] == 200 and last["status"] == "succeeded"
    for amount in (None, 1):
        body = {"payment_intent": held["id"]} | ({"amount": amount} if amount else {})
        await api.refused(REFUNDS, body, code="charge_already_refunded", param="payment_intent")


async def test_bad_refund_parameters(
    api: Api, account: Json, pool: AsyncConnectionPool, clock: ManualClock
) -> None:
    paid = await api.intent(confirm=True)
    declined = await send(
        api.client,
        api.auth,
        INTENTS,
        {**GOOD, "payment_method": "pm_card_chargeDeclined", "confirm": True},
    )
    assert declined.status_code == 402
    failed_charge = declined.json()["error"]["payment_intent"]["latest_charge"]
    other = await new_merchant(pool, clock, "Globex")
    foreign = {"Authorization": f"Bearer {other.test_secret}"}
    await api.refused(REFUNDS, {}, code="parameter_missing", param="payment_intent")
    await api.refused(REFUNDS, {"amount": 5}, code="parameter_missing", param="payment_intent")
    await api.refused(
        REFUNDS,
        {"payment_intent": "pi_nope"},
        status=404,
        code="resource_missing",
        param="payment_intent",
    )
    await api.refused(
        REFUNDS, {"charge": "ch_nope"}, status=404, code="resource_missing", param="charge"
    )
    for amount in (0, -5, 2.5, 10**16):
        await api.refused(
            REFUNDS,
            {"payment_intent": paid["id"], "amount": amount},
            code="parameter_invalid",
            param="amount",
        )
    await api.refused(
        REFUNDS,
        {"payment_intent": paid["id"], "reason": "because"},
        code="parameter_invalid",
        param="reason",
    )
    await api.refused(
        REFUNDS, {"payment_intent": paid["id"], "amout": 1}, code="parameter_unknown", param="amout"
    )
    # A charge that did not capture this payment, or one of another payment.
    await api.refused(
        REFUNDS, {"charge": failed_charge}, code="charge_not_refundable", param="payment_intent"
    )
    await api.refused(
        REFUNDS,
        {"payment_intent": paid["id"], "charge": failed_charge},
        code="parameter_invalid",
        param="charge",
    )
    # Another merchant cannot refund it, by intent or by charge.
    for body in ({"payment_intent": paid["id"]}, {"charge": paid["latest_charge"]}):
        before = await snapshot(pool, api.psp)
        reply = await send(api.client, foreign, REFUNDS, body)
        assert reply.status_code == 404, reply.text
        assert await snapshot(pool, api.psp) == before
    # By charge, it works.
    refund = await api.post(REFUNDS, {"charge": paid["latest_charge"], "amount": 10})
    assert refund["payment_intent"] == paid["id"] and refund["status"] == "succeeded"


async def test_form_encoded_bodies(api: Api, account: Json, psp: httpx.AsyncClient) -> None:
    created = await api.post(
        INTENTS,
        {
            "amount": 1250,
            "currency": "eur",
            "payment_method": "pm_card_visa",
            "capture_method": "manual",
            "payment_method_types": ["card"],
            "metadata": {"order_id": "42", "note": "a b&c=d"},
        },
        as_form=True,
    )
    assert created["amount"] == 1250 and created["currency"] == "eur"
    assert created["metadata"] == {"order_id": "42", "note": "a b&c=d"}
    assert created["status"] == "requires_confirmation"
    confirmed = await api.post(
        f"{INTENTS}/{created['id']}/confirm", {"capture_method": "automatic"}, as_form=True
    )
    assert confirmed["status"] == "succeeded" and confirmed["amount_received"] == 1250
    made = await charged(psp, [confirmed["latest_charge"]])
    assert [(p["status"], p["amount"]) for p in made[confirmed["latest_charge"]]] == [
        ("captured", 1250)
    ]
    paid = await api.post(
        INTENTS,
        {"amount": "300", "currency": "usd", "payment_method": "pm_card_visa", "confirm": "true"},
        as_form=True,
    )
    assert paid["status"] == "succeeded" and paid["amount_received"] == 300
    # Bad form input names its field, bracket notation included, and writes nothing.
    for body, code, param in (
        ({**GOOD, "amount": "12.5"}, "parameter_invalid", "amount"),
        ({**GOOD, "amount": "1e3"}, "parameter_invalid", "amount"),
        ({**GOOD, "amount": ""}, "parameter_invalid", "amount"),
        ({**GOOD, "currency": "zzz"}, "parameter_invalid", "currency"),
        ({**GOOD, "confirm": "maybe"}, "parameter_invalid", "confirm"),
        (
            {**GOOD, "payment_method_types": ["sepa"]},
            "parameter_invalid",
            "payment_method_types[0]",
        ),
        ({**GOOD, "shipping": {"name": "Jo"}}, "parameter_unknown", "shipping"),
    ):
        await api.refused(INTENTS, body, code=code, param=param, as_form=True)
    await api.refused(
        f"{INTENTS}/{created['id']}/confirm",
        {"payment_method": ""},
        code="parameter_invalid",
        param="payment_method",
        as_form=True,
    )


async def test_concurrent_refunds_never_refund_more_than_received(
    api: Api, account: Json, pool: AsyncConnectionPool, psp: httpx.AsyncClient
) -> None:
    paid = await api.intent(amount=50, confirm=True)
    assert paid["status"] == "succeeded" and paid["amount_received"] == 50

    async def refund_one() -> httpx.Response:
        return await send(
            api.client, api.auth, REFUNDS, {"payment_intent": paid["id"], "amount": 1}
        )

    replies = await asyncio.gather(*(refund_one() for _ in range(100)))
    succeeded = [r for r in replies if r.status_code == 200]
    refused = [r for r in replies if r.status_code != 200]
    assert len(succeeded) == 50, [r.text for r in refused[:3]]
    assert all(r.json()["status"] == "succeeded" for r in succeeded)
    assert {r.status_code for r in refused} == {400}
    assert {r.json()["error"]["code"] for r in refused} == {"charge_already_refunded"}
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT count(*), sum(amount), count(*) FILTER (WHERE status = 'succeeded'),"
                " (SELECT amount_refunded FROM payment_intents WHERE id = %s)"
                " FROM refunds WHERE payment_intent_id = %s",
                (paid["id"], paid["id"]),
            )
        ).fetchone()
    assert row == (50, 50, 50, 50)
    record = (await psp.get("/sandbox/record")).json()
    [payment] = [p for p in record["payments"] if p["reference"] == paid["latest_charge"]]
    at_psp = [r for r in record["refunds"] if r["payment"] == payment["id"]]
    assert len(at_psp) == 50 and sum(r["amount"] for r in at_psp) == 50
    assert len({r["idempotency_key"] for r in at_psp}) == 50
    listed = (
        await api.client.get(
            REFUNDS, params={"payment_intent": paid["id"], "limit": 100}, headers=api.auth
        )
    ).json()
    assert len(listed["data"]) == 50 and not listed["has_more"]
