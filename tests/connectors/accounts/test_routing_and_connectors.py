"""From stored accounts and rules to a payment: `load_routing` feeds `routing.route`, and
`Connectors.get` opens an account's credentials to build a connector that really charges
(a sandbox PSP over HTTP). Then a scan: the secret is nowhere but sealed."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.api.context import Services
from payrail.clock import ManualClock
from payrail.connectors import routing
from payrail.connectors.accounts import repository as repo
from payrail.connectors.accounts import service
from payrail.connectors.base import Authorization, ConnectorError
from payrail.connectors.sandbox import SandboxConfig
from payrail.connectors.sandbox.server import run_sandbox
from payrail.connectors.sandbox_connector import SandboxConnector
from payrail.errors import NotFound
from payrail.ids import new_id
from payrail.tenants.scope import Scope
from payrail.tenants.service import NewMerchant
from payrail.vault import service as vault_service
from tests.conftest import new_merchant
from tests.connectors.accounts.helpers import (
    ACCOUNTS,
    RULES,
    SECRET,
    Json,
    bearer,
    create_account,
    ok,
    send,
)

EUR_VISA = routing.RoutingInput(5_000, "EUR", "DE", "card:visa")


@pytest.fixture(scope="module")
def psp_url() -> Iterator[str]:
    with run_sandbox(SandboxConfig(secret=SECRET), ManualClock(), grace_seconds=1) as url:
        yield url


def usd(amount: int) -> routing.RoutingInput:
    return routing.RoutingInput(amount, "USD", "US", "card:mastercard")


# --- load_routing and route -----------------------------------------------------------------------


async def test_load_routing_then_route_picks_accounts_by_currency(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> None:
    usd_only = (await create_account(client, auth, name="usd", currencies=["usd"]))["id"]
    euro = (await create_account(client, auth, name="euro", currencies=["eur", "gbp"]))["id"]
    anything = (await create_account(client, auth, name="any"))["id"]
    off = (await create_account(client, auth, name="off", enabled=False))["id"]

    async def add_rule(priority: int, chain: list[str], **conditions: Any) -> str:
        body = {"priority": priority, "connector_accounts": chain, "conditions": conditions}
        rule_id: str = (await ok(await send(client, auth, RULES, body)))["id"]
        return rule_id

    # Created out of priority order: load_routing must order them.
    catch_all = await add_rule(30, [off, usd_only])
    euro_cards = await add_rule(10, [euro, anything], currencies=["eur"], payment_methods=["card"])
    big_usd = await add_rule(20, [anything, usd_only], currencies=["usd"], min_amount=100_000)
    # Neither another mode's nor another merchant's rules and accounts take part.
    live = bearer(merchant.live_secret)
    live_account = await create_account(
        client, live, base_url="https://psp.example.com", provider="stripe"
    )
    await ok(
        await send(client, live, RULES, {"priority": 0, "connector_accounts": [live_account["id"]]})
    )
    other = await new_merchant(pool, clock, "Globex")
    other_key = bearer(other.test_secret)
    other_account = await create_account(client, other_key)
    await ok(
        await send(
            client, other_key, RULES, {"priority": 0, "connector_accounts": [other_account["id"]]}
        )
    )

    scope = Scope(merchant.id, False)
    async with pool.connection() as conn:
        rules, accounts = await service.load_routing(conn, scope)
    assert rules == [
        routing.Rule(
            10,
            routing.Conditions(currencies=frozenset({"EUR"}), payment_methods=frozenset({"card"})),
            (euro, anything),
        ),
        routing.Rule(
            20,
            routing.Conditions(currencies=frozenset({"USD"}), min_amount=100_000),
            (anything, usd_only),
        ),
        routing.Rule(30, routing.Conditions(), (off, usd_only)),
    ]
    assert accounts == [
        routing.Account(usd_only, True, frozenset({"USD"})),
        routing.Account(euro, True, frozenset({"EUR", "GBP"})),
        routing.Account(anything, True, frozenset()),
        routing.Account(off, False, frozenset()),
    ]

    assert routing.route(rules, accounts, EUR_VISA) == [euro, anything]
    assert routing.route(rules, accounts, usd(200_000)) == [anything, usd_only]
    # The catch-all names a disabled account first: it is skipped.
    assert routing.route(rules, accounts, usd(500)) == [usd_only]
    # No rule's accounts take yen: every enabled account that does, oldest first.
    yen = routing.RoutingInput(500, "JPY", "JP", "card:jcb")
    assert routing.route(rules, accounts, yen) == [anything]

    # Changes through the API show in the next load.
    await ok(await client.delete(f"{RULES}/{euro_cards}", headers=auth))
    await ok(await send(client, auth, f"{ACCOUNTS}/{anything}", {"enabled": False}))
    async with pool.connection() as conn:
        rules, accounts = await service.load_routing(conn, scope)
    assert [r.priority for r in rules] == [20, 30]
    assert routing.route(rules, accounts, EUR_VISA) == [euro]
    assert routing.route(rules, accounts, usd(200_000)) == [usd_only]
    with pytest.raises(routing.NoRoute):
        routing.route(rules, accounts, yen)
    assert {big_usd, catch_all} == {
        r["id"] for r in (await ok(await client.get(RULES, headers=auth)))["data"]
    }


async def test_rules_of_equal_priority_keep_their_creation_order(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
) -> None:
    first = (await create_account(client, auth, name="first"))["id"]
    second = (await create_account(client, auth, name="second"))["id"]
    for chain in ([second], [first]):
        await ok(await send(client, auth, RULES, {"priority": 5, "connector_accounts": chain}))
    async with pool.connection() as conn:
        rules, accounts = await service.load_routing(conn, Scope(merchant.id, False))
    assert routing.route(rules, accounts, EUR_VISA) == [second]


# --- Connectors.get -------------------------------------------------------------------------


async def test_connectors_get_authorizes_a_test_card_at_the_sandbox(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
    services: Services,
    psp_url: str,
) -> None:
    account = await create_account(client, auth, base_url=psp_url, currencies=["usd"])
    card = await ok(
        await client.post(
            "/v1/payment_methods",
            json={"type": "card", "card": {"token": "tok_visa"}},
            headers=auth,
        )
    )
    scope = Scope(merchant.id, False)
    reference = new_id("pi")
    async with pool.connection() as conn:
        connector = await services.connectors.get(conn, scope, services.vault, account["id"])
        secret = await vault_service.reveal(conn, scope, clock, services.vault, card["id"])
    assert isinstance(connector, SandboxConnector) and connector.provider == "sandbox"
    request = Authorization(new_id("pa"), 2_000, "USD", False, secret, reference)
    payment = await connector.authorize(request)
    assert (payment.status, payment.amount, payment.amount_captured) == ("authorized", 2_000, 0)
    captured = await connector.capture(new_id("pc"), payment.provider_id, 2_000)
    assert captured.status == "captured"
    async with pool.connection() as conn:
        again = await services.connectors.get(conn, scope, services.vault, account["id"])
    assert again is connector  # kept open between calls
    async with httpx.AsyncClient(base_url=psp_url) as http:
        record = (await http.get("/sandbox/record", headers=bearer(SECRET))).json()
    [charged] = [p for p in record["payments"] if p["reference"] == reference]
    assert charged["amount"] == 2_000

    # The credentials really are what the sandbox checks: wrong ones are refused there.
    path = f"{ACCOUNTS}/{account['id']}"
    await ok(await send(client, auth, path, {"credentials": {"secret": "sbx_sk_not_the_one"}}))
    async with pool.connection() as conn:
        wrong = await services.connectors.get(conn, scope, services.vault, account["id"])
    assert isinstance(wrong, SandboxConnector) and wrong is not connector
    with pytest.raises(ConnectorError):
        await wrong.authorize(Authorization(new_id("pa"), 2_000, "USD", True, secret, new_id("pi")))


async def test_connectors_get_a_disabled_account_still_works(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    services: Services,
    psp_url: str,
) -> None:
    """An in-doubt attempt made through an account disabled since must still be resolved
    by asking that account's provider."""
    account = await create_account(client, auth, base_url=psp_url, enabled=False)
    async with pool.connection() as conn:
        connector = await services.connectors.get(
            conn, Scope(merchant.id, False), services.vault, account["id"]
        )
    assert await connector.payment_status(new_id("pa")) is None


