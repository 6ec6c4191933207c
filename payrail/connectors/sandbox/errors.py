"""The sandbox's error replies: ``{"error": {"code", "message"}}`` with an HTTP status."""

from __future__ import annotations

from payrail.vault.cards import mask_card_numbers


class SandboxError(Exception):
    def __init__(self, status: int, code: str, message: str, *, param: str | None = None):
        # Messages may quote a path segment or an id; mask anything shaped like a card number
        # so that nothing stored under an Idempotency-Key or logged can carry one.
        message = mask_card_numbers(message)
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param

    def body(self) -> dict[str, object]:
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.param is not None:
            error["param"] = self.param  # beyond the contract's two fields; names the culprit
        return {"error": error}


def invalid_request(message: str, param: str | None = None) -> SandboxError:
    return SandboxError(400, "invalid_request", message, param=param)


def invalid_state(message: str) -> SandboxError:
    return SandboxError(400, "invalid_state", message)


def amount_too_large(message: str) -> SandboxError:
    return SandboxError(400, "amount_too_large", message, param="amount")


def resource_missing(kind: str, object_id: str) -> SandboxError:
    return SandboxError(404, "resource_missing", f"No such {kind}: '{object_id}'", param="id")
