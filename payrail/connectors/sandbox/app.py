"""The sandbox PSP over HTTP (docs/sandbox-psp.md is the contract).

A POST goes: authenticate, require an Idempotency-Key, count the attempt, pick its fault.
A fault "before" answers without touching anything. Otherwise the request takes its key's
lock, so a concurrent request with the same key waits for it; under the lock it replays
the key's stored reply, refuses a different request (409), or is processed and its reply
stored. Processing is synchronous, so a payment and the record of the reply that made it
are written together. A fault "after" then replaces or delays the answer, never what was
stored: a retry with the same key gets what processing produced.

Every state change also makes a webhook event, in the same synchronous step as the change
(so a replay, which changes nothing, makes none); ``webhooks`` delivers it in the
background, after the reply has gone.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from payrail.clock import Clock, unix
from payrail.connectors.sandbox import processor, reports, schemas
from payrail.connectors.sandbox.config import MAX_WEBHOOK_DELAY_MS, SandboxConfig, check_webhook_url
from payrail.connectors.sandbox.errors import SandboxError, invalid_request, resource_missing
from payrail.connectors.sandbox.faults import HEADER, Fault, FaultKind, FaultPlan
from payrail.connectors.sandbox.faults import parse as parse_fault
from payrail.connectors.sandbox.processor import Payment
from payrail.connectors.sandbox.store import Record, Reply, Store
from payrail.connectors.sandbox.webhooks import EVENT_TYPES, Event, Sender, WebhookSettings
from payrail.ids import new_id

_BEFORE = frozenset({FaultKind.ERROR_BEFORE, FaultKind.TIMEOUT_BEFORE})
log = structlog.get_logger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
# Beyond the contract, for people and tests reading replies: which fault hit, and whether a
# reply is a stored one (Stripe sends the same Idempotent-Replayed header).
INJECTED_HEADER = "Sandbox-Fault-Injected"
REPLAYED_HEADER = "Idempotent-Replayed"

Process = Callable[[Any, str], Reply]


def _json(value: object) -> bytes:
    return orjson.dumps(value)


def _error_reply(error: SandboxError) -> Reply:
    return Reply(error.status, _json(error.body()))


def _response(reply: Reply, headers: dict[str, str] | None = None) -> Response:
    return Response(reply.body, reply.status, headers, media_type="application/json")


def _ok(value: object) -> Reply:
    return Reply(200, _json(value))


@dataclass(frozen=True, slots=True)
class _Body:
    """A parsed request body; ``canonical`` is what the idempotency fingerprint covers, so
    key order and whitespace do not make a retry a different request."""

    value: object
    canonical: bytes
    error: SandboxError | None = None

    @classmethod
    def parse(cls, raw: bytes) -> _Body:
        if not raw.strip():
            return cls({}, b"{}")
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return cls(None, raw, invalid_request("The request body is not valid JSON."))
        return cls(value, orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


class Sandbox:
    def __init__(self, config: SandboxConfig, clock: Clock) -> None:
        self.secret = config.secret.encode()
        self.clock = clock
        self.store = Store()
        self.plan = FaultPlan(config.fault_rate, config.seed, config.hang_seconds)
        self.hooks = WebhookSettings.of(config)
        self.report_plan = reports.Plan()
        self.sender = Sender(
            clock,
            self.store.add_delivery,
            retry_seconds=config.webhook_retry_seconds,
            timeout_seconds=config.webhook_timeout_seconds,
        )

    # -- the pipeline every request goes through ---------------------------------------

    def _authenticate(self, request: Request) -> None:
        scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(secret.encode(), self.secret):
            raise SandboxError(401, "unauthorized", "Invalid or missing sandbox secret.")

    def _fault(self, request: Request, key: str | None, attempt: int) -> Fault | None:
        try:
            fault = self.plan.fault_for(request.headers.get(HEADER), key, attempt)
        except ValueError as exc:
            raise invalid_request(str(exc), HEADER) from None
        if fault is not None:
            log.info(
                "sandbox fault injected",
                fault=str(fault),
                drawn=HEADER not in request.headers,
                method=request.method,
                path=request.url.path,
                idempotency_key=key,
                attempt=attempt,
            )
        return fault

    async def _around(
        self, fault: Fault | None, work: Callable[[], Awaitable[tuple[Reply, bool]]]
    ) -> Response:
        """Run ``work`` (which returns a reply and whether it is a replay) under a fault."""
        hang = self.plan.hang_seconds
        kind = fault.kind if fault else None
        headers = {INJECTED_HEADER: str(fault)} if fault else {}
        if kind is FaultKind.ERROR_BEFORE or kind is FaultKind.TIMEOUT_BEFORE:
            if kind is FaultKind.TIMEOUT_BEFORE:
                await asyncio.sleep(hang)
            error = SandboxError(503, "unavailable", f"The processor is unavailable ({kind}).")
            return _response(_error_reply(error), headers)
        reply, replayed = await work()
        if kind is FaultKind.ERROR_AFTER:
            error = SandboxError(500, "internal", "The processor failed answering.")
            return _response(_error_reply(error), headers)
        if kind is FaultKind.TIMEOUT_AFTER:
            await asyncio.sleep(hang)
        if replayed:
            headers[REPLAYED_HEADER] = "true"
        return _response(reply, headers)

    async def _post(self, request: Request, process: Process) -> Response:
        self._authenticate(request)
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if not key or len(key) > MAX_KEY_LENGTH:
            raise invalid_request(
                f"Every POST needs an {IDEMPOTENCY_HEADER} header of 1 to {MAX_KEY_LENGTH} "
                "characters.",
                IDEMPOTENCY_HEADER,
            )
        fault = self._fault(request, key, self.store.next_attempt(key))
        if fault is not None and fault.kind in _BEFORE and self.store.record(key) is not None:
            # A processor that already has this key's result replays it: its "unavailable"
            # would claim "not processed" for a key that did charge.
            fault = None
        body = _Body.parse(await request.body())
        fingerprint = self.store.fingerprint("POST", request.url.path, body.canonical)

        async def work() -> tuple[Reply, bool]:
            async with self.store.locks.hold(key):
                # Latency is a slow processor: the request holds its key meanwhile, so a
                # retry arriving now waits for this one and replays its reply.
                if fault is not None and fault.kind is FaultKind.LATENCY:
                    await asyncio.sleep(fault.latency_ms / 1000)
                record = self.store.record(key)
                if record is not None:
                    if hmac.compare_digest(record.fingerprint, fingerprint):
                        return record.reply, True
                    mismatch = SandboxError(
                        409,
                        "idempotency_mismatch",
                        f"The {IDEMPOTENCY_HEADER} was first used with another path or body.",
                        param=IDEMPOTENCY_HEADER,
                    )
                    return _error_reply(mismatch), False
                # No await from here to remember(): the effect and its stored reply are one.
                try:
                    if body.error is not None:
                        raise body.error
                    reply = process(body.value, key)
                except SandboxError as exc:
                    reply = _error_reply(exc)
                self.store.remember(key, Record(fingerprint, reply))
                return reply, False

        return await self._around(fault, work)

    async def _get(self, request: Request, read: Callable[[], object]) -> Response:
        self._authenticate(request)
        # Only the header faults a GET: rates are for POSTs, and a GET has no key to draw on.
        fault = self._fault(request, None, 0)

        async def work() -> tuple[Reply, bool]:
            if fault is not None and fault.kind is FaultKind.LATENCY:
                await asyncio.sleep(fault.latency_ms / 1000)
            try:
                return _ok(read()), False
            except SandboxError as exc:
                return _error_reply(exc), False

        return await self._around(fault, work)

    # -- processing ----------------------------------------------------------------------

    def _now(self) -> int:
        return unix(self.clock.now())

    def _emit(self, type: str, made: dict[str, Any]) -> None:
        """Record the event for a state change of ``made`` (an object's JSON) and start
        sending it; synchronous, so it is part of the change it reports."""
        if type not in EVENT_TYPES:
            raise AssertionError(f"no such event type: {type}")
        object_id: str = made["id"]
        sequence = self.store.next_sequence(object_id)
        event = Event(new_id("sbxevt"), type, self._now(), sequence, made)
        self.store.add_event(event)
        log.info("sandbox event", event_id=event.id, type=type, object=object_id, sequence=sequence)
        # The seed of the moment, as for faults: draws depend on it and the event id only.
        self.sender.send(event, self.hooks, self.plan.seed)

    def _payment(self, payment_id: str) -> Payment:
        payment = self.store.payments.get(payment_id)
        if payment is None:
            raise resource_missing("payment", payment_id)
        return payment

    def _create(self, body: object, key: str) -> Reply:
        request = schemas.payment_request(body)
        payment = processor.charge(
            request, id=new_id("sbxpay"), idempotency_key=key, created=self._now()
        )
        self.store.add_payment(payment)
        log.info(
            "sandbox payment",
            payment=payment.id,
            status=payment.status,
            decline_code=payment.decline_code,
            amount=payment.amount,
            currency=payment.currency,
            brand=payment.card.brand,
            last4=payment.card.last4,
            reference=payment.reference,
            idempotency_key=key,
        )
        self._emit(f"payment.{payment.status}", payment.to_json())
        return _ok(payment.to_json())

    def _capture(self, payment_id: str) -> Process:
        def process(body: object, key: str) -> Reply:
            amount = schemas.optional_amount(body)
            payment = processor.capture(self._payment(payment_id), amount, at=self._now())
            self.store.update_payment(payment)
            log.info("sandbox capture", payment=payment.id, amount=payment.amount_captured)
            self._emit("payment.captured", payment.to_json())
            return _ok(payment.to_json())

        return process

    def _void(self, payment_id: str) -> Process:
        def process(body: object, key: str) -> Reply:
            schemas.empty(body)
            payment = processor.void(self._payment(payment_id))
            self.store.update_payment(payment)
            log.info("sandbox void", payment=payment.id)
            self._emit("payment.voided", payment.to_json())
            return _ok(payment.to_json())

        return process

    def _refund(self, payment_id: str) -> Process:
        def process(body: object, key: str) -> Reply:
            amount = schemas.optional_amount(body)
            payment, refund = processor.refund(
                self._payment(payment_id),
                amount,
                id=new_id("sbxre"),
                idempotency_key=key,
                created=self._now(),
            )
            self.store.add_refund(payment, refund)
            log.info("sandbox refund", payment=payment.id, refund=refund.id, amount=refund.amount)
            self._emit("refund.succeeded", refund.to_json())
            return _ok(refund.to_json())

        return process

    # -- endpoints -----------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return _response(_ok({"ok": True}))

    async def create_payment(self, request: Request) -> Response:
        return await self._post(request, self._create)

    async def capture_payment(self, request: Request) -> Response:
        return await self._post(request, self._capture(request.path_params["id"]))

    async def void_payment(self, request: Request) -> Response:
        return await self._post(request, self._void(request.path_params["id"]))

    async def refund_payment(self, request: Request) -> Response:
        return await self._post(request, self._refund(request.path_params["id"]))

    async def get_payment(self, request: Request) -> Response:
        payment_id: str = request.path_params["id"]
        return await self._get(request, lambda: self._payment(payment_id).to_json())

    @staticmethod
    def _key_param(request: Request) -> str:
        key = request.query_params.get("idempotency_key")
        if not key:
            raise invalid_request("idempotency_key is required.", "idempotency_key")
        return key

    async def list_payments(self, request: Request) -> Response:
        def read() -> object:
            payment = self.store.payment_by_key(self._key_param(request))
            return {"object": "list", "data": [payment.to_json()] if payment else []}

        return await self._get(request, read)

    async def list_refunds(self, request: Request) -> Response:
        def read() -> object:
            refund = self.store.refund_by_key(self._key_param(request))
            return {"object": "list", "data": [refund.to_json()] if refund else []}

        return await self._get(request, read)

    async def set_faults(self, request: Request) -> Response:
        # A control call for tests: no Idempotency-Key needed (setting the same values twice
        # is harmless) and never faulted itself, so a test can always turn faults off.
        self._authenticate(request)
        body = _Body.parse(await request.body())
        if body.error is not None:
            raise body.error
        self.plan, self.hooks = _settings(body.value, self.plan, self.hooks)
        log.info(
            "sandbox faults set",
            **self.plan.to_json(),
            webhooks=self.hooks.url is not None,  # not the URL: it may carry a token
            webhook_duplicate_rate=self.hooks.duplicate_rate,
            webhook_delay_ms=self.hooks.delay_ms,
        )
        reply = self.plan.to_json()
        # The webhook settings (never the secret) once they matter or were asked about, so
        # that the reply stays as it was for callers that know only faults.
        asked = isinstance(body.value, dict) and any(name in _WEBHOOK_FIELDS for name in body.value)
        if self.hooks.url is not None or asked:
            reply |= self.hooks.to_json()
        return _response(_ok(reply))

    async def create_dispute(self, request: Request) -> Response:
        # A control call, like set_faults: never faulted and needs no Idempotency-Key; a
        # payment is disputed once, so repeating the call cannot make a second dispute.
        self._authenticate(request)
        body = _Body.parse(await request.body())
        if body.error is not None:
            raise body.error
        asked = schemas.dispute_request(body.value)
        dispute = processor.dispute(
            self._payment(asked.payment),
            asked.amount,
            asked.reason,
            disputed=self.store.disputed(asked.payment),
            id=new_id("sbxdp"),
            created=self._now(),
        )
        self.store.add_dispute(dispute)
        log.info(
            "sandbox dispute",
            dispute=dispute.id,
            payment=dispute.payment,
            amount=dispute.amount,
            reason=dispute.reason,
        )
        self._emit("dispute.created", dispute.to_json())
        return _response(_ok(dispute.to_json()))

    # -- settlement reports ----------------------------------------------------------------
    # Control-like reads: authenticated, never faulted (a report is not a payment call).
    # A busy day's file takes seconds to write, so it is written in a thread, from a copy
    # of the store taken here (its objects are immutable; its dicts are not).

    def _activity(self) -> reports.Activity:
        store = self.store
        return reports.Activity(
            dict(store.payments),
            list(store.refunds.values()),
            list(store.disputes.values()),
            store.account,
        )

    @staticmethod
    def _query(request: Request, known: frozenset[str]) -> dict[str, str]:
        for name in request.query_params:
            if name not in known:
                raise invalid_request(f"Received unknown parameter: {name}", name)
        return dict(request.query_params)

    async def settlement_report(self, request: Request) -> Response:
        self._authenticate(request)
        query = self._query(request, _REPORT_PARAMS)
        day = reports.parse_day(query.get("date"))
        format = query.get("format")
        if format not in reports.FORMATS:
            raise invalid_request(f"format must be one of {', '.join(reports.FORMATS)}.", "format")
        try:
            text = await run_in_threadpool(
                reports.settlement_report, format, self._activity(), day, self.report_plan
            )
        except reports.Unrepresentable as exc:
            raise invalid_request(str(exc), "format") from None
        log.info("sandbox settlement report", date=str(day), format=format)
        return _csv_response(text, reports.file_name(format, day))

    async def bank_statement(self, request: Request) -> Response:
        self._authenticate(request)
        day = reports.parse_day(self._query(request, _STATEMENT_PARAMS).get("date"))
        text = await run_in_threadpool(reports.statement, self._activity(), day, self.report_plan)
        log.info("sandbox bank statement", date=str(day))
        return _csv_response(text, reports.file_name("bank", day))

    async def set_report_discrepancies(self, request: Request) -> Response:
        # A control call, like set_faults: no Idempotency-Key, never faulted. The body is
        # the whole setting: what it leaves out is 0.
        self._authenticate(request)
        body = _Body.parse(await request.body())
        if body.error is not None:
            raise body.error
        self.report_plan, day = reports.plan_request(body.value, self.report_plan)
        plan = self.report_plan
        set_to = plan.default if day is None else plan.on(day)
        asked = {**set_to.to_json(), "date": None if day is None else str(day)}
        log.info("sandbox report discrepancies set", **asked)
        return _response(_ok(asked))

    async def record(self, request: Request) -> Response:
        self._authenticate(request)
        store = self.store
        return _response(
            _ok(
                {
                    "payments": [payment.to_json() for payment in store.payments.values()],
                    "refunds": [refund.to_json() for refund in store.refunds.values()],
                    "disputes": [dispute.to_json() for dispute in store.disputes.values()],
                    "events": [event.to_json() for event in store.events],
                    "deliveries": [attempt.to_json() for attempt in store.deliveries],
                }
            )
        )


_REPORT_PARAMS = frozenset({"date", "format"})
_STATEMENT_PARAMS = frozenset({"date"})


def _csv_response(text: str, file_name: str) -> Response:
    disposition = f'attachment; filename="{file_name}"'
    return Response(text.encode(), 200, {"Content-Disposition": disposition}, media_type="text/csv")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_FAULT_FIELDS = frozenset({"rate", "seed", "hang_seconds", "kinds"})
_WEBHOOK_FIELDS = frozenset(
    {"webhook_url", "webhook_secret", "webhook_duplicate_rate", "webhook_delay_ms"}
)


def _fault_plan(value: dict[str, Any], current: FaultPlan) -> FaultPlan:
    rate = value.get("rate", current.rate)
    if not _number(rate) or not 0 <= rate <= 1:
        raise invalid_request("rate must be a number from 0 to 1.", "rate")
    seed = value.get("seed", current.seed)
    if type(seed) is not int:
        raise invalid_request("seed must be an integer.", "seed")
    hang = value.get("hang_seconds", current.hang_seconds)
    if not _number(hang) or not 0 <= hang <= 3600:
        raise invalid_request("hang_seconds must be a number from 0 to 3600.", "hang_seconds")
    kinds = current.kinds
    if "kinds" in value:
        asked = value["kinds"]
        try:
            if (
                not isinstance(asked, list)
                or not asked
                or not all(isinstance(k, str) for k in asked)
            ):
                raise ValueError("kinds must be a non-empty list of fault kinds.")
            kinds = tuple(parse_fault(k) for k in asked)
        except ValueError as exc:
            raise invalid_request(str(exc).replace(HEADER, "each of kinds"), "kinds") from None
    return FaultPlan(float(rate), seed, float(hang), kinds)


def _webhook_settings(value: dict[str, Any], current: WebhookSettings) -> WebhookSettings:
    # Messages never quote a value: a URL or a secret may be one.
    url = value.get("webhook_url", current.url)
    if url is not None:
        try:
            if not isinstance(url, str):
                raise ValueError
            check_webhook_url(url)
        except ValueError:
            raise invalid_request(
                "webhook_url must be an absolute http:// or https:// URL, or null.", "webhook_url"
            ) from None
    secret = value.get("webhook_secret", current.secret)
    if not isinstance(secret, str) or not secret:
        raise invalid_request("webhook_secret must be a non-empty string.", "webhook_secret")
    rate = value.get("webhook_duplicate_rate", current.duplicate_rate)
    if not _number(rate) or not 0 <= rate <= 1:
        raise invalid_request(
            "webhook_duplicate_rate must be a number from 0 to 1.", "webhook_duplicate_rate"
        )
    delay = value.get("webhook_delay_ms", current.delay_ms)
    if type(delay) is not int or not 0 <= delay <= MAX_WEBHOOK_DELAY_MS:
        raise invalid_request(
            f"webhook_delay_ms must be an integer from 0 to {MAX_WEBHOOK_DELAY_MS}.",
            "webhook_delay_ms",
        )
    return WebhookSettings(url, secret, float(rate), delay)


def _settings(
    value: object, plan: FaultPlan, hooks: WebhookSettings
) -> tuple[FaultPlan, WebhookSettings]:
    """``{"rate", "seed", "hang_seconds", "webhook_url", "webhook_secret",
    "webhook_duplicate_rate", "webhook_delay_ms"}``, each optional: what is left out is
    kept. All are checked before any applies."""
    if not isinstance(value, dict):
        raise invalid_request("The request body must be a JSON object.")
    for name in value:
        if name not in _FAULT_FIELDS and name not in _WEBHOOK_FIELDS:
            raise invalid_request(f"Received unknown parameter: {name}", name)
    return _fault_plan(value, plan), _webhook_settings(value, hooks)


async def _sandbox_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SandboxError)
    return _response(_error_reply(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        code, message = "resource_missing", "Unrecognized request URL"
    elif exc.status_code == 405:
        code, message = "invalid_request", "Method not allowed for"
    else:
        code, message = "invalid_request", str(exc.detail)
    message = f"{message} ({request.method}: {request.url.path})."
    return _response(_error_reply(SandboxError(exc.status_code, code, message)))


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after answering, so the traceback is still logged; nothing about
    # the request (which may hold a card number) goes into the reply.
    return _response(_error_reply(SandboxError(500, "internal", "An internal error occurred.")))


def create_app(config: SandboxConfig, clock: Clock) -> Starlette:
    sandbox = Sandbox(config, clock)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # On stop, deliveries still waiting or retrying are dropped, as a stopped PSP's are.
        try:
            yield
        finally:
            await sandbox.sender.aclose()

    routes = [
        Route("/health", sandbox.health, methods=["GET"]),
        Route("/v1/payments", sandbox.create_payment, methods=["POST"]),
        Route("/v1/payments", sandbox.list_payments, methods=["GET"]),
        Route("/v1/payments/{id}", sandbox.get_payment, methods=["GET"]),
        Route("/v1/payments/{id}/capture", sandbox.capture_payment, methods=["POST"]),
        Route("/v1/payments/{id}/void", sandbox.void_payment, methods=["POST"]),
        Route("/v1/payments/{id}/refunds", sandbox.refund_payment, methods=["POST"]),
        Route("/v1/refunds", sandbox.list_refunds, methods=["GET"]),
        Route("/sandbox/faults", sandbox.set_faults, methods=["POST"]),
        Route("/sandbox/disputes", sandbox.create_dispute, methods=["POST"]),
        Route("/sandbox/record", sandbox.record, methods=["GET"]),
        Route("/sandbox/settlement_reports", sandbox.settlement_report, methods=["GET"]),
        Route("/sandbox/bank_statements", sandbox.bank_statement, methods=["GET"]),
        Route("/sandbox/report_discrepancies", sandbox.set_report_discrepancies, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            SandboxError: _sandbox_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
        lifespan=lifespan,
    )
    app.state.sandbox = sandbox  # for tests that look inside
    return app
