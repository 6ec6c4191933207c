"""Stripe's HTTP conventions: Request-Id, authentication, error shape, form and JSON
bodies, cursor pagination, list filters, OpenAPI and object ids."""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.api.app import create_app
from payrail.api.context import Services
from payrail.clock import ManualClock
from payrail.db.pool import open_pool
from payrail.tenants.service import NewMerchant
from tests.vaults import fixed_vault

Json = dict[str, Any]

ACCOUNTS = "/v1/ledger/accounts"
TRANSACTIONS = "/v1/ledger/transactions"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
REQUEST_ID = re.compile(r"req_[A-Za-z0-9]{24}")
OBJECT_ID = r"_[A-Za-z0-9]{24}"


def error_of(reply: httpx.Response) -> Json:
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict)
    assert isinstance(error["type"], str)
    assert isinstance(error["message"], str)
    assert error["message"]
    assert set(error) <= {"type", "code", "message", "param"}
    return error


async def create_account(
    http: httpx.AsyncClient, headers: dict[str, str], name: str = "cash", **extra: Any
) -> Json:
    body = {"name": name, "type": "asset", "currency": "usd", **extra}
    reply = await http.post(ACCOUNTS, json=body, headers=headers)
    assert reply.status_code == 200, reply.text
    account: Json = reply.json()
    return account


async def create_transaction(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    external_id: str,
    debit: str,
    credit: str,
    amount: int = 100,
    **extra: Any,
) -> Json:
    body = {
        "external_id": external_id,
        "entries": [
            {"account": debit, "direction": "debit", "amount": amount},
            {"account": credit, "direction": "credit", "amount": amount},
        ],
        **extra,
    }
    reply = await http.post(TRANSACTIONS, json=body, headers=headers)
    assert reply.status_code == 200, reply.text
    created: Json = reply.json()
    return created


async def ledger_pair(http: httpx.AsyncClient, headers: dict[str, str]) -> tuple[str, str]:
    cash = await create_account(http, headers, "cash")
    revenue = await create_account(http, headers, "sales", type="revenue")
    return cash["id"], revenue["id"]


# --- Request-Id -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "authenticated", "status"),
    [
        ("GET", ACCOUNTS, True, 200),
        ("GET", ACCOUNTS, False, 401),
        ("GET", "/v1/nowhere", True, 404),
        ("DELETE", ACCOUNTS, True, 405),
        ("GET", f"{ACCOUNTS}/lacc_missing", True, 404),
        ("GET", f"{ACCOUNTS}?limit=0", True, 400),
        ("POST", TRANSACTIONS, True, 400),
        ("GET", "/openapi.json", False, 200),
    ],
)
async def test_request_id_on_every_response(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    method: str,
    path: str,
    authenticated: bool,
    status: int,
) -> None:
    ids = set()
    for _ in range(2):
        reply = await client.request(method, path, headers=auth if authenticated else {})
        assert reply.status_code == status, reply.text
        assert REQUEST_ID.fullmatch(reply.headers["request-id"])
        assert len(reply.headers.get_list("request-id")) == 1
        ids.add(reply.headers["request-id"])
        if status >= 400:
            error_of(reply)
    assert len(ids) == 2


async def test_request_id_and_error_shape_on_internal_errors(database_url: str) -> None:
    """An unexpected failure (here: the database is unreachable) is a Stripe-shaped 500
    `api_error` that still carries its Request-Id, whichever route it happens on."""
    broken = await open_pool(database_url, min_size=1, max_size=1)
    await broken.close()
    app = create_app(Services(pool=broken, clock=ManualClock(), vault=fixed_vault()))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    headers = {"Authorization": "Bearer sk_test_whatever"}
    async with httpx.AsyncClient(transport=transport, base_url="http://payrail.test") as http:
        for method, path in (
            ("GET", ACCOUNTS),
            ("GET", f"{ACCOUNTS}/lacc_x"),
            ("POST", TRANSACTIONS),
        ):
            reply = await http.request(method, path, headers=headers)
            assert reply.status_code == 500, (path, reply.status_code)
            assert error_of(reply) == {
                "type": "api_error",
                "message": "An internal error occurred.",
            }
            assert "request-id" in reply.headers, f"{method} {path}: 500 without Request-Id"
            assert REQUEST_ID.fullmatch(reply.headers["request-id"])


