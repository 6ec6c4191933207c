"""Which transport carries the events: Kafka when bootstrap servers are configured,
otherwise the log in PostgreSQL."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from payrail.clock import Clock
from payrail.events.pglog import PostgresLog
from payrail.events.transport import Transport


def open_transport(
    kafka_bootstrap_servers: str | None, pool: AsyncConnectionPool, clock: Clock
) -> Transport:
    if kafka_bootstrap_servers:
        # Imported here: without Kafka, no process loads its client.
        from payrail.events.kafka import KafkaTransport

        return KafkaTransport(kafka_bootstrap_servers)
    return PostgresLog(pool, clock)
