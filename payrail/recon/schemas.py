"""Reconciliation's API parameters."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from payrail.api.pagination import ListParams
from payrail.api.schemas import Params
from payrail.recon.breaks import BreakType


class RunList(ListParams):
    connector_account: str | None = None
    kind: Literal["provider", "bank"] | None = None


class BreakList(ListParams):
    status: Literal["open", "resolved"] | None = None
    type: BreakType | None = None
    run: str | None = None  # the run that opened them


class BreakResolve(Params):
    note: Annotated[str, Field(min_length=1, max_length=5000)]