# --- Authentication -------------------------------------------------------------------------------


async def test_missing_key_is_401(client: httpx.AsyncClient) -> None:
    reply = await client.get(ACCOUNTS)
    assert reply.status_code == 401
    assert error_of(reply) == {
        "type": "invalid_request_error",
        "message": "You did not provide an API key. Provide it in the Authorization header,"
        " as 'Authorization: Bearer YOUR_SECRET_KEY'.",
    }


@pytest.mark.parametrize(
    "secret",
    [
        "sk_test_" + "A" * 28 + "wxyz",
        "sk_live_" + "B" * 28 + "wxyz",
        "rk_test_not_a_secret_key_at_all_wxyz",
    ],
)
async def test_bad_key_is_401_without_echoing_it(
    client: httpx.AsyncClient, merchant: NewMerchant, secret: str
) -> None:
    for scheme_headers in (
        {"Authorization": f"Bearer {secret}"},
        {"Authorization": "Basic " + base64.b64encode(f"{secret}:".encode()).decode()},
    ):
        reply = await client.get(ACCOUNTS, headers=scheme_headers)
        assert reply.status_code == 401
        error = error_of(reply)
        assert error["type"] == "invalid_request_error"
        assert secret not in error["message"]
        assert secret[8:-4] not in error["message"]
        assert error["message"].startswith("Invalid API Key provided: ")
        assert error["message"].endswith("wxyz")
    # A real key with its last character changed is just as unknown.
    almost = merchant.test_secret[:-1] + ("x" if merchant.test_secret[-1] != "x" else "y")
    reply = await client.get(ACCOUNTS, headers={"Authorization": f"Bearer {almost}"})
    assert reply.status_code == 401
    assert almost not in error_of(reply)["message"]


@pytest.mark.parametrize(
    "header", ["Token abc", "Basic !!!not-base64", "Digest username=x", "Bearer"]
)
async def test_malformed_authorization_is_401(client: httpx.AsyncClient, header: str) -> None:
    reply = await client.get(ACCOUNTS, headers={"Authorization": header})
    assert reply.status_code == 401
    assert error_of(reply)["type"] == "invalid_request_error"


async def test_basic_auth_like_curl_u(client: httpx.AsyncClient, merchant: NewMerchant) -> None:
    account = await create_account(client, {"Authorization": f"Bearer {merchant.test_secret}"})
    reply = await client.get(f"{ACCOUNTS}/{account['id']}", auth=(merchant.test_secret, ""))
    assert reply.status_code == 200, reply.text
    assert reply.json() == account
    # curl -u sk_test_...: sends "user:" with an empty password; a password is ignored too.
    reply = await client.get(ACCOUNTS, auth=(merchant.test_secret, "ignored"))
    assert reply.status_code == 200
    assert [a["id"] for a in reply.json()["data"]] == [account["id"]]


