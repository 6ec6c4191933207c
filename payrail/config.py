"""Settings from the environment; the embedded defaults need none of them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "payrail"


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    data_dir: Path
    host: str
    port: int
    sandbox_port: int = 8100  # the sandbox PSP that `payrail up` runs
    webhooks_allow_private: bool = False  # webhooks may go to loopback/private addresses
    kafka_bootstrap_servers: str | None = None  # unset: events go through PostgreSQL
    kafka_port: int = 9092  # where `payrail up --kafka` runs the bundled broker

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=os.environ.get("PAYRAIL_DATABASE_URL") or None,
            data_dir=Path(os.environ.get("PAYRAIL_DATA_DIR") or default_data_dir()),
            host=os.environ.get("PAYRAIL_HOST", "127.0.0.1"),
            port=int(os.environ.get("PAYRAIL_PORT", "8000")),
            sandbox_port=int(os.environ.get("PAYRAIL_SANDBOX_PORT", "8100")),
            webhooks_allow_private=os.environ.get("PAYRAIL_WEBHOOKS_ALLOW_PRIVATE") == "1",
            kafka_bootstrap_servers=os.environ.get("PAYRAIL_KAFKA_BOOTSTRAP_SERVERS") or None,
            kafka_port=int(os.environ.get("PAYRAIL_KAFKA_PORT", "9092")),
        )