@pytest.mark.parametrize("provider", ["stripe", "adyen", "paypal"])
async def test_other_providers_are_not_implemented_yet(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    services: Services,
    provider: str,
) -> None:
    body = {"provider": provider, "credentials": {"secret": SECRET}}
    account = await ok(await send(client, auth, ACCOUNTS, body))
    async with pool.connection() as conn:
        with pytest.raises(service.ConnectorNotImplemented) as raised:
            await services.connectors.get(
                conn, Scope(merchant.id, False), services.vault, account["id"]
            )
    message = str(raised.value)
    assert account["id"] in message and provider in message and "not implemented" in message
    assert SECRET not in message
    assert raised.value.code == "connector_not_implemented"


async def test_connectors_get_another_merchants_or_modes_account_is_not_found(
    client: httpx.AsyncClient,
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
    services: Services,
) -> None:
    other = await new_merchant(pool, clock, "Globex")
    theirs = await create_account(client, bearer(other.test_secret))
    own_live = await create_account(
        client, bearer(merchant.live_secret), base_url="https://x.example", provider="stripe"
    )
    async with pool.connection() as conn:
        for scope, account_id in (
            (Scope(merchant.id, False), theirs["id"]),
            (Scope(merchant.id, True), theirs["id"]),
            (Scope(merchant.id, False), own_live["id"]),
        ):
            with pytest.raises(NotFound):
                await services.connectors.get(conn, scope, services.vault, account_id)


