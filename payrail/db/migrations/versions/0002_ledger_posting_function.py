"""Ledger write path in one round trip; a commit check whose plan cannot degrade.

- `ledger_check_transactions` joins its CTEs without nested loops. Its cached generic
  plan estimated 10 transactions for `= ANY(ids)` and nested-looped entries against
  headers: 2,000 x 1,000 CTE rows, 77 of the 140 ms a 1,000-transfer batch took.
- `ledger_post_transactions` writes headers, entries and outbox events in one call, so a
  posting is one statement: one round trip, and its own transaction when the caller has
  none. A replayed external_id with other content raises instead of being skipped, so a
  caller without a transaction never commits half a batch beside a conflict. The
  triggers of 0001 still check every row it writes.
- `outbox_emit` is the one INSERT into the outbox, for Python callers and the above.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.execute(SCHEMA)


SCHEMA = r"""
ALTER FUNCTION ledger_check_transactions() SET enable_nestloop = off;

CREATE FUNCTION outbox_emit(merchant_id text, livemode boolean, created_at timestamptz,
                            events jsonb)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (id, merchant_id, livemode, type, version, aggregate_type,
                        aggregate_id, payload, created_at)
    SELECT e.id, outbox_emit.merchant_id, outbox_emit.livemode, e.type, e.version,
           e.aggregate_type, e.aggregate_id, e.payload, outbox_emit.created_at
      FROM jsonb_to_recordset(outbox_emit.events)
           AS e(id text, type text, version int, aggregate_type text, aggregate_id text,
                payload jsonb);
END $$;

-- Returns the ids of the headers inserted; an external_id taken by a transaction with
-- the same content hash is skipped (a replay, which the caller answers with the original).
CREATE FUNCTION ledger_post_transactions(merchant_id text, livemode boolean, now timestamptz,
                                         headers jsonb, entries jsonb, events jsonb)
RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    inserted text[];
    conflicting text;
BEGIN
    WITH written AS (
        INSERT INTO ledger_transactions (id, merchant_id, livemode, external_id, content_hash,
            status, description, metadata, reverses_id, effective_at, created_at, posted_at)
        SELECT t.id, ledger_post_transactions.merchant_id, ledger_post_transactions.livemode,
               t.external_id, decode(t.content_hash, 'hex'), t.status, t.description,
               t.metadata, t.reverses_id, t.effective_at, ledger_post_transactions.now,
               CASE WHEN t.status = 'posted' THEN ledger_post_transactions.now END
          FROM jsonb_to_recordset(ledger_post_transactions.headers)
               AS t(id text, external_id text, content_hash text, status text,
                    description text, metadata jsonb, reverses_id text,
                    effective_at timestamptz)
        ON CONFLICT ON CONSTRAINT ledger_transactions_merchant_id_livemode_external_id_key
        DO NOTHING
        RETURNING id
    )
    SELECT coalesce(array_agg(id), '{}') INTO inserted FROM written;

    IF cardinality(inserted) = jsonb_array_length(ledger_post_transactions.headers) THEN
        INSERT INTO ledger_entries (transaction_id, account_id, merchant_id, livemode,
                                    currency, direction, amount, phase)
        SELECT e.transaction_id, e.account_id, ledger_post_transactions.merchant_id,
               ledger_post_transactions.livemode, e.currency, e.direction, e.amount, e.phase
          FROM jsonb_to_recordset(ledger_post_transactions.entries)
               AS e(transaction_id text, account_id text, currency text, direction text,
                    amount bigint, phase text);
        PERFORM outbox_emit(ledger_post_transactions.merchant_id,
                            ledger_post_transactions.livemode, ledger_post_transactions.now,
                            ledger_post_transactions.events);
        RETURN inserted;
    END IF;

    -- Some external_ids were taken (rare): each must be a replay, same content.
    SELECT t.external_id INTO conflicting
      FROM jsonb_to_recordset(ledger_post_transactions.headers)
           AS h(id text, external_id text, content_hash text)
      JOIN ledger_transactions t
        ON t.merchant_id = ledger_post_transactions.merchant_id
       AND t.livemode = ledger_post_transactions.livemode
       AND t.external_id = h.external_id
     WHERE t.id <> h.id AND t.content_hash <> decode(h.content_hash, 'hex')
     LIMIT 1;
    IF conflicting IS NOT NULL THEN
        RAISE EXCEPTION 'external_id % is taken by a transaction with other content', conflicting
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'ledger_transactions_external_id_content',
                  DETAIL = conflicting;
    END IF;
    INSERT INTO ledger_entries (transaction_id, account_id, merchant_id, livemode,
                                currency, direction, amount, phase)
    SELECT e.transaction_id, e.account_id, ledger_post_transactions.merchant_id,
           ledger_post_transactions.livemode, e.currency, e.direction, e.amount, e.phase
      FROM jsonb_to_recordset(ledger_post_transactions.entries)
           AS e(transaction_id text, account_id text, currency text, direction text,
                amount bigint, phase text)
     WHERE e.transaction_id = ANY (inserted);
    PERFORM outbox_emit(ledger_post_transactions.merchant_id, ledger_post_transactions.livemode,
                        ledger_post_transactions.now,
                        coalesce((SELECT jsonb_agg(v)
                                    FROM jsonb_array_elements(ledger_post_transactions.events) v
                                   WHERE v ->> 'aggregate_id' = ANY (inserted)), '[]'));
    RETURN inserted;
END $$;
"""
