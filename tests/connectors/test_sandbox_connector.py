"""The sandbox connector against a real sandbox PSP: answers, declines, and every fault
classified by what reached the wire, so that an in-doubt attempt is never charged twice."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from payrail.clock import ManualClock
from payrail.connectors.base import Authorization, ConnectorError
from payrail.connectors.declines import Decision
from payrail.connectors.sandbox import SandboxConfig
from payrail.connectors.sandbox.server import run_sandbox
from payrail.connectors.sandbox_connector import SandboxConnector
from payrail.ids import new_id
from payrail.vault.service import CardSecret

SECRET = "sbx_sk_connector_tests"
HANG = 0.6  # the sandbox's hang; the connector gives up after TIMEOUT
TIMEOUT = 0.2
VISA = CardSecret("4242424242424242", 12, 2030, "123")


@pytest.fixture(scope="module")
def psp_url() -> Iterator[str]:
    config = SandboxConfig(secret=SECRET, seed=0, fault_rate=0.0, hang_seconds=HANG)
    with run_sandbox(config, ManualClock(), grace_seconds=1) as url:
        yield url


class FaultHeader(httpx.AsyncBaseTransport):
    """Asks the sandbox for a fault on the next request only."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.next: str | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.next is not None:
            request.headers["Sandbox-Fault"], self.next = self.next, None
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
def faults() -> FaultHeader:
    return FaultHeader()


@pytest.fixture
async def connector(psp_url: str, faults: FaultHeader) -> AsyncIterator[SandboxConnector]:
    connector = SandboxConnector(psp_url, SECRET, timeout=TIMEOUT, transport=faults)
    yield connector
    await connector.aclose()


def authorization(
    card: CardSecret = VISA, *, capture: bool = True, amount: int = 1_000
) -> Authorization:
    return Authorization(new_id("pa"), amount, "USD", capture, card, new_id("pi"))


async def record(psp_url: str, reference: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=psp_url) as http:
        reply = await http.get("/sandbox/record", headers={"Authorization": f"Bearer {SECRET}"})
    return [p for p in reply.json()["payments"] if p["reference"] == reference]


async def test_a_charge_captures_partially_and_refunds(connector: SandboxConnector) -> None:
    request = authorization(capture=False)
    held = await connector.authorize(request)
    assert (held.status, held.amount, held.amount_captured, held.decline) == (
        "authorized",
        1_000,
        0,
        None,
    )
    captured = await connector.capture(new_id("cap"), held.provider_id, 600)
    assert (captured.status, captured.amount_captured, captured.fee) == ("captured", 600, 47)
    refund = await connector.refund(new_id("rf"), held.provider_id, 100)
    assert (refund.payment_provider_id, refund.amount, refund.status) == (
        held.provider_id,
        100,
        "succeeded",
    )
    now = await connector.payment_status(request.idempotency_key)
    assert now is not None
    assert (now.provider_id, now.status, now.amount_refunded) == (held.provider_id, "captured", 100)
    voidable = await connector.authorize(authorization(capture=False))
    assert (await connector.void(new_id("void"), voidable.provider_id)).status == "voided"


@pytest.mark.parametrize(
    ("number", "code", "decision"),
    [
        ("4000000000009995", "insufficient_funds", Decision.SOFT_DECLINE),
        ("4000000000009987", "lost_card", Decision.HARD_DECLINE),
        ("4000000000000002", "generic_decline", Decision.SOFT_DECLINE),
        ("4000000000000069", "expired_card", Decision.HARD_DECLINE),
    ],
)
async def test_a_decline_is_an_answer_with_its_classification(
    connector: SandboxConnector, number: str, code: str, decision: Decision
) -> None:
    payment = await connector.authorize(authorization(CardSecret(number, 12, 2030, None)))
    assert payment.status == "declined"
    assert payment.decline is not None
    assert (payment.decline.code, payment.decline.decision) == (code, decision)


async def test_a_real_card_at_the_sandbox_is_a_hard_decline(connector: SandboxConnector) -> None:
    payment = await connector.authorize(
        authorization(CardSecret("4111111111111111", 1, 2031, None))
    )
    assert payment.decline is not None
    assert payment.decline.decision is Decision.HARD_DECLINE