async def test_test_and_live_modes_are_isolated(
    client: httpx.AsyncClient, merchant: NewMerchant
) -> None:
    test = {"Authorization": f"Bearer {merchant.test_secret}"}
    live = {"Authorization": f"Bearer {merchant.live_secret}"}
    cash, revenue = await ledger_pair(client, test)
    tx = await create_transaction(client, test, "order-1", cash, revenue)
    assert tx["livemode"] is False
    for path in (
        f"{ACCOUNTS}/{cash}",
        f"{ACCOUNTS}/{cash}/balances",
        f"{TRANSACTIONS}/{tx['id']}",
    ):
        reply = await client.get(path, headers=live)
        assert reply.status_code == 404, path
        assert error_of(reply)["code"] == "resource_missing"
    reply = await client.post(f"{TRANSACTIONS}/{tx['id']}/reverse", headers=live)
    assert reply.status_code == 404
    for path in (ACCOUNTS, TRANSACTIONS):
        listed = await client.get(path, headers=live)
        assert listed.json()["data"] == []
    # The live key cannot post against test accounts either.
    reply = await client.post(
        TRANSACTIONS,
        json={
            "external_id": "order-live",
            "entries": [
                {"account": cash, "direction": "debit", "amount": 1},
                {"account": revenue, "direction": "credit", "amount": 1},
            ],
        },
        headers=live,
    )
    assert reply.status_code == 404
    assert error_of(reply)["param"] == "entries[0][account]"
    # And the other way round.
    live_account = await create_account(client, live, "live cash")
    assert live_account["livemode"] is True
    assert (await client.get(f"{ACCOUNTS}/{live_account['id']}", headers=test)).status_code == 404


# --- Unknown URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/nowhere"),
        ("GET", "/"),
        ("POST", "/v1/ledger"),
        ("GET", "/v2/ledger/accounts"),
        ("GET", f"{ACCOUNTS}/lacc_x/nothing"),
        ("PUT", f"{ACCOUNTS}/lacc_x"),
        ("GET", f"{ACCOUNTS}/"),
        ("POST", f"{TRANSACTIONS}/"),
    ],
)
async def test_unknown_url_is_stripe_shaped_404(
    client: httpx.AsyncClient, auth: dict[str, str], method: str, path: str
) -> None:
    reply = await client.request(method, path, headers=auth)
    assert reply.status_code in (404, 405), (reply.status_code, reply.headers)
    assert error_of(reply) == {
        "type": "invalid_request_error",
        "message": f"Unrecognized request URL ({method}: {path}).",
    }
    assert REQUEST_ID.fullmatch(reply.headers["request-id"])


# --- Form and JSON bodies -------------------------------------------------------------------------


