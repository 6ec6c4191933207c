"""Request-parameter types shared by every domain's schemas."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from payrail.api.params import flatten_param_path
from payrail.errors import InvalidRequest
from payrail.money import MoneyError, normalize_currency


def _integer_only(value: object) -> object:
    """Money is never a float: 12.5, 12.0 and True are all refused; "12" (forms) is fine."""
    if isinstance(value, bool | float):
        raise ValueError("must be an integer amount in the currency's minor unit")
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("must be an integer amount in the currency's minor unit")
    return value


def _currency(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a three-letter ISO 4217 currency code")
    try:
        return normalize_currency(value)
    except MoneyError as exc:
        raise ValueError(f"unknown currency '{value}'") from exc


def _metadata(value: object) -> object:
    """`metadata[0]=x` decodes as a list before the schema says it is a map; undo that."""
    if isinstance(value, list):
        return {str(index): item for index, item in enumerate(value)}
    return value


# Field before the validator, so that the bounds reach the OpenAPI document.
MinorUnits = Annotated[int, Field(gt=0, le=10**15), BeforeValidator(_integer_only)]
Currency = Annotated[str, BeforeValidator(_currency)]
MetadataKey = Annotated[str, Field(min_length=1, max_length=40)]
METADATA_KEYS = 50
Metadata = Annotated[
    dict[MetadataKey, Annotated[str, Field(max_length=500)]],
    BeforeValidator(_metadata),
    Field(max_length=METADATA_KEYS),
]


class Params(BaseModel):
    """Base for request parameters: unknown parameters are an error, as in Stripe."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, frozen=True)


class NoParams(Params):
    """A call that takes no parameters: any given is an error."""


P = TypeVar("P", bound=Params)


def parse(model: type[P], params: dict[str, Any]) -> P:
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        error = exc.errors()[0]
        # pydantic marks a bad dict key with a "[key]" location part; the key names it.
        param = flatten_param_path(tuple(part for part in error["loc"] if part != "[key]"))
        if error["type"] == "extra_forbidden":
            raise InvalidRequest(
                f"Received unknown parameter: {param}", param=param, code="parameter_unknown"
            ) from None
        if error["type"] == "missing":
            raise InvalidRequest(
                f"Missing required param: {param}.", param=param, code="parameter_missing"
            ) from None
        message = str(error["msg"]).removeprefix("Value error, ")
        raise InvalidRequest(
            f"Invalid {param}: {message}", param=param, code="parameter_invalid"
        ) from None


def merge_metadata(current: dict[str, str], update: dict[str, str]) -> dict[str, str]:
    """Stripe's metadata update: keys merge, an empty value deletes its key, and the result
    still holds at most METADATA_KEYS keys."""
    merged = {k: v for k, v in {**current, **update}.items() if v != ""}
    if len(merged) > METADATA_KEYS:
        raise InvalidRequest(
            f"Invalid metadata: an object can have at most {METADATA_KEYS} metadata keys,"
            " counting those kept.",
            param="metadata",
            code="parameter_invalid",
        )
    return merged