async def test_credentials_survive_key_rotation(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
    services: Services,
    psp_url: str,
) -> None:
    account = await create_account(client, auth, base_url=psp_url)
    scope = Scope(merchant.id, False)
    async with pool.connection() as conn:
        old_key = await repo.sealed_credentials(conn, scope, account["id"])
        assert old_key is not None
        async with conn.transaction():
            rotation = await services.vault.rotate(conn, clock.now())
    assert rotation.data_key_id != old_key[2]
    # Sealed under the retired key, still opens; new credentials use the new key.
    for step in ("before", "after"):
        async with pool.connection() as conn:
            connector = await services.connectors.get(conn, scope, services.vault, account["id"])
            found = await repo.sealed_credentials(conn, scope, account["id"])
        assert isinstance(connector, SandboxConnector) and found is not None
        assert await connector.payment_status(new_id("pa")) is None  # authenticated
        if step == "before":
            assert found[2] == old_key[2]
            await ok(
                await send(
                    client, auth, f"{ACCOUNTS}/{account['id']}", {"credentials": {"secret": SECRET}}
                )
            )
        else:
            assert found[2] == rotation.data_key_id


# --- Nowhere but sealed ---------------------------------------------------------------------------

SCAN_SECRET = "sk_scan_Vf83kQ2mP0xLr7Ws"
SCAN_SECRETS = (SCAN_SECRET, SCAN_SECRET[:-4], "sk_scan_new_Gt5Yh2Nw9q", "pa55-Zq1w")


def leaks(text: str) -> list[str]:
    return [s for s in SCAN_SECRETS if s in text]


