"""Payment intents: create, confirm, capture, cancel, as Stripe has them.

A call that reaches a provider runs in steps, each its own transaction: first the
charge it is about to send is committed (status `sending`, with a time for the janitor to
look at it), then the request goes out, then its answer is recorded. A process that dies
at any point leaves a charge the janitor will ask the provider about: nothing is charged
twice, and nothing charged is forgotten.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from payrail.api.context import Services
from payrail.api.idempotency import NO_KEY, Recovery
from payrail.api.schemas import merge_metadata
from payrail.connectors import routing
from payrail.connectors.accounts import service as accounts
from payrail.connectors.base import Authorization, ConnectorError
from payrail.connectors.declines import Decision
from payrail.customers import repository as customers_repo
from payrail.errors import CardError, InvalidRequest, NotFound, ProviderUnavailable
from payrail.ids import new_id
from payrail.payments import in_doubt, outcomes, states
from payrail.payments import repository as repo
from payrail.payments.objects import intent_object, intent_state, publish
from payrail.payments.repository import Conn
from payrail.payments.schemas import (
    PaymentIntentCancel,
    PaymentIntentCapture,
    PaymentIntentConfirm,
    PaymentIntentCreate,
    PaymentIntentUpdate,
)
from payrail.tenants.scope import Scope
from payrail.vault import repository as vault_repo
from payrail.vault import service as vault_service
from payrail.vault.service import CardSecret

Connect = Callable[[], AbstractAsyncContextManager[Conn]]

# When the janitor first looks at a charge it is sending: after the connector's own
# timeout, so that a request still under way is not asked about.
FIRST_CHECK = in_doubt.SCHEDULE[0]


def operation_key(charge_id: str, operation: str, amount: int | None) -> str:
    """The idempotency key of a capture or void. A capture's names its amount: after a
    refused capture, one of another amount is another request, not a replay."""
    return f"{charge_id}:capture:{amount}" if operation == "capture" else f"{charge_id}:void"


def illegal(error: states.IllegalTransition) -> InvalidRequest:
    return InvalidRequest(str(error), param=error.param, code=error.code)


async def _intent(
    conn: Conn, scope: Scope, intent_id: str, *, lock: bool = False
) -> dict[str, Any]:
    row = await repo.fetch_one(conn, "payment_intents", scope, intent_id, lock=lock)
    if row is None:
        raise NotFound("payment_intent", intent_id)
    return row


async def _payment_method(
    conn: Conn, scope: Scope, services: Services, payment_method_id: str, customer_id: str | None
) -> dict[str, Any]:
    """The card to charge; Stripe's pm_card_* names make one, in test mode."""
    if vault_service.is_test_payment_method(payment_method_id) and not scope.livemode:
        made = await vault_service.create_test_payment_method(
            conn, scope, services.clock, services.vault, payment_method_id, param="payment_method"
        )
        payment_method_id = made["id"]
    rows = await vault_repo.fetch_payment_methods(conn, scope, [payment_method_id])
    if not rows:
        raise NotFound("payment_method", payment_method_id, param="payment_method")
    owner = rows[0]["customer_id"]
    if owner is not None and owner != customer_id:
        raise InvalidRequest(
            f"The payment method {payment_method_id} belongs to another customer than this"
            " PaymentIntent's.",
            param="payment_method",
            code="payment_method_customer_mismatch",
        )
    return rows[0]


async def _resumed(
    connect: Connect, scope: Scope, intent_id: str, *, confirmed: bool
) -> dict[str, Any]:
    """What a retry under the same Idempotency-Key answers once an earlier run of the
    request committed its first step: the intent as it now is."""
    async with connect() as conn:
        row = await _intent(conn, scope, intent_id)
    return _answer(row) if confirmed else intent_object(row)


