"""Every consumer payrail runs, by name: what `payrail events replay` looks up."""

from __future__ import annotations

from payrail.events.consumers import Consumer
from payrail.events.webhooks.service import CONSUMER as WEBHOOKS

CONSUMERS: dict[str, Consumer] = {consumer.name: consumer for consumer in (WEBHOOKS,)}