async def test_the_secret_is_in_no_table_response_event_or_log(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    services: Services,
    psp_url: str,
    written_logs: io.StringIO,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    replies: list[httpx.Response] = []

    async def post(path: str, body: Json, **kwargs: Any) -> httpx.Response:
        reply = await send(client, auth, path, body, **kwargs)
        replies.append(reply)
        return reply

    good = {"provider": "sandbox", "credentials": {"secret": SCAN_SECRET}, "base_url": psp_url}
    created = await ok(await post(ACCOUNTS, good))
    await ok(await post(ACCOUNTS, good, as_form=True))
    for _ in range(2):
        await ok(await post(ACCOUNTS, good, key="scan-1"))
    path = f"{ACCOUNTS}/{created['id']}"
    await ok(await post(path, {"credentials": {"secret": SCAN_SECRETS[2]}}, key="scan-2"))
    await ok(await post(path, {"credentials": {"secret": SCAN_SECRET}}))

    # Refused, each carrying the secret somewhere.
    for bad, key in (
        ({**good, "credentials": {"secret": SCAN_SECRET + " x"}}, "scan-3"),
        ({**good, "credentials": {"secret": SCAN_SECRET, "extra": SCAN_SECRET}}, None),
        ({**good, "base_url": f"https://user:{SCAN_SECRETS[3]}@h.example"}, "scan-4"),
        ({**good, "provider": SCAN_SECRET}, None),
        ({**good, "currencies": [SCAN_SECRET[:3] + "x"]}, None),
    ):
        reply = await post(ACCOUNTS, bad, key=key)
        assert reply.status_code == 400, reply.text
    reply = await post(path, {"credentials": SCAN_SECRET}, as_form=True)
    assert reply.status_code == 400

    # A failure while executing is logged with its traceback.
    async def broken(*args: Any) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(repo, "insert_account", broken)
    assert (await post(ACCOUNTS, good, key="scan-5")).status_code == 500
    monkeypatch.undo()

    # A call through the account, refused by the sandbox (whose secret is another).
    scope = Scope(merchant.id, False)
    async with pool.connection() as conn:
        connector = await services.connectors.get(conn, scope, services.vault, created["id"])
    assert isinstance(connector, SandboxConnector)
    with pytest.raises(ConnectorError) as refused:
        await connector.payment_status(new_id("pa"))
    logging.getLogger("payrail.test").exception("refused", exc_info=refused.value)
    assert leaks(f"{refused.value!s} {refused.value!r}") == []

    found: list[str] = []
    for reply in replies:
        found += [f"response {reply.request.url.path}: {hit}" for hit in leaks(reply.text)]
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            " AND table_type = 'BASE TABLE'"
        )
        tables = [row[0] for row in await cur.fetchall()]
        assert {"connector_accounts", "events", "idempotency_keys"} <= set(tables)
        for table in tables:
            # Every column as text (bytea as hex) and the raw bytes of bytea columns.
            cur = await conn.execute(f'SELECT t::text FROM "{table}" t')  # names from the catalog
            for (text,) in await cur.fetchall():
                found += [f"{table}: {hit}" for hit in leaks(text)]
        cur = await conn.execute(
            "SELECT convert_from(response_body, 'UTF8') FROM idempotency_keys"
            " WHERE response_body IS NOT NULL"
        )
        kept = [row[0] for row in await cur.fetchall()]
        assert len(kept) == 3  # scan-1, scan-2, scan-5: refused parameters are not kept
        found += [f"kept response: {hit}" for text in kept for hit in leaks(text)]
        cur = await conn.execute("SELECT credentials_sealed FROM connector_accounts")
        for (sealed,) in await cur.fetchall():
            found += [f"sealed bytes: {s}" for s in SCAN_SECRETS if s.encode() in bytes(sealed)]
    logs = written_logs.getvalue() + caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    captured = capsys.readouterr()
    found += [f"log: {hit}" for hit in leaks(logs + captured.out + captured.err)]
    assert "the database went away" in logs + captured.out + captured.err, "the 500 was not logged"
    assert found == []
