"""Card vault: wrapped keys and card payment methods.

A card number is stored only as AES-256-GCM ciphertext under a data key; data keys are
stored only wrapped by a master key that never enters the database. The CVC has no
column anywhere.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.execute(SCHEMA)


SCHEMA = r"""
CREATE TABLE vault_keys (
    id              text PRIMARY KEY,
    purpose         text NOT NULL CHECK (purpose IN ('data', 'fingerprint')),
    master_version  integer NOT NULL CHECK (master_version > 0),
    wrapped         bytea NOT NULL,
    created_at      timestamptz NOT NULL,
    retired_at      timestamptz
);
-- One key of each purpose encrypts or fingerprints new cards; retired data keys still
-- decrypt the cards written under them.
CREATE UNIQUE INDEX vault_keys_active ON vault_keys (purpose) WHERE retired_at IS NULL;

CREATE TABLE payment_methods (
    id             text PRIMARY KEY,
    seq            bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id    text NOT NULL REFERENCES merchants (id),
    livemode       boolean NOT NULL,
    type           text NOT NULL CHECK (type = 'card'),
    customer_id    text,
    brand          text NOT NULL,
    funding        text NOT NULL,
    bin            text NOT NULL CHECK (bin ~ '^[0-9]{6}$'),
    last4          text NOT NULL CHECK (last4 ~ '^[0-9]{4}$'),
    exp_month      smallint NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
    exp_year       smallint NOT NULL CHECK (exp_year BETWEEN 2000 AND 2200),
    fingerprint    text NOT NULL,
    data_key_id    text NOT NULL REFERENCES vault_keys (id),
    number_sealed  bytea NOT NULL,
    billing_details jsonb NOT NULL,
    metadata       jsonb NOT NULL,
    created_at     timestamptz NOT NULL
);
CREATE INDEX payment_methods_merchant ON payment_methods (merchant_id, livemode, seq);
CREATE INDEX payment_methods_customer ON payment_methods (customer_id) WHERE customer_id IS NOT NULL;
"""
