"""Foundation: merchants, API keys, idempotency keys, outbox, double-entry ledger.

The ledger's invariants live in PostgreSQL, not only in Python:
- entries of a transaction sum to zero per (currency, phase) at commit (deferred trigger);
- entries are append-only: UPDATE, DELETE and TRUNCATE are rejected;
- balances are maintained by a statement trigger from the entries themselves, and an
  account flagged non_negative is guarded by a CHECK on its balance row, so concurrent
  postings serialize on that row and can never overdraw it;
- hot accounts spread their balance over `balance_shards` rows, picked by backend, so
  postings from different connections do not queue on one row lock.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.execute(SCHEMA)


SCHEMA = r"""
CREATE TABLE merchants (
    id          text PRIMARY KEY,
    seq         bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL
);

CREATE TABLE api_keys (
    id           text PRIMARY KEY,
    merchant_id  text NOT NULL REFERENCES merchants (id),
    livemode     boolean NOT NULL,
    secret_hash  bytea NOT NULL UNIQUE,
    last4        text NOT NULL,
    created_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_merchant ON api_keys (merchant_id);

-- Stripe's Idempotency-Key: the first result is stored and replayed for 24 hours.
CREATE TABLE idempotency_keys (
    merchant_id      text NOT NULL REFERENCES merchants (id),
    livemode         boolean NOT NULL,
    key              text NOT NULL,
    request_method   text NOT NULL,
    request_path     text NOT NULL,
    request_hash     bytea NOT NULL,
    -- The request that holds the key; only its transaction may store the result.
    lease            text,
    locked_until     timestamptz,
    response_status  integer,
    response_body    bytea,
    created_at       timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, livemode, key),
    CHECK ((response_status IS NULL) = (response_body IS NULL))
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- The transactional outbox: written in the same transaction as the change it reports.
CREATE TABLE events (
    id              text PRIMARY KEY,
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id     text NOT NULL REFERENCES merchants (id),
    livemode        boolean NOT NULL,
    type            text NOT NULL,
    version         integer NOT NULL CHECK (version > 0),
    aggregate_type  text NOT NULL,
    aggregate_id    text NOT NULL,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL,
    published_at    timestamptz
);
CREATE INDEX events_unpublished ON events (seq) WHERE published_at IS NULL;
CREATE INDEX events_merchant ON events (merchant_id, livemode, seq);

CREATE TABLE ledger_accounts (
    id              text PRIMARY KEY,
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id     text NOT NULL REFERENCES merchants (id),
    livemode        boolean NOT NULL,
    name            text NOT NULL,
    type            text NOT NULL
                    CHECK (type IN ('asset', 'liability', 'equity', 'revenue', 'expense')),
    currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    normal_balance  text NOT NULL CHECK (normal_balance IN ('debit', 'credit')),
    non_negative    boolean NOT NULL,
    balance_shards  smallint NOT NULL CHECK (balance_shards BETWEEN 1 AND 64),
    metadata        jsonb NOT NULL,
    created_at      timestamptz NOT NULL,
    -- A non-negative balance must be checked on one row under one lock.
    CHECK (NOT non_negative OR balance_shards = 1),
    UNIQUE (id, merchant_id, livemode, currency)
);
CREATE INDEX ledger_accounts_merchant ON ledger_accounts (merchant_id, livemode, seq);

CREATE TABLE ledger_balances (
    account_id       text NOT NULL REFERENCES ledger_accounts (id),
    shard            smallint NOT NULL,
    normal_balance   text NOT NULL,
    non_negative     boolean NOT NULL,
    debits_pending   bigint NOT NULL DEFAULT 0,
    credits_pending  bigint NOT NULL DEFAULT 0,
    debits_posted    bigint NOT NULL DEFAULT 0,
    credits_posted   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, shard),
    -- Available balance: posted, less what pending transactions will take out.
    CONSTRAINT ledger_balance_non_negative CHECK (
        NOT non_negative OR CASE normal_balance
            WHEN 'credit' THEN credits_posted - debits_posted - debits_pending
            ELSE debits_posted - credits_posted - credits_pending
        END >= 0)
);

CREATE TABLE ledger_transactions (
    id            text PRIMARY KEY,
    seq           bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id   text NOT NULL REFERENCES merchants (id),
    livemode      boolean NOT NULL,
    external_id   text NOT NULL,
    content_hash  bytea NOT NULL,
    status        text NOT NULL CHECK (status IN ('pending', 'posted', 'voided')),
    description   text,
    metadata      jsonb NOT NULL,
    reverses_id   text UNIQUE REFERENCES ledger_transactions (id),
    effective_at  timestamptz NOT NULL,
    created_at    timestamptz NOT NULL,
    posted_at     timestamptz,
    voided_at     timestamptz,
    UNIQUE (merchant_id, livemode, external_id),
    UNIQUE (id, merchant_id, livemode)
);
CREATE INDEX ledger_transactions_merchant ON ledger_transactions (merchant_id, livemode, seq);

