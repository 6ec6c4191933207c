"""Connector accounts and routing rules.

A connector account is a merchant's account at one PSP: its provider, endpoint and
credentials. The credentials are stored only sealed by the vault (AES-256-GCM under a
data key, bound to the account's id and merchant), so a database dump holds no usable
secret; `credentials_last4` is what people see. Routing rules name accounts by id, in
failover order, and may only name accounts of their own merchant and mode.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.execute(SCHEMA)


SCHEMA = r"""
CREATE TABLE connector_accounts (
    id                  text PRIMARY KEY,
    seq                 bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id         text NOT NULL REFERENCES merchants (id),
    livemode            boolean NOT NULL,
    provider            text NOT NULL CHECK (provider IN ('sandbox', 'stripe', 'adyen', 'paypal')),
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- NULL: the provider's own endpoint. No user info: the URL is shown in the API.
    base_url            text CHECK (base_url ~ '^https?://[^/?#@[:space:]]+'),
    -- Upper-case ISO 4217 codes; empty: any currency.
    currencies          text[] NOT NULL CHECK (
        array_position(currencies, NULL) IS NULL
        AND array_to_string(currencies, ',') ~ '^([A-Z]{3}(,[A-Z]{3})*)?$'
    ),
    enabled             boolean NOT NULL,
    data_key_id         text NOT NULL REFERENCES vault_keys (id),
    credentials_sealed  bytea NOT NULL,
    credentials_last4   text NOT NULL CHECK (length(credentials_last4) = 4),
    metadata            jsonb NOT NULL CHECK (jsonb_typeof(metadata) = 'object'),
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    -- The sandbox PSP has no public endpoint: it runs where its operator put it.
    CONSTRAINT connector_accounts_sandbox_base_url
        CHECK (provider <> 'sandbox' OR base_url IS NOT NULL)
);
CREATE INDEX connector_accounts_merchant ON connector_accounts (merchant_id, livemode, seq);

-- Payment attempts and routing rules refer to an account by id, and its credentials are
-- sealed bound to its id and merchant: those never change, and an account is never
-- deleted (disable it instead), so an in-doubt attempt can always be resolved with it.
CREATE FUNCTION connector_account_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.id, NEW.merchant_id, NEW.livemode, NEW.provider, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.merchant_id, OLD.livemode, OLD.provider, OLD.created_at) THEN
        RAISE EXCEPTION 'connector account %: id, merchant, mode, provider and created_at never change', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER connector_accounts_guard BEFORE UPDATE ON connector_accounts
    FOR EACH ROW EXECUTE FUNCTION connector_account_guard();
CREATE TRIGGER connector_accounts_no_delete BEFORE DELETE ON connector_accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER connector_accounts_no_truncate BEFORE TRUNCATE ON connector_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

CREATE TABLE routing_rules (
    id                  text PRIMARY KEY,
    seq                 bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id         text NOT NULL REFERENCES merchants (id),
    livemode            boolean NOT NULL,
    priority            integer NOT NULL CHECK (priority >= 0),
    -- {currencies, countries, payment_methods, min_amount, max_amount}
    conditions          jsonb NOT NULL CHECK (jsonb_typeof(conditions) = 'object'),
    -- Connector account ids, preferred first: the failover chain.
    connector_accounts  text[] NOT NULL CHECK (
        cardinality(connector_accounts) BETWEEN 1 AND 10
        AND array_position(connector_accounts, NULL) IS NULL
    ),
    created_at          timestamptz NOT NULL
);
CREATE INDEX routing_rules_merchant ON routing_rules (merchant_id, livemode, seq);

-- The service names the offending account in its error; this is the backstop for any
-- other writer: a rule names only accounts of its own merchant and mode.
CREATE FUNCTION routing_rule_references() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM unnest(NEW.connector_accounts) AS ref (id)
        WHERE NOT EXISTS (
            SELECT 1 FROM connector_accounts a
            WHERE a.id = ref.id AND a.merchant_id = NEW.merchant_id AND a.livemode = NEW.livemode
        )
    ) THEN
        RAISE EXCEPTION 'routing rule % names a connector account that is missing or of another merchant or mode', NEW.id
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'routing_rules_connector_accounts';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER routing_rules_connector_accounts
    BEFORE INSERT OR UPDATE OF merchant_id, livemode, connector_accounts ON routing_rules
    FOR EACH ROW EXECUTE FUNCTION routing_rule_references();
"""