async def test_form_and_json_accounts_are_equal(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    form = (
        "name=Cash&type=asset&currency=usd&non_negative=true&metadata[order_id]=42"
        "&metadata[note]=&metadata[x%20y]=a%26b"
    )
    by_form = await client.post(ACCOUNTS, content=form, headers={**auth, **FORM})
    # curl -d without a Content-Type header still means a form.
    by_curl = await client.post(ACCOUNTS, content=form.encode(), headers=auth)
    by_json = await client.post(
        ACCOUNTS,
        json={
            "name": "Cash",
            "type": "asset",
            "currency": "usd",
            "non_negative": True,
            "metadata": {"order_id": "42", "note": "", "x y": "a&b"},
        },
        headers=auth,
    )
    objects = []
    for reply in (by_form, by_curl, by_json):
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body.pop("id").startswith("lacc_")
        objects.append(body)
    assert objects[0] == objects[1] == objects[2]
    assert objects[0]["metadata"] == {"order_id": "42", "note": "", "x y": "a&b"}
    assert objects[0]["non_negative"] is True


async def test_form_and_json_transactions_are_equal(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    cash, revenue = await ledger_pair(client, auth)
    form = urlencode(
        [
            ("external_id", "order-form"),
            ("entries[0][account]", cash),
            ("entries[0][direction]", "debit"),
            ("entries[0][amount]", "1250"),
            ("entries[1][account]", revenue),
            ("entries[1][direction]", "credit"),
            ("entries[1][amount]", "1250"),
            ("pending", "true"),
            ("description", "Order #42"),
            ("metadata[order_id]", "42"),
            ("effective_at", "1767225600"),
        ]
    )
    by_form = await client.post(TRANSACTIONS, content=form, headers={**auth, **FORM})
    by_json = await client.post(
        TRANSACTIONS,
        json={
            "external_id": "order-json",
            "entries": [
                {"account": cash, "direction": "debit", "amount": 1250},
                {"account": revenue, "direction": "credit", "amount": 1250},
            ],
            "pending": True,
            "description": "Order #42",
            "metadata": {"order_id": "42"},
            "effective_at": 1767225600,
        },
        headers=auth,
    )
    assert by_form.status_code == 200, by_form.text
    assert by_json.status_code == 200, by_json.text
    a, b = by_form.json(), by_json.json()
    assert a.pop("external_id") == "order-form"
    assert b.pop("external_id") == "order-json"
    assert a.pop("id") != b.pop("id")
    assert a == b
    assert a["status"] == "pending"
    assert a["entries"] == [
        {"account": cash, "direction": "debit", "amount": 1250, "currency": "usd"},
        {"account": revenue, "direction": "credit", "amount": 1250, "currency": "usd"},
    ]
    # The form path (entries[i][...]) also works for the batch endpoint.
    batch = urlencode(
        [
            ("transactions[0][external_id]", "batch-1"),
            ("transactions[0][entries][0][account]", cash),
            ("transactions[0][entries][0][direction]", "debit"),
            ("transactions[0][entries][0][amount]", "5"),
            ("transactions[0][entries][1][account]", revenue),
            ("transactions[0][entries][1][direction]", "credit"),
            ("transactions[0][entries][1][amount]", "5"),
        ]
    )
    reply = await client.post(f"{TRANSACTIONS}/batch", content=batch, headers={**auth, **FORM})
    assert reply.status_code == 200, reply.text
    assert [t["external_id"] for t in reply.json()["data"]] == ["batch-1"]
    # Partial post through a form: amount=...
    posted = await client.post(
        f"{TRANSACTIONS}/{by_form.json()['id']}/post",
        content="amount=1000",
        headers={**auth, **FORM},
    )
    assert posted.status_code == 200, posted.text
    assert [e["amount"] for e in posted.json()["entries"]] == [1000, 1000]


# --- Cursor pagination ----------------------------------------------------------------------------


async def create_many(
    client: httpx.AsyncClient, auth: dict[str, str], kind: str, count: int
) -> list[str]:
    """`count` objects of `kind`, returned newest first."""
    ids: list[str] = []
    if kind == "accounts":
        for i in range(count):
            ids.append((await create_account(client, auth, f"account {i}"))["id"])
    else:
        cash, revenue = await ledger_pair(client, auth)
        for i in range(count):
            ids.append((await create_transaction(client, auth, f"order-{i}", cash, revenue))["id"])
    return ids[::-1]


async def page(
    client: httpx.AsyncClient, auth: dict[str, str], path: str, **params: Any
) -> tuple[list[str], bool]:
    reply = await client.get(path, params=params, headers=auth)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["object"] == "list"
    assert body["url"] == path
    return [item["id"] for item in body["data"]], body["has_more"]


@pytest.mark.parametrize("kind", ["accounts", "transactions"])
async def test_cursor_pagination_walks_everything_once(
    client: httpx.AsyncClient, auth: dict[str, str], kind: str
) -> None:
    path = f"/v1/ledger/{kind}"
    newest_first = await create_many(client, auth, kind, 25)

    collected: list[str] = []
    pages: list[tuple[int, bool]] = []
    cursor: dict[str, str] = {}
    while True:
        ids, has_more = await page(client, auth, path, limit=10, **cursor)
        collected += ids
        pages.append((len(ids), has_more))
        if not has_more:
            break
        cursor = {"starting_after": ids[-1]}
    assert pages == [(10, True), (10, True), (5, False)]
    assert collected == newest_first
    assert len(set(collected)) == 25

    # ending_before walks back from the oldest towards the newest, each page newest first.
    back: list[list[str]] = []
    before = newest_first[-1]
    while True:
        ids, has_more = await page(client, auth, path, limit=10, ending_before=before)
        back.append(ids)
        if not has_more:
            break
        before = ids[0]
    assert back == [newest_first[14:24], newest_first[4:14], newest_first[0:4]]

    assert await page(client, auth, path) == (newest_first[:10], True)
    assert await page(client, auth, path, limit=100) == (newest_first, False)
    assert await page(client, auth, path, limit=1) == (newest_first[:1], True)
    assert await page(client, auth, path, starting_after=newest_first[-1]) == ([], False)
    assert await page(client, auth, path, ending_before=newest_first[0]) == ([], False)
    assert await page(client, auth, path, limit=3, starting_after=newest_first[20]) == (
        newest_first[21:24],
        True,
    )


@pytest.mark.parametrize("kind", ["accounts", "transactions"])
@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "", "10.5", "1e1"])
async def test_limit_out_of_bounds_is_400(
    client: httpx.AsyncClient, auth: dict[str, str], kind: str, limit: str
) -> None:
    reply = await client.get(f"/v1/ledger/{kind}", params={"limit": limit}, headers=auth)
    assert reply.status_code == 400
    error = error_of(reply)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "limit"


