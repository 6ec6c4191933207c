"""The sandbox PSP: a card processor over HTTP that charges nothing real, keeps a record of
what it charged and injects the faults real processors and networks produce.

The contract is docs/sandbox-psp.md. Layout: ``processor`` decides (outcomes, fees, state
rules) over plain values; ``schemas`` turns request bodies into those values; ``store``
keeps state in memory; ``faults`` decides which request gets which fault; ``webhooks``
signs and delivers an event for every state change; ``app`` is the HTTP surface; ``server``
runs it (in a thread for tests and ``payrail up``, or alone).
"""

from payrail.connectors.sandbox.config import SandboxConfig

__all__ = ["SandboxConfig"]
