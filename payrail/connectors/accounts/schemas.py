"""Parameters of /v1/connector_accounts and /v1/routing_rules, in Stripe's shapes.

Messages never repeat a credential or a URL as sent: either may hold a secret. Following
Stripe, an empty value unsets an optional field on update (`base_url=`, `currencies=`,
`metadata=`), which is also how a form body says "empty list"."""

from __future__ import annotations

import re
from typing import Annotated, Literal, get_args
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator

from payrail.api.schemas import Currency, Metadata, MinorUnits, Params

Provider = Literal["sandbox", "stripe", "adyen", "paypal"]
PROVIDERS: tuple[str, ...] = get_args(Provider)

MAX_CURRENCIES = 200
MAX_CHAIN = 10  # accounts a rule may name: a failover chain, not a directory
MAX_PRIORITY = 1_000_000


def _blank_is_empty(value: object) -> object:
    """`currencies=` (a form cannot send an empty list) or null: no currencies."""
    return [] if value == "" or value is None else value


def _unique(values: list[str]) -> list[str]:
    """Duplicates mean nothing in a set of currencies; keep the first, in order."""
    return list(dict.fromkeys(values))


Currencies = Annotated[
    list[Currency],
    BeforeValidator(_blank_is_empty),
    Field(max_length=MAX_CURRENCIES),
    AfterValidator(_unique),
]


def _name(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_name)]

# Visible ASCII only: the secret travels in an HTTP header, where a space or line break
# would split or forge it. 8 at least, so that its last 4 never show all of it.
_SECRET = re.compile(r"[!-~]{8,500}")


def _secret(value: object) -> str:
    if not isinstance(value, str) or not _SECRET.fullmatch(value):
        # Not quoted, and no pydantic message: those may repeat the input.
        raise ValueError("must be 8 to 500 visible ASCII characters, without spaces")
    return value


Secret = Annotated[str, BeforeValidator(_secret)]


class Credentials(Params):
    secret: Secret
    # Signs the provider's webhooks to /webhooks/{account id}. Replaced with `secret`:
    # credentials are sent, and kept, as a whole.
    webhook_secret: Secret | None = None


def _base_url(value: object) -> object:
    """An http(s) URL with a host and no user info, query or fragment. Never quoted back:
    a URL with user info carries a password."""
    if value is None:
        return None
    problem = "must be an http or https URL with a host, and no user info, query or fragment"
    if not isinstance(value, str) or len(value) > 2000 or not value.isascii():
        raise ValueError(problem)
    if any(c <= " " or c in "\x7f@?#" for c in value):
        raise ValueError(problem)
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError:
        raise ValueError(problem) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(problem)
    return value


BaseUrl = Annotated[str, BeforeValidator(_base_url)]


class ConnectorAccountCreate(Params):
    provider: Provider
    credentials: Credentials
    # The provider's name when none is given.
    name: Name | None = None
    # Validated even when left out: the sandbox has no default endpoint.
    base_url: Annotated[BaseUrl | None, Field(validate_default=True)] = None
    currencies: Currencies = []
    enabled: bool = True
    metadata: Metadata = {}

    @field_validator("base_url")
    @classmethod
    def _sandbox_needs_a_base_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("provider") == "sandbox":
            raise ValueError("is required for provider sandbox: the URL the sandbox PSP runs at")
        return value


def _blank_is_none(value: object) -> object:
    return None if value == "" else value


class ConnectorAccountUpdate(Params):
    """Only the fields sent change (`model_fields_set`). `base_url` and `metadata` are
    unset by an empty value or null; `metadata` otherwise merges key by key, an empty
    value deleting its key, as in Stripe."""

    name: Name | None = None
    enabled: bool | None = None
    credentials: Credentials | None = None
    base_url: Annotated[BaseUrl | None, BeforeValidator(_blank_is_none)] = None
    currencies: Currencies = []
    metadata: Annotated[Metadata | None, BeforeValidator(_blank_is_none)] = None

    @field_validator("name", "enabled", "credentials", mode="before")
    @classmethod
    def _no_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may not be null; leave it out to keep it as it is")
        return value


def _country(value: object) -> str:
    if not (isinstance(value, str) and len(value) == 2 and value.isascii() and value.isalpha()):
        raise ValueError("must be a two-letter ISO 3166-1 country code")
    return value.upper()


Country = Annotated[str, BeforeValidator(_country)]

# "card" matches every card; "card:BRAND" one brand (the vault's brand names).
PaymentMethodCondition = Literal[
    "card",
    "card:amex",
    "card:diners",
    "card:discover",
    "card:jcb",
    "card:mastercard",
    "card:unionpay",
    "card:visa",
]


class RuleConditions(Params):
    currencies: Currencies = []
    countries: Annotated[
        list[Country], BeforeValidator(_blank_is_empty), Field(max_length=300)
    ] = []
    payment_methods: Annotated[
        list[PaymentMethodCondition], BeforeValidator(_blank_is_empty), Field(max_length=20)
    ] = []
    min_amount: MinorUnits | None = None
    max_amount: MinorUnits | None = None

    @field_validator("min_amount", "max_amount")
    @classmethod
    def _amounts_in_one_currency(cls, value: int | None, info: ValidationInfo) -> int | None:
        # An amount is minor units of a currency: 1000 is ten dollars but a thousand yen.
        if value is not None and len(info.data.get("currencies") or []) != 1:
            raise ValueError(
                "needs exactly one currency in conditions[currencies]: amounts are in that"
                " currency's minor unit"
            )
        return value

    @field_validator("max_amount")
    @classmethod
    def _max_not_below_min(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min_amount")
        if value is not None and low is not None and value < low:
            raise ValueError("must not be less than conditions[min_amount]")
        return value


AccountId = Annotated[str, Field(min_length=1, max_length=64)]


class RoutingRuleCreate(Params):
    # Lower first; rules of equal priority are tried oldest first.
    priority: Annotated[int, Field(ge=0, le=MAX_PRIORITY)]
    connector_accounts: Annotated[list[AccountId], Field(min_length=1, max_length=MAX_CHAIN)]
    conditions: RuleConditions = RuleConditions()
