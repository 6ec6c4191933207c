"""/v1/routing_rules over the API: create, retrieve, list, delete (Stripe's DELETE), and a
rule may name only its own merchant's accounts, in its own mode."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.clock import ManualClock, unix
from payrail.tenants.service import NewMerchant
from tests.conftest import new_merchant
from tests.connectors.accounts.helpers import (
    RULES,
    Json,
    bearer,
    counts,
    create_account,
    events_of,
    ok,
    send,
)


async def two_accounts(client: httpx.AsyncClient, headers: dict[str, str]) -> tuple[str, str]:
    first = await create_account(client, headers, name="first")
    second = await create_account(client, headers, name="second")
    return first["id"], second["id"]


@pytest.mark.parametrize("as_form", [False, True], ids=["json", "form"])
async def test_create_get_list_delete(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    clock: ManualClock,
    as_form: bool,
) -> None:
    first, second = await two_accounts(client, auth)
    data = {
        "priority": 10,
        "connector_accounts": [second, first],
        "conditions": {
            "currencies": ["eur"],
            "countries": ["de", "AT"],
            "payment_methods": ["card:visa", "card"],
            "min_amount": 100,
            "max_amount": 50_000,
        },
    }
    rule = await ok(await send(client, auth, RULES, data, as_form=as_form))
    assert rule["id"].startswith("rr_")
    assert rule == {
        "id": rule["id"],
        "object": "routing_rule",
        "priority": 10,
        "conditions": {
            "currencies": ["eur"],
            "countries": ["DE", "AT"],
            "payment_methods": ["card:visa", "card"],
            "min_amount": 100,
            "max_amount": 50_000,
        },
        "connector_accounts": [second, first],
        "created": unix(clock.now()),
        "livemode": False,
    }
    catch_all = await ok(
        await send(client, auth, RULES, {"priority": 99, "connector_accounts": [first]})
    )
    assert catch_all["conditions"] == {
        "currencies": [],
        "countries": [],
        "payment_methods": [],
        "min_amount": None,
        "max_amount": None,
    }
    assert await ok(await client.get(f"{RULES}/{rule['id']}", headers=auth)) == rule
    listed = await ok(await client.get(RULES, headers=auth))
    assert listed["data"] == [catch_all, rule]

    deleted = await ok(await client.delete(f"{RULES}/{rule['id']}", headers=auth))
    assert deleted == {"id": rule["id"], "object": "routing_rule", "deleted": True}
    assert await events_of(pool, rule["id"]) == [
        ("routing_rule.created", rule),
        ("routing_rule.deleted", rule),
    ]
    assert (await client.get(f"{RULES}/{rule['id']}", headers=auth)).status_code == 404
    again = await client.delete(f"{RULES}/{rule['id']}", headers=auth)
    assert again.status_code == 404 and again.json()["error"]["param"] == "id"
    assert (await ok(await client.get(RULES, headers=auth)))["data"] == [catch_all]


async def test_an_idempotent_delete_answers_the_same_twice(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool
) -> None:
    first, _ = await two_accounts(client, auth)
    rule = await ok(await send(client, auth, RULES, {"priority": 1, "connector_accounts": [first]}))
    headers = {**auth, "Idempotency-Key": "delete-rr-1"}
    replies = [await client.delete(f"{RULES}/{rule['id']}", headers=headers) for _ in range(2)]
    assert [r.status_code for r in replies] == [200, 200]
    assert replies[0].json() == replies[1].json()
    assert replies[1].headers.get("idempotent-replayed") == "true"
    assert [kind for kind, _ in await events_of(pool, rule["id"])] == [
        "routing_rule.created",
        "routing_rule.deleted",
    ]


async def test_a_delete_with_parameters_is_refused(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool
) -> None:
    first, _ = await two_accounts(client, auth)
    rule = await ok(await send(client, auth, RULES, {"priority": 1, "connector_accounts": [first]}))
    before = await counts(pool)
    reply = await client.request(
        "DELETE", f"{RULES}/{rule['id']}", json={"force": True}, headers=auth
    )
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "force"
    assert await counts(pool) == before


# --- Whose accounts a rule may name ---------------------------------------------------------------


async def test_a_rule_names_only_the_merchants_accounts_in_its_mode(
    client: httpx.AsyncClient,
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    test_key, live_key = bearer(merchant.test_secret), bearer(merchant.live_secret)
    mine = (await create_account(client, test_key))["id"]
    mine_live = (
        await create_account(
            client, live_key, base_url="https://psp.example.com", provider="stripe"
        )
    )["id"]
    other = await new_merchant(pool, clock, "Globex")
    theirs = (await create_account(client, bearer(other.test_secret)))["id"]
    ghost = "ca_" + "Z" * 24

    before = await counts(pool)
    for chain, message in (
        ([mine, theirs], f"No such connector_account: '{theirs}'"),
        ([mine, ghost], f"No such connector_account: '{ghost}'"),
        (
            [mine, mine_live],
            f"No such connector_account: '{mine_live}'; a similar object exists in live mode,"
            " but a test mode key was used to make this request.",
        ),
    ):
        for key in (None, f"rule-{chain[1]}"):
            reply = await send(
                client, test_key, RULES, {"priority": 1, "connector_accounts": chain}, key=key
            )
            assert reply.status_code == 404, reply.text
            assert reply.json()["error"] == {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "param": "connector_accounts[1]",
                "message": message,
            }
    # And from the live side, the test account.
    reply = await send(client, live_key, RULES, {"priority": 1, "connector_accounts": [mine]})
    assert reply.status_code == 404
    assert reply.json()["error"]["param"] == "connector_accounts[0]"
    assert "exists in test mode" in reply.json()["error"]["message"]
    assert await counts(pool) == before
    assert (await ok(await client.get(RULES, headers=test_key)))["data"] == []


async def test_the_database_refuses_a_rule_naming_another_merchants_account(
    client: httpx.AsyncClient,
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    """The backstop beneath the service's check, for any other writer."""
    other = await new_merchant(pool, clock, "Globex")
    theirs = (await create_account(client, bearer(other.test_secret)))["id"]
    async with pool.connection() as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            await conn.execute(
                "INSERT INTO routing_rules (id, merchant_id, livemode, priority, conditions,"
                " connector_accounts, created_at) VALUES ('rr_x', %s, false, 1, '{}', %s, now())",
                (merchant.id, [theirs]),
            )