async def test_a_card_that_needs_authentication_says_so(connector: SandboxConnector) -> None:
    card = CardSecret("4000002760003184", 12, 2030, None)
    assert (await connector.authorize(authorization(card))).status == "requires_authentication"


@pytest.mark.parametrize(
    ("fault", "decision", "processed"),
    [
        ("error_before", Decision.TECHNICAL, False),
        ("timeout_before", Decision.IN_DOUBT, False),
        ("error_after", Decision.IN_DOUBT, True),
        ("timeout_after", Decision.IN_DOUBT, True),
    ],
)
async def test_each_fault_is_classified_and_its_outcome_found_by_key(
    connector: SandboxConnector,
    faults: FaultHeader,
    psp_url: str,
    fault: str,
    decision: Decision,
    processed: bool,
) -> None:
    request = authorization()
    faults.next = fault
    with pytest.raises(ConnectorError) as raised:
        await connector.authorize(request)
    assert raised.value.classification.decision is decision
    status = await connector.payment_status(request.idempotency_key)
    assert (status is not None) is processed
    # Retrying the same attempt with the same key never charges twice.
    again = await connector.authorize(request)
    assert again.status == "captured"
    if status is not None:
        assert again.provider_id == status.provider_id
    assert len(await record(psp_url, request.reference)) == 1


async def test_a_sandbox_that_is_not_there_is_a_technical_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    connector = SandboxConnector(f"http://127.0.0.1:{port}", SECRET, timeout=TIMEOUT)
    try:
        with pytest.raises(ConnectorError) as raised:
            await connector.authorize(authorization())
        assert raised.value.classification.decision is Decision.TECHNICAL
        assert not raised.value.in_doubt
    finally:
        await connector.aclose()


async def test_a_wrong_secret_is_not_retried_blindly(psp_url: str) -> None:
    connector = SandboxConnector(psp_url, "sbx_sk_wrong", timeout=TIMEOUT)
    try:
        with pytest.raises(ConnectorError) as raised:
            await connector.authorize(authorization())
        assert raised.value.classification.code == "connector_request_invalid"
    finally:
        await connector.aclose()


async def test_a_retry_of_a_charged_key_is_never_called_technical(
    connector: SandboxConnector, faults: FaultHeader, psp_url: str
) -> None:
    """The sandbox replays a key's result before it can claim to be unavailable."""
    request = authorization()
    faults.next = "error_after"
    with pytest.raises(ConnectorError):
        await connector.authorize(request)
    faults.next = "error_before"
    again = await connector.authorize(request)
    assert again.status == "captured"
    assert len(await record(psp_url, request.reference)) == 1


@pytest.mark.parametrize(
    ("status", "content"),
    [
        (200, b"not json"),
        (200, b'{"id": "sbxpay_1"}'),
        (201, b"[]"),
        (202, b'{"unexpected": true}'),
        # A redirect, or a status we do not know: it may still be in the works there.
        (302, b""),
        (
            200,
            b'{"id": "sbxpay_1", "status": "pending", "amount": 1, "amount_captured": 0,'
            b' "amount_refunded": 0, "fee": 0}',
        ),
    ],
)
async def test_an_unreadable_answer_to_a_sent_request_is_in_doubt(
    status: int, content: bytes
) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=content))
    connector = SandboxConnector("http://sandbox.test", SECRET, transport=transport)
    try:
        with pytest.raises(ConnectorError) as raised:
            await connector.authorize(authorization())
        assert raised.value.in_doubt
    finally:
        await connector.aclose()


async def test_a_402_carries_its_decline() -> None:
    body = b'{"error": {"code": "insufficient_funds"}}'
    transport = httpx.MockTransport(lambda request: httpx.Response(402, content=body))
    connector = SandboxConnector("http://sandbox.test", SECRET, transport=transport)
    try:
        with pytest.raises(ConnectorError) as raised:
            await connector.authorize(authorization())
        assert raised.value.classification.code == "insufficient_funds"
        assert raised.value.classification.decision is Decision.SOFT_DECLINE
    finally:
        await connector.aclose()
