"""Errors a user can cause, each with its HTTP status and Stripe's error shape."""

from __future__ import annotations

from payrail.vault.cards import mask_card_numbers


class PayrailError(Exception):
    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        # Messages may quote what was sent (an id in a path, say), and replies under an
        # Idempotency-Key are stored: a card number must not survive into either.
        message = mask_card_numbers(message)
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, object]:
        error: dict[str, object] = {"type": self.type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}


class InvalidRequest(PayrailError):
    pass


class ResourceMissing(PayrailError):
    status = 404


class NotFound(ResourceMissing):
    def __init__(self, kind: str, object_id: str, *, param: str = "id"):
        super().__init__(f"No such {kind}: '{object_id}'", param=param, code="resource_missing")


class CardError(PayrailError):
    """Stripe's card_error (402): the card's details are wrong, or it was declined. A
    declined payment's error carries the PaymentIntent as it now is, as Stripe's does."""

    status = 402
    type = "card_error"

    def __init__(
        self,
        message: str,
        *,
        code: str,
        param: str | None = None,
        decline_code: str | None = None,
        payment_intent: dict[str, object] | None = None,
    ):
        super().__init__(message, param=param, code=code)
        self.decline_code = decline_code
        self.payment_intent = payment_intent

    def body(self) -> dict[str, object]:
        body = super().body()
        error = body["error"]
        assert isinstance(error, dict)
        if self.decline_code is not None:
            error["decline_code"] = self.decline_code
        if self.payment_intent is not None:
            error["payment_intent"] = self.payment_intent
        return body


class ProviderUnavailable(PayrailError):
    """No provider could be reached or answered sensibly, and nothing was charged: the
    request may be retried. Carries the PaymentIntent as it now is."""

    status = 502
    type = "api_error"

    def __init__(self, message: str, *, code: str, payment_intent: dict[str, object] | None = None):
        super().__init__(message, code=code)
        self.payment_intent = payment_intent

    def body(self) -> dict[str, object]:
        body = super().body()
        if self.payment_intent is not None:
            error = body["error"]
            assert isinstance(error, dict)
            error["payment_intent"] = self.payment_intent
        return body


class Conflict(PayrailError):
    status = 409


class Unauthenticated(PayrailError):
    status = 401


class IdempotencyError(PayrailError):
    type = "idempotency_error"


class IdempotencyInProgress(IdempotencyError):
    """Another request holds the key: retry once it has finished."""

    status = 409


class ApiFailure(PayrailError):
    status = 500
    type = "api_error"
