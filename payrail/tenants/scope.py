"""Every row belongs to a merchant and a mode; every query carries both."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Scope:
    merchant_id: str
    livemode: bool
