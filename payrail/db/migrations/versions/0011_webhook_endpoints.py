"""Merchant webhooks: endpoints, one delivery per (endpoint, event), every HTTP attempt.

- An endpoint's signing secret is sealed by the vault, bound to the endpoint and its
  merchant; it is never stored in clear. Deleting an endpoint drops the sealed secret.
- A delivery is pending until it succeeds, gives up (`failed`, 3 days after its first
  attempt) or is canceled (its endpoint was disabled or deleted). `next_attempt_at` is
  when it is due and also the workers' lease: a worker claims due rows with
  FOR UPDATE SKIP LOCKED, moves the time past its HTTP timeout and writes its `lease`
  token; a worker that dies lets the time pass and another takes the row. Only the
  holder of the token records the outcome.
- `event_id` has no foreign key: events may be partitioned and pruned by time, and a
  delivery of a pruned event fails with that error instead of blocking the pruning.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    op.execute(SCHEMA)


SCHEMA = r"""
CREATE TABLE webhook_endpoints (
    id                text PRIMARY KEY,
    seq               bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id       text NOT NULL REFERENCES merchants (id),
    livemode          boolean NOT NULL,
    url               text NOT NULL CHECK (url ~ '^https?://[^/?#@[:space:]]+' AND length(url) <= 2048),
    -- Event type names; '*' stands for every type.
    enabled_events    text[] NOT NULL CHECK (
        cardinality(enabled_events) BETWEEN 1 AND 200
        AND array_position(enabled_events, NULL) IS NULL
    ),
    description       text CHECK (length(description) <= 5000),
    metadata          jsonb NOT NULL CHECK (jsonb_typeof(metadata) = 'object'),
    status            text NOT NULL CHECK (status IN ('enabled', 'disabled')),
    -- requested: by the merchant through the API; gone: the endpoint answered 410.
    disabled_reason   text CHECK (disabled_reason IN ('requested', 'gone')),
    signature_format  text NOT NULL CHECK (signature_format IN ('stripe', 'standard_webhooks')),
    secret_key_id     text REFERENCES vault_keys (id),
    secret_sealed     bytea,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    deleted_at        timestamptz,
    CONSTRAINT webhook_endpoints_disabled_reason
        CHECK ((status = 'disabled') = (disabled_reason IS NOT NULL)),
    -- A live endpoint can sign; a deleted one keeps nothing that could.
    CONSTRAINT webhook_endpoints_secret CHECK (
        (deleted_at IS NULL) = (secret_sealed IS NOT NULL)
        AND (secret_sealed IS NULL) = (secret_key_id IS NULL))
);
CREATE INDEX webhook_endpoints_merchant ON webhook_endpoints (merchant_id, livemode, seq);
-- What fan-out reads for every event of a merchant.
CREATE INDEX webhook_endpoints_enabled ON webhook_endpoints (merchant_id, livemode)
    WHERE status = 'enabled' AND deleted_at IS NULL;

CREATE TABLE webhook_deliveries (
    id                 text PRIMARY KEY,
    seq                bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id        text NOT NULL,  -- no FK: high volume, as events (0001)
    livemode           boolean NOT NULL,
    endpoint_id        text NOT NULL REFERENCES webhook_endpoints (id),
    event_id           text NOT NULL,
    event_type         text NOT NULL,
    status             text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'canceled')),
    attempt_count      integer NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
    -- The first attempt of the current schedule (a manual retry starts a new one):
    -- retries stop 3 days after it.
    window_started_at  timestamptz,
    last_attempt_at    timestamptz,
    next_attempt_at    timestamptz,
    lease              text,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    UNIQUE (endpoint_id, event_id),
    -- Pending means a worker will come for it: it must know when.
    CONSTRAINT webhook_deliveries_scheduled
        CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL)),
    CONSTRAINT webhook_deliveries_lease CHECK (status = 'pending' OR lease IS NULL),
    CONSTRAINT webhook_deliveries_attempted CHECK (
        (attempt_count = 0) = (last_attempt_at IS NULL)
        AND (window_started_at IS NULL OR last_attempt_at IS NOT NULL))
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_merchant ON webhook_deliveries (merchant_id, livemode, seq);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, status);

CREATE TABLE webhook_attempts (
    id                text PRIMARY KEY,
    seq               bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id       text NOT NULL,
    livemode          boolean NOT NULL,
    delivery_id       text NOT NULL REFERENCES webhook_deliveries (id),
    attempted_at      timestamptz NOT NULL,
    -- The address connected to (or refused), when the host resolved.
    address           inet,
    -- An HTTP answer, or why there was none (timeout, refused address, connection error).
    status_code       integer CHECK (status_code BETWEEN 100 AND 599),
    error             text CHECK (length(error) <= 500),
    duration_ms       integer NOT NULL CHECK (duration_ms >= 0),
    response_excerpt  text CHECK (length(response_excerpt) <= 500),
    CONSTRAINT webhook_attempts_outcome CHECK ((status_code IS NULL) <> (error IS NULL))
);
CREATE INDEX webhook_attempts_merchant ON webhook_attempts (merchant_id, livemode, seq);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, seq);
"""
