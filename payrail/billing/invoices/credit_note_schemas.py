"""Parameters of /v1/credit_notes, in Stripe's shapes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator

from payrail.api.pagination import ListParams
from payrail.api.schemas import Metadata, MinorUnits, Params
from payrail.payments.schemas import Expand, ObjectId

Reason = Literal["duplicate", "fraudulent", "order_change", "product_unsatisfactory"]


def _whole_number(value: object) -> object:
    """Money is never a float: 12.5, 12.0 and True are refused; "12" (forms) is fine."""
    if isinstance(value, bool | float) or (
        isinstance(value, str) and not (value.isascii() and value.isdigit())
    ):
        raise ValueError("must be an integer amount in the currency's minor unit")
    return value


# Where a paid invoice's credit goes: Stripe takes 0 for a part that gets nothing.
Part = Annotated[int, Field(ge=0, le=10**15), BeforeValidator(_whole_number)]


class CreditNoteCreate(Params):
    invoice: ObjectId
    # Before `amount`, so that a request crediting lines hears why, not that amount is missing.
    lines: Any = None
    amount: MinorUnits
    credit_amount: Part | None = None
    refund_amount: Part | None = None
    out_of_band_amount: Part | None = None
    reason: Reason | None = None
    memo: Annotated[str, Field(max_length=5000)] | None = None
    metadata: Metadata = {}
    expand: Expand = []

    @field_validator("lines")
    @classmethod
    def _no_lines(cls, value: Any) -> None:
        if value is not None:
            raise ValueError(
                "crediting invoice lines is not supported yet; credit an amount of the"
                " invoice with `amount` instead"
            )
        return None


class CreditNoteVoid(Params):
    expand: Expand = []


class CreditNoteListParams(ListParams):
    invoice: ObjectId | None = None
    customer: ObjectId | None = None
