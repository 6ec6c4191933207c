"""What a request handler gets: the pool, the clock, the vault, open connectors and the
caller's scope."""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg_pool import AsyncConnectionPool

from payrail.clock import Clock
from payrail.connectors.accounts.service import Connectors
from payrail.tenants.scope import Scope
from payrail.vault.envelope import Vault


@dataclass(frozen=True)
class Services:
    pool: AsyncConnectionPool
    clock: Clock
    vault: Vault
    connectors: Connectors = field(default_factory=Connectors)


@dataclass(frozen=True)
class RequestContext:
    services: Services
    scope: Scope
