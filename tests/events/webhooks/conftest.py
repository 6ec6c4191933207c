"""A webhook receiver on loopback, and the setting that lets webhooks reach it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from payrail.events.webhooks.delivery import DeliveryOptions
from tests.events.webhooks.helpers import Receiver, run_receiver

# Loopback is where the test receiver listens; a short timeout keeps /slow quick.
OPTIONS = DeliveryOptions(allow_private=True, timeout=0.5)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with run_receiver() as running:
        yield running


@pytest.fixture
def allow_private(monkeypatch: pytest.MonkeyPatch) -> None:
    """PAYRAIL_WEBHOOKS_ALLOW_PRIVATE=1, as read by the API when an endpoint is saved."""
    monkeypatch.setenv("PAYRAIL_WEBHOOKS_ALLOW_PRIVATE", "1")
