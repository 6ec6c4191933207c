"""Foundation: merchants, API keys, idempotency keys, outbox, double-entry ledger.

The ledger's invariants live in PostgreSQL, not only in Python:
- entries of a transaction sum to zero per (currency, phase) at commit (a deferred
  constraint trigger, fired once per statement over the transactions it touched);
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
-- High-volume tables carry merchant_id without a foreign key: a per-row FK check would
-- take FOR KEY SHARE on the one merchant row from every concurrent writer (a MultiXact
-- per row). merchant_id always comes from the authenticated key, and merchants cannot
-- be deleted.
CREATE TABLE events (
    id              text PRIMARY KEY,
    seq             bigint GENERATED ALWAYS AS IDENTITY,
    merchant_id     text NOT NULL,
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
    CHECK (NOT non_negative OR balance_shards = 1)
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
) WITH (fillfactor = 50);  -- rewritten by every posting: room on the page for HOT updates

CREATE TABLE ledger_transactions (
    id            text PRIMARY KEY,
    seq           bigint GENERATED ALWAYS AS IDENTITY,
    merchant_id   text NOT NULL,  -- no FK: see events
    livemode      boolean NOT NULL,
    external_id   text NOT NULL,
    content_hash  bytea NOT NULL,
    status        text NOT NULL CHECK (status IN ('pending', 'posted', 'voided')),
    description   text,
    metadata      jsonb NOT NULL,
    reverses_id   text REFERENCES ledger_transactions (id),
    effective_at  timestamptz NOT NULL,
    created_at    timestamptz NOT NULL,
    posted_at     timestamptz,
    voided_at     timestamptz,
    UNIQUE (merchant_id, livemode, external_id)
);
CREATE INDEX ledger_transactions_merchant ON ledger_transactions (merchant_id, livemode, seq);
-- At most one reversal per transaction; partial, so ordinary postings add no index entry.
CREATE UNIQUE INDEX ledger_transactions_reversal ON ledger_transactions (reverses_id)
    WHERE reverses_id IS NOT NULL;

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
    CHECK (amount > 0 OR (phase = 'pending' AND amount < 0))
    -- The references to the transaction and the account (same merchant, mode and
    -- currency) are checked set-wise by ledger_apply_entries: a per-row foreign key
    -- would take a FOR KEY SHARE lock on the referenced rows, writing a WAL record per
    -- entry and piling MultiXacts onto hot accounts. Neither row can ever be deleted.
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
CREATE TRIGGER merchants_no_delete BEFORE DELETE ON merchants
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER merchants_no_truncate BEFORE TRUNCATE ON merchants
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER ledger_accounts_no_delete BEFORE DELETE ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER ledger_accounts_no_truncate BEFORE TRUNCATE ON ledger_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER ledger_transactions_no_delete BEFORE DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER ledger_transactions_no_truncate BEFORE TRUNCATE ON ledger_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

-- What entries reference and balances depend on never changes on an account.
CREATE FUNCTION ledger_account_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.id, NEW.merchant_id, NEW.livemode, NEW.type, NEW.currency, NEW.normal_balance,
        NEW.non_negative, NEW.balance_shards)
       IS DISTINCT FROM
       (OLD.id, OLD.merchant_id, OLD.livemode, OLD.type, OLD.currency, OLD.normal_balance,
        OLD.non_negative, OLD.balance_shards) THEN
        RAISE EXCEPTION 'ledger account %: only name and metadata may change', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_accounts_guard BEFORE UPDATE ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_account_guard();

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

-- Balances follow the entries: one set-wise UPDATE per statement.
-- The planner cannot size a transition table, and its generic plans hash-join the whole
-- referenced table: index probes per new entry are right for one entry and for a batch.
CREATE FUNCTION ledger_apply_entries() RETURNS trigger LANGUAGE plpgsql
    SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    first_new bigint;
    touched integer;
    updated integer;
BEGIN
    SELECT min(id), count(DISTINCT account_id) INTO first_new, touched FROM new_entries;
    IF first_new IS NULL THEN
        RETURN NULL;
    END IF;
    IF EXISTS (
        SELECT 1 FROM new_entries e
          LEFT JOIN ledger_accounts a ON a.id = e.account_id
          LEFT JOIN ledger_transactions t ON t.id = e.transaction_id
         WHERE a.id IS NULL OR t.id IS NULL
            OR (a.merchant_id, a.livemode, a.currency)
               IS DISTINCT FROM (e.merchant_id, e.livemode, e.currency)
            OR (t.merchant_id, t.livemode) IS DISTINCT FROM (e.merchant_id, e.livemode)
    ) THEN
        RAISE EXCEPTION 'ledger entry references no transaction or account, or one of another merchant, mode or currency'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'ledger_entries_references';
    END IF;
    -- A settled transaction takes no more entries: a posted one gets all of its entries in
    -- the statement that writes its first; a pending one, until it is posted or voided.
    IF EXISTS (
        SELECT 1 FROM (SELECT DISTINCT transaction_id FROM new_entries) n
          JOIN ledger_transactions t ON t.id = n.transaction_id
         WHERE t.status <> 'pending' AND EXISTS (
               SELECT 1 FROM ledger_entries earlier
                WHERE earlier.transaction_id = t.id AND earlier.id < first_new)
    ) THEN
        RAISE EXCEPTION 'ledger entries cannot be added to a settled transaction'
            USING ERRCODE = 'restrict_violation', CONSTRAINT = 'ledger_entries_settled';
    END IF;
    PERFORM ledger_queue_check(ARRAY(SELECT DISTINCT transaction_id FROM new_entries));
    -- The subquery locks the balance rows in one global order (ORDER BY ... FOR UPDATE),
    -- so concurrent postings cannot deadlock; then one UPDATE applies every delta.
    UPDATE ledger_balances b
       SET debits_pending = b.debits_pending + d.dp,
           credits_pending = b.credits_pending + d.cp,
           debits_posted = b.debits_posted + d.dpo,
           credits_posted = b.credits_posted + d.cpo
      FROM (SELECT lb.account_id, lb.shard, delta.dp, delta.cp, delta.dpo, delta.cpo
              FROM (SELECT e.account_id, mod(pg_backend_pid(), a.balance_shards) AS shard,
                           coalesce(sum(e.amount) FILTER (WHERE e.direction = 'debit' AND e.phase = 'pending'), 0) AS dp,
                           coalesce(sum(e.amount) FILTER (WHERE e.direction = 'credit' AND e.phase = 'pending'), 0) AS cp,
                           coalesce(sum(e.amount) FILTER (WHERE e.direction = 'debit' AND e.phase = 'posted'), 0) AS dpo,
                           coalesce(sum(e.amount) FILTER (WHERE e.direction = 'credit' AND e.phase = 'posted'), 0) AS cpo
                      FROM new_entries e JOIN ledger_accounts a ON a.id = e.account_id
                     GROUP BY e.account_id, a.balance_shards) delta
              JOIN ledger_balances lb
                ON lb.account_id = delta.account_id AND lb.shard = delta.shard
             ORDER BY lb.account_id, lb.shard
               FOR UPDATE OF lb) d
     WHERE b.account_id = d.account_id AND b.shard = d.shard;
    GET DIAGNOSTICS updated = ROW_COUNT;
    IF updated <> touched THEN
        RAISE EXCEPTION 'ledger balance rows missing for % of % accounts', touched - updated, touched
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'ledger_balances_present';
    END IF;
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
CREATE TRIGGER ledger_balances_no_truncate BEFORE TRUNCATE ON ledger_balances
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

-- At commit: every transaction that was created, got entries or changed status sums to
-- zero per currency and phase, has at least two entries, holds nothing pending (and
-- nothing negative) once settled, and has posted entries only if posted. Statements
-- queue the ids they touched; one deferred check per database transaction verifies them
-- set-wise, instead of a query per entry.
-- One row per database transaction that touched the ledger, holding the ids to check at
-- its commit; unlogged, because a row never outlives its transaction.
CREATE UNLOGGED TABLE ledger_checks (
    xid              xid8 PRIMARY KEY,
    transaction_ids  text[] NOT NULL
);

CREATE FUNCTION ledger_queue_check(ids text[]) RETURNS void LANGUAGE sql AS $$
    INSERT INTO ledger_checks (xid, transaction_ids)
    SELECT pg_current_xact_id(), ids WHERE cardinality(ids) > 0
    ON CONFLICT (xid) DO UPDATE
       SET transaction_ids = ledger_checks.transaction_ids || EXCLUDED.transaction_ids
$$;

CREATE FUNCTION ledger_check_transactions() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids text[];
    bad text;
    problem text;
BEGIN
    SELECT transaction_ids INTO ids FROM ledger_checks WHERE xid = NEW.xid;
    -- One pass over the entries of the queued transactions, then every rule over it.
    WITH lines AS MATERIALIZED (
        SELECT e.transaction_id, e.account_id, e.currency, e.direction, e.phase,
               sum(e.amount) AS amount, count(*) AS n
          FROM ledger_entries e
         WHERE e.transaction_id = ANY (ids)
         GROUP BY e.transaction_id, e.account_id, e.currency, e.direction, e.phase
    ), txs AS MATERIALIZED (
        SELECT t.id, t.status, coalesce(c.n, 0) AS entries
          FROM ledger_transactions t
          LEFT JOIN (SELECT transaction_id, sum(n) AS n FROM lines GROUP BY transaction_id) c
                 ON c.transaction_id = t.id
         WHERE t.id = ANY (ids)
    )
    SELECT v.transaction_id, v.problem INTO bad, problem FROM (
        SELECT txs.id AS transaction_id, 'has fewer than two entries' AS problem
          FROM txs
         WHERE txs.entries < 2
        UNION ALL
        SELECT transaction_id, 'is unbalanced'
          FROM lines
         GROUP BY transaction_id, currency, phase
        HAVING sum(CASE direction WHEN 'debit' THEN amount ELSE -amount END) <> 0
        UNION ALL
        SELECT lines.transaction_id, CASE WHEN lines.amount < 0
                                          THEN 'releases more than it holds'
                                          ELSE 'is settled but still holds pending amounts' END
          FROM lines JOIN txs ON txs.id = lines.transaction_id
         WHERE lines.phase = 'pending'
           AND (lines.amount < 0 OR (txs.status <> 'pending' AND lines.amount <> 0))
        UNION ALL
        SELECT lines.transaction_id, 'is not posted but has posted entries'
          FROM lines JOIN txs ON txs.id = lines.transaction_id
         WHERE lines.phase = 'posted' AND txs.status <> 'posted'
    ) v LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'ledger transaction % %', bad, problem
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_transaction_balanced';
    END IF;
    DELETE FROM ledger_checks WHERE xid = NEW.xid;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER ledger_checks_at_commit AFTER INSERT ON ledger_checks
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_transactions();

-- A new header is checked at commit even if no entry ever follows it.
CREATE FUNCTION ledger_enqueue_new_transactions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_queue_check(ARRAY(SELECT id FROM new_transactions));
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_transactions_new_check AFTER INSERT ON ledger_transactions
    REFERENCING NEW TABLE AS new_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_enqueue_new_transactions();

-- A status change is checked at commit too (posting must release every hold).
CREATE FUNCTION ledger_enqueue_status_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_queue_check(ARRAY[NEW.id]);
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_transactions_status_check AFTER UPDATE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_enqueue_status_check();
"""
