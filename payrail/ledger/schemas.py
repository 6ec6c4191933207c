"""Ledger request parameters and API objects."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from payrail.api.schemas import Currency, Metadata, MinorUnits, Params

AccountType = Literal["asset", "liability", "equity", "revenue", "expense"]
Direction = Literal["debit", "credit"]

# Shared with postings.check_new, which applies the same limits without pydantic.
EXTERNAL_ID_MAX = 255
ACCOUNT_ID_MAX = 64
ENTRIES_MIN, ENTRIES_MAX = 2, 100
DESCRIPTION_MAX = 1000
EFFECTIVE_AT_MAX = 32503680000  # 3000-01-01

ExternalId = Annotated[str, Field(min_length=1, max_length=EXTERNAL_ID_MAX)]


class AccountCreate(Params):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    type: AccountType
    currency: Currency
    normal_balance: Direction | None = None
    non_negative: bool = False
    balance_shards: Annotated[int, Field(ge=1, le=64)] = 1
    metadata: Metadata = {}

    @field_validator("balance_shards")
    @classmethod
    def _one_shard_when_non_negative(cls, shards: int, info: ValidationInfo) -> int:
        if info.data.get("non_negative") and shards != 1:
            raise ValueError("must be 1 for a non_negative account")
        return shards


class EntryCreate(Params):
    account: Annotated[str, Field(min_length=1, max_length=ACCOUNT_ID_MAX)]
    direction: Direction
    amount: MinorUnits


class TransactionCreate(Params):
    external_id: ExternalId
    entries: Annotated[list[EntryCreate], Field(min_length=ENTRIES_MIN, max_length=ENTRIES_MAX)]
    pending: bool = False
    description: Annotated[str, Field(max_length=DESCRIPTION_MAX)] | None = None
    metadata: Metadata = {}
    effective_at: Annotated[int, Field(ge=0, le=EFFECTIVE_AT_MAX)] | None = None


class TransactionBatchCreate(Params):
    transactions: Annotated[list[TransactionCreate], Field(min_length=1, max_length=1000)]


class TransactionPost(Params):
    amount: MinorUnits | None = None


class TransactionVoid(Params):
    pass


class TransactionReverse(Params):
    external_id: ExternalId | None = None
    description: Annotated[str, Field(max_length=1000)] | None = None
    metadata: Metadata = {}