async def create(
    connect: Connect,
    scope: Scope,
    services: Services,
    params: PaymentIntentCreate,
    recovery: Recovery = NO_KEY,
) -> dict[str, Any]:
    clock = services.clock
    if recovery.resume_from is not None:
        async with connect() as conn:
            made = await _intent(conn, scope, recovery.resume_from)
        if params.confirm and made["status"] == "requires_confirmation":
            # The earlier run died between creating and confirming: confirm it now.
            return await confirm(connect, scope, services, made["id"], PaymentIntentConfirm())
        return await _resumed(connect, scope, made["id"], confirmed=params.confirm)
    async with connect() as conn, conn.transaction():
        if params.customer is not None:
            found = await customers_repo.fetch_customers(conn, scope, [params.customer])
            if not found or found[0]["deleted_at"] is not None:
                raise NotFound("customer", params.customer, param="customer")
        payment_method = None
        if params.payment_method is not None:
            card = await _payment_method(
                conn, scope, services, params.payment_method, params.customer
            )
            payment_method = card["id"]
        try:
            state = states.created(params.amount, params.capture_method, payment_method)
            if params.confirm:
                # A confirm that cannot start is refused before the intent is written:
                # a 400 must leave nothing behind, not an intent its caller never hears of.
                states.confirming(state, None)
        except states.IllegalTransition as error:
            raise illegal(error) from None
        if params.confirm:
            await route(conn, scope, params.amount, params.currency, card)
        now = clock.now()
        row: dict[str, Any] = {
            "id": new_id("pi"),
            "amount": params.amount,
            "currency": params.currency,
            "status": state.status,
            "capture_method": params.capture_method,
            "customer_id": params.customer,
            "payment_method_id": payment_method,
            "description": params.description,
            "metadata": params.metadata,
            "created_at": now,
            "updated_at": now,
        }
        await repo.insert(conn, "payment_intents", scope, row)
        await recovery.checkpoint(conn, row["id"])
        created = await _intent(conn, scope, row["id"])
        await publish(conn, scope, clock, ("payment_intent.created", intent_object(created)))
    if params.confirm:
        return await confirm(connect, scope, services, created["id"], PaymentIntentConfirm())
    return intent_object(created)


async def get(conn: Conn, scope: Scope, intent_id: str) -> dict[str, Any]:
    return intent_object(await _intent(conn, scope, intent_id))


async def list_intents(conn: Conn, scope: Scope, ids: Sequence[str]) -> list[dict[str, Any]]:
    return [intent_object(r) for r in await repo.fetch(conn, "payment_intents", scope, ids)]


async def update(
    conn: Conn, scope: Scope, services: Services, intent_id: str, params: PaymentIntentUpdate
) -> dict[str, Any]:
    row = await _intent(conn, scope, intent_id, lock=True)
    changes: dict[str, Any] = {}
    if params.description is not None:
        changes["description"] = params.description or None
    if params.metadata is not None:
        changes["metadata"] = merge_metadata(row["metadata"], params.metadata)
    # An update that changes nothing writes nothing and emits no event.
    changes = {k: v for k, v in changes.items() if v != row[k]}
    if not changes:
        return intent_object(row)
    changes["updated_at"] = services.clock.now()
    await repo.update(conn, "payment_intents", intent_id, changes)
    obj = intent_object({**row, **changes})
    await publish(conn, scope, services.clock, ("payment_intent.updated", obj))
    return obj


async def _new_charge(
    conn: Conn, scope: Scope, services: Services, intent: dict[str, Any], account_id: str
) -> str:
    now = services.clock.now()
    charge_id = new_id("ch")
    await repo.insert(
        conn,
        "charges",
        scope,
        {
            "id": charge_id,
            "payment_intent_id": intent["id"],
            "connector_account_id": account_id,
            "payment_method_id": intent["payment_method_id"],
            "amount": intent["amount"],
            "currency": intent["currency"],
            "capture": intent["capture_method"] == "automatic",
            "status": "sending",
            "sent_at": now,
            "next_check_at": now + FIRST_CHECK,
            "created_at": now,
            "updated_at": now,
        },
    )
    await repo.update(
        conn, "payment_intents", intent["id"], {"latest_charge_id": charge_id, "updated_at": now}
    )
    return charge_id


async def route(
    conn: Conn, scope: Scope, amount: int, currency: str, card: dict[str, Any]
) -> list[str]:
    """The connector accounts to try for this card payment, in order."""
    rules, known = await accounts.load_routing(conn, scope)
    wanted = routing.RoutingInput(amount, currency, None, f"card:{card['brand']}")
    try:
        return routing.route(rules, known, wanted)
    except routing.NoRoute:
        raise InvalidRequest(
            f"No enabled connector account takes {currency} card payments in"
            f" {'live' if scope.livemode else 'test'} mode: create one at"
            " /v1/connector_accounts.",
            code="no_connector_account",
        ) from None


