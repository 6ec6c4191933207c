"""The connector for payrail's sandbox PSP (docs/sandbox-psp.md), over real HTTP.

Whether a failed call may have charged is decided by what reached the wire: a refused
connection sent nothing (technical); a timeout or a dropped connection after sending may
have been processed (in doubt). The sandbox documents one 5xx as unprocessed, 503
`unavailable`, so that one alone is technical; any other 5xx is in doubt.
"""

from __future__ import annotations

from typing import Any

import httpx

from payrail.connectors.base import Authorization, ConnectorError, ProviderPayment, ProviderRefund
from payrail.connectors.declines import classify, classify_transport

PROVIDER = "sandbox"


def _payment(body: dict[str, Any]) -> ProviderPayment:
    code = body.get("decline_code")
    return ProviderPayment(
        provider_id=body["id"],
        status=body["status"],
        amount=body["amount"],
        amount_captured=body["amount_captured"],
        amount_refunded=body["amount_refunded"],
        fee=body["fee"],
        decline=classify(PROVIDER, code) if body["status"] == "declined" and code else None,
    )


def _refund(body: dict[str, Any]) -> ProviderRefund:
    return ProviderRefund(body["id"], body["payment"], body["amount"], body["status"])


class SandboxConnector:
    provider = PROVIDER

    def __init__(
        self,
        base_url: str,
        secret: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {secret}"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(
        self, method: str, path: str, *, key: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": key} if key is not None else {}
        try:
            reply = await self._http.request(method, path, headers=headers, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ConnectorError(classify_transport(sent=False, status=None)) from exc
        except httpx.TransportError as exc:
            raise ConnectorError(classify_transport(sent=True, status=None)) from exc
        if reply.status_code == 200:
            body: dict[str, Any] = reply.json()
            return body
        if reply.status_code == 503 and _error_code(reply) == "unavailable":
            raise ConnectorError(classify_transport(sent=False, status=None))
        raise ConnectorError(classify_transport(sent=True, status=reply.status_code))

    async def authorize(self, request: Authorization) -> ProviderPayment:
        card = request.card
        body = {
            "amount": request.amount,
            "currency": request.currency.lower(),
            "capture": request.capture,
            "card": {
                "number": card.number,
                "exp_month": card.exp_month,
                "exp_year": card.exp_year,
                **({"cvc": card.cvc} if card.cvc is not None else {}),
            },
            "reference": request.reference,
        }
        return _payment(
            await self._call("POST", "/v1/payments", key=request.idempotency_key, json=body)
        )

    async def capture(self, idempotency_key: str, provider_id: str, amount: int) -> ProviderPayment:
        path = f"/v1/payments/{provider_id}/capture"
        return _payment(
            await self._call("POST", path, key=idempotency_key, json={"amount": amount})
        )

    async def void(self, idempotency_key: str, provider_id: str) -> ProviderPayment:
        path = f"/v1/payments/{provider_id}/void"
        return _payment(await self._call("POST", path, key=idempotency_key, json={}))

    async def refund(self, idempotency_key: str, provider_id: str, amount: int) -> ProviderRefund:
        path = f"/v1/payments/{provider_id}/refunds"
        return _refund(await self._call("POST", path, key=idempotency_key, json={"amount": amount}))

    async def payment_status(self, idempotency_key: str) -> ProviderPayment | None:
        found = await self._call("GET", "/v1/payments", params={"idempotency_key": idempotency_key})
        return _payment(found["data"][0]) if found["data"] else None

    async def refund_status(self, idempotency_key: str) -> ProviderRefund | None:
        found = await self._call("GET", "/v1/refunds", params={"idempotency_key": idempotency_key})
        return _refund(found["data"][0]) if found["data"] else None


def _error_code(reply: httpx.Response) -> str | None:
    try:
        code = reply.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None
