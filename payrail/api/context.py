"""What a request handler gets: the pool, the clock, the vault and the caller's scope."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from payrail.clock import Clock
from payrail.tenants.scope import Scope
from payrail.vault.envelope import Vault


@dataclass(frozen=True)
class Services:
    pool: AsyncConnectionPool
    clock: Clock
    vault: Vault


@dataclass(frozen=True)
class RequestContext:
    services: Services
    scope: Scope