async def confirm(
    connect: Connect,
    scope: Scope,
    services: Services,
    intent_id: str,
    params: PaymentIntentConfirm,
    recovery: Recovery = NO_KEY,
) -> dict[str, Any]:
    clock = services.clock
    if recovery.resume_from is not None:
        return await _resumed(connect, scope, intent_id, confirmed=True)
    async with connect() as conn, conn.transaction():
        row = await _intent(conn, scope, intent_id, lock=True)
        try:
            after = states.confirming(intent_state(row), params.payment_method)
        except states.IllegalTransition as error:
            raise illegal(error) from None
        if row["invoice_id"] is not None:
            await _require_invoice_attempt(conn, row)
        assert after.payment_method is not None
        card = await _payment_method(
            conn, scope, services, after.payment_method, row["customer_id"]
        )
        chain = await route(conn, scope, row["amount"], row["currency"], card)
        row = {
            **row,
            "status": after.status,
            "payment_method_id": card["id"],
            "capture_method": params.capture_method or row["capture_method"],
            "last_payment_error": None,
            "updated_at": clock.now(),
        }
        await repo.update(
            conn,
            "payment_intents",
            intent_id,
            {
                k: row[k]
                for k in (
                    "status",
                    "payment_method_id",
                    "capture_method",
                    "last_payment_error",
                    "updated_at",
                )
            },
        )
        first = await _new_charge(conn, scope, services, row, chain[0])
        await recovery.checkpoint(conn, intent_id)
        # Last, so that nothing after it can fail and lose a CVC handed out once.
        secret = await vault_service.reveal(conn, scope, clock, services.vault, card["id"])
    charges = {chain[0]: first}

    async def authorize_at(account_id: str) -> dict[str, Any]:
        async with connect() as conn:
            if account_id not in charges:
                async with conn.transaction():
                    charges[account_id] = await _new_charge(conn, scope, services, row, account_id)
            connector = await services.connectors.get(conn, scope, services.vault, account_id)
        answer = await connector.authorize(_authorization(row, charges[account_id], secret))
        async with connect() as conn, conn.transaction():
            return await outcomes.record_attempt(conn, scope, clock, charges[account_id], answer)

    recorded, attempts = await routing.with_failover(chain, authorize_at)
    if recorded is not None and len(attempts) == 1:
        # The first account answered, and recording its answer read the intent as it is.
        return _answer(recorded)
    async with connect() as conn, conn.transaction():
        for attempt in attempts:
            if attempt.error is not None:
                await outcomes.record_attempt(
                    conn, scope, clock, charges[attempt.account_id], attempt.error.classification
                )
        final = await _intent(conn, scope, intent_id)
    return _answer(final)


async def _require_invoice_attempt(conn: Conn, row: dict[str, Any]) -> None:
    """An invoice's intent is confirmed only as the invoice's attempt under way: one
    that failed and was let go must not charge beside the invoice's next attempt."""
    cur = await conn.execute(
        "SELECT payment_intent_id FROM invoices WHERE id = %s FOR SHARE", (row["invoice_id"],)
    )
    found = await cur.fetchone()
    if found is None or found[0] != row["id"]:
        raise InvalidRequest(
            f"This PaymentIntent was an attempt to pay invoice {row['invoice_id']}, which no"
            " longer waits on it: pay the invoice with"
            f" POST /v1/invoices/{row['invoice_id']}/pay.",
            code="payment_intent_unexpected_state",
        )


def _authorization(intent: dict[str, Any], charge_id: str, card: CardSecret) -> Authorization:
    return Authorization(
        idempotency_key=charge_id,
        amount=intent["amount"],
        currency=intent["currency"],
        capture=intent["capture_method"] == "automatic",
        card=card,
        reference=charge_id,
    )


def _answer(row: dict[str, Any]) -> dict[str, Any]:
    """The intent, or Stripe's 402 when its last attempt was declined."""
    obj = intent_object(row)
    error = row["last_payment_error"]
    if row["status"] == "requires_payment_method" and error is not None:
        if error["type"] == "card_error":
            raise CardError(
                error["message"],
                code=error["code"],
                decline_code=error["decline_code"],
                payment_intent=obj,
            )
        raise ProviderUnavailable(error["message"], code=error["code"], payment_intent=obj)
    return obj


