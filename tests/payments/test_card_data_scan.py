"""The card scan of tests/vault, over the payment flows: a card number and CVC entered,
then charged (the CVC travels to the provider), captured, refunded, declined, lost in
doubt and settled by the janitor, and a crash with the card in hand. Neither may then be
found in any table, log line, event or response."""

from __future__ import annotations

import io
import logging
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.api.context import Services
from payrail.clock import ManualClock
from payrail.payments import in_doubt, janitor, outcomes
from tests.vault.test_card_data_scan import CVC, NUMBER, leaks, scan_tables

Json = dict[str, Any]


async def test_no_card_number_or_cvc_after_paying_with_it(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
    psp: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    clock: ManualClock,
    services: Services,
    written_logs: io.StringIO,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    replies: list[httpx.Response] = []
    card = {"number": NUMBER, "exp_month": 12, "exp_year": clock.now().year + 2, "cvc": CVC}

    async def post(path: str, body: Json) -> httpx.Response:
        reply = await client.post(path, headers=auth, json=body)
        replies.append(reply)
        return reply

    async def new_card() -> str:
        reply = await post("/v1/payment_methods", {"type": "card", "card": card})
        assert reply.status_code == 200, reply.text
        card_id: str = reply.json()["id"]
        return card_id

    def intent(card_id: str, **extra: Any) -> Json:
        return {"amount": 2500, "currency": "usd", "payment_method": card_id, **extra}

    paid = await post("/v1/payment_intents", intent(await new_card(), confirm=True))
    assert paid.json()["status"] == "succeeded", paid.text
    held = await post(
        "/v1/payment_intents", intent(await new_card(), confirm=True, capture_method="manual")
    )
    assert held.json()["status"] == "requires_capture", held.text
    captured = await post(f"/v1/payment_intents/{held.json()['id']}/capture", {})
    assert captured.json()["status"] == "succeeded"
    refund = await post("/v1/refunds", {"payment_intent": paid.json()["id"], "amount": 500})
    assert refund.json()["status"] == "succeeded"

    # The card number sent as the payment method, and refused.
    assert (await post("/v1/payment_intents", intent(NUMBER, confirm=True))).status_code == 404

    # Lost in doubt, then settled by the janitor.
    await psp.post("/sandbox/faults", json={"rate": 1, "kinds": ["timeout_after"]})
    doubt = await post("/v1/payment_intents", intent(await new_card(), confirm=True))
    assert doubt.json()["status"] == "processing"
    await psp.post("/sandbox/faults", json={"rate": 0})
    clock.advance(in_doubt.SCHEDULE[0])
    assert (await janitor.run_once(services)).settled == 1

    # A crash with the card in hand (after the provider charged it).
    async def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    with monkeypatch.context() as patched:
        patched.setattr(outcomes, "record_attempt", crash)
        failed = await post("/v1/payment_intents", intent(await new_card(), confirm=True))
        assert failed.status_code == 500

    for path in ("/v1/payment_intents", "/v1/refunds", "/v1/payment_methods"):
        replies.append(await client.get(path, headers=auth))
    record = await psp.get("/sandbox/record")
    replies.append(record)
    assert any(p["card"]["last4"] == NUMBER[-4:] for p in record.json()["payments"])

    assert await scan_tables(pool) == []
    for reply in replies:
        assert leaks(reply.text) == [], (reply.request.url, reply.text)
    raw = "\n".join(record.getMessage() for record in caplog.records)
    assert leaks(raw) == [], "something logged card data, even if the formatter masks it"
    written = written_logs.getvalue() + capsys.readouterr().out
    assert "disk on fire" in written, "the crash was logged, so the scan saw real lines"
    assert leaks(written) == []
