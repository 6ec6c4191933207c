"""Bad input of every kind: a 4xx Stripe error naming the offending field in bracket
notation, and nothing written anywhere.

Every case is sent with a fresh Idempotency-Key. A request refused before it executes
(parameter validation) must leave every table as it was, idempotency_keys included; one
refused while executing (unknown account, unbalanced, wrong state) stores its error under
the key, and changes nothing else.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from payrail.api.app import create_app
from payrail.api.context import Services
from payrail.clock import ManualClock
from payrail.db.migrate import with_database
from payrail.db.pool import open_pool
from payrail.tenants.service import create_merchant
from tests.vaults import fixed_vault

Json = dict[str, Any]

ACCOUNTS = "/v1/ledger/accounts"
TRANSACTIONS = "/v1/ledger/transactions"
BATCH = "/v1/ledger/transactions/batch"
FORM = "application/x-www-form-urlencoded"
MAX_AMOUNT = 10**15


@dataclass(frozen=True)
class Ledger:
    """What every case may refer to: accounts and transactions in each state."""

    usd_a: str  # asset, USD
    usd_b: str  # revenue, USD
    eur_a: str  # asset, EUR
    eur_b: str  # revenue, EUR
    wallet: str  # asset, USD, non_negative, empty
    pending: str  # usd_a/usd_b, 100, pending
    posted: str  # usd_a/usd_b, 100, posted, external_id "posted-1"
    voided: str
    reversal: str


@dataclass(frozen=True)
class Req:
    path: str
    json: object = None
    content: bytes | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


Stage = Literal["validation", "execution", "unkeyed"]


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Ledger], Req]
    status: int
    param: str | None
    code: str | None = None
    stage: Stage = "validation"


async def make_account(
    client: httpx.AsyncClient, auth: dict[str, str], type_: str, currency: str, **extra: Any
) -> str:
    body = {"name": f"{type_} {currency}", "type": type_, "currency": currency, **extra}
    reply = await client.post(ACCOUNTS, json=body, headers=auth)
    assert reply.status_code == 200, reply.text
    account_id: str = reply.json()["id"]
    return account_id


async def call(client: httpx.AsyncClient, auth: dict[str, str], path: str, body: Json) -> Json:
    reply = await client.post(path, json=body, headers=auth)
    assert reply.status_code == 200, reply.text
    obj: Json = reply.json()
    return obj


def pair(external_id: str, debit: str, credit: str, amount: int = 100, **extra: Any) -> Json:
    return {
        "external_id": external_id,
        "entries": [
            {"account": debit, "direction": "debit", "amount": amount},
            {"account": credit, "direction": "credit", "amount": amount},
        ],
        **extra,
    }


@pytest.fixture(scope="module")
def module_database(server_url: str, template: str) -> Iterator[str]:
    """One database for the whole module: every case leaves it as it found it (that is
    what is tested), so sharing it costs nothing and saves a clone per case."""
    name = f"test_bad_input_{secrets.token_hex(6)}"
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY file_copy").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    yield with_database(server_url, name)
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
async def db(module_database: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(module_database, min_size=1, max_size=5)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def api(db: AsyncConnectionPool) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(
        app=create_app(Services(pool=db, clock=ManualClock(), vault=fixed_vault()))
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://payrail.test") as http:
        yield http


@pytest.fixture(scope="module")
async def key(db: AsyncConnectionPool) -> dict[str, str]:
    async with db.connection() as conn:
        merchant = await create_merchant(conn, ManualClock(), "Bad Input Ltd")
    return {"Authorization": f"Bearer {merchant.test_secret}"}


@pytest.fixture(scope="module")
async def ledger(api: httpx.AsyncClient, key: dict[str, str]) -> Ledger:
    usd_a = await make_account(api, key, "asset", "usd")
    usd_b = await make_account(api, key, "revenue", "usd")
    eur_a = await make_account(api, key, "asset", "eur")
    eur_b = await make_account(api, key, "revenue", "eur")
    wallet = await make_account(api, key, "asset", "usd", non_negative=True)
    pending = await call(api, key, TRANSACTIONS, pair("pending-1", usd_a, usd_b, pending=True))
    posted = await call(api, key, TRANSACTIONS, pair("posted-1", usd_a, usd_b))
    voided = await call(api, key, TRANSACTIONS, pair("voided-1", usd_a, usd_b, pending=True))
    await call(api, key, f"{TRANSACTIONS}/{voided['id']}/void", {})
    original = await call(api, key, TRANSACTIONS, pair("reversed-1", usd_a, usd_b))
    reversal = await call(api, key, f"{TRANSACTIONS}/{original['id']}/reverse", {})
    return Ledger(
        usd_a,
        usd_b,
        eur_a,
        eur_b,
        wallet,
        pending["id"],
        posted["id"],
        voided["id"],
        reversal["id"],
    )


async def snapshot(pool: AsyncConnectionPool) -> dict[str, int]:
    """Row counts of every table in the public schema but alembic_version."""
    async with pool.connection() as conn:
        tables = [
            row[0]
            for row in await (
                await conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                    " AND table_type = 'BASE TABLE' AND table_name <> 'alembic_version'"
                    " ORDER BY table_name"
                )
            ).fetchall()
        ]
        counts: dict[str, int] = {}
        for table in tables:
            row = await (await conn.execute(f'SELECT count(*) FROM "{table}"')).fetchone()
            assert row is not None
            counts[table] = row[0]
    assert {"ledger_entries", "ledger_transactions", "events", "idempotency_keys"} <= set(counts)
    return counts


# --- Request builders -----------------------------------------------------------------------------


def tx(lg: Ledger, external_id: object = "bad-1", **overrides: Any) -> Req:
    """A valid USD transaction body with some fields replaced (None deletes one)."""
    body: Json = pair("", lg.usd_a, lg.usd_b)
    if external_id is None:
        del body["external_id"]
    else:
        body["external_id"] = external_id
    for name, value in overrides.items():
        if value is None:
            del body[name]
        else:
            body[name] = value
    return Req(TRANSACTIONS, json=body)


def amounts(first: object, second: object, external_id: str = "bad-1") -> Callable[[Ledger], Req]:
    def build(lg: Ledger) -> Req:
        return tx(
            lg,
            external_id,
            entries=[
                {"account": lg.usd_a, "direction": "debit", "amount": first},
                {"account": lg.usd_b, "direction": "credit", "amount": second},
            ],
        )

    return build


def entries(*rows: tuple[str, str, object], external_id: str = "bad-1") -> Callable[[Ledger], Req]:
    """Entries as (account field of Ledger, direction, amount)."""

    def build(lg: Ledger) -> Req:
        return tx(
            lg,
            external_id,
            entries=[
                {"account": getattr(lg, a, a), "direction": d, "amount": m} for a, d, m in rows
            ],
        )

    return build


def with_entry(index: int, **fields: object) -> Callable[[Ledger], Req]:
    """The valid body with fields of entries[index] replaced (None deletes one)."""

    def build(lg: Ledger) -> Req:
        req = tx(lg)
        assert isinstance(req.json, dict)
        entry = req.json["entries"][index]
        for name, value in fields.items():
            if value is None:
                del entry[name]
            else:
                entry[name] = value
        return req

    return build


def form_tx(
    *extra: tuple[str, str], first: str = "100", second: str = "100", external_id: str = "bad-1"
) -> Callable[[Ledger], Req]:
    def build(lg: Ledger) -> Req:
        pairs = [
            ("external_id", external_id),
            ("entries[0][account]", lg.usd_a),
            ("entries[0][direction]", "debit"),
            ("entries[0][amount]", first),
            ("entries[1][account]", lg.usd_b),
            ("entries[1][direction]", "credit"),
            ("entries[1][amount]", second),
            *extra,
        ]
        return Req(TRANSACTIONS, content=urlencode(pairs).encode(), content_type=FORM)

    return build


def raw(
    content: bytes, content_type: str | None = FORM, path: str = TRANSACTIONS
) -> Callable[[Ledger], Req]:
    return lambda lg: Req(path, content=content, content_type=content_type)


def account(**fields: object) -> Callable[[Ledger], Req]:
    body: Json = {"name": "cash", "type": "asset", "currency": "usd"}
    for name, value in fields.items():
        if value is None:
            del body[name]
        else:
            body[name] = value
    return lambda lg: Req(ACCOUNTS, json=body)


def action(target: str, verb: str, body: Json | None = None) -> Callable[[Ledger], Req]:
    return lambda lg: Req(f"{TRANSACTIONS}/{getattr(lg, target, target)}/{verb}", json=body or {})


def batch(*bodies: Callable[[Ledger], Json]) -> Callable[[Ledger], Req]:
    return lambda lg: Req(BATCH, json={"transactions": [b(lg) for b in bodies]})


def good(external_id: str) -> Callable[[Ledger], Json]:
    return lambda lg: pair(external_id, lg.usd_a, lg.usd_b)


def with_bad(external_id: str, **entry0: object) -> Callable[[Ledger], Json]:
    def build(lg: Ledger) -> Json:
        body = pair(external_id, lg.usd_a, lg.usd_b)
        body["entries"][0].update(entry0)
        return body

    return build


def form_account(form: str) -> Callable[[Ledger], Req]:
    return raw(form.encode(), FORM, ACCOUNTS)


ENTRY0 = "entries[0][amount]"
LONG_KEY = "k" * 41
FIFTY_ONE = {f"key{i}": "v" for i in range(51)}
MEGABYTE = 1 << 20

CASES: list[Case] = [
    # amounts: integers in minor units, 1..10**15, never floats or booleans
    Case("json-amount-float-10.5", amounts(10.5, 10.5), 400, ENTRY0, "parameter_invalid"),
    Case("json-amount-float-10.0", amounts(10.0, 10.0), 400, ENTRY0, "parameter_invalid"),
    Case("json-amount-float-second-entry", amounts(100, 100.0), 400, "entries[1][amount]"),
    Case("json-amount-float-exponent", amounts(1e2, 100), 400, ENTRY0),
    Case("form-amount-10.5", form_tx(first="10.5", second="10.5"), 400, ENTRY0),
    Case("form-amount-10.0", form_tx(first="10.0", second="10.0"), 400, ENTRY0),
    Case("form-amount-second-10.5", form_tx(second="10.5"), 400, "entries[1][amount]"),
    Case("json-amount-zero", amounts(0, 0), 400, ENTRY0, "parameter_invalid"),
    Case("form-amount-zero", form_tx(first="0", second="0"), 400, ENTRY0),
    Case("json-amount-negative", amounts(-100, -100), 400, ENTRY0),
    Case("form-amount-negative", form_tx(first="-100", second="-100"), 400, ENTRY0),
    Case("json-amount-true", amounts(True, True), 400, ENTRY0),
    Case("json-amount-false", amounts(False, False), 400, ENTRY0),
    Case("form-amount-true", form_tx(first="true", second="true"), 400, ENTRY0),
    Case("json-amount-over-max", amounts(MAX_AMOUNT + 1, MAX_AMOUNT + 1), 400, ENTRY0),
    Case("json-amount-over-int64", amounts(2**63, 2**63), 400, ENTRY0),
    Case("json-amount-over-uint64", amounts(10**20, 10**20), 400, ENTRY0),
    Case("form-amount-over-max", form_tx(first=str(MAX_AMOUNT + 1)), 400, ENTRY0),
    Case("form-amount-forty-digits", form_tx(first="9" * 40), 400, ENTRY0),
    Case("json-amount-non-numeric", amounts("ten", "ten"), 400, ENTRY0),
    Case("json-amount-decimal-string", amounts("10.5", "10.5"), 400, ENTRY0),
    Case("form-amount-non-numeric", form_tx(first="ten"), 400, ENTRY0),
    Case("form-amount-empty", form_tx(first=""), 400, ENTRY0),
    Case("form-amount-exponent", form_tx(first="1e2"), 400, ENTRY0),
    Case("form-amount-plus-sign", form_tx(first="+100"), 400, ENTRY0),
    Case("form-amount-padded", form_tx(first=" 100"), 400, ENTRY0),
    Case("form-amount-arabic-digits", form_tx(first="\u0661\u0660\u0660"), 400, ENTRY0),
    Case("form-amount-fullwidth-digits", form_tx(first="\uff11\uff10\uff10"), 400, ENTRY0),
    Case("json-amount-null", amounts(None, 100), 400, ENTRY0),
    Case("json-amount-object", amounts({"value": 100}, 100), 400, ENTRY0),
    Case("json-amount-list", amounts([100], 100), 400, ENTRY0),
    Case(
        "json-amount-missing",
        with_entry(1, amount=None),
        400,
        "entries[1][amount]",
        "parameter_missing",
    ),
    # currencies
    Case("currency-unknown", account(currency="ZZZ"), 400, "currency", "parameter_invalid"),
    Case("currency-no-minor-unit-XAU", account(currency="XAU"), 400, "currency"),
    Case("currency-no-minor-unit-xag", account(currency="xag"), 400, "currency"),
    Case("currency-number", account(currency=840), 400, "currency"),
    Case("currency-empty", account(currency=""), 400, "currency"),
    Case("currency-two-letters", account(currency="US"), 400, "currency"),
    Case("currency-padded", account(currency=" usd"), 400, "currency"),
    Case("currency-fullwidth", account(currency="\uff35\uff33\uff24"), 400, "currency"),
    Case("currency-missing", account(currency=None), 400, "currency", "parameter_missing"),
    # accounts referenced by entries
    Case(
        "unknown-account",
        with_entry(1, account="lacc_nope"),
        404,
        "entries[1][account]",
        "resource_missing",
        "execution",
    ),
    Case(
        "transaction-id-as-account",
        entries(("posted", "debit", 100), ("usd_b", "credit", 100)),
        404,
        "entries[0][account]",
        "resource_missing",
        "execution",
    ),
    Case("account-empty", with_entry(0, account=""), 400, "entries[0][account]"),
    Case("account-not-a-string", with_entry(0, account=7), 400, "entries[0][account]"),
    # entry counts and shapes
    Case("one-entry", entries(("usd_a", "debit", 100)), 400, "entries"),
    Case("no-entries", entries(), 400, "entries"),
    Case(
        "101-entries",
        lambda lg: tx(
            lg,
            entries=[
                {
                    "account": lg.usd_a if i % 2 else lg.usd_b,
                    "direction": "debit" if i else "credit",
                    "amount": 100 if i else 5000,
                }
                for i in range(101)
            ],
        ),
        400,
        "entries",
    ),
    Case("entries-not-a-list", lambda lg: tx(lg, entries="many"), 400, "entries"),
    Case("entries-items-not-objects", lambda lg: tx(lg, entries=["a", "b"]), 400, "entries[0]"),
    Case(
        "form-entries-named-not-indexed",
        raw(b"external_id=bad-1&entries[a][amount]=1&entries[b][amount]=1"),
        400,
        "entries",
    ),
    # balance: debits equal credits per currency
    Case("unbalanced", amounts(100, 99), 400, "entries", "transaction_unbalanced", "execution"),
    Case(
        "unbalanced-pending",
        lambda lg: tx(
            lg,
            pending=True,
            entries=[
                {"account": lg.usd_a, "direction": "debit", "amount": 100},
                {"account": lg.usd_b, "direction": "credit", "amount": 1},
            ],
        ),
        400,
        "entries",
        "transaction_unbalanced",
        "execution",
    ),
    Case(
        "balanced-only-across-currencies",
        entries(("usd_a", "debit", 100), ("eur_b", "credit", 100)),
        400,
        "entries",
        "transaction_unbalanced",
        "execution",
    ),
    Case(
        "one-currency-of-two-unbalanced",
        entries(
            ("usd_a", "debit", 100),
            ("usd_b", "credit", 100),
            ("eur_a", "debit", 100),
            ("eur_b", "credit", 99),
        ),
        400,
        "entries",
        "transaction_unbalanced",
        "execution",
    ),
    Case(
        "debits-only",
        entries(("usd_a", "debit", 100), ("usd_b", "debit", 100)),
        400,
        "entries",
        "transaction_unbalanced",
        "execution",
    ),
    # unknown and missing parameters
    Case("unknown-top-level", lambda lg: tx(lg, amount=100), 400, "amount", "parameter_unknown"),
    Case(
        "unknown-nested",
        with_entry(0, currency="usd"),
        400,
        "entries[0][currency]",
        "parameter_unknown",
    ),
    Case(
        "form-unknown-top-level",
        form_tx(("customer", "cus_1")),
        400,
        "customer",
        "parameter_unknown",
    ),
    Case(
        "missing-external-id",
        lambda lg: tx(lg, external_id=None),
        400,
        "external_id",
        "parameter_missing",
    ),
    Case("missing-entries", lambda lg: tx(lg, entries=None), 400, "entries", "parameter_missing"),
    Case(
        "missing-direction",
        with_entry(1, direction=None),
        400,
        "entries[1][direction]",
        "parameter_missing",
    ),
    Case("empty-body", raw(b""), 400, "external_id", "parameter_missing"),
    # external_id
    Case("external-id-empty", lambda lg: tx(lg, external_id=""), 400, "external_id"),
    Case("external-id-256", lambda lg: tx(lg, external_id="x" * 256), 400, "external_id"),
    Case("external-id-number", lambda lg: tx(lg, external_id=5), 400, "external_id"),
    Case("external-id-nul", lambda lg: tx(lg, external_id="bad\u00001"), 400, "external_id"),
    Case("form-external-id-nul", form_tx(external_id="bad\x001"), 400, "external_id"),
    # metadata: at most 50 keys of at most 40 characters, values at most 500
    Case("metadata-51-keys", lambda lg: tx(lg, metadata=FIFTY_ONE), 400, "metadata"),
    Case(
        "metadata-501-char-value",
        lambda lg: tx(lg, metadata={"note": "v" * 501}),
        400,
        "metadata[note]",
    ),
    Case(
        "metadata-41-char-key",
        lambda lg: tx(lg, metadata={LONG_KEY: "v"}),
        400,
        f"metadata[{LONG_KEY}]",
    ),
    Case("metadata-number-value", lambda lg: tx(lg, metadata={"n": 1}), 400, "metadata[n]"),
    Case("metadata-nested", lambda lg: tx(lg, metadata={"n": {"x": "y"}}), 400, "metadata[n]"),
    Case("metadata-not-a-map", lambda lg: tx(lg, metadata="tags"), 400, "metadata"),
    Case(
        "metadata-nul-value",
        lambda lg: tx(lg, metadata={"note": "a\u0000b"}),
        400,
        "metadata[note]",
    ),
    Case("form-metadata-501", form_tx(("metadata[note]", "v" * 501)), 400, "metadata[note]"),
    # other transaction fields
    Case("description-1001", lambda lg: tx(lg, description="d" * 1001), 400, "description"),
    Case("description-nul", lambda lg: tx(lg, description="a\u0000b"), 400, "description"),
    Case("pending-not-boolean", lambda lg: tx(lg, pending="maybe"), 400, "pending"),
    Case("effective-at-negative", lambda lg: tx(lg, effective_at=-1), 400, "effective_at"),
    Case(
        "effective-at-year-3000", lambda lg: tx(lg, effective_at=32503680001), 400, "effective_at"
    ),
    Case("effective-at-text", lambda lg: tx(lg, effective_at="tomorrow"), 400, "effective_at"),
    Case("direction-unknown", with_entry(0, direction="sideways"), 400, "entries[0][direction]"),
    Case("direction-uppercase", with_entry(0, direction="DEBIT"), 400, "entries[0][direction]"),
    # bodies that are not parameters at all
    Case("malformed-json", raw(b'{"external_id": "bad-1",', "application/json"), 400, None),
    Case("json-trailing-comma", raw(b'{"external_id": "bad-1",}', "application/json"), 400, None),
    Case("json-array", raw(b"[1, 2]", "application/json"), 400, None),
    Case("json-string", raw(b'"external_id"', "application/json"), 400, None),
    Case("json-null", raw(b"null", "application/json"), 400, None),
    Case("json-nan", raw(b'{"external_id": NaN}', "application/json"), 400, None),
    Case("text-plain", raw(b"external_id=bad-1", "text/plain"), 400, None),
    Case("multipart", raw(b"--x--", "multipart/form-data; boundary=x"), 400, None),
    Case("xml", raw(b"<tx/>", "application/xml"), 400, None),
    Case("form-invalid-utf8", raw(b"external_id=\xff\xfe"), 400, None),
    Case("form-invalid-percent-utf8", raw(b"external_id=%ff"), 400, None),
    Case("form-bare-key", raw(b"external_id"), 400, None),
    Case("body-over-1mib", raw(b"external_id=" + b"x" * MEGABYTE), 400, None),
    # malformed bracket keys
    Case("bracket-unclosed", raw(b"entries[0[amount]=1"), 400, "entries[0[amount]"),
    Case("bracket-stray-close", raw(b"entries]=1"), 400, "entries]"),
    Case("bracket-no-name", raw(b"[0][amount]=1"), 400, "[0][amount]"),
    Case("bracket-trailing-text", raw(b"entries[0]amount=1"), 400, "entries[0]amount"),
    Case(
        "bracket-index-gap",
        raw(b"external_id=bad-1&entries[0][amount]=1&entries[2][amount]=1"),
        400,
        "entries[2]",
    ),
    Case("bracket-empty-then-name", raw(b"entries[][amount]=1"), 400, "entries[][amount]"),
    Case("bracket-value-and-container", raw(b"entries=x&entries[0][amount]=1"), 400, "entries"),
    Case("bracket-too-deep", raw(b"metadata" + b"[a]" * 11 + b"=1"), 400, "metadata" + "[a]" * 11),
    Case("duplicate-key", form_tx(("external_id", "bad-2")), 400, "external_id"),
    Case("duplicate-nested-key", form_tx(("entries[0][amount]", "100")), 400, ENTRY0),
    # accounts
    Case("account-name-empty", account(name=""), 400, "name"),
    Case("account-name-201", account(name="n" * 201), 400, "name"),
    Case("account-name-nul", account(name="cash\u0000"), 400, "name"),
    Case(
        "form-account-name-nul", form_account("name=cash%00&type=asset&currency=usd"), 400, "name"
    ),
    Case("account-type-unknown", account(type="cash"), 400, "type", "parameter_invalid"),
    Case("account-type-missing", account(type=None), 400, "type", "parameter_missing"),
    Case("account-normal-balance-unknown", account(normal_balance="up"), 400, "normal_balance"),
    Case("account-non-negative-not-boolean", account(non_negative="perhaps"), 400, "non_negative"),
    Case("account-shards-65", account(balance_shards=65), 400, "balance_shards"),
    Case("account-shards-0", account(balance_shards=0), 400, "balance_shards"),
    Case("account-shards-text", account(balance_shards="many"), 400, "balance_shards"),
    Case(
        "account-shards-2-non-negative",
        account(balance_shards=2, non_negative=True),
        400,
        "balance_shards",
    ),
    Case(
        "form-account-shards-2-non-negative",
        form_account("name=cash&type=asset&currency=usd&balance_shards=2&non_negative=true"),
        400,
        "balance_shards",
    ),
    Case("account-unknown-param", account(balance=5), 400, "balance", "parameter_unknown"),
    Case(
        "account-metadata-41-char-key",
        account(metadata={LONG_KEY: "v"}),
        400,
        f"metadata[{LONG_KEY}]",
    ),
    # state changes that the transaction's state forbids
    Case(
        "post-more-than-pending",
        action("pending", "post", {"amount": 101}),
        400,
        "amount",
        "amount_too_large",
        "execution",
    ),
    Case("post-amount-zero", action("pending", "post", {"amount": 0}), 400, "amount"),
    Case("post-amount-float", action("pending", "post", {"amount": 50.5}), 400, "amount"),
    Case(
        "post-unknown-param",
        action("pending", "post", {"amount": 50, "x": 1}),
        400,
        "x",
        "parameter_unknown",
    ),
    Case(
        "post-voided", action("voided", "post"), 400, "id", "transaction_not_pending", "execution"
    ),
    Case(
        "post-reversal-partially",
        action("reversal", "post", {"amount": 1}),
        400,
        "id",
        "transaction_not_pending",
        "execution",
    ),
    Case("post-unknown", action("ltx_nope", "post"), 404, "id", "resource_missing", "execution"),
    Case(
        "reverse-pending",
        action("pending", "reverse"),
        400,
        "id",
        "transaction_not_posted",
        "execution",
    ),
    Case(
        "reverse-voided",
        action("voided", "reverse"),
        400,
        "id",
        "transaction_not_posted",
        "execution",
    ),
    Case(
        "reverse-a-reversal",
        action("reversal", "reverse"),
        400,
        "id",
        "transaction_is_reversal",
        "execution",
    ),
    Case(
        "reverse-unknown", action("ltx_nope", "reverse"), 404, "id", "resource_missing", "execution"
    ),
    Case(
        "reverse-external-id-256",
        action("posted", "reverse", {"external_id": "x" * 256}),
        400,
        "external_id",
    ),
    Case(
        "void-posted", action("posted", "void"), 400, "id", "transaction_not_pending", "execution"
    ),
    Case("void-unknown", action("ltx_nope", "void"), 404, "id", "resource_missing", "execution"),
    Case(
        "void-with-amount",
        action("pending", "void", {"amount": 5}),
        400,
        "amount",
        "parameter_unknown",
    ),
    # money a non_negative account does not have
    Case(
        "overdraw-non-negative",
        entries(("usd_b", "debit", 1), ("wallet", "credit", 1)),
        400,
        "entries",
        "balance_insufficient",
        "execution",
    ),
    Case(
        "overdraw-non-negative-pending",
        lambda lg: tx(
            lg,
            pending=True,
            entries=[
                {"account": lg.usd_a, "direction": "debit", "amount": 1},
                {"account": lg.wallet, "direction": "credit", "amount": 1},
            ],
        ),
        400,
        "entries",
        "balance_insufficient",
        "execution",
    ),
    # an external_id already used with other content
    Case(
        "external-id-reused",
        lambda lg: Req(TRANSACTIONS, json=pair("posted-1", lg.usd_a, lg.usd_b, amount=101)),
        409,
        "external_id",
        "external_id_conflict",
        "unkeyed",
    ),
    # batches: the offending field is named inside its transaction
    Case(
        "batch-amount-float",
        batch(good("b-1"), with_bad("b-2", amount=10.5)),
        400,
        "transactions[1][entries][0][amount]",
    ),
    Case("batch-empty", lambda lg: Req(BATCH, json={"transactions": []}), 400, "transactions"),
    Case("batch-missing", lambda lg: Req(BATCH, json={}), 400, "transactions", "parameter_missing"),
    Case(
        "batch-1001",
        lambda lg: Req(
            BATCH, json={"transactions": [pair(f"b-{i}", lg.usd_a, lg.usd_b) for i in range(1001)]}
        ),
        400,
        "transactions",
    ),
    Case(
        "batch-duplicate-external-id",
        batch(good("b-1"), good("b-1")),
        400,
        "transactions",
        "duplicate_external_id",
        "execution",
    ),
    Case(
        "batch-unknown-account",
        batch(good("b-1"), with_bad("b-2", account="lacc_nope")),
        404,
        "transactions[1][entries][0][account]",
        "resource_missing",
        "execution",
    ),
    Case(
        "batch-unbalanced",
        batch(good("b-1"), with_bad("b-2", amount=99)),
        400,
        "transactions[1][entries]",
        "transaction_unbalanced",
        "execution",
    ),
    Case(
        "batch-external-id-reused",
        batch(good("b-1"), lambda lg: pair("posted-1", lg.usd_a, lg.usd_b, amount=7)),
        409,
        "transactions[1][external_id]",
        "external_id_conflict",
        "unkeyed",
    ),
    Case(
        "batch-form-amount-float",
        raw(
            urlencode(
                [
                    ("transactions[0][external_id]", "b-1"),
                    ("transactions[0][entries][0][account]", "x"),
                    ("transactions[0][entries][0][direction]", "debit"),
                    ("transactions[0][entries][0][amount]", "1.5"),
                    ("transactions[0][entries][1][account]", "y"),
                    ("transactions[0][entries][1][direction]", "credit"),
                    ("transactions[0][entries][1][amount]", "1.5"),
                ]
            ).encode(),
            FORM,
            BATCH,
        ),
        400,
        "transactions[0][entries][0][amount]",
    ),
    # the Idempotency-Key itself
    Case(
        "idempotency-key-256",
        lambda lg: Req(
            TRANSACTIONS,
            json=pair("bad-1", lg.usd_a, lg.usd_b),
            headers={"Idempotency-Key": "k" * 256},
        ),
        400,
        "Idempotency-Key",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_bad_input_is_refused_and_writes_nothing(
    api: httpx.AsyncClient,
    key: dict[str, str],
    db: AsyncConnectionPool,
    ledger: Ledger,
    case: Case,
) -> None:
    req = case.build(ledger)
    headers = dict(key)
    if case.stage != "unkeyed":
        headers["Idempotency-Key"] = f"key-{case.id}"
    headers.update(req.headers)
    if req.content_type is not None:
        headers["Content-Type"] = req.content_type
    before = await snapshot(db)

    if req.content is not None:
        reply = await api.post(req.path, content=req.content, headers=headers)
    else:
        # json.dumps, not orjson: some cases send integers beyond 64 bits.
        content = json.dumps(req.json).encode()
        headers["Content-Type"] = "application/json"
        reply = await api.post(req.path, content=content, headers=headers)

    after = await snapshot(db)
    assert reply.status_code == case.status, reply.text
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert error["type"] == "invalid_request_error"
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error.get("param") == case.param, error
    if case.code is not None:
        assert error.get("code") == case.code, error
    expected = dict(before)
    if case.stage == "execution":
        expected["idempotency_keys"] += 1
    assert after == expected


# --- What must succeed ----------------------------------------------------------------------------


def hundred_entries(lg: Ledger) -> Req:
    rows = [{"account": lg.usd_b, "direction": "credit", "amount": 9900}]
    rows += [
        {"account": lg.usd_a if i % 2 else lg.usd_b, "direction": "debit", "amount": 100}
        for i in range(1, 100)
    ]
    return tx(lg, "ok-100-entries", entries=rows)


SUCCESSES: list[tuple[str, Callable[[Ledger], Req]]] = [
    (
        "two-currencies-each-balanced",
        entries(
            ("usd_a", "debit", 100),
            ("usd_b", "credit", 100),
            ("eur_a", "debit", 250),
            ("eur_b", "credit", 250),
            external_id="ok-two-currencies",
        ),
    ),
    ("amount-1", amounts(1, 1, "ok-amount-1")),
    ("amount-max", amounts(MAX_AMOUNT, MAX_AMOUNT, "ok-amount-max")),
    ("amount-digit-string", amounts("100", "100", "ok-amount-digit-string")),
    (
        "form-amount-max",
        form_tx(first=str(MAX_AMOUNT), second=str(MAX_AMOUNT), external_id="ok-form-amount-max"),
    ),
    ("100-entries", hundred_entries),
    ("external-id-255", lambda lg: tx(lg, "x" * 255)),
    (
        "metadata-at-limits",
        lambda lg: tx(
            lg,
            "ok-metadata",
            metadata={
                **{f"key{i}": "v" for i in range(49)},
                "k" * 40: "v" * 500,
            },
        ),
    ),
    ("description-1000", lambda lg: tx(lg, "ok-description", description="d" * 1000)),
    ("unicode-external-id", lambda lg: tx(lg, "заказ-№1-🧾")),
    ("account-lowercase-currency", account(currency="eur")),
    ("account-mixed-case-currency", account(currency="cHf")),
    ("account-zero-decimal-currency", account(currency="jpy")),
    ("account-64-shards", account(balance_shards=64)),
    ("account-non-negative-one-shard", account(non_negative=True, balance_shards=1)),
    (
        "form-account-metadata",
        form_account("name=cash&type=asset&currency=usd&metadata[order_id]=42"),
    ),
]


def totals(rows: list[Json]) -> dict[tuple[str, str], int]:
    """Amounts per (account, direction): what a transaction moves, however it is split."""
    moved: dict[tuple[str, str], int] = {}
    for row in rows:
        moved[(row["account"], row["direction"])] = moved.get(
            (row["account"], row["direction"]), 0
        ) + int(row["amount"])
    return moved


@pytest.mark.parametrize(("name", "build"), SUCCESSES, ids=[name for name, _ in SUCCESSES])
async def test_boundary_input_is_accepted(
    api: httpx.AsyncClient,
    key: dict[str, str],
    db: AsyncConnectionPool,
    ledger: Ledger,
    name: str,
    build: Callable[[Ledger], Req],
) -> None:
    req = build(ledger)
    before = await snapshot(db)
    if req.content is not None:
        reply = await api.post(req.path, content=req.content, headers={**key, "Content-Type": FORM})
    else:
        reply = await api.post(req.path, json=req.json, headers=key)
    assert reply.status_code == 200, reply.text
    obj = reply.json()
    after = await snapshot(db)
    if req.path == ACCOUNTS:
        assert obj["object"] == "ledger_account"
        sent = req.json if isinstance(req.json, dict) else {"currency": "usd"}
        assert obj["currency"] == str(sent["currency"]).lower()
        assert after["ledger_accounts"] == before["ledger_accounts"] + 1
        return
    assert obj["object"] == "ledger_transaction"
    assert obj["status"] == "posted"
    assert after["ledger_transactions"] == before["ledger_transactions"] + 1
    if isinstance(req.json, dict):
        sent_entries = req.json["entries"]
        assert after["ledger_entries"] - before["ledger_entries"] == len(sent_entries)
        assert totals(obj["entries"]) == totals(sent_entries)
        assert obj["metadata"] == req.json.get("metadata", {})
        assert obj["external_id"] == req.json["external_id"]
        assert obj["description"] == req.json.get("description")


async def test_two_currency_transaction_moves_each_balance(
    api: httpx.AsyncClient, key: dict[str, str], ledger: Ledger
) -> None:
    before = (await api.get(f"{ACCOUNTS}/{ledger.eur_a}/balances", headers=key)).json()
    req = entries(
        ("usd_a", "debit", 100),
        ("usd_b", "credit", 100),
        ("eur_a", "debit", 250),
        ("eur_b", "credit", 250),
        external_id="ok-two-currency-balances",
    )(ledger)
    reply = await api.post(req.path, json=req.json, headers=key)
    assert reply.status_code == 200, reply.text
    assert sorted(
        (e["currency"], e["direction"], e["amount"]) for e in reply.json()["entries"]
    ) == [
        ("eur", "credit", 250),
        ("eur", "debit", 250),
        ("usd", "credit", 100),
        ("usd", "debit", 100),
    ]
    after = (await api.get(f"{ACCOUNTS}/{ledger.eur_a}/balances", headers=key)).json()
    assert after["currency"] == "eur"
    assert after["posted"]["debits"] - before["posted"]["debits"] == 250
    assert after["posted"]["credits"] == before["posted"]["credits"]
