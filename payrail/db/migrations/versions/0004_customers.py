"""Customers, and the payment methods attached to them.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.execute(SCHEMA)


SCHEMA = r"""
CREATE TABLE customers (
    id            text PRIMARY KEY,
    seq           bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id   text NOT NULL REFERENCES merchants (id),
    livemode      boolean NOT NULL,
    email         text,
    name          text,
    phone         text,
    description   text,
    default_payment_method_id text REFERENCES payment_methods (id),
    metadata      jsonb NOT NULL,
    created_at    timestamptz NOT NULL,
    -- Deleted as Stripe deletes: the id answers {"deleted": true}; payments keep their
    -- reference to it.
    deleted_at    timestamptz
);
CREATE INDEX customers_merchant ON customers (merchant_id, livemode, seq);
CREATE INDEX customers_email ON customers (merchant_id, livemode, email) WHERE email IS NOT NULL;

ALTER TABLE payment_methods
    ADD CONSTRAINT payment_methods_customer FOREIGN KEY (customer_id) REFERENCES customers (id);
"""
