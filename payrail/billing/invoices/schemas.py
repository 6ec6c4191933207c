"""Parameters of /v1/invoices, in Stripe's shapes."""

from __future__ import annotations

from typing import Literal

from payrail.api.pagination import ListParams
from payrail.api.schemas import Params
from payrail.payments.schemas import Expand, ObjectId


class InvoiceAction(Params):
    """pay, finalize, void, mark_uncollectible: nothing to say but expand[]."""

    expand: Expand = []


class InvoiceListParams(ListParams):
    customer: ObjectId | None = None
    subscription: ObjectId | None = None
    status: Literal["draft", "open", "paid", "uncollectible", "void"] | None = None
