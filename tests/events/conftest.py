"""Fixtures shared by the event tests."""

from tests.events.kafka_fixtures import (  # noqa: F401  (fixtures, found by name)
    durable_kafka_broker,
    kafka,
    kafka_broker,
    kafka_group,
    kafka_members,
    kafka_topic,
    own_kafka_broker,
)
