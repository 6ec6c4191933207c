"""/v1/webhook_endpoints: Stripe's shapes, the secret shown on create only and never
stored in clear, bad input refused by name with nothing written, events in the same
transaction."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe
from psycopg_pool import AsyncConnectionPool

from payrail.tenants.service import NewMerchant
from tests.events.webhooks.helpers import ENDPOINTS, create_endpoint

Json = dict[str, Any]
URL = "https://hooks.example.com/payrail?token=t0k"


async def events_of(pool: AsyncConnectionPool, merchant_id: str) -> list[tuple[str, Json]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT type, payload FROM events WHERE merchant_id = %s"
            " AND type LIKE 'webhook%%' ORDER BY seq",
            (merchant_id,),
        )
        return list(await cur.fetchall())


async def counts(pool: AsyncConnectionPool) -> tuple[int, ...]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM webhook_endpoints), (SELECT count(*) FROM events),"
            " (SELECT count(*) FROM idempotency_keys)"
        )
        row = await cur.fetchone()
    assert row is not None
    return tuple(row)


async def test_endpoint_lifecycle(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    merchant: NewMerchant,
) -> None:
    created = await create_endpoint(
        client,
        auth,
        URL,
        enabled_events=["payment_intent.succeeded", "charge.dispute.created"],
        description="orders",
        metadata={"team": "billing"},
    )
    secret = created.pop("secret")
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    assert created["id"].startswith("we_")
    assert created == {
        "id": created["id"],
        "object": "webhook_endpoint",
        "api_version": None,
        "application": None,
        "created": created["created"],
        "description": "orders",
        "disabled_reason": None,
        "enabled_events": ["payment_intent.succeeded", "charge.dispute.created"],
        "livemode": False,
        "metadata": {"team": "billing"},
        "signature_format": "stripe",
        "status": "enabled",
        "url": URL,
    }
    path = f"{ENDPOINTS}/{created['id']}"
    assert (await client.get(path, headers=auth)).json() == created, "no secret when read"
    listed = (await client.get(ENDPOINTS, headers=auth)).json()
    assert listed["data"] == [created] and listed["has_more"] is False

    reply = await client.post(
        path,
        headers=auth,
        json={
            "url": "https://hooks.example.com/v2",
            "enabled_events": ["*"],
            "description": "",
            "metadata": {"team": "", "env": "prod"},
            "signature_format": "standard_webhooks",
        },
    )
    assert reply.status_code == 200, reply.text
    updated = reply.json()
    assert "secret" not in updated
    assert (updated["url"], updated["enabled_events"], updated["description"]) == (
        "https://hooks.example.com/v2",
        ["*"],
        None,
    )
    assert (updated["metadata"], updated["signature_format"]) == (
        {"env": "prod"},
        "standard_webhooks",
    )

    disabled = (await client.post(path, headers=auth, json={"disabled": True})).json()
    assert (disabled["status"], disabled["disabled_reason"]) == ("disabled", "requested")
    enabled = (await client.post(path, headers=auth, data={"disabled": "false"})).json()
    assert (enabled["status"], enabled["disabled_reason"]) == ("enabled", None)

    deleted = await client.delete(path, headers=auth)
    assert deleted.json() == {"id": created["id"], "object": "webhook_endpoint", "deleted": True}
    gone = await client.get(path, headers=auth)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "resource_missing"
    assert (await client.post(path, headers=auth, json={"disabled": True})).status_code == 404
    assert (await client.delete(path, headers=auth)).status_code == 404
    assert (await client.get(ENDPOINTS, headers=auth)).json()["data"] == []

    emitted = await events_of(pool, merchant.id)
    assert [kind for kind, _ in emitted] == [
        "webhook_endpoint.created",
        "webhook_endpoint.updated",
        "webhook_endpoint.updated",
        "webhook_endpoint.updated",
        "webhook_endpoint.deleted",
    ]
    assert emitted[0][1] == created and emitted[1][1] == updated
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT secret_sealed, secret_key_id FROM webhook_endpoints WHERE id = %s",
                (created["id"],),
            )
        ).fetchone()
    assert row == (None, None), "a deleted endpoint keeps nothing that could sign"


async def test_the_secret_is_never_stored_logged_or_published_in_clear(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    written_logs: io.StringIO,
) -> None:
    headers = {**auth, "Idempotency-Key": "create-hook-1"}
    first = await client.post(
        ENDPOINTS, headers=headers, json={"url": URL, "enabled_events": ["*"]}
    )
    assert first.status_code == 200
    secret = first.json()["secret"]
    # A replay is the same answer to the same request, secret included, read from the
    # sealed copy: the stored result does not hold it.
    again = await client.post(
        ENDPOINTS, headers=headers, json={"url": URL, "enabled_events": ["*"]}
    )
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json() == first.json()
    assert (await counts(pool))[0] == 1
    await client.post(
        f"{ENDPOINTS}/{first.json()['id']}", headers=auth, json={"description": "renamed"}
    )
    raw = base64.b64decode(secret[6:])
    forms = [secret, secret[6:], raw.hex()]
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public'"
        )
        columns = await cur.fetchall()
        assert ("webhook_endpoints", "secret_sealed", "bytea") in columns
        for table, column, data_type in columns:
            cast = "" if data_type == "bytea" else "::text"  # names from the catalog
            cur = await conn.execute(f'SELECT "{column}"{cast} FROM "{table}"')
            for (value,) in await cur.fetchall():
                if isinstance(value, bytes):
                    assert raw not in value, (table, column)
                    value = value.decode("latin-1")
                assert not any(form in (value or "") for form in forms), (table, column)
    assert not any(form in written_logs.getvalue() for form in forms)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"enabled_events": ["*"]}, "url"),
        ({"url": URL}, "enabled_events"),
        ({"url": URL, "enabled_events": []}, "enabled_events"),
        ({"url": URL, "enabled_events": ["*", "payment_intent.exploded"]}, "enabled_events[1]"),
        ({"url": URL, "enabled_events": ["charge.succeeded"]}, "enabled_events[0]"),
        ({"url": URL, "enabled_events": "*"}, "enabled_events"),
        ({"url": URL, "enabled_events": ["*"], "signature_format": "svix"}, "signature_format"),
        ({"url": URL, "enabled_events": ["*"], "metadata": {"k": "v" * 501}}, "metadata[k]"),
        ({"url": URL, "enabled_events": ["*"], "secret": "whsec_mine"}, "secret"),
        ({"url": "ftp://hooks.example.com/", "enabled_events": ["*"]}, "url"),
        ({"url": "https://", "enabled_events": ["*"]}, "url"),
        ({"url": "https://u:p@hooks.example.com/", "enabled_events": ["*"]}, "url"),
        ({"url": "http://127.0.0.1:8000/hook", "enabled_events": ["*"]}, "url"),
        ({"url": "http://[::1]/hook", "enabled_events": ["*"]}, "url"),
        ({"url": "http://169.254.169.254/latest", "enabled_events": ["*"]}, "url"),
        ({"url": "http://2130706433/", "enabled_events": ["*"]}, "url"),
        ({"url": "http://localhost:3000/", "enabled_events": ["*"]}, "url"),
        ({"url": "https://hooks.example.com/" + "a" * 2100, "enabled_events": ["*"]}, "url"),
    ],
)
async def test_bad_input_is_refused_by_name_and_writes_nothing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    body: Json,
    param: str,
) -> None:
    before = await counts(pool)
    reply = await client.post(ENDPOINTS, headers={**auth, "Idempotency-Key": "bad-1"}, json=body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    assert "t0k" not in error["message"] and "u:p@" not in error["message"]
    after = await counts(pool)
    assert after[:2] == before[:2]


async def test_bad_updates_change_nothing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    pool: AsyncConnectionPool,
    merchant: NewMerchant,
) -> None:
    created = await create_endpoint(client, auth, URL)
    created.pop("secret")
    path = f"{ENDPOINTS}/{created['id']}"
    for body, param in (
        ({"url": "http://10.0.0.8/hook"}, "url"),
        ({"enabled_events": ["nope.nope"]}, "enabled_events[0]"),
        ({"disabled": "perhaps"}, "disabled"),
        ({"status": "disabled"}, "status"),
    ):
        reply = await client.post(path, headers=auth, json=body)
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["param"] == param
    assert (await client.get(path, headers=auth)).json() == created
    assert [kind for kind, _ in await events_of(pool, merchant.id)] == ["webhook_endpoint.created"]


async def test_private_addresses_are_accepted_when_configured(
    client: httpx.AsyncClient, auth: dict[str, str], allow_private: None
) -> None:
    for url in (
        "http://127.0.0.1:8000/hook",
        "http://localhost:3000/",
        "http://10.0.0.8/",
        "http://[::1]:8080/hook",
    ):
        await create_endpoint(client, auth, url)


@pytest.fixture
def sdk(
    live_server: str, merchant: NewMerchant, monkeypatch: pytest.MonkeyPatch
) -> Iterator[stripe.StripeClient]:
    monkeypatch.setattr(stripe, "enable_telemetry", False)
    yield stripe.StripeClient(
        merchant.test_secret, base_addresses={"api": live_server}, max_network_retries=0
    )


def test_the_stripe_sdk_manages_endpoints(sdk: stripe.StripeClient) -> None:
    created = sdk.v1.webhook_endpoints.create(
        {
            "url": URL,
            "enabled_events": ["payment_intent.succeeded", "refund.created"],
            "metadata": {"team": "billing"},
        }
    )
    assert isinstance(created, stripe.WebhookEndpoint)
    assert created.secret is not None and created.secret.startswith("whsec_")
    assert created.enabled_events == ["payment_intent.succeeded", "refund.created"]
    fetched = sdk.v1.webhook_endpoints.retrieve(created.id)
    assert fetched.url == URL and getattr(fetched, "secret", None) is None
    updated = sdk.v1.webhook_endpoints.update(created.id, {"disabled": True})
    assert updated.status == "disabled"
    assert [e.id for e in sdk.v1.webhook_endpoints.list().data] == [created.id]
    deleted = sdk.v1.webhook_endpoints.delete(created.id)
    assert deleted.deleted is True
    with pytest.raises(stripe.InvalidRequestError) as raised:
        sdk.v1.webhook_endpoints.create({"url": URL, "enabled_events": ["nope.nope"]})
    assert raised.value.param == "enabled_events[0]"


async def test_an_upper_case_scheme_is_stored_in_lower_case(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    endpoint = await create_endpoint(client, auth, "HTTPS://hooks.example.com/Path?Token=X")
    assert endpoint["url"] == "https://hooks.example.com/Path?Token=X"