# --- Bad input ------------------------------------------------------------------------------------


def rule(**overrides: Any) -> Json:
    return {"priority": 1, "connector_accounts": ["FIRST"], **overrides}


def conditions(**fields: Any) -> Json:
    return rule(conditions=fields)


BAD: list[Any] = [
    pytest.param({"connector_accounts": ["FIRST"]}, False, 400, "priority", id="no-priority"),
    pytest.param(rule(priority=-1), False, 400, "priority", id="negative-priority"),
    pytest.param(rule(priority=1.5), False, 400, "priority", id="fractional-priority"),
    pytest.param(rule(priority=10**7), False, 400, "priority", id="huge-priority"),
    pytest.param(rule(priority="high"), True, 400, "priority", id="form-word-priority"),
    pytest.param({"priority": 1}, False, 400, "connector_accounts", id="no-accounts"),
    pytest.param(rule(connector_accounts=[]), False, 400, "connector_accounts", id="empty-chain"),
    pytest.param(
        rule(connector_accounts="FIRST"), False, 400, "connector_accounts", id="not-a-list"
    ),
    pytest.param(
        rule(connector_accounts=["FIRST", ""]), False, 400, "connector_accounts[1]", id="blank-id"
    ),
    pytest.param(
        rule(connector_accounts=["FIRST"] * 11),
        False,
        400,
        "connector_accounts",
        id="chain-too-long",
    ),
    pytest.param(
        rule(connector_accounts=["FIRST", "SECOND", "FIRST"]),
        False,
        400,
        "connector_accounts[2]",
        id="named-twice",
    ),
    pytest.param(rule(conditions="eur"), False, 400, "conditions", id="conditions-not-a-map"),
    pytest.param(
        conditions(currency=["eur"]), False, 400, "conditions[currency]", id="unknown-condition"
    ),
    pytest.param(
        conditions(currencies=["eur", "zzz"]),
        False,
        400,
        "conditions[currencies][1]",
        id="bad-currency",
    ),
    pytest.param(
        conditions(currencies=["eur", "zzz"]),
        True,
        400,
        "conditions[currencies][1]",
        id="form-bad-currency",
    ),
    pytest.param(
        conditions(countries=["DEU"]), False, 400, "conditions[countries][0]", id="alpha3-country"
    ),
    pytest.param(
        conditions(countries=["d1"]), False, 400, "conditions[countries][0]", id="digit-country"
    ),
    pytest.param(
        conditions(payment_methods=["card", "card:foo"]),
        False,
        400,
        "conditions[payment_methods][1]",
        id="unknown-brand",
    ),
    pytest.param(
        conditions(payment_methods=["sepa_debit"]),
        False,
        400,
        "conditions[payment_methods][0]",
        id="not-a-card",
    ),
    pytest.param(
        conditions(currencies=["usd"], min_amount=0),
        False,
        400,
        "conditions[min_amount]",
        id="zero-min",
    ),
    pytest.param(
        conditions(currencies=["usd"], min_amount=1.5),
        False,
        400,
        "conditions[min_amount]",
        id="float-min",
    ),
    pytest.param(
        conditions(currencies=["usd"], max_amount=10**16),
        False,
        400,
        "conditions[max_amount]",
        id="huge-max",
    ),
    pytest.param(
        conditions(currencies=["usd"], min_amount=500, max_amount=100),
        False,
        400,
        "conditions[max_amount]",
        id="max-below-min",
    ),
    pytest.param(
        conditions(min_amount=100), False, 400, "conditions[min_amount]", id="amount-no-currency"
    ),
    pytest.param(
        conditions(currencies=["usd", "eur"], max_amount=100),
        False,
        400,
        "conditions[max_amount]",
        id="amount-two-currencies",
    ),
    pytest.param(
        conditions(currencies=["usd", "eur"], max_amount="100"),
        True,
        400,
        "conditions[max_amount]",
        id="form-amount-two-currencies",
    ),
    pytest.param(rule(livemode=True), False, 400, "livemode", id="unknown-param"),
]


