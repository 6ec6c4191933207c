"""A stateful test: random payments, captures, cancels and refunds through a real sandbox
PSP and the real database, with faults switched on and off between steps and the janitor
run at random times.

The sandbox's record is the ground truth. After every step: no charge was made twice,
no intent has two successful charges, the ledger is sound, and the provider balance in
the ledger equals what payrail's charges and refunds say moved. Whenever an intent is
not waiting on an unanswered request, payrail's view of it equals the sandbox's. A last
step turns faults off and runs the janitor until nothing is due: then every intent and
refund must be decided and agree with the sandbox.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any, ClassVar

import httpx
import hypothesis
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from payrail.api.context import Services
from payrail.clock import ManualClock
from payrail.connectors.accounts.schemas import ConnectorAccountCreate
from payrail.connectors.accounts.service import Connectors, create_connector_account
from payrail.connectors.sandbox import SandboxConfig
from payrail.connectors.sandbox.server import run_sandbox
from payrail.db.pool import open_pool
from payrail.errors import PayrailError
from payrail.ledger.verify import verify
from payrail.payments import in_doubt, janitor, refunds, service
from payrail.payments.schemas import (
    PaymentIntentCancel,
    PaymentIntentCapture,
    PaymentIntentConfirm,
    PaymentIntentCreate,
    RefundCreate,
)
from payrail.tenants.scope import Scope
from payrail.tenants.service import create_merchant
from tests.connectors.accounts.helpers import SECRET, bearer
from tests.ledger.test_ledger_machine import LoopThread
from tests.vaults import fixed_vault

Json = dict[str, Any]

MACHINE_SETTINGS = settings(
    max_examples=12,
    stateful_step_count=25,
    deadline=None,
    database=None,
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.reuse, hypothesis.Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TIMEOUT = 0.3  # payrail's wait for the sandbox
HANG = 0.6  # a timeout fault's hang there: longer than the wait
FAULTS = [None, "error_before", "error_after", "timeout_before", "timeout_after"]
CARDS = ["pm_card_visa", "pm_card_visa", "pm_card_chargeDeclinedInsufficientFunds"]


class PaymentsMachine(RuleBasedStateMachine):
    database_url: ClassVar[str]
    psp_url: ClassVar[str]
    runner: ClassVar[LoopThread]
    instances: ClassVar[Iterator[int]] = itertools.count()

    intents = Bundle("intents")

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.scope = Scope("", False)
        self.intent_ids: list[str] = []

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)

    def connect(self) -> AbstractAsyncContextManager[Any]:
        return self.services.pool.connection()

    @initialize()
    def start(self) -> None:
        async def setup() -> None:
            pool = await open_pool(self.database_url, min_size=1, max_size=4)
            self.services = Services(
                pool=pool,
                clock=self.clock,
                vault=fixed_vault(),
                connectors=Connectors(timeout=TIMEOUT),
            )
            async with pool.connection() as conn:
                merchant = await create_merchant(
                    conn, self.clock, f"Machine {next(self.instances)}"
                )
                self.scope = Scope(merchant.id, False)
                async with conn.transaction():
                    await create_connector_account(
                        conn,
                        self.scope,
                        self.clock,
                        self.services.vault,
                        ConnectorAccountCreate.model_validate(
                            {
                                "provider": "sandbox",
                                "base_url": self.psp_url,
                                "credentials": {"secret": SECRET},
                            }
                        ),
                    )
            self.psp = httpx.AsyncClient(base_url=self.psp_url, headers=bearer(SECRET))
            await self._fault(None)

        self.run(setup())

    def teardown(self) -> None:
        async def close() -> None:
            if hasattr(self, "psp"):
                await self.psp.aclose()
                await self.services.connectors.aclose()
                await self.services.pool.close()

        self.run(close())

    async def _fault(self, kind: str | None) -> None:
        body = {"rate": 1, "kinds": [kind], "hang_seconds": HANG} if kind else {"rate": 0}
        assert (await self.psp.post("/sandbox/faults", json=body)).status_code == 200

    def attempt(self, coro: Any) -> Any:
        """Run one API operation; refusals (4xx, declines) are fine, the invariants judge."""
        try:
            return self.run(coro)
        except PayrailError as error:
            assert error.status < 500 or error.status == 502, error
            return None

    # ----------------------------------------------------------------- rules

    @rule(kind=st.sampled_from(FAULTS))
    def set_fault(self, kind: str | None) -> None:
        self.run(self._fault(kind))

    @rule(
        target=intents,
        amount=st.integers(1, 50_000),
        manual=st.booleans(),
        card=st.sampled_from(CARDS),
    )
    def pay(self, amount: int, manual: bool, card: str) -> str:
        create = PaymentIntentCreate.model_validate(
            {
                "amount": amount,
                "currency": "usd",
                "payment_method": card,
                "capture_method": "manual" if manual else "automatic",
            }
        )
        made = self.run(service.create(self.connect, self.scope, self.services, create))
        self.intent_ids.append(made["id"])
        self.attempt(
            service.confirm(
                self.connect, self.scope, self.services, made["id"], PaymentIntentConfirm()
            )
        )
        return str(made["id"])

    @rule(intent=intents, share=st.integers(1, 100))
    def capture(self, intent: str, share: int) -> None:
        row = self.run(self._intent(intent))
        amount = max(1, row["amount"] * share // 100)
        params = PaymentIntentCapture.model_validate({"amount_to_capture": amount})
        self.attempt(service.capture(self.connect, self.scope, self.services, intent, params))

    @rule(intent=intents)
    def cancel(self, intent: str) -> None:
        params = PaymentIntentCancel()
        self.attempt(service.cancel(self.connect, self.scope, self.services, intent, params))

    @rule(intent=intents, amount=st.integers(1, 30_000))
    def refund(self, intent: str, amount: int) -> None:
        params = RefundCreate.model_validate({"payment_intent": intent, "amount": amount})
        self.attempt(refunds.create(self.connect, self.scope, self.services, params))

    @rule(wait=st.sampled_from([in_doubt.SCHEDULE[0], in_doubt.NOT_PROCESSED_AFTER]))
    def janitor_runs(self, wait: timedelta) -> None:
        self.clock.advance(wait)
        self.run(janitor.run_once(self.services))

    @rule()
    def everything_settles(self) -> None:
        """Faults off, time passes, the janitor runs until nothing is due: all decided."""

        async def settle() -> None:
            await self._fault(None)
            for _ in range(10):
                self.clock.advance(timedelta(days=1))
                if (await janitor.run_once(self.services)).checked == 0:
                    break
            async with self.connect() as conn:
                cur = await conn.execute(
                    "SELECT (SELECT count(*) FROM charges WHERE merchant_id = %(m)s"
                    "        AND next_check_at IS NOT NULL),"
                    " (SELECT count(*) FROM refunds WHERE merchant_id = %(m)s"
                    "        AND status = 'pending'),"
                    " (SELECT count(*) FROM payment_intents WHERE merchant_id = %(m)s"
                    "        AND status = 'processing')",
                    {"m": self.scope.merchant_id},
                )
                assert await cur.fetchone() == (0, 0, 0)
            await self._agree_with_the_sandbox(settled=True)

        self.run(settle())

    # ----------------------------------------------------------------- checks

    async def _intent(self, intent_id: str) -> Json:
        async with self.connect() as conn:
            cur = await conn.execute(
                "SELECT amount, status, amount_capturable, amount_received, latest_charge_id"
                " FROM payment_intents WHERE id = %s",
                (intent_id,),
            )
            row = await cur.fetchone()
        assert row is not None
        keys = ("amount", "status", "amount_capturable", "amount_received", "latest_charge_id")
        return dict(zip(keys, row, strict=True))

    async def _agree_with_the_sandbox(self, *, settled: bool) -> None:
        record = (await self.psp.get("/sandbox/record")).json()
        by_reference: dict[str, list[Json]] = {}
        for payment in record["payments"]:
            by_reference.setdefault(payment["reference"], []).append(payment)
        refunds_at_psp = {r["idempotency_key"]: r for r in record["refunds"]}
        async with self.connect() as conn:
            cur = await conn.execute(
                "SELECT payment_intent_id, id, status, pending_operation, amount_captured"
                " FROM charges WHERE merchant_id = %s",
                (self.scope.merchant_id,),
            )
            charges = await cur.fetchall()
            cur = await conn.execute(
                "SELECT id, status, amount FROM refunds WHERE merchant_id = %s",
                (self.scope.merchant_id,),
            )
            our_refunds = await cur.fetchall()
        successes: dict[str, int] = {}
        for intent_id, charge_id, status, pending, captured in charges:
            made = by_reference.get(charge_id, [])
            assert len(made) <= 1, f"charge {charge_id} made twice at the PSP"
            psp_status = made[0]["status"] if made else None
            if psp_status in ("captured", "authorized"):
                successes[intent_id] = successes.get(intent_id, 0) + 1
            if status in ("sending", "in_doubt") or pending is not None:
                assert not settled, f"charge {charge_id} still undecided after settling"
                continue
            if status in (
                "captured",
                "authorized",
                "voided",
                "declined",
                "requires_authentication",
            ):
                assert psp_status == status, (charge_id, status, psp_status)
            if status == "failed":
                assert psp_status is None, (charge_id, psp_status)
            if status == "captured":
                assert made[0]["amount_captured"] == captured
        assert all(n == 1 for n in successes.values()), successes
        for refund_id, status, amount in our_refunds:
            at_psp = refunds_at_psp.get(refund_id)
            if status == "pending":
                assert not settled, f"refund {refund_id} still pending after settling"
            elif status == "succeeded":
                assert at_psp is not None and at_psp["amount"] == amount
            else:
                assert at_psp is None, f"refund {refund_id} failed here but made there"

    @invariant()
    def sound(self) -> None:
        if not self.scope.merchant_id:
            return

        async def check() -> None:
            await self._agree_with_the_sandbox(settled=False)
            async with self.connect() as conn:
                report = await verify(conn)
                assert report.ok, report
                # The provider balance moves exactly as the charges and refunds say.
                cur = await conn.execute(
                    """
                    SELECT
                      (SELECT coalesce(sum(CASE e.direction WHEN 'debit' THEN e.amount
                                                            ELSE -e.amount END), 0)
                         FROM ledger_entries e JOIN payment_ledger_accounts p
                           ON p.ledger_account_id = e.account_id
                        WHERE p.merchant_id = %(m)s AND p.purpose = 'provider_balance'
                          AND e.phase = 'posted'),
                      (SELECT coalesce(sum(amount_captured - fee), 0) FROM charges
                        WHERE merchant_id = %(m)s AND status = 'captured')
                      - (SELECT coalesce(sum(amount), 0) FROM refunds
                          WHERE merchant_id = %(m)s AND status = 'succeeded')
                    """,
                    {"m": self.scope.merchant_id},
                )
                ledger_side, payments_side = await cur.fetchone() or (None, None)
                assert ledger_side == payments_side

        self.run(check())


@pytest.fixture(scope="module")
def machine_psp() -> Iterator[str]:
    with run_sandbox(SandboxConfig(secret=SECRET, hang_seconds=HANG), ManualClock()) as url:
        yield url


def test_payments_state_machine(database_url: str, machine_psp: str) -> None:
    runner = LoopThread()
    PaymentsMachine.database_url = database_url
    PaymentsMachine.psp_url = machine_psp
    PaymentsMachine.runner = runner
    try:
        run_state_machine_as_test(PaymentsMachine, settings=MACHINE_SETTINGS)
    finally:
        runner.close()
