"""Payment intents, their charges (one per attempt at a provider), refunds, disputes, the
provider webhook events they learn from, and the ledger accounts their money moves in.

The amounts an intent may still capture or refund are columns with CHECKs, updated in the
same transaction as the refund or capture that changes them, so PostgreSQL refuses a
refund beyond what was received even when two arrive at once.

A charge or refund that a provider may have processed without telling us carries a
`next_check_at`: the janitor asks the provider about it then. The column is also the
janitor's lease: a worker that claims a row moves it forward, and if that worker dies the
time passes and another takes the row.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.execute(SCHEMA)


SCHEMA = r"""
CREATE TABLE payment_intents (
    id                      text PRIMARY KEY,
    seq                     bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id             text NOT NULL REFERENCES merchants (id),
    livemode                boolean NOT NULL,
    amount                  bigint NOT NULL CHECK (amount > 0),
    currency                text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status                  text NOT NULL CHECK (status IN (
        'requires_payment_method', 'requires_confirmation', 'requires_action',
        'processing', 'requires_capture', 'canceled', 'succeeded')),
    capture_method          text NOT NULL CHECK (capture_method IN ('automatic', 'manual')),
    customer_id             text REFERENCES customers (id),
    payment_method_id       text REFERENCES payment_methods (id),
    amount_capturable       bigint NOT NULL DEFAULT 0,
    amount_received         bigint NOT NULL DEFAULT 0,
    amount_refunded         bigint NOT NULL DEFAULT 0,
    description             text,
    metadata                jsonb NOT NULL CHECK (jsonb_typeof(metadata) = 'object'),
    last_payment_error      jsonb,
    latest_charge_id        text,
    cancellation_reason     text,
    canceled_at             timestamptz,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    CONSTRAINT payment_intents_capturable CHECK (amount_capturable BETWEEN 0 AND amount),
    CONSTRAINT payment_intents_received CHECK (amount_received BETWEEN 0 AND amount),
    -- Refunds pending or succeeded never exceed what was received.
    CONSTRAINT payment_intents_refunded CHECK (amount_refunded BETWEEN 0 AND amount_received)
);
CREATE INDEX payment_intents_merchant ON payment_intents (merchant_id, livemode, seq);
CREATE INDEX payment_intents_customer ON payment_intents (customer_id) WHERE customer_id IS NOT NULL;

-- One attempt to move the intent's money through one connector account. Its id is the
-- idempotency key of the authorization, and with a suffix (capture, void) that of the
-- follow-up calls, so that any resend is the same request to the provider.
CREATE TABLE charges (
    id                      text PRIMARY KEY,
    seq                     bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id             text NOT NULL REFERENCES merchants (id),
    livemode                boolean NOT NULL,
    payment_intent_id       text NOT NULL REFERENCES payment_intents (id),
    connector_account_id    text NOT NULL REFERENCES connector_accounts (id),
    payment_method_id       text NOT NULL REFERENCES payment_methods (id),
    amount                  bigint NOT NULL CHECK (amount > 0),
    currency                text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    capture                 boolean NOT NULL,
    -- sending: committed before the request left; in_doubt: sent, no decision came back.
    status                  text NOT NULL CHECK (status IN (
        'sending', 'in_doubt', 'authorized', 'captured', 'declined',
        'requires_authentication', 'failed', 'voided')),
    provider_id             text,
    amount_captured         bigint NOT NULL DEFAULT 0 CHECK (amount_captured BETWEEN 0 AND amount),
    fee                     bigint NOT NULL DEFAULT 0 CHECK (fee >= 0),
    failure_code            text,
    failure_message         text,
    failure_decision        text,
    -- A capture or void sent and not yet answered; resent with the same key until it is.
    pending_operation       text CHECK (pending_operation IN ('capture', 'void')),
    operation_amount        bigint CHECK (operation_amount > 0),
    sent_at                 timestamptz NOT NULL,
    checks_done             integer NOT NULL DEFAULT 0,
    next_check_at           timestamptz,
    last_event_sequence     integer NOT NULL DEFAULT 0,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    CONSTRAINT charges_operation_amount
        CHECK ((pending_operation = 'capture') = (operation_amount IS NOT NULL)),
    -- Undecided means the janitor will ask: it must know when.
    CONSTRAINT charges_undecided_scheduled CHECK (
        status NOT IN ('sending', 'in_doubt') AND pending_operation IS NULL
        OR next_check_at IS NOT NULL)
);
CREATE UNIQUE INDEX charges_provider_id ON charges (connector_account_id, provider_id)
    WHERE provider_id IS NOT NULL;
