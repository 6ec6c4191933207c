"""`Authorization: Bearer sk_...` (or HTTP Basic with the key as user name, as curl -u)."""

from __future__ import annotations

import base64
import binascii

from fastapi import Request

from payrail.api.context import RequestContext, Services
from payrail.errors import Unauthenticated
from payrail.tenants import keys
from payrail.tenants.service import authenticate


def _secret(header: str | None) -> str:
    if not header:
        raise Unauthenticated(
            "You did not provide an API key. Provide it in the Authorization header, "
            "as 'Authorization: Bearer YOUR_SECRET_KEY'."
        )
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(credentials, validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            pass
    raise Unauthenticated("Invalid Authorization header; use 'Bearer YOUR_SECRET_KEY'.")


async def require_key(request: Request) -> RequestContext:
    services: Services = request.app.state.services
    secret = _secret(request.headers.get("authorization"))
    async with services.pool.connection() as conn:
        scope = await authenticate(conn, secret)
    if scope is None:
        raise Unauthenticated(f"Invalid API Key provided: {keys.redact(secret)}")
    return RequestContext(services, scope)
