"""The settlement reports payrail reads, by the format name a run is given, and the
reader of payrail's own bank statement CSV."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import IO

from payrail.recon.formats import adyen, paypal, stripe
from payrail.recon.formats.bank import read as read_bank_statement
from payrail.recon.formats.common import ProviderRow

__all__ = ["PARSERS", "read_bank_statement"]

PARSERS: dict[str, Callable[[IO[bytes], str], Iterator[ProviderRow]]] = {
    "stripe": stripe.read,
    "paypal": paypal.read,
    "adyen": adyen.read,
}