async def _begin_operation(
    connect: Connect,
    scope: Scope,
    services: Services,
    intent_id: str,
    operation: str,
    amount: int | None,
    recovery: Recovery,
    reason: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Mark the authorized charge as waiting for a capture or void. Returns the intent and
    the charge to send it for (None: nothing to send, the intent is already done)."""
    clock = services.clock
    async with connect() as conn, conn.transaction():
        row = await _intent(conn, scope, intent_id, lock=True)
        await recovery.checkpoint(conn, intent_id)
        intent = intent_state(row)
        try:
            after = (
                states.captured(intent, amount)
                if operation == "capture"
                else states.canceled(intent)
            )
        except states.IllegalTransition as error:
            raise illegal(error) from None
        charge = (
            await repo.fetch_one(conn, "charges", scope, row["latest_charge_id"], lock=True)
            if row["latest_charge_id"]
            else None
        )
        now = clock.now()
        if charge is None or charge["status"] != "authorized":
            # Nothing is held at a provider: cancel here. (An intent requiring capture
            # always has an authorized charge: states.captured let only such one by.)
            assert operation == "void", f"{intent_id} requires capture with no authorization"
            return await _cancel_here(conn, scope, services, row, reason), None
        take = after.amount_received if operation == "capture" else None
        pending = charge["pending_operation"]
        if pending is not None and (pending, charge["operation_amount"]) != (operation, take):
            raise InvalidRequest(
                f"A {pending} of this PaymentIntent is already under way; retry once it has"
                " finished.",
                code="payment_intent_operation_in_progress",
            )
        await repo.update(
            conn,
            "charges",
            charge["id"],
            {
                "pending_operation": operation,
                "operation_amount": take,
                "next_check_at": now + FIRST_CHECK,
                "updated_at": now,
            },
        )
        if reason is not None:
            await repo.update(
                conn,
                "payment_intents",
                intent_id,
                {"cancellation_reason": reason, "updated_at": now},
            )
        return row, charge


async def _cancel_here(
    conn: Conn, scope: Scope, services: Services, row: dict[str, Any], reason: str | None
) -> dict[str, Any]:
    now = services.clock.now()
    changes = {
        "status": "canceled",
        "amount_capturable": 0,
        "cancellation_reason": reason,
        "canceled_at": now,
        "updated_at": now,
    }
    await repo.update(conn, "payment_intents", row["id"], changes)
    row = {**row, **changes}
    await publish(conn, scope, services.clock, ("payment_intent.canceled", intent_object(row)))
    return row


async def send_operation(
    connect: Connect,
    scope: Scope,
    services: Services,
    charge: dict[str, Any],
    operation: str,
    amount: int | None,
) -> dict[str, Any]:
    """Send (or resend, with the same key) a capture or void and record the answer."""
    clock = services.clock
    async with connect() as conn:
        connector = await services.connectors.get(
            conn, scope, services.vault, charge["connector_account_id"]
        )
    key = operation_key(charge["id"], operation, amount)
    try:
        if operation == "capture":
            assert amount is not None
            answer = await connector.capture(key, charge["provider_id"], amount)
        else:
            answer = await connector.void(key, charge["provider_id"])
    except ConnectorError as error:
        async with connect() as conn, conn.transaction():
            if error.in_doubt:
                # The janitor resends it with the same key at the time set.
                return await _intent(conn, scope, charge["payment_intent_id"])
            row = await outcomes.operation_refused(conn, scope, clock, charge["id"])
        reason = error.classification
        if reason.decision is Decision.TECHNICAL:
            raise ProviderUnavailable(
                reason.message, code=reason.code, payment_intent=intent_object(row)
            ) from None
        raise InvalidRequest(
            f"The provider refused to {operation} this payment: {reason.message}",
            code=reason.code,
        ) from None
    async with connect() as conn, conn.transaction():
        return await outcomes.record_operation(conn, scope, clock, charge["id"], answer)


async def capture(
    connect: Connect,
    scope: Scope,
    services: Services,
    intent_id: str,
    params: PaymentIntentCapture,
    recovery: Recovery = NO_KEY,
) -> dict[str, Any]:
    if recovery.resume_from is not None:
        return await _resumed(connect, scope, intent_id, confirmed=False)
    row, charge = await _begin_operation(
        connect, scope, services, intent_id, "capture", params.amount_to_capture, recovery
    )
    if charge is None:
        return intent_object(row)
    take = states.captured(intent_state(row), params.amount_to_capture).amount_received
    return intent_object(await send_operation(connect, scope, services, charge, "capture", take))


async def cancel(
    connect: Connect,
    scope: Scope,
    services: Services,
    intent_id: str,
    params: PaymentIntentCancel,
    recovery: Recovery = NO_KEY,
) -> dict[str, Any]:
    if recovery.resume_from is not None:
        return await _resumed(connect, scope, intent_id, confirmed=False)
    row, charge = await _begin_operation(
        connect, scope, services, intent_id, "void", None, recovery, params.cancellation_reason
    )
    if charge is None:
        return intent_object(row)
    return intent_object(await send_operation(connect, scope, services, charge, "void", None))