-- Append-only. A pending transaction's entries have phase 'pending'; posting or voiding
-- it appends negated pending entries (releasing the hold) and, when posting, posted ones.
CREATE TABLE ledger_entries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id  text NOT NULL,
    account_id      text NOT NULL,
    merchant_id     text NOT NULL,
    livemode        boolean NOT NULL,
    currency        text NOT NULL,
    direction       text NOT NULL CHECK (direction IN ('debit', 'credit')),
    amount          bigint NOT NULL,
    phase           text NOT NULL CHECK (phase IN ('pending', 'posted')),
    CHECK (amount > 0 OR (phase = 'pending' AND amount < 0)),
    FOREIGN KEY (transaction_id, merchant_id, livemode)
        REFERENCES ledger_transactions (id, merchant_id, livemode),
    FOREIGN KEY (account_id, merchant_id, livemode, currency)
        REFERENCES ledger_accounts (id, merchant_id, livemode, currency)
);
CREATE INDEX ledger_entries_transaction ON ledger_entries (transaction_id);
CREATE INDEX ledger_entries_account ON ledger_entries (account_id, id);

CREATE FUNCTION ledger_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % rejected', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER ledger_entries_immutable BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER ledger_transactions_no_delete BEFORE DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER ledger_transactions_no_truncate BEFORE TRUNCATE ON ledger_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

-- A transaction header may only move pending -> posted | voided; nothing else changes.
CREATE FUNCTION ledger_transaction_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (OLD.status = 'pending' AND NEW.status IN ('posted', 'voided'))
       OR (NEW.id, NEW.merchant_id, NEW.livemode, NEW.external_id, NEW.content_hash,
           NEW.description, NEW.metadata, NEW.reverses_id, NEW.effective_at, NEW.created_at)
          IS DISTINCT FROM
          (OLD.id, OLD.merchant_id, OLD.livemode, OLD.external_id, OLD.content_hash,
           OLD.description, OLD.metadata, OLD.reverses_id, OLD.effective_at, OLD.created_at)
    THEN
        RAISE EXCEPTION 'ledger transaction %: illegal change from status %', OLD.id, OLD.status
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_transactions_guard BEFORE UPDATE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_transaction_guard();

-- Balances follow the entries, one UPDATE per touched account in a fixed order so that
-- concurrent postings take their row locks in the same order and cannot deadlock.
CREATE FUNCTION ledger_apply_entries() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT e.account_id,
               mod(pg_backend_pid(), a.balance_shards) AS shard,
               coalesce(sum(e.amount) FILTER (WHERE e.direction = 'debit' AND e.phase = 'pending'), 0) AS dp,
               coalesce(sum(e.amount) FILTER (WHERE e.direction = 'credit' AND e.phase = 'pending'), 0) AS cp,
               coalesce(sum(e.amount) FILTER (WHERE e.direction = 'debit' AND e.phase = 'posted'), 0) AS dpo,
               coalesce(sum(e.amount) FILTER (WHERE e.direction = 'credit' AND e.phase = 'posted'), 0) AS cpo
        FROM new_entries e JOIN ledger_accounts a ON a.id = e.account_id
        GROUP BY e.account_id, a.balance_shards
        ORDER BY e.account_id
    LOOP
        UPDATE ledger_balances
           SET debits_pending = debits_pending + r.dp,
               credits_pending = credits_pending + r.cp,
               debits_posted = debits_posted + r.dpo,
               credits_posted = credits_posted + r.cpo
         WHERE account_id = r.account_id AND shard = r.shard;
    END LOOP;
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_entries_apply AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_apply_entries();

-- Balance rows start at zero and change only through the trigger above.
CREATE FUNCTION ledger_balances_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
       OR (TG_OP = 'UPDATE' AND pg_trigger_depth() < 2)
       OR (TG_OP = 'INSERT' AND (NEW.debits_pending, NEW.credits_pending, NEW.debits_posted,
                                 NEW.credits_posted) <> (0, 0, 0, 0)) THEN
        RAISE EXCEPTION 'ledger_balances change only from ledger entries'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_balances_guard BEFORE INSERT OR UPDATE OR DELETE ON ledger_balances
    FOR EACH ROW EXECUTE FUNCTION ledger_balances_guard();

-- At commit: every transaction's entries sum to zero per currency and phase, it has at
-- least two entries, and a transaction no longer pending holds nothing pending.
CREATE FUNCTION ledger_check_transaction() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    tx_id text;
    tx_status text;
    entry_count integer;
BEGIN
    IF TG_TABLE_NAME = 'ledger_entries' THEN
        tx_id := NEW.transaction_id;
    ELSE
        tx_id := NEW.id;
    END IF;
    SELECT status INTO tx_status FROM ledger_transactions WHERE id = tx_id;
    SELECT count(*) INTO entry_count FROM ledger_entries WHERE transaction_id = tx_id;
    IF entry_count < 2 THEN
        RAISE EXCEPTION 'ledger transaction % has fewer than two entries', tx_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_transaction_balanced';
    END IF;
    IF EXISTS (
        SELECT 1 FROM ledger_entries
         WHERE transaction_id = tx_id
         GROUP BY currency, phase
        HAVING sum(CASE direction WHEN 'debit' THEN amount ELSE -amount END) <> 0
    ) THEN
        RAISE EXCEPTION 'ledger transaction % is unbalanced', tx_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_transaction_balanced';
    END IF;
    IF tx_status <> 'pending' AND EXISTS (
        SELECT 1 FROM ledger_entries
         WHERE transaction_id = tx_id AND phase = 'pending'
         GROUP BY account_id, direction
        HAVING sum(amount) <> 0
    ) THEN
        RAISE EXCEPTION 'ledger transaction % is % but still holds pending amounts',
            tx_id, tx_status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_transaction_balanced';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_transaction();
CREATE CONSTRAINT TRIGGER ledger_transactions_balanced AFTER UPDATE ON ledger_transactions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_transaction();
"""
