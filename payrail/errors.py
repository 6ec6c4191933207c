"""Errors a user can cause, each with its HTTP status and Stripe's error shape."""

from __future__ import annotations


class PayrailError(Exception):
    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
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


class NotFound(PayrailError):
    status = 404

    def __init__(self, kind: str, object_id: str, *, param: str = "id"):
        super().__init__(f"No such {kind}: '{object_id}'", param=param, code="resource_missing")


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
