"""How every endpoint reads parameters, runs its work and answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from fastapi import Request, Response

from payrail.api import idempotency
from payrail.api.context import RequestContext
from payrail.api.params import ParamError, decode_body, decode_query
from payrail.api.schemas import Params, parse
from payrail.errors import InvalidRequest, NotFound
from payrail.tenants.scope import Scope
from payrail.vault.cards import mask_card_numbers

P = TypeVar("P", bound=Params)
Conn = idempotency.Conn

MAX_BODY = 1 << 20


def json_response(status: int, body: bytes, *, replayed: bool = False) -> Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return Response(body, status_code=status, media_type="application/json", headers=headers)


async def body_params(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise InvalidRequest(f"Request body is larger than {MAX_BODY} bytes.")
    try:
        return decode_body(request.headers.get("content-type"), body)
    except ParamError as exc:
        raise InvalidRequest(exc.message, param=exc.param or None) from None


def query_params(request: Request) -> dict[str, Any]:
    try:
        return decode_query(request.url.query)
    except ParamError as exc:
        raise InvalidRequest(exc.message, param=exc.param or None) from None


def _check_path(request: Request) -> None:
    """An id with a NUL byte cannot exist (PostgreSQL text cannot hold one)."""
    for name, value in request.path_params.items():
        if "\x00" in str(value):
            raise NotFound("object", str(value).replace("\x00", "\\u0000"), param=name)


async def _claim(
    request: Request, ctx: RequestContext, raw: dict[str, Any]
) -> idempotency.Claim | idempotency.Outcome | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    idempotency.check_key(key)
    async with ctx.services.pool.connection() as conn:
        now = ctx.services.clock.now()
        digest = idempotency.request_hash(
            await ctx.services.vault.digest_key(conn, now),
            request.method,
            request.url.path,
            raw,
        )
        return await idempotency.claim(
            conn,
            ctx.scope,
            key,
            request.method,
            # Kept as written only when nothing in it could be a card number.
            mask_card_numbers(request.url.path),
            digest,
            now,
        )


async def write(
    request: Request,
    ctx: RequestContext,
    model: type[P],
    work: Callable[[Conn, Scope, P], Awaitable[dict[str, Any]]],
) -> Response:
    """A state-changing call: parameters validated first (a bad one changes nothing and is
    not remembered by an Idempotency-Key), then the work in one transaction."""
    _check_path(request)
    raw = await body_params(request)
    params = parse(model, raw)
    claimed = await _claim(request, ctx, raw)
    if isinstance(claimed, idempotency.Outcome):
        return json_response(claimed.status, claimed.body, replayed=True)
    outcome = await idempotency.execute(
        ctx.services.pool.connection, claimed, lambda conn: work(conn, ctx.scope, params)
    )
    return json_response(outcome.status, outcome.body)


async def write_steps(
    request: Request,
    ctx: RequestContext,
    model: type[P],
    work: Callable[[Callable[[], Any], Scope, P, idempotency.Recovery], Awaitable[dict[str, Any]]],
) -> Response:
    """A state-changing call that talks to a provider: `work` gets the pool's
    `connection` and commits what it is about to send before sending it, checkpointing
    the object it makes so that a retry under the same key carries on with it."""
    _check_path(request)
    raw = await body_params(request)
    params = parse(model, raw)
    claimed = await _claim(request, ctx, raw)
    if isinstance(claimed, idempotency.Outcome):
        return json_response(claimed.status, claimed.body, replayed=True)
    outcome = await idempotency.execute_steps(
        ctx.services.pool.connection,
        claimed,
        lambda connect, recovery: work(connect, ctx.scope, params, recovery),
    )
    return json_response(outcome.status, outcome.body)


async def read(
    request: Request,
    ctx: RequestContext,
    model: type[P],
    work: Callable[[Conn, Scope, P], Awaitable[dict[str, Any]]],
) -> Response:
    _check_path(request)
    params = parse(model, query_params(request))
    async with ctx.services.pool.connection() as conn:
        return json_response(200, orjson.dumps(await work(conn, ctx.scope, params)))


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline(item, defs) for item in schema]
    return schema


def request_body(model: type[Params]) -> dict[str, Any]:
    """OpenAPI for a body FastAPI does not parse itself (we take JSON and Stripe's forms)."""
    schema = model.model_json_schema()
    inlined = _inline(schema, schema.get("$defs", {}))
    content = {"schema": inlined}
    return {
        "requestBody": {
            "content": {
                "application/x-www-form-urlencoded": content,
                "application/json": content,
            }
        }
    }
