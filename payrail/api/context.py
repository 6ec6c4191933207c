"""What a request handler gets: the pool, the clock and the caller's scope."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from payrail.clock import Clock
from payrail.tenants.scope import Scope


@dataclass(frozen=True)
class Services:
    pool: AsyncConnectionPool
    clock: Clock


@dataclass(frozen=True)
class RequestContext:
    services: Services
    scope: Scope
