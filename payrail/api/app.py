"""The FastAPI application: Stripe-shaped errors, request ids, routers per domain."""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payrail.api.context import Services
from payrail.billing.catalog.endpoints import router as catalog_router
from payrail.billing.invoices.credit_note_endpoints import router as credit_notes_router
from payrail.billing.invoices.endpoints import router as invoices_router
from payrail.billing.subscriptions.endpoints import router as subscriptions_router
from payrail.billing.test_clocks.endpoints import router as test_clocks_router
from payrail.connectors.accounts.endpoints import router as connector_accounts_router
from payrail.customers.endpoints import router as customers_router
from payrail.dunning.endpoints import router as dunning_router
from payrail.errors import ApiFailure, InvalidRequest, PayrailError
from payrail.events.endpoints import router as events_router
from payrail.events.webhooks.endpoints import router as webhook_endpoints_router
from payrail.ids import new_id
from payrail.ledger.endpoints import router as ledger_router
from payrail.ops.metrics import REGISTRY
from payrail.payments.endpoints import router as payments_router
from payrail.payments.webhook_endpoints import router as webhooks_router
from payrail.recon.endpoints import router as recon_router
from payrail.vault.endpoints import router as payment_methods_router

log = structlog.get_logger(__name__)


class RequestIdMiddleware:
    """Every response carries a `Request-Id`, as Stripe's do."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_id("req").encode()
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", []).append((b"request-id", request_id))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Answered here, inside this middleware, so that a 500 carries its id too.
            log.exception("unhandled error", request_id=request_id.decode())
            if started:
                raise
            await _error(ApiFailure("An internal error occurred."))(scope, receive, send_with_id)


def _json(status: int, body: dict[str, object]) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _error(error: PayrailError) -> Response:
    return _json(error.status, error.body())


async def _payrail_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PayrailError)
    return _error(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = (
        f"Unrecognized request URL ({request.method}: {request.url.path})."
        if exc.status_code in (404, 405)
        else str(exc.detail)
    )
    return _json(exc.status_code, InvalidRequest(message).body())


async def _validation_error(request: Request, exc: Exception) -> Response:
    return _error(InvalidRequest(str(exc)))


async def _metrics(request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="payrail",
        version="1",
        redirect_slashes=False,
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    handlers: dict[Any, Any] = {
        PayrailError: _payrail_error,
        HTTPException: _http_error,
        RequestValidationError: _validation_error,
    }
    for exc_type, handler in handlers.items():
        app.add_exception_handler(exc_type, handler)
    app.include_router(ledger_router)
    app.include_router(payment_methods_router)
    app.include_router(customers_router)
    app.include_router(connector_accounts_router)
    app.include_router(payments_router)
    app.include_router(webhooks_router)
    app.include_router(webhook_endpoints_router)
    app.include_router(events_router)
    app.include_router(catalog_router)
    app.include_router(test_clocks_router)
    app.include_router(subscriptions_router)
    app.include_router(invoices_router)
    app.include_router(credit_notes_router)
    app.include_router(dunning_router)
    app.include_router(recon_router)
    # A plain route, outside /v1 and the API's auth: scraped by Prometheus from inside
    # the deployment (docs/operations.md), never exposed to merchants.
    app.add_route("/metrics", _metrics, include_in_schema=False)
    app.add_middleware(RequestIdMiddleware)
    return app
