"""The FastAPI application: Stripe-shaped errors, request ids, routers per domain."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import ORJSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payrail.api.context import Services
from payrail.errors import ApiFailure, InvalidRequest, PayrailError
from payrail.ids import new_id
from payrail.ledger.endpoints import router as ledger_router


class RequestIdMiddleware:
    """Every response carries a `Request-Id`, as Stripe's do."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_id("req").encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"request-id", request_id))
            await send(message)

        await self.app(scope, receive, send_with_id)


def _error(error: PayrailError) -> ORJSONResponse:
    return ORJSONResponse(error.body(), status_code=error.status)


async def _payrail_error(request: Request, exc: Exception) -> ORJSONResponse:
    assert isinstance(exc, PayrailError)
    return _error(exc)


async def _http_error(request: Request, exc: Exception) -> ORJSONResponse:
    assert isinstance(exc, HTTPException)
    message = (
        f"Unrecognized request URL ({request.method}: {request.url.path})."
        if exc.status_code in (404, 405)
        else str(exc.detail)
    )
    return ORJSONResponse(InvalidRequest(message).body(), status_code=exc.status_code)


async def _validation_error(request: Request, exc: Exception) -> ORJSONResponse:
    return _error(InvalidRequest(str(exc)))


async def _unexpected(request: Request, exc: Exception) -> ORJSONResponse:
    return _error(ApiFailure("An internal error occurred."))


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="payrail",
        version="1",
        default_response_class=ORJSONResponse,
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    handlers: dict[Any, Any] = {
        PayrailError: _payrail_error,
        HTTPException: _http_error,
        RequestValidationError: _validation_error,
        Exception: _unexpected,
    }
    for exc_type, handler in handlers.items():
        app.add_exception_handler(exc_type, handler)
    app.include_router(ledger_router)
    app.add_middleware(RequestIdMiddleware)
    return app
