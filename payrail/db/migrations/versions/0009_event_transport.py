"""Event transport: the relay's slices and leases, the PostgreSQL-backed log, the inbox,
dead letters.

- `events.relay_slice` puts every event of one aggregate in one of 16 slices. A slice is
  published by one relay replica at a time (a lease in `event_leases`), in `seq` order,
  so replicas share the outbox without reordering any aggregate's events.
- `event_envelope` is the one definition of the published event: Stripe's event object
  (`data.object` is the API object) with payrail's `version` and `merchant`. The relay,
  `GET /v1/events` and merchant webhooks all send exactly this.
- `event_leases` / `event_members` are the one lease mechanism: the relay leases slices,
  consumers of the PostgreSQL log lease partitions. Live members split the slots
  evenly; a member that stops renewing loses its slots when its lease runs out.
- `event_log` is the embedded transport (`payrail up` without Kafka): topics of fixed
  partitions, offsets handed out under the partition row's lock so that they become
  visible in offset order, and committed offsets per consumer group.
- `event_inbox` makes a handler's effect happen once: its row is written in the
  handler's own transaction. `event_dead_letters` keeps what a handler kept failing on,
  for `payrail events replay`.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.execute(SCHEMA)


SCHEMA = r"""
-- hashtext() & 15 rather than abs(...) % 16: abs() of the smallest int overflows.
ALTER TABLE events ADD COLUMN relay_slice smallint NOT NULL
    GENERATED ALWAYS AS (hashtext(aggregate_id) & 15) STORED;

CREATE FUNCTION event_envelope(e events) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'id', e.id, 'object', 'event', 'type', e.type, 'version', e.version,
        'created', floor(extract(epoch FROM e.created_at))::bigint, 'livemode', e.livemode,
        'merchant', e.merchant_id, 'data', jsonb_build_object('object', e.payload))
$$;

CREATE TABLE event_members (
    pool        text NOT NULL,
    owner       text NOT NULL,
    seen_until  timestamptz NOT NULL,
    PRIMARY KEY (pool, owner)
);

CREATE TABLE event_leases (
    pool         text NOT NULL,
    slot         text NOT NULL,
    owner        text,
    lease_until  timestamptz NOT NULL DEFAULT '-infinity',
    PRIMARY KEY (pool, slot)
);
INSERT INTO event_leases (pool, slot) SELECT 'relay', s::text FROM generate_series(0, 15) s;

CREATE TABLE event_log_partitions (
    topic        text NOT NULL,
    partition    smallint NOT NULL CHECK (partition >= 0),
    next_offset  bigint NOT NULL DEFAULT 0 CHECK (next_offset >= 0),
    PRIMARY KEY (topic, partition)
);

CREATE TABLE event_log (
    topic        text NOT NULL,
    partition    smallint NOT NULL,
    "offset"     bigint NOT NULL,
    key          text NOT NULL,
    value        bytea NOT NULL,
    headers      jsonb NOT NULL,
    appended_at  timestamptz NOT NULL,
    PRIMARY KEY (topic, partition, "offset")
);

CREATE TABLE event_log_offsets (
    consumer_group  text NOT NULL,
    topic           text NOT NULL,
    partition       smallint NOT NULL,
    next_offset     bigint NOT NULL CHECK (next_offset >= 0),
    PRIMARY KEY (consumer_group, topic, partition)
);

CREATE TABLE event_inbox (
    consumer    text NOT NULL,
    event_id    text NOT NULL,
    handled_at  timestamptz NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

CREATE TABLE event_dead_letters (
    id           text PRIMARY KEY,
    consumer     text NOT NULL,
    event_id     text NOT NULL,
    topic        text NOT NULL,
    partition    integer NOT NULL,
    "offset"     bigint NOT NULL,
    event        bytea NOT NULL,
    error        text NOT NULL,
    attempts     integer NOT NULL CHECK (attempts > 0),
    failed_at    timestamptz NOT NULL,
    replayed_at  timestamptz,
    UNIQUE (consumer, event_id)
);
CREATE INDEX event_dead_letters_waiting ON event_dead_letters (consumer, failed_at)
    WHERE replayed_at IS NULL;
"""
