"""/v1/connector_accounts over the API: credentials in, only their last 4 out.

The credentials are sealed by the vault before the row is written; no response, event
or error shows them, and a refused request writes nothing at all.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.exceptions import InvalidTag
from psycopg_pool import AsyncConnectionPool

from payrail.api.context import Services
from payrail.clock import ManualClock, unix
from payrail.connectors.accounts.service import credentials_context
from payrail.tenants.service import NewMerchant
from tests.conftest import new_merchant
from tests.connectors.accounts.helpers import (
    ACCOUNTS,
    SECRET,
    Json,
    bearer,
    counts,
    create_account,
    events_of,
    ok,
    sandbox_account,
    send,
)

KEYS = {
    "id",
    "object",
    "provider",
    "name",
    "base_url",
    "currencies",
    "enabled",
    "credentials_last4",
    "metadata",
    "created",
    "updated",
    "livemode",
}


async def row_of(pool: AsyncConnectionPool, account_id: str) -> Json:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT to_jsonb(t)::text, data_key_id, credentials_sealed, credentials_last4,"
            " merchant_id FROM connector_accounts t WHERE id = %s",
            (account_id,),
        )
        row = await cur.fetchone()
    assert row is not None
    return {
        "text": row[0],
        "data_key_id": row[1],
        "sealed": bytes(row[2]),
        "last4": row[3],
        "merchant_id": row[4],
    }


# --- Create, retrieve, list -----------------------------------------------------------------------


@pytest.mark.parametrize("as_form", [False, True], ids=["json", "form"])
async def test_create_returns_the_account_without_its_credentials(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    clock: ManualClock,
    as_form: bool,
) -> None:
    data = sandbox_account(
        "http://127.0.0.1:8787", currencies=["usd", "EUR", "usd"], metadata={"region": "eu"}
    )
    reply = await send(client, auth, ACCOUNTS, data, as_form=as_form)
    obj = await ok(reply)

    assert set(obj) == KEYS
    assert obj["id"].startswith("ca_")
    assert (
        obj
        == {
            "id": obj["id"],
            "object": "connector_account",
            "provider": "sandbox",
            "name": "Sandbox EU",
            "base_url": "http://127.0.0.1:8787",
            "currencies": ["usd", "eur"],  # upper-case in the row, deduplicated
            "enabled": True,
            "credentials_last4": SECRET[-4:],
            "metadata": {"region": "eu"},
            "created": unix(clock.now()),
            "updated": unix(clock.now()),
            "livemode": False,
        }
    )
    assert SECRET not in reply.text
    assert await events_of(pool, obj["id"]) == [("connector_account.created", obj)]
    assert await ok(await client.get(f"{ACCOUNTS}/{obj['id']}", headers=auth)) == obj
    listed = await ok(await client.get(ACCOUNTS, headers=auth))
    assert listed == {"object": "list", "url": ACCOUNTS, "has_more": False, "data": [obj]}


async def test_credentials_are_sealed_bound_to_the_account(
    auth: dict[str, str],
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    services: Services,
    merchant: NewMerchant,
) -> None:
    obj = await create_account(client, auth)
    other = await create_account(client, auth, name="Other")
    row = await row_of(pool, obj["id"])
    assert SECRET not in row["text"]  # every column, the sealed bytes as hex included
    assert SECRET.encode() not in row["sealed"]
    assert row["last4"] == SECRET[-4:] and f'"{SECRET[-4:]}"' in row["text"]
    vault = services.vault
    async with pool.connection() as conn:
        url = obj["base_url"]
        context = credentials_context(obj["id"], merchant.id, "sandbox", url)
        assert await vault.open(conn, context, row["data_key_id"], row["sealed"]) == SECRET
        # Copied onto another account, claimed by another merchant, or pointed at another
        # URL or provider, it does not open.
        for wrong in (
            credentials_context(other["id"], merchant.id, "sandbox", url),
            credentials_context(obj["id"], "mer_other", "sandbox", url),
            credentials_context(obj["id"], merchant.id, "sandbox", "https://elsewhere.example"),
            credentials_context(obj["id"], merchant.id, "stripe", url),
        ):
            with pytest.raises(InvalidTag):
                await vault.open(conn, wrong, row["data_key_id"], row["sealed"])


async def test_defaults(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    data = {"provider": "stripe", "credentials": {"secret": "sk_test_4eC39HqLyjWDarjtT1zdp7dc"}}
    obj = await ok(await send(client, auth, ACCOUNTS, data))
    assert (obj["name"], obj["base_url"], obj["currencies"], obj["enabled"], obj["metadata"]) == (
        "stripe",
        None,
        [],
        True,
        {},
    )
    assert obj["credentials_last4"] == "p7dc"


async def test_list_is_newest_first_and_pages(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    ids = [(await create_account(client, auth, name=f"a{i}"))["id"] for i in range(3)]
    first = await ok(await client.get(ACCOUNTS, params={"limit": 2}, headers=auth))
    assert [a["id"] for a in first["data"]] == ids[:0:-1] and first["has_more"] is True
    params = {"limit": 2, "starting_after": ids[1]}
    rest = await ok(await client.get(ACCOUNTS, params=params, headers=auth))
    assert [a["id"] for a in rest["data"]] == ids[:1] and rest["has_more"] is False


async def test_an_idempotent_create_runs_once(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool
) -> None:
    before = await counts(pool)
    replies = [
        await send(client, auth, ACCOUNTS, sandbox_account(), key="create-ca-1") for _ in range(2)
    ]
    assert replies[0].json() == replies[1].json()
    assert replies[1].headers.get("idempotent-replayed") == "true"
    after = await counts(pool)
    assert after["connector_accounts"] == before["connector_accounts"] + 1
    assert after["events"] == before["events"] + 1


# --- Update ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_form", [False, True], ids=["json", "form"])
async def test_update_changes_what_is_sent(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    clock: ManualClock,
    as_form: bool,
) -> None:
    created = await create_account(
        client, auth, currencies=["usd"], metadata={"keep": "1", "drop": "2"}
    )
    clock.advance(timedelta(minutes=5))
    path = f"{ACCOUNTS}/{created['id']}"
    change: Json = {
        "name": "Sandbox US",
        "enabled": False,
        "currencies": ["gbp", "jpy"],
        "base_url": "https://sandbox.example.com/psp",
        "metadata": {"drop": "", "new": "3"},
        # Credentials are bound to the URL they go to: a new URL needs them again.
        "credentials": {"secret": SECRET},
    }
    alone = {k: v for k, v in change.items() if k != "credentials"}
    refused = await send(client, auth, path, alone, as_form=as_form)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "credentials[secret]"
    updated = await ok(await send(client, auth, path, change, as_form=as_form))
    assert updated == {
        **created,
        "name": "Sandbox US",
        "enabled": False,
        "currencies": ["gbp", "jpy"],
        "base_url": "https://sandbox.example.com/psp",
        "metadata": {"keep": "1", "new": "3"},  # merged; an empty value deletes its key
        "updated": unix(clock.now()),
    }
    assert await ok(await client.get(path, headers=auth)) == updated
    assert await events_of(pool, created["id"]) == [
        ("connector_account.created", created),
        ("connector_account.updated", updated),
    ]


async def test_update_reseals_new_credentials(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    services: Services,
    merchant: NewMerchant,
) -> None:
    created = await create_account(client, auth)
    before = await row_of(pool, created["id"])
    new_secret = "sbx_sk_rotated_Zr81"
    reply = await send(
        client, auth, f"{ACCOUNTS}/{created['id']}", {"credentials": {"secret": new_secret}}
    )
    updated = await ok(reply)
    assert updated["credentials_last4"] == "Zr81"
    assert new_secret not in reply.text and SECRET not in reply.text
    after = await row_of(pool, created["id"])
    assert after["sealed"] != before["sealed"]
    assert new_secret not in after["text"]
    async with pool.connection() as conn:
        context = credentials_context(created["id"], merchant.id, "sandbox", created["base_url"])
        opened = await services.vault.open(conn, context, after["data_key_id"], after["sealed"])
    assert opened == new_secret
    [_, (kind, payload)] = await events_of(pool, created["id"])
    assert kind == "connector_account.updated" and payload == updated
    assert new_secret not in str(payload)


@pytest.mark.parametrize(
    ("body", "as_form"),
    [({}, False), ({}, True), ("same", False), ("same", True)],
    ids=["empty-json", "empty-form", "same-json", "same-form"],
)
async def test_an_update_that_changes_nothing_writes_nothing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    clock: ManualClock,
    body: Any,
    as_form: bool,
) -> None:
    created = await create_account(client, auth, currencies=["usd"], metadata={"a": "1"})
    clock.advance(timedelta(minutes=1))
    if body == "same":
        body = {"name": created["name"], "enabled": True, "currencies": ["USD"]}
        body |= {"metadata": {"a": "1"}, "base_url": created["base_url"]}
    before = await counts(pool)
    reply = await send(client, auth, f"{ACCOUNTS}/{created['id']}", body, as_form=as_form)
    assert await ok(reply) == created
    assert await counts(pool) == before


async def test_empty_values_unset(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool
) -> None:
    data = {
        "provider": "adyen",
        "credentials": {"secret": "AQE1hmfxKo3NaxZDw0m"},
        "base_url": "https://checkout-test.adyen.com/v71",
        "currencies": ["eur"],
        "metadata": {"a": "1", "b": "2"},
    }
    created = await ok(await send(client, auth, ACCOUNTS, data))
    path = f"{ACCOUNTS}/{created['id']}"
    # A form cannot send an empty list or map: Stripe's empty value stands for them. A new
    # base_url (none, here) needs the credentials again: they are bound to it.
    form = "base_url=&currencies=&metadata=&credentials[secret]=AQE1hmfxKo3NaxZDw0m"
    reply = await client.post(
        path, content=form, headers={**auth, "Content-Type": "application/x-www-form-urlencoded"}
    )
    cleared = await ok(reply)
    assert (cleared["base_url"], cleared["currencies"], cleared["metadata"]) == (None, [], {})
    again = await ok(
        await send(client, auth, path, {"currencies": ["eur"], "metadata": {"c": "3"}})
    )
    assert (again["currencies"], again["metadata"]) == (["eur"], {"c": "3"})
    nulled = await ok(await send(client, auth, path, {"currencies": None, "metadata": None}))
    assert (nulled["currencies"], nulled["metadata"]) == ([], {})


# --- Live mode ------------------------------------------------------------------------------------


async def test_live_credentials_go_only_over_https(
    client: httpx.AsyncClient, merchant: NewMerchant, pool: AsyncConnectionPool
) -> None:
    live = bearer(merchant.live_secret)
    before = await counts(pool)
    stripe = {"provider": "stripe"}
    reply = await send(client, live, ACCOUNTS, sandbox_account("http://psp.example.com", **stripe))
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == "base_url"
    assert await counts(pool) == before
    created = await ok(
        await send(client, live, ACCOUNTS, sandbox_account("https://psp.example.com", **stripe))
    )
    assert created["livemode"] is True
    reply = await send(
        client, live, f"{ACCOUNTS}/{created['id']}", {"base_url": "http://psp.example.com"}
    )
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "base_url"
    assert await ok(await client.get(f"{ACCOUNTS}/{created['id']}", headers=live)) == created


async def test_the_sandbox_takes_no_live_account(
    client: httpx.AsyncClient, merchant: NewMerchant, pool: AsyncConnectionPool
) -> None:
    """A live card must never reach a stand-in processor: refused by the API, and by
    PostgreSQL should anything get past it."""
    live = bearer(merchant.live_secret)
    before = await counts(pool)
    reply = await send(client, live, ACCOUNTS, sandbox_account("https://psp.example.com"))
    assert reply.status_code == 400, reply.text
    assert (reply.json()["error"]["param"], reply.json()["error"]["code"]) == (
        "provider",
        "parameter_invalid",
    )
    assert await counts(pool) == before
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT id FROM vault_keys LIMIT 1")
        key = await cur.fetchone()
        assert key is not None
        with pytest.raises(psycopg.errors.CheckViolation):
            await conn.execute(
                "INSERT INTO connector_accounts (id, merchant_id, livemode, provider, name,"
                " base_url, currencies, enabled, data_key_id, credentials_sealed,"
                " credentials_last4, metadata, created_at, updated_at)"
                " VALUES ('ca_forced', %s, true, 'sandbox', 'x', 'https://psp.example.com',"
                " '{}', true, %s, '\\x00', 'abcd', '{}', now(), now())",
                (merchant.id, key[0]),
            )


# --- Bad input ------------------------------------------------------------------------------------

CREDS = {"secret": SECRET}
# A URL with user info: its password must not come back in the error either.
USERINFO_URL = "https://user:pa55w0rd-Hq7@psp.example.com"


def create_case(body: Any, status: int, param: str, *, as_form: bool = False) -> Any:
    return pytest.param("create", body, as_form, status, param)


def update_case(body: Any, status: int, param: str, *, as_form: bool = False) -> Any:
    return pytest.param("update", body, as_form, status, param)


BAD = [
    create_case({"credentials": CREDS, "base_url": "http://h"}, 400, "provider"),
    create_case({"provider": "worldpay", "credentials": CREDS}, 400, "provider"),
    create_case(
        {"provider": "SANDBOX", "credentials": CREDS, "base_url": "http://h"}, 400, "provider"
    ),
    create_case({"provider": "stripe"}, 400, "credentials"),
    create_case({"provider": "stripe", "credentials": SECRET}, 400, "credentials"),
    create_case({"provider": "stripe", "credentials": {}}, 400, "credentials[secret]"),
    create_case({"provider": "stripe", "credentials": {"secret": ""}}, 400, "credentials[secret]"),
    create_case(
        {"provider": "stripe", "credentials": {"secret": "sk_1234"}}, 400, "credentials[secret]"
    ),
    create_case(
        {"provider": "stripe", "credentials": {"secret": "sk live with spaces"}},
        400,
        "credentials[secret]",
    ),
    create_case(
        {"provider": "stripe", "credentials": {"secret": "sk_live_\nX-Evil: 1"}},
        400,
        "credentials[secret]",
    ),
    create_case(
        {"provider": "stripe", "credentials": {"secret": 12345678}}, 400, "credentials[secret]"
    ),
    create_case(
        {"provider": "stripe", "credentials": {"secret": "é" * 10}}, 400, "credentials[secret]"
    ),
    create_case(
        {"provider": "stripe", "credentials": {"secret": SECRET, "key": "x"}},
        400,
        "credentials[key]",
    ),
    create_case({"provider": "sandbox", "credentials": CREDS}, 400, "base_url"),
    create_case({"provider": "sandbox", "credentials": CREDS, "base_url": None}, 400, "base_url"),
    create_case({"provider": "sandbox", "credentials": CREDS, "base_url": ""}, 400, "base_url"),
    *(
        create_case({"provider": "sandbox", "credentials": CREDS, "base_url": url}, 400, "base_url")
        for url in (
            "ftp://psp.example.com",
            "psp.example.com",
            "http://",
            "http://psp.example.com/?token=1",
            "http://psp.example.com/#frag",
            "http://psp.example.com:99999",
            "http://psp example.com",
            USERINFO_URL,
            "https://" + "a" * 2000 + ".com",
        )
    ),
    create_case({**sandbox_account(), "name": ""}, 400, "name"),
    create_case({**sandbox_account(), "name": "   "}, 400, "name"),
    create_case({**sandbox_account(), "name": "n" * 201}, 400, "name"),
    create_case({**sandbox_account(), "currencies": ["usd", "zzz"]}, 400, "currencies[1]"),
    create_case({**sandbox_account(), "currencies": ["xau"]}, 400, "currencies[0]"),
    create_case({**sandbox_account(), "currencies": "usd"}, 400, "currencies"),
    create_case({**sandbox_account(), "currencies": [7]}, 400, "currencies[0]"),
    create_case({**sandbox_account(), "enabled": "perhaps"}, 400, "enabled"),
    create_case({**sandbox_account(), "metadata": {"k": "v" * 501}}, 400, "metadata[k]"),
    create_case({**sandbox_account(), "metadata": "x"}, 400, "metadata"),
    create_case({**sandbox_account(), "livemode": True}, 400, "livemode"),
    create_case(
        {**sandbox_account(), "currencies": ["usd", "zzz"]}, 400, "currencies[1]", as_form=True
    ),
    create_case({**sandbox_account(), "enabled": "perhaps"}, 400, "enabled", as_form=True),
    create_case({**sandbox_account(), "provider": "nope"}, 400, "provider", as_form=True),
    create_case(
        {**sandbox_account(), "credentials": {"secret": "short"}},
        400,
        "credentials[secret]",
        as_form=True,
    ),
    update_case({"provider": "stripe"}, 400, "provider"),
    update_case({"name": None}, 400, "name"),
    update_case({"name": " "}, 400, "name"),
    update_case({"enabled": None}, 400, "enabled"),
    update_case({"enabled": "sometimes"}, 400, "enabled", as_form=True),
    update_case({"credentials": None}, 400, "credentials"),
    update_case({"credentials": {}}, 400, "credentials[secret]"),
    update_case({"credentials": {"secret": "a b c d e f"}}, 400, "credentials[secret]"),
    update_case({"base_url": ""}, 400, "base_url"),  # a sandbox account needs one
    update_case({"base_url": None}, 400, "base_url"),
    update_case({"base_url": USERINFO_URL}, 400, "base_url"),
    update_case({"currencies": ["usd", "abc"]}, 400, "currencies[1]"),
    update_case({"metadata": {f"k{i}": "v" for i in range(51)}}, 400, "metadata"),
    # 45 existing keys (see the test) and 6 new: too many once merged.
    update_case({"metadata": {f"new{i}": "v" for i in range(6)}}, 400, "metadata"),
    update_case({"id": "ca_other"}, 400, "id"),
    update_case({"livemode": True}, 400, "livemode"),
]


@pytest.mark.parametrize(("kind", "body", "as_form", "status", "param"), BAD)
async def test_bad_input_names_the_field_and_writes_nothing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    kind: str,
    body: Any,
    as_form: bool,
    status: int,
    param: str,
) -> None:
    existing = await create_account(client, auth, metadata={f"m{i}": "v" for i in range(45)})
    path = ACCOUNTS if kind == "create" else f"{ACCOUNTS}/{existing['id']}"
    before = await counts(pool)
    for key in (None, f"bad-{kind}-{param}"):
        reply = await send(client, auth, path, body, as_form=as_form, key=key)
        assert reply.status_code == status, reply.text
        error = reply.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["param"] == param, error
        assert error["message"], error
        # Neither a secret nor a URL's password is ever repeated.
        for secret in (SECRET, "sk live with spaces", "sk_1234", "pa55w0rd-Hq7", "a b c d e f"):
            assert secret not in reply.text
    assert await counts(pool) == before
    assert await ok(await client.get(f"{ACCOUNTS}/{existing['id']}", headers=auth)) == existing


# --- Isolation ------------------------------------------------------------------------------------


async def test_another_merchants_or_modes_account_is_404(
    client: httpx.AsyncClient,
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    other = await new_merchant(pool, clock, "Globex")
    theirs = await create_account(client, bearer(other.test_secret))
    mine_test, mine_live = bearer(merchant.test_secret), bearer(merchant.live_secret)
    own_live = await create_account(
        client, mine_live, base_url="https://psp.example.com", provider="stripe"
    )
    before = await counts(pool)
    for headers, account_id in (
        (mine_test, theirs["id"]),
        (mine_live, theirs["id"]),
        (mine_test, own_live["id"]),
        (mine_test, "ca_" + "Z" * 24),
    ):
        path = f"{ACCOUNTS}/{account_id}"
        for reply in (
            await client.get(path, headers=headers),
            await send(client, headers, path, {}),
            await send(client, headers, path, {"name": "mine now", "enabled": False}),
            await send(client, headers, path, {"credentials": {"secret": "attacker_secret"}}),
        ):
            assert reply.status_code == 404, reply.text
            assert reply.json()["error"] == {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "param": "id",
                "message": f"No such connector_account: '{account_id}'",
            }
    assert await counts(pool) == before
    assert await ok(await client.get(ACCOUNTS, headers=mine_test)) == {
        "object": "list",
        "url": ACCOUNTS,
        "has_more": False,
        "data": [],
    }
    owner = bearer(other.test_secret)
    assert await ok(await client.get(f"{ACCOUNTS}/{theirs['id']}", headers=owner)) == theirs


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest", "http://[fe80::1]/psp", "https://169.254.1.1"]
)
async def test_credentials_never_go_to_a_link_local_address(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool, url: str
) -> None:
    before = await counts(pool)
    reply = await send(client, auth, ACCOUNTS, sandbox_account(base_url=url))
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "base_url"
    assert await counts(pool) == before