@pytest.mark.parametrize(("body", "as_form", "status", "param"), BAD)
async def test_bad_input_names_the_field_and_writes_nothing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    body: Json,
    as_form: bool,
    status: int,
    param: str,
) -> None:
    first, second = await two_accounts(client, auth)

    def fill(value: Any) -> Any:
        if isinstance(value, list):
            return [fill(v) for v in value]
        return (
            {"FIRST": first, "SECOND": second}.get(value, value)
            if isinstance(value, str)
            else value
        )

    body = {k: fill(v) for k, v in body.items()}
    before = await counts(pool)
    for key in (None, f"bad-rule-{param}-{as_form}"):
        reply = await send(client, auth, RULES, body, as_form=as_form, key=key)
        assert reply.status_code == status, reply.text
        error = reply.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["param"] == param, error
        assert error["message"]
    assert await counts(pool) == before


async def test_boundaries_are_accepted(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    first, second = await two_accounts(client, auth)
    chain = [first, second] + [
        (await create_account(client, auth, name=f"n{i}"))["id"] for i in range(8)
    ]
    for body in (
        {"priority": 0, "connector_accounts": chain},
        {"priority": 1_000_000, "connector_accounts": [first]},
        {
            "priority": 5,
            "connector_accounts": [first],
            "conditions": {"currencies": ["jpy"], "min_amount": 1, "max_amount": 1},
        },
        {
            "priority": 5,
            "connector_accounts": [first],
            "conditions": {"currencies": ["usd", "USD"]},
        },
    ):
        assert (await send(client, auth, RULES, body)).status_code == 200, body


# --- Isolation ------------------------------------------------------------------------------------


async def test_another_merchants_rule_is_404(
    client: httpx.AsyncClient,
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    other = await new_merchant(pool, clock, "Globex")
    owner = bearer(other.test_secret)
    theirs = (await create_account(client, owner))["id"]
    their_rule = await ok(
        await send(client, owner, RULES, {"priority": 1, "connector_accounts": [theirs]})
    )
    before = await counts(pool)
    for headers in (bearer(merchant.test_secret), bearer(merchant.live_secret)):
        path = f"{RULES}/{their_rule['id']}"
        for reply in (
            await client.get(path, headers=headers),
            await client.delete(path, headers=headers),
        ):
            assert reply.status_code == 404, reply.text
            assert reply.json()["error"] == {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "param": "id",
                "message": f"No such routing_rule: '{their_rule['id']}'",
            }
        assert (await ok(await client.get(RULES, headers=headers)))["data"] == []
    assert await counts(pool) == before
    assert await ok(await client.get(f"{RULES}/{their_rule['id']}", headers=owner)) == their_rule
