"""Enter a card number and a CVC, run every flow that touches them, then look for both in
every table, every log line (raw and as written), every event and every response."""

from __future__ import annotations

import io
import logging
import re
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.api.context import Services
from payrail.clock import ManualClock
from payrail.tenants.scope import Scope
from payrail.tenants.service import NewMerchant
from payrail.vault import repository as vault_repo
from payrail.vault import service

NUMBER = "378282246310005"  # Stripe's test Amex: a 4-digit CVC is rarer by chance
CVC = "8264"
SPACED = "3782 822463 10005"


def cvc_in(text: str) -> bool:
    """The CVC as a value of its own: random ids (base62) hold its digits now and then."""
    return re.search(rf"(?<![0-9A-Za-z]){CVC}(?![0-9A-Za-z])", text) is not None


def leaks(text: str) -> list[str]:
    found = [form for form in (NUMBER, SPACED) if form in text]
    if cvc_in(text):
        found.append("cvc")
    return found


async def scan_tables(pool: AsyncConnectionPool) -> list[str]:
    found: list[str] = []
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
        )
        columns = await cur.fetchall()
        assert {t for t, _, _ in columns} >= {"payment_methods", "events", "idempotency_keys"}
        for table, column, data_type in columns:
            # Names from the catalog. As text, as PostgreSQL prints it: every value of
            # every type reads back, '-infinity' times included.
            cast = "" if data_type == "bytea" else "::text"
            cur = await conn.execute(f'SELECT "{column}"{cast} FROM "{table}"')
            for (value,) in await cur.fetchall():
                if value is None:
                    continue
                if data_type == "bytea":
                    raw = bytes(value)
                    hits = [f for f in (NUMBER, SPACED, CVC) if f.encode() in raw]
                else:
                    hits = leaks(value)
                found += [f"{table}.{column}: {hit}" for hit in hits]
    return found


async def test_no_card_number_or_cvc_anywhere(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
    written_logs: io.StringIO,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    services: Services,
) -> None:
    caplog.set_level(logging.DEBUG)
    replies: list[httpx.Response] = []
    card = {"number": NUMBER, "exp_month": 12, "exp_year": clock.now().year + 2, "cvc": CVC}

    async def post(body: Any, *, form: bool = False, key: str | None = None) -> httpx.Response:
        headers = {**auth, **({"Idempotency-Key": key} if key else {})}
        if form:
            reply = await client.post("/v1/payment_methods", headers=headers, data=body)
        else:
            reply = await client.post("/v1/payment_methods", headers=headers, json=body)
        replies.append(reply)
        return reply

    # Created as JSON, as a form, with spaces, under an Idempotency-Key and replayed.
    created = await post({"type": "card", "card": card, "metadata": {"order": "1"}})
    assert created.status_code == 200, created.text
    form = {"type": "card", **{f"card[{k}]": str(v) for k, v in card.items()}}
    assert (await post(form, form=True)).status_code == 200
    assert (await post({"type": "card", "card": {**card, "number": SPACED}})).status_code == 200
    for _ in range(2):
        assert (await post({"type": "card", "card": card}, key="k1")).status_code == 200

    # Refused: every kind of card error, each carrying the number and the CVC.
    for bad in (
        {**card, "exp_month": 13},
        {**card, "exp_year": 2001},
        {**card, "cvc": "12"},
        {**card, "number": NUMBER[:-1] + "1"},
        {**card, "bogus": "x"},
        {**card, "token": "tok_visa"},
    ):
        assert 400 <= (await post({"type": "card", "card": bad})).status_code < 500
    # The number sent where an id or a token belongs, under an Idempotency-Key (stored).
    assert (await post({"type": "card", "card": {"token": NUMBER}}, key="k2")).status_code == 404
    misplaced = await client.post(
        f"/v1/ledger/transactions/{NUMBER}/post", headers={**auth, "Idempotency-Key": "k3"}
    )
    replies.append(misplaced)
    assert misplaced.status_code == 404
    live = {"Authorization": f"Bearer {merchant.live_secret}"}
    replies.append(
        await client.post("/v1/payment_methods", headers=live, json={"type": "card", "card": card})
    )
    assert replies[-1].status_code == 402

    # A crash while the card is in hand: logged with its traceback, answered 500.
    async def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    with monkeypatch.context() as patched:
        patched.setattr(vault_repo, "insert_payment_method", crash)
        assert (await post({"type": "card", "card": card})).status_code == 500

    # Read back, listed, revealed for a connector (the CVC is handed out once), rotated.
    pm_id = created.json()["id"]
    replies.append(await client.get(f"/v1/payment_methods/{pm_id}", headers=auth))
    replies.append(await client.get("/v1/payment_methods", headers=auth))
    vault = services.vault
    async with pool.connection() as conn:
        secret = await service.reveal(conn, Scope(merchant.id, False), clock, vault, pm_id)
        assert (secret.number, secret.cvc) == (NUMBER, CVC)
        logging.getLogger("payrail.test").info("revealed %r", secret)
        async with conn.transaction():
            await vault.rotate(conn, clock.now())

    assert await scan_tables(pool) == []
    for reply in replies:
        assert leaks(reply.text) == [], (reply.request.url, reply.text)
    raw = "\n".join(record.getMessage() for record in caplog.records)
    assert leaks(raw) == [], "something logged card data, even if the formatter masks it"
    written = written_logs.getvalue() + capsys.readouterr().out
    assert "disk on fire" in written, "the crash was logged, so the scan saw real lines"
    assert leaks(written) == []