CREATE INDEX charges_intent ON charges (payment_intent_id, seq);
CREATE INDEX charges_due ON charges (next_check_at) WHERE next_check_at IS NOT NULL;

ALTER TABLE payment_intents ADD CONSTRAINT payment_intents_latest_charge
    FOREIGN KEY (latest_charge_id) REFERENCES charges (id) DEFERRABLE INITIALLY DEFERRED;

CREATE TABLE refunds (
    id                      text PRIMARY KEY,
    seq                     bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id             text NOT NULL REFERENCES merchants (id),
    livemode                boolean NOT NULL,
    payment_intent_id       text NOT NULL REFERENCES payment_intents (id),
    charge_id               text NOT NULL REFERENCES charges (id),
    amount                  bigint NOT NULL CHECK (amount > 0),
    currency                text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status                  text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    reason                  text CHECK (reason IN ('duplicate', 'fraudulent', 'requested_by_customer')),
    provider_id             text,
    failure_reason          text,
    metadata                jsonb NOT NULL CHECK (jsonb_typeof(metadata) = 'object'),
    sent_at                 timestamptz NOT NULL,
    checks_done             integer NOT NULL DEFAULT 0,
    next_check_at           timestamptz,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    CONSTRAINT refunds_pending_scheduled CHECK (status <> 'pending' OR next_check_at IS NOT NULL)
);
CREATE INDEX refunds_merchant ON refunds (merchant_id, livemode, seq);
CREATE INDEX refunds_intent ON refunds (payment_intent_id, seq);
CREATE INDEX refunds_due ON refunds (next_check_at) WHERE next_check_at IS NOT NULL;

CREATE TABLE disputes (
    id                      text PRIMARY KEY,
    seq                     bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id             text NOT NULL REFERENCES merchants (id),
    livemode                boolean NOT NULL,
    payment_intent_id       text NOT NULL REFERENCES payment_intents (id),
    charge_id               text NOT NULL REFERENCES charges (id),
    connector_account_id    text NOT NULL REFERENCES connector_accounts (id),
    provider_id             text NOT NULL,
    amount                  bigint NOT NULL CHECK (amount > 0),
    currency                text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status                  text NOT NULL CHECK (status IN (
        'warning_needs_response', 'needs_response', 'under_review', 'won', 'lost')),
    reason                  text NOT NULL,
    last_event_sequence     integer NOT NULL DEFAULT 0,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    UNIQUE (connector_account_id, provider_id)
);
CREATE INDEX disputes_merchant ON disputes (merchant_id, livemode, seq);

-- Every webhook delivery a provider sent that checked out, once per provider event id.
CREATE TABLE provider_events (
    id                      text PRIMARY KEY,
    merchant_id             text NOT NULL REFERENCES merchants (id),
    livemode                boolean NOT NULL,
    connector_account_id    text NOT NULL REFERENCES connector_accounts (id),
    provider_event_id       text NOT NULL,
    type                    text NOT NULL,
    object_id               text NOT NULL,
    sequence                integer NOT NULL,
    payload                 jsonb NOT NULL,
    received_at             timestamptz NOT NULL,
    processed_at            timestamptz,
    outcome                 text,
    UNIQUE (connector_account_id, provider_event_id)
);

-- The ledger accounts payments post to, made on first use per merchant, mode, currency
-- and (for money held at a provider) connector account. '' stands for "no account".
CREATE TABLE payment_ledger_accounts (
    merchant_id             text NOT NULL REFERENCES merchants (id),
    livemode                boolean NOT NULL,
    purpose                 text NOT NULL CHECK (purpose IN (
        'provider_balance', 'sales', 'refunds', 'processor_fees', 'disputes')),
    currency                text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    connector_account_id    text NOT NULL,
    ledger_account_id       text NOT NULL UNIQUE REFERENCES ledger_accounts (id),
    PRIMARY KEY (merchant_id, livemode, purpose, currency, connector_account_id)
);
"""