@pytest.mark.parametrize("kind", ["accounts", "transactions"])
async def test_cursor_errors_are_400(
    client: httpx.AsyncClient, auth: dict[str, str], kind: str
) -> None:
    path = f"/v1/ledger/{kind}"
    ids = await create_many(client, auth, kind, 3)
    reply = await client.get(
        path, params={"starting_after": ids[0], "ending_before": ids[2]}, headers=auth
    )
    assert reply.status_code == 400
    assert error_of(reply)["param"] in ("starting_after", "ending_before")

    cash = await create_account(client, auth, "not a transaction")
    wrong_kind = cash["id"] if kind == "transactions" else "ltx_" + "x" * 24
    for param in ("starting_after", "ending_before"):
        for cursor in ("lacc_nope", "ltx_nope", wrong_kind):
            reply = await client.get(path, params={param: cursor}, headers=auth)
            assert reply.status_code == 400, reply.text
            error = error_of(reply)
            assert error["param"] == param
            assert error["code"] == "resource_missing"
            assert cursor in error["message"]


# --- List filters ---------------------------------------------------------------------------------


async def test_transaction_list_filters(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    cash, revenue = await ledger_pair(client, auth)
    bank = (await create_account(client, auth, "bank"))["id"]
    posted = await create_transaction(client, auth, "posted-1", cash, revenue)
    pending = await create_transaction(client, auth, "pending-1", bank, revenue, pending=True)
    voided = await create_transaction(client, auth, "voided-1", cash, revenue, pending=True)
    assert (await client.post(f"{TRANSACTIONS}/{voided['id']}/void", headers=auth)).is_success
    later = await create_transaction(client, auth, "posted-2", bank, revenue)

    async def ids(**params: Any) -> list[str]:
        return (await page(client, auth, TRANSACTIONS, **params))[0]

    assert await ids(status="posted") == [later["id"], posted["id"]]
    assert await ids(status="pending") == [pending["id"]]
    assert await ids(status="voided") == [voided["id"]]
    assert await ids(account=bank) == [later["id"], pending["id"]]
    assert await ids(account=cash) == [voided["id"], posted["id"]]
    assert await ids(account=revenue, status="posted") == [later["id"], posted["id"]]
    assert await ids(account=bank, status="voided") == []
    assert await ids(external_id="pending-1") == [pending["id"]]
    assert await ids(external_id="nope") == []
    assert await ids(account="lacc_nope") == []
    assert await ids(status="posted", limit=1, starting_after=later["id"]) == [posted["id"]]
    assert await page(client, auth, TRANSACTIONS, account=revenue, limit=3) == (
        [later["id"], voided["id"], pending["id"]],
        True,
    )

    for params, param in (({"status": "settled"}, "status"), ({"currency": "usd"}, "currency")):
        reply = await client.get(TRANSACTIONS, params=params, headers=auth)
        assert reply.status_code == 400
        assert error_of(reply)["param"] == param
    reply = await client.get(ACCOUNTS, params={"status": "posted"}, headers=auth)
    assert reply.status_code == 400
    assert error_of(reply) == {
        "type": "invalid_request_error",
        "code": "parameter_unknown",
        "message": "Received unknown parameter: status",
        "param": "status",
    }


# --- OpenAPI --------------------------------------------------------------------------------------


async def test_openapi_is_served_and_complete(client: httpx.AsyncClient) -> None:
    reply = await client.get("/openapi.json")
    assert reply.status_code == 200
    spec = reply.json()
    assert spec["openapi"].startswith("3.")
    expected = {
        ("post", "/v1/ledger/accounts"),
        ("get", "/v1/ledger/accounts"),
        ("get", "/v1/ledger/accounts/{account_id}"),
        ("get", "/v1/ledger/accounts/{account_id}/balances"),
        ("post", "/v1/ledger/transactions"),
        ("post", "/v1/ledger/transactions/batch"),
        ("get", "/v1/ledger/transactions"),
        ("get", "/v1/ledger/transactions/{transaction_id}"),
        ("post", "/v1/ledger/transactions/{transaction_id}/post"),
        ("post", "/v1/ledger/transactions/{transaction_id}/void"),
        ("post", "/v1/ledger/transactions/{transaction_id}/reverse"),
        ("post", "/v1/payment_methods"),
        ("get", "/v1/payment_methods"),
        ("get", "/v1/payment_methods/{payment_method_id}"),
        ("post", "/v1/payment_methods/{payment_method_id}/attach"),
        ("post", "/v1/payment_methods/{payment_method_id}/detach"),
        ("post", "/v1/customers"),
        ("get", "/v1/customers"),
        ("get", "/v1/customers/{customer_id}"),
        ("post", "/v1/customers/{customer_id}"),
        ("delete", "/v1/customers/{customer_id}"),
        ("get", "/v1/customers/{customer_id}/payment_methods"),
        ("post", "/v1/connector_accounts"),
        ("get", "/v1/connector_accounts"),
        ("get", "/v1/connector_accounts/{connector_account_id}"),
        ("post", "/v1/connector_accounts/{connector_account_id}"),
        ("post", "/v1/routing_rules"),
        ("get", "/v1/routing_rules"),
        ("get", "/v1/routing_rules/{routing_rule_id}"),
        ("delete", "/v1/routing_rules/{routing_rule_id}"),
        ("post", "/v1/payment_intents"),
        ("get", "/v1/payment_intents"),
        ("get", "/v1/payment_intents/{intent_id}"),
        ("post", "/v1/payment_intents/{intent_id}"),
        ("post", "/v1/payment_intents/{intent_id}/confirm"),
        ("post", "/v1/payment_intents/{intent_id}/capture"),
        ("post", "/v1/payment_intents/{intent_id}/cancel"),
        ("post", "/v1/refunds"),
        ("get", "/v1/refunds"),
        ("get", "/v1/refunds/{refund_id}"),
        ("get", "/v1/disputes"),
        ("get", "/v1/disputes/{dispute_id}"),
        ("post", "/v1/webhook_endpoints"),
        ("get", "/v1/webhook_endpoints"),
        ("get", "/v1/webhook_endpoints/{webhook_endpoint_id}"),
        ("post", "/v1/webhook_endpoints/{webhook_endpoint_id}"),
        ("delete", "/v1/webhook_endpoints/{webhook_endpoint_id}"),
        ("get", "/v1/webhook_deliveries"),
        ("get", "/v1/webhook_deliveries/{delivery_id}"),
        ("get", "/v1/webhook_deliveries/{delivery_id}/attempts"),
        ("post", "/v1/webhook_deliveries/{delivery_id}/retry"),
        ("get", "/v1/events"),
        ("get", "/v1/events/{event_id}"),
        ("post", "/v1/products"),
        ("get", "/v1/products"),
        ("get", "/v1/products/{product_id}"),
        ("post", "/v1/products/{product_id}"),
        ("delete", "/v1/products/{product_id}"),
        ("post", "/v1/prices"),
        ("get", "/v1/prices"),
        ("get", "/v1/prices/{price_id}"),
        ("post", "/v1/prices/{price_id}"),
        ("post", "/v1/test_helpers/test_clocks"),
        ("get", "/v1/test_helpers/test_clocks"),
        ("get", "/v1/test_helpers/test_clocks/{test_clock_id}"),
        ("delete", "/v1/test_helpers/test_clocks/{test_clock_id}"),
        ("post", "/v1/test_helpers/test_clocks/{test_clock_id}/advance"),
        ("post", "/v1/subscriptions"),
        ("get", "/v1/subscriptions"),
        ("get", "/v1/subscriptions/{subscription_id}"),
        ("post", "/v1/subscriptions/{subscription_id}"),
        ("delete", "/v1/subscriptions/{subscription_id}"),
        ("post", "/v1/subscriptions/{subscription_id}/resume"),
        ("get", "/v1/invoices"),
        ("get", "/v1/invoices/{invoice_id}"),
        ("get", "/v1/invoices/{invoice_id}/lines"),
        ("post", "/v1/invoices/{invoice_id}/pay"),
        ("post", "/v1/invoices/{invoice_id}/finalize"),
        ("post", "/v1/invoices/{invoice_id}/void"),
        ("post", "/v1/invoices/{invoice_id}/mark_uncollectible"),
        ("post", "/v1/credit_notes"),
        ("get", "/v1/credit_notes"),
        ("get", "/v1/credit_notes/{credit_note_id}"),
        ("post", "/v1/credit_notes/{credit_note_id}/void"),
        ("get", "/v1/dunning/policy"),
        ("post", "/v1/dunning/policy"),
        ("get", "/v1/reports/failed_payments"),
        ("get", "/v1/reconciliation_runs"),
        ("get", "/v1/reconciliation_runs/{run_id}"),
        ("get", "/v1/reconciliation_breaks"),
        ("get", "/v1/reconciliation_breaks/{break_id}"),
        ("post", "/v1/reconciliation_breaks/{break_id}/resolve"),
    }
    found = {
        (method, path)
        for path, operations in spec["paths"].items()
        if path.startswith("/v1")
        for method in operations
    }
    assert found == expected
    for method, path in expected:
        if method == "post":
            content = spec["paths"][path]["post"]["requestBody"]["content"]
            assert set(content) == {"application/json", "application/x-www-form-urlencoded"}

    schema = spec["paths"][TRANSACTIONS]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    assert schema["type"] == "object"
    assert set(schema["required"]) == {"external_id", "entries"}
    assert schema["additionalProperties"] is False
    entries = schema["properties"]["entries"]
    assert (entries["type"], entries["minItems"], entries["maxItems"]) == ("array", 2, 100)
    entry = entries["items"]
    assert set(entry["required"]) == {"account", "direction", "amount"}
    assert entry["properties"]["direction"]["enum"] == ["debit", "credit"]
    # Amount bounds must use JSON Schema's own keywords, or generated clients drop them.
    assert entry["properties"]["amount"] == {
        "type": "integer",
        "title": "Amount",
        "exclusiveMinimum": 0,
        "maximum": 10**15,
    }


# --- One object, one shape ------------------------------------------------------------------------


async def test_created_object_equals_retrieved_listed_and_event_payload(
    client: httpx.AsyncClient, auth: dict[str, str], pool: AsyncConnectionPool
) -> None:
    cash, revenue = await ledger_pair(client, auth)
    fee = (await create_account(client, auth, "fees", type="expense"))["id"]
    created = {
        "posted": await create_transaction(
            client,
            auth,
            "split-1",
            cash,
            revenue,
            amount=1000,
            description="split",
            metadata={"order_id": "42"},
            effective_at=1767139200,
        ),
        "pending": await create_transaction(client, auth, "hold-1", cash, revenue, pending=True),
        "three-way": (
            await client.post(
                TRANSACTIONS,
                json={
                    "external_id": "three-way",
                    "entries": [
                        {"account": cash, "direction": "debit", "amount": 970},
                        {"account": fee, "direction": "debit", "amount": 30},
                        {"account": revenue, "direction": "credit", "amount": 1000},
                    ],
                },
                headers=auth,
            )
        ).json(),
    }
    assert created["three-way"]["object"] == "ledger_transaction", created["three-way"]
    reply = await client.post(f"{TRANSACTIONS}/{created['posted']['id']}/reverse", headers=auth)
    assert reply.status_code == 200, reply.text
    created["reversal"] = reply.json()
    reply = await client.post(f"{TRANSACTIONS}/{created['pending']['id']}/post", headers=auth)
    assert reply.status_code == 200, reply.text
    created["posted-later"] = reply.json()

    listed = {
        t["id"]: t
        for t in (await client.get(TRANSACTIONS, params={"limit": 100}, headers=auth)).json()[
            "data"
        ]
    }
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT type, aggregate_id, payload FROM events WHERE aggregate_type ="
                " 'ledger_transaction' ORDER BY seq"
            )
        ).fetchall()
    payloads = {(row[0], row[1]): row[2] for row in rows}

    assert created["reversal"]["reverses"] == created["posted"]["id"]
    assert created["posted"]["effective_at"] == 1767139200
    for name in ("reversal", "three-way"):
        obj = created[name]
        assert (await client.get(f"{TRANSACTIONS}/{obj['id']}", headers=auth)).json() == obj, name
        assert listed[obj["id"]] == obj, name
        assert payloads[("ledger.transaction.posted", obj["id"])] == obj, name
    assert payloads[("ledger.transaction.pending", created["pending"]["id"])] == created["pending"]
    assert (
        payloads[("ledger.transaction.posted", created["pending"]["id"])]
        == (created["posted-later"])
    )
    final = (await client.get(f"{TRANSACTIONS}/{created['posted']['id']}", headers=auth)).json()
    assert final == {**created["posted"], "reversed_by": created["reversal"]["id"]}
    assert payloads[("ledger.transaction.posted", created["posted"]["id"])] == created["posted"]
    assert payloads[("ledger.transaction.reversed", created["posted"]["id"])] == final
    assert listed[created["posted"]["id"]] == final


# --- Object ids -----------------------------------------------------------------------------------


async def test_stripe_shaped_ids(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
) -> None:
    cash, revenue = await ledger_pair(client, auth)
    tx = await create_transaction(client, auth, "order-1", cash, revenue)
    assert re.fullmatch("lacc" + OBJECT_ID, cash)
    assert re.fullmatch("lacc" + OBJECT_ID, revenue)
    assert re.fullmatch("ltx" + OBJECT_ID, tx["id"])
    assert tx["object"] == "ledger_transaction"
    assert re.fullmatch("mer" + OBJECT_ID, merchant.id)
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT id, type, aggregate_id FROM events WHERE merchant_id = %s AND NOT livemode"
                " ORDER BY seq",
                (merchant.id,),
            )
        ).fetchall()
    assert [(row[1], row[2]) for row in rows] == [
        ("merchant.created", merchant.id),
        ("ledger.account.created", cash),
        ("ledger.account.created", revenue),
        ("ledger.transaction.posted", tx["id"]),
    ]
    for row in rows:
        assert re.fullmatch("evt" + OBJECT_ID, row[0])
    assert len({row[0] for row in rows}) == len(rows)
