"""`SandboxConnector.parse_webhook`: only a delivery signed with the webhook secret, over
exactly this body, within five minutes of now, becomes a `ProviderEvent`."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from payrail.connectors.base import ProviderEvent, WebhookRejected
from payrail.connectors.sandbox import webhooks
from payrail.connectors.sandbox_connector import SandboxConnector

SECRET = "whsec_verify_tests"
NOW = 1_767_225_600
PAYMENT = {
    "id": "sbxpay_abc",
    "object": "payment",
    "status": "captured",
    "amount": 1000,
    "card": {"brand": "visa", "last4": "4242"},
}


def event(**overrides: Any) -> dict[str, Any]:
    made: dict[str, Any] = {
        "id": "sbxevt_123",
        "object": "event",
        "type": "payment.captured",
        "created": NOW - 2,
        "sequence": 2,
        "data": {"object": PAYMENT},
    }
    made.update(overrides)
    return made


def body_of(value: object) -> bytes:
    return orjson.dumps(value)


def v1(body: bytes, timestamp: int = NOW, secret: str = SECRET) -> str:
    # Written out here rather than imported, so the test pins the scheme itself.
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signed(body: bytes, timestamp: int = NOW, secret: str = SECRET) -> dict[str, str]:
    return {"Sandbox-Signature": f"t={timestamp},v1={v1(body, timestamp, secret)}"}


@pytest.fixture
async def connector() -> AsyncIterator[SandboxConnector]:
    made = SandboxConnector("http://127.0.0.1:9", "sbx_sk_unused", webhook_secret=SECRET)
    yield made
    await made.aclose()


def rejected(connector: SandboxConnector, headers: dict[str, str], body: bytes) -> str:
    with pytest.raises(WebhookRejected) as caught:
        connector.parse_webhook(headers, body, NOW)
    message = str(caught.value)
    # Neither the secret nor any of the body ends up in a message (or a log line made of it).
    assert SECRET not in message and "whsec" not in message
    assert "sbxevt_" not in message and "sbxpay_" not in message
    # Nor is any exception chained that holds it (a JSON error keeps the whole document).
    error = caught.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    return message


def test_a_good_signature_gives_the_event(connector: SandboxConnector) -> None:
    body = body_of(event())
    parsed = connector.parse_webhook(signed(body), body, NOW)
    assert parsed == ProviderEvent(
        id="sbxevt_123",
        type="payment.captured",
        object_id="sbxpay_abc",
        sequence=2,
        created=NOW - 2,
        payload=PAYMENT,
    )


def test_the_sandboxs_own_signature_verifies(connector: SandboxConnector) -> None:
    body = body_of(event(type="refund.succeeded", sequence=1, data={"object": {"id": "sbxre_1"}}))
    headers = {"Sandbox-Signature": webhooks.signature(SECRET, NOW - 10, body)}
    parsed = connector.parse_webhook(headers, body, NOW)
    assert (parsed.type, parsed.object_id, parsed.sequence) == ("refund.succeeded", "sbxre_1", 1)


def test_one_matching_v1_among_several_is_enough(connector: SandboxConnector) -> None:
    body = body_of(event())
    good = v1(body)
    header = f"t={NOW}, v1={'0' * 64}, v0={good}, v1={good}, v1={v1(body, secret='whsec_old')}"
    assert connector.parse_webhook({"Sandbox-Signature": header}, body, NOW).id == "sbxevt_123"
    # Only the scheme v1 counts: the right digest under another scheme is not a signature.
    only_v0 = f"t={NOW},v0={good},v1={'0' * 64}"
    assert "signature" in rejected(connector, {"Sandbox-Signature": only_v0}, body)


def test_the_header_is_found_in_any_case_and_any_header_map(connector: SandboxConnector) -> None:
    body = body_of(event())
    value = signed(body)["Sandbox-Signature"]
    for headers in ({"sandbox-signature": value}, {"SANDBOX-SIGNATURE": value}):
        assert connector.parse_webhook(headers, body, NOW).sequence == 2
    assert connector.parse_webhook(httpx.Headers({"sandbox-signature": value}), body, NOW).id


async def test_the_default_secret_is_the_sandboxs_default() -> None:
    connector = SandboxConnector("http://127.0.0.1:9", "sbx_sk_unused")
    try:
        body = body_of(event())
        assert connector.parse_webhook(signed(body, secret="whsec_sandbox"), body, NOW).id
    finally:
        await connector.aclose()
    with pytest.raises(ValueError, match="secret"):
        SandboxConnector("http://127.0.0.1:9", "sbx_sk_unused", webhook_secret="")


def test_a_wrong_secret_is_rejected(connector: SandboxConnector) -> None:
    body = body_of(event())
    assert "signature" in rejected(connector, signed(body, secret="whsec_guess"), body)


def test_a_modified_body_is_rejected(connector: SandboxConnector) -> None:
    body = body_of(event())
    headers = signed(body)
    for changed in (
        body_of(event(sequence=3)),
        body.replace(b"1000", b"9000"),
        body + b" ",
        body[:-1],
        b"",
    ):
        assert "signature" in rejected(connector, headers, changed)


def test_a_timestamp_further_than_five_minutes_either_way_is_rejected(
    connector: SandboxConnector,
) -> None:
    body = body_of(event())
    for at_the_edge in (NOW - 300, NOW + 300):
        assert connector.parse_webhook(signed(body, at_the_edge), body, NOW).id
    for too_far in (NOW - 301, NOW + 301, NOW - 86_400, 0):
        assert "timestamp" in rejected(connector, signed(body, too_far), body)
    # Changing the timestamp of a good header breaks the signature instead.
    moved = signed(body)["Sandbox-Signature"].replace(f"t={NOW}", f"t={NOW - 1}")
    assert "signature" in rejected(connector, {"Sandbox-Signature": moved}, body)


def test_a_missing_or_garbled_header_is_rejected(connector: SandboxConnector) -> None:
    body = body_of(event())
    good = v1(body)
    assert "missing" in rejected(connector, {}, body)
    assert "missing" in rejected(connector, {"Stripe-Signature": f"t={NOW},v1={good}"}, body)
    for garbled in (
        "",
        "garbage",
        f"v1={good}",  # no timestamp
        f"t={NOW}",  # no signature
        f"t={NOW},v1=",
        f"t={NOW},t={NOW},v1={good}",  # which one was signed?
        f"t=abc,v1={good}",
        f"t=-{NOW},v1={good}",
        f"t={NOW}.5,v1={good}",
        f"t={'9' * 5000},v1={good}",
        f"t=１２３,v1={good}",  # noqa: RUF001 - full-width digits are digits to str.isdigit
        f"t={NOW};v1={good}",
        f"t={NOW},v1={good}é",
    ):
        rejected(connector, {"Sandbox-Signature": garbled}, body)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"",
        b"\xff\xfe{}",
        b'{"id": "sbxevt_1"',
        b"[]",
        b"null",
        b'"sbxevt_1"',
    ],
    ids=["text", "empty", "not-utf8", "truncated", "list", "null", "string"],
)
def test_a_body_that_is_not_json_or_not_an_object_is_rejected(
    connector: SandboxConnector, body: bytes
) -> None:
    rejected(connector, signed(body), body)


@pytest.mark.parametrize(
    "changes",
    [
        {"object": "payment"},
        {"id": ""},
        {"id": 5},
        {"type": None},
        {"created": "1767225600"},
        {"created": True},
        {"sequence": None},
        {"sequence": 0},
        {"sequence": 1.0},
        {"sequence": False},
        {"data": None},
        {"data": {"object": None}},
        {"data": {"object": {"id": 7}}},
        {"data": {}},
    ],
)
def test_an_event_missing_a_field_is_rejected(
    connector: SandboxConnector, changes: dict[str, Any]
) -> None:
    body = body_of(event(**changes))
    assert "not a sandbox event" in rejected(connector, signed(body), body)
    missing = event()
    for name in changes:
        del missing[name]
    body = body_of(missing)
    assert "not a sandbox event" in rejected(connector, signed(body), body)
