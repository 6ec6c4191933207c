"""`GET /v1/events`: the outbox as Stripe's events, filtered and paged as Stripe's are."""

from __future__ import annotations

import httpx
import pytest

Json = dict[str, object]


async def make_history(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    for name in ("cash", "revenue"):
        kind = "asset" if name == "cash" else "revenue"
        reply = await client.post(
            "/v1/ledger/accounts",
            json={"name": name, "type": kind, "currency": "usd"},
            headers=auth,
        )
        assert reply.status_code == 200, reply.text
    reply = await client.post("/v1/customers", json={"email": "a@example.com"}, headers=auth)
    assert reply.status_code == 200, reply.text


async def listed(client: httpx.AsyncClient, auth: dict[str, str], **params: object) -> Json:
    reply = await client.get("/v1/events", params=params, headers=auth)  # type: ignore[arg-type]
    assert reply.status_code == 200, reply.text
    body: Json = reply.json()
    return body


async def test_lists_newest_first_with_filters(client: httpx.AsyncClient, auth: dict[str, str]):
    await make_history(client, auth)
    everything = await listed(client, auth)
    types = [e["type"] for e in everything["data"]]  # type: ignore[index, union-attr]
    assert types == [
        "customer.created",
        "ledger.account.created",
        "ledger.account.created",
        "merchant.created",
    ]
    assert everything["has_more"] is False

    only = await listed(client, auth, type="customer.created")
    assert [e["type"] for e in only["data"]] == ["customer.created"]  # type: ignore[index, union-attr]
    ledger = await listed(client, auth, type="ledger.*")
    assert len(ledger["data"]) == 2  # type: ignore[arg-type]
    both = await listed(client, auth, **{"types[]": ["customer.created", "ledger.account.created"]})
    assert len(both["data"]) == 3  # type: ignore[arg-type]
    # LIKE's wildcards in a type are literal: "ledger_" matches nothing.
    assert (await listed(client, auth, type="ledger_account.created"))["data"] == []

    page = await listed(client, auth, limit=2)
    assert page["has_more"] is True
    rest = await listed(client, auth, starting_after=page["data"][-1]["id"])  # type: ignore[index]
    assert len(rest["data"]) == 2 and rest["has_more"] is False  # type: ignore[arg-type]


async def test_one_event_is_the_envelope(client: httpx.AsyncClient, auth: dict[str, str]):
    await make_history(client, auth)
    newest = (await listed(client, auth, limit=1))["data"][0]  # type: ignore[index]
    reply = await client.get(f"/v1/events/{newest['id']}", headers=auth)
    assert reply.status_code == 200
    event = reply.json()
    assert event == newest
    assert event["object"] == "event" and event["version"] == 1
    assert event["livemode"] is False
    assert event["data"]["object"]["object"] == "customer"
    assert isinstance(event["created"], int)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"type": "customer.created", "types[]": "customer.created"}, "types"),
        ({"limit": 0}, "limit"),
        ({"type": ""}, "type"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_filters_name_the_param(
    client: httpx.AsyncClient, auth: dict[str, str], params: dict[str, object], param: str
):
    reply = await client.get("/v1/events", params=params, headers=auth)  # type: ignore[arg-type]
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param


async def test_an_unknown_event_is_404(client: httpx.AsyncClient, auth: dict[str, str]):
    reply = await client.get("/v1/events/evt_nope", headers=auth)
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "resource_missing"


async def test_the_envelope_text_is_the_structured_event(
    client: httpx.AsyncClient, auth: dict[str, str], pool
):
    """event_envelope writes JSON out as text, for speed; it must be exactly the object
    it stands for, whatever the payload holds."""
    reply = await client.post(
        "/v1/customers",
        json={"email": "q@example.com", "metadata": {"note": 'say "hi" \\ ünïcødé 🚀'}},
        headers=auth,
    )
    assert reply.status_code == 200, reply.text
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT event_envelope(e)::jsonb = jsonb_build_object("
                " 'id', e.id, 'object', 'event', 'type', e.type, 'version', e.version,"
                " 'created', floor(extract(epoch FROM e.created_at))::bigint,"
                " 'livemode', e.livemode, 'merchant', e.merchant_id,"
                " 'data', jsonb_build_object('object', e.payload)) FROM events e"
            )
        ).fetchall()
    assert rows and all(same for (same,) in rows)
