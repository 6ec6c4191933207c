"""How a sandbox PSP is set up at start; ``POST /sandbox/faults`` changes the fault part."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SECRET = "sbx_sk_sandbox"


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    secret: str = DEFAULT_SECRET
    seed: int = 0
    fault_rate: float = 0.0  # share of POSTs that get a fault, 0 to 1
    hang_seconds: float = 30.0  # how long timeout_* faults hang

    def __post_init__(self) -> None:
        if not self.secret:
            raise ValueError("the sandbox secret must not be empty")
        if not 0 <= self.fault_rate <= 1:
            raise ValueError(f"fault rate must be between 0 and 1, not {self.fault_rate}")
        if not self.hang_seconds >= 0:
            raise ValueError(f"hang seconds must be 0 or more, not {self.hang_seconds}")
