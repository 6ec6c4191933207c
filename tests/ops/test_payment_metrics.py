"""`payrail_payment_attempts_total` counts each authorization once, when its outcome is
recorded, through the API against a real sandbox PSP: a success, an issuer decline, a
technical failure that fails over, and an in-doubt answer counted only when resolved and
only once however many times it is recorded (janitor and webhook racing)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from payrail.api.context import Services
from payrail.clock import ManualClock
from payrail.connectors.accounts.service import Connectors
from payrail.connectors.sandbox import SandboxConfig
from payrail.connectors.sandbox.server import run_sandbox
from payrail.ops import metrics
from payrail.ops.metrics import REGISTRY
from payrail.payments import in_doubt, janitor, outcomes
from payrail.tenants.scope import Scope
from payrail.tenants.service import NewMerchant
from tests.connectors.accounts.helpers import SECRET, bearer, create_account, ok, send
from tests.vaults import fixed_vault

Json = dict[str, Any]
INTENTS = "/v1/payment_intents"
ATTEMPTS = "payrail_payment_attempts_total"


@pytest.fixture(scope="module")
def psp_url() -> Iterator[str]:
    with run_sandbox(SandboxConfig(secret=SECRET), ManualClock(), grace_seconds=1) as url:
        yield url


@pytest.fixture
async def psp(psp_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=psp_url, headers=bearer(SECRET)) as http:
        await http.post("/sandbox/faults", json={"rate": 0, "seed": 0})
        yield http


@pytest.fixture
async def services(pool: AsyncConnectionPool, clock: ManualClock) -> AsyncIterator[Services]:
    """A roomy timeout: a loaded machine must not put answers in doubt."""
    services = Services(
        pool=pool, clock=clock, vault=fixed_vault(), connectors=Connectors(timeout=20)
    )
    yield services
    await services.connectors.aclose()


@pytest.fixture
async def account(client: httpx.AsyncClient, auth: dict[str, str], psp_url: str) -> Json:
    return await create_account(client, auth, base_url=psp_url, currencies=[])


def labels(outcome: str, decline_code: str = "", country: str = "unknown") -> dict[str, str]:
    return {
        "connector": "sandbox",
        "currency": "eur",
        "country": country,
        "outcome": outcome,
        "decline_code": decline_code,
        "mode": "test",
    }


def total() -> float:
    """Every attempt counted so far, whatever its labels."""
    return sum(
        sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == ATTEMPTS
    )


class Counts:
    """The counter's values since the start of a test: other tests share the registry."""

    def __init__(self, *wanted: dict[str, str]) -> None:
        self.total = total()
        self.before = {self._key(one): self._value(one) for one in wanted}

    @staticmethod
    def _key(wanted: dict[str, str]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(wanted.items()))

    @staticmethod
    def _value(wanted: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(ATTEMPTS, wanted) or 0.0

    def since(self, wanted: dict[str, str]) -> float:
        return self._value(wanted) - self.before[self._key(wanted)]

    def all_since(self) -> float:
        return total() - self.total


async def pay(client: httpx.AsyncClient, auth: dict[str, str], card: str) -> httpx.Response:
    body = {"amount": 2500, "currency": "eur", "payment_method": card, "confirm": True}
    return await send(client, auth, INTENTS, body)


def test_every_charge_status_has_an_outcome_label() -> None:
    statuses = ["captured", "authorized", "declined", "requires_authentication", "failed"]
    assert [metrics.attempt_outcome(s) for s in [*statuses, "voided"]] == [
        "succeeded",
        "authorized",
        "declined",
        "requires_authentication",
        "failed_technical",
        "failed_technical",
    ]
    with pytest.raises(KeyError):
        metrics.attempt_outcome("in_doubt")


async def test_a_success_and_a_decline_are_counted_once_each(
    client: httpx.AsyncClient, auth: dict[str, str], account: Json
) -> None:
    german = await ok(
        await send(
            client,
            auth,
            "/v1/payment_methods",
            {
                "type": "card",
                "card": {"token": "tok_visa"},
                "billing_details": {"address": {"country": "de"}},
            },
        )
    )
    paid, declined = labels("succeeded", country="DE"), labels("declined", "insufficient_funds")
    counts = Counts(paid, declined)
    reply = await pay(client, auth, german["id"])
    assert reply.status_code == 200 and reply.json()["status"] == "succeeded", reply.text
    assert (counts.since(paid), counts.since(declined)) == (1, 0)
    refused = await pay(client, auth, "pm_card_visa_chargeDeclinedInsufficientFunds")
    assert refused.status_code == 402, refused.text
    assert (counts.since(paid), counts.since(declined), counts.all_since()) == (1, 1, 2)
    # Reading the intents back records nothing new.
    for intent in (reply.json(), refused.json()["error"]["payment_intent"]):
        await ok(await client.get(f"{INTENTS}/{intent['id']}", headers=auth))
    assert counts.all_since() == 2


async def test_a_failover_counts_the_technical_failure_and_the_success(
    client: httpx.AsyncClient, auth: dict[str, str], account: Json
) -> None:
    dead = await create_account(client, auth, base_url="http://127.0.0.1:9", currencies=[])
    rule = {"priority": 1, "connector_accounts": [dead["id"], account["id"]]}
    await ok(await send(client, auth, "/v1/routing_rules", rule))
    failed, paid = labels("failed_technical", "connector_unreachable"), labels("succeeded")
    counts = Counts(failed, paid)
    reply = await pay(client, auth, "pm_card_visa")
    assert reply.json()["status"] == "succeeded", reply.text
    assert (counts.since(failed), counts.since(paid), counts.all_since()) == (1, 1, 2)


async def test_an_answer_in_doubt_counts_once_when_resolved_however_often_recorded(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    account: Json,
    psp: httpx.AsyncClient,
    services: Services,
    clock: ManualClock,
    merchant: NewMerchant,
) -> None:
    paid = labels("succeeded")
    counts = Counts(paid)
    await psp.post("/sandbox/faults", json={"rate": 1, "kinds": ["error_after"]})
    reply = await pay(client, auth, "pm_card_visa")
    await psp.post("/sandbox/faults", json={"rate": 0})
    assert reply.status_code == 200 and reply.json()["status"] == "processing", reply.text
    assert counts.all_since() == 0  # in doubt is no outcome
    clock.advance(in_doubt.SCHEDULE[0])
    run = await janitor.run_once(services)
    assert (run.checked, run.settled) == (1, 1)
    assert counts.since(paid) == 1
    # The provider's webhook brings the same answer after the janitor recorded it.
    charge_id = reply.json()["latest_charge"]
    scope = Scope(merchant.id, livemode=False)
    async with services.pool.connection() as conn:
        connector = await services.connectors.get(conn, scope, services.vault, account["id"])
    answer = await connector.payment_status(charge_id)
    assert answer is not None and answer.status == "captured"
    async with services.pool.connection() as conn, conn.transaction():
        await outcomes.record_attempt(conn, scope, clock, charge_id, answer)
    assert (counts.since(paid), counts.all_since()) == (1, 1)
