"""How a sandbox PSP is set up at start; ``POST /sandbox/faults`` changes the fault and
webhook parts."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SECRET = "sbx_sk_sandbox"
DEFAULT_WEBHOOK_SECRET = "whsec_sandbox"
# Waits between delivery attempts of one webhook, as Stripe backs off (in hours there; in
# seconds here, for tests). One more attempt than waits, then the delivery is given up.
DEFAULT_WEBHOOK_RETRY_SECONDS: tuple[float, ...] = (0.1, 0.5, 2.0, 5.0)
# Beyond ten minutes a delay is no longer "out of order" but lost, and retries cover that.
MAX_WEBHOOK_DELAY_MS = 600_000


def check_webhook_url(url: str) -> None:
    """ValueError unless ``url`` is an absolute http(s) URL (the message never quotes it: it
    may carry a token)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest or rest[0] in "/?#":
        raise ValueError("a webhook URL must be an absolute http:// or https:// URL")


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    secret: str = DEFAULT_SECRET
    seed: int = 0
    fault_rate: float = 0.0  # share of POSTs that get a fault, 0 to 1
    hang_seconds: float = 30.0  # how long timeout_* faults hang
    webhook_url: str | None = None  # where events are POSTed; None sends none
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET  # signs them (Sandbox-Signature)
    webhook_duplicate_rate: float = 0.0  # share of events delivered twice, 0 to 1
    webhook_delay_ms: int = 0  # each delivery waits a drawn 0..this first: out of order
    webhook_retry_seconds: tuple[float, ...] = DEFAULT_WEBHOOK_RETRY_SECONDS
    webhook_timeout_seconds: float = 10.0  # per delivery attempt

    def __post_init__(self) -> None:
        if not self.secret:
            raise ValueError("the sandbox secret must not be empty")
        if not 0 <= self.fault_rate <= 1:
            raise ValueError(f"fault rate must be between 0 and 1, not {self.fault_rate}")
        if not self.hang_seconds >= 0:
            raise ValueError(f"hang seconds must be 0 or more, not {self.hang_seconds}")
        if self.webhook_url is not None:
            check_webhook_url(self.webhook_url)
        if not self.webhook_secret:
            raise ValueError("the webhook secret must not be empty")
        if not 0 <= self.webhook_duplicate_rate <= 1:
            raise ValueError(
                f"webhook duplicate rate must be between 0 and 1, not {self.webhook_duplicate_rate}"
            )
        if not 0 <= self.webhook_delay_ms <= MAX_WEBHOOK_DELAY_MS:
            raise ValueError(
                f"webhook delay must be 0 to {MAX_WEBHOOK_DELAY_MS} ms, not {self.webhook_delay_ms}"
            )
        if any(not seconds >= 0 for seconds in self.webhook_retry_seconds):
            raise ValueError("webhook retry waits must be 0 seconds or more")
        if not self.webhook_timeout_seconds > 0:
            raise ValueError("the webhook timeout must be more than 0 seconds")
