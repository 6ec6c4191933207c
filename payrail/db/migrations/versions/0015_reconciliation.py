"""Reconciliation: what payments expects each provider to settle, the providers' reports
and bank statements as ingested, the matches between them, the breaks, and the runs.

What PostgreSQL enforces here, so that no code path can get it wrong:

- a money movement is expected once (`settlement_expectations` is unique on payrail's
  object and kind, and on the provider's reference and kind), so a retried posting path
  writes it once;
- nothing is matched twice: a provider transaction matches at most one expectation and
  an expectation at most one provider transaction (both sides unique in `recon_matches`),
  and a payout arrives in at most one bank line;
- a connector account's day is reconciled once (one run per connector, kind and report
  date), so a day's money is never counted from two files;
- a provider transaction's net is its amount less its fee.

`recon_provider_transactions` is partitioned by report date (a month per partition,
made when a report first needs it) so that old months can be detached and dropped, and
a run reads only the months it matches across.

Revision ID: 0015
Revises: 0014
"""

from alembic import op

revision = "0015"
down_revision = "0014"


def upgrade() -> None:
    op.execute(SCHEMA)


SCHEMA = r"""
CREATE TABLE settlement_expectations (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id             text NOT NULL REFERENCES merchants (id),
    livemode                boolean NOT NULL,
    connector_account_id    text NOT NULL REFERENCES connector_accounts (id),
    kind                    text NOT NULL CHECK (kind IN (
        'charge', 'refund', 'dispute', 'dispute_reversal')),
    object_id               text NOT NULL,  -- payrail's: ch_, re_, dp_
    -- NULL when the provider gave no id: only the fallback rules can match it then.
    provider_reference      text CHECK (provider_reference <> ''),
    payment_reference       text NOT NULL,
    currency                text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    amount                  bigint NOT NULL,  -- signed: + into the provider balance
    fee                     bigint NOT NULL,  -- the fee payrail posted for it
    occurred_at             timestamptz NOT NULL,
    ledger_external_id      text NOT NULL,
    UNIQUE (connector_account_id, kind, provider_reference),
    UNIQUE (kind, object_id)
);
CREATE INDEX settlement_expectations_due
    ON settlement_expectations (connector_account_id, occurred_at);

CREATE TABLE recon_reports (
    id                      text PRIMARY KEY,
    merchant_id             text NOT NULL REFERENCES merchants (id),
    livemode                boolean NOT NULL,
    -- NULL for a bank statement: it is the merchant's, not a connector's.
    connector_account_id    text REFERENCES connector_accounts (id),
    format                  text NOT NULL CHECK (format IN ('stripe', 'paypal', 'adyen', 'bank')),
    file_name               text NOT NULL,
    content_sha256          text NOT NULL CHECK (content_sha256 ~ '^[0-9a-f]{64}$'),
    report_date             date NOT NULL,
    row_count               integer NOT NULL CHECK (row_count >= 0),
    created_at              timestamptz NOT NULL,
    CHECK ((format = 'bank') = (connector_account_id IS NULL))
);
-- A file is found again by its hash: the same file twice is the run it made, or, for
-- another day, a mistake (an empty report, identical every quiet day, excepted).
CREATE INDEX recon_reports_content ON recon_reports (merchant_id, livemode, content_sha256);

CREATE TABLE recon_runs (
    id                      text PRIMARY KEY,
    seq                     bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id             text NOT NULL REFERENCES merchants (id),
    livemode                boolean NOT NULL,
    connector_account_id    text REFERENCES connector_accounts (id),
    kind                    text NOT NULL CHECK (kind IN ('provider', 'bank')),
    report_date             date NOT NULL,
    report_id               text NOT NULL UNIQUE REFERENCES recon_reports (id),
    summary                 jsonb NOT NULL,
    started_at              timestamptz NOT NULL,
    created_at              timestamptz NOT NULL,
    CHECK ((kind = 'bank') = (connector_account_id IS NULL))
);
CREATE UNIQUE INDEX recon_runs_once_a_day ON recon_runs
    (merchant_id, livemode, kind, report_date, connector_account_id) NULLS NOT DISTINCT;

CREATE SEQUENCE recon_provider_transactions_id_seq CACHE 1000;
CREATE TABLE recon_provider_transactions (
    id                      bigint NOT NULL DEFAULT nextval('recon_provider_transactions_id_seq'),
    report_id               text NOT NULL,
    report_date             date NOT NULL,
    merchant_id             text NOT NULL,
    livemode                boolean NOT NULL,
    connector_account_id    text NOT NULL,
    line                    integer NOT NULL,
    kind                    text NOT NULL,
    category                text NOT NULL,
    reference               text NOT NULL,
    payment_reference       text NOT NULL,
    merchant_reference      text NOT NULL,
    payout_reference        text NOT NULL,
    currency                text NOT NULL,
    amount                  bigint NOT NULL,
    fee                     bigint NOT NULL,
    net                     bigint NOT NULL,
    occurred_at             timestamptz NOT NULL,
    CHECK (net = amount - fee)
) PARTITION BY RANGE (report_date);
CREATE INDEX recon_provider_transactions_id ON recon_provider_transactions (id);
CREATE INDEX recon_provider_transactions_report ON recon_provider_transactions (report_id);
ALTER SEQUENCE recon_provider_transactions_id_seq OWNED BY recon_provider_transactions.id;

CREATE TABLE recon_matches (
    provider_transaction_id bigint PRIMARY KEY,
    expectation_id          bigint NOT NULL UNIQUE REFERENCES settlement_expectations (id),
    merchant_id             text NOT NULL REFERENCES merchants (id),
    run_id                  text NOT NULL REFERENCES recon_runs (id),
    rule                    text NOT NULL CHECK (rule IN ('reference', 'amount_window')),
    -- The two sides differ in currency, amount or fee: the run classifies it.
    differs                 boolean NOT NULL
);
CREATE INDEX recon_matches_run ON recon_matches (run_id);
CREATE INDEX recon_matches_differing ON recon_matches (run_id) WHERE differs;

CREATE TABLE recon_payouts (
    id                      text PRIMARY KEY,
    merchant_id             text NOT NULL REFERENCES merchants (id),
    livemode                boolean NOT NULL,
    connector_account_id    text NOT NULL REFERENCES connector_accounts (id),
    provider_reference      text NOT NULL,
    currency                text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    amount                  bigint NOT NULL,  -- to the bank: positive
    transactions            integer NOT NULL,  -- the provider transactions it settles
    run_id                  text NOT NULL REFERENCES recon_runs (id),
    report_date             date NOT NULL,
    arrived_run_id          text REFERENCES recon_runs (id),
    -- It came back (a payout reversal): the bank will never see it.
    reversed_run_id         text REFERENCES recon_runs (id),
    created_at              timestamptz NOT NULL,
    UNIQUE (connector_account_id, provider_reference, currency)
);

CREATE TABLE recon_bank_lines (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    report_id               text NOT NULL REFERENCES recon_reports (id),
    merchant_id             text NOT NULL REFERENCES merchants (id),
    livemode                boolean NOT NULL,
    line                    integer NOT NULL,
    booked_on               date NOT NULL,
    currency                text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    amount                  bigint NOT NULL,
    reference               text NOT NULL,
    description             text NOT NULL,
    -- The payout this line is; a payout arrives in one line.
    payout_id               text UNIQUE REFERENCES recon_payouts (id),
    UNIQUE (report_id, line)
);

CREATE TABLE recon_breaks (
    id                      text PRIMARY KEY,
    seq                     bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id             text NOT NULL REFERENCES merchants (id),
    livemode                boolean NOT NULL,
    connector_account_id    text REFERENCES connector_accounts (id),
    stage                   text NOT NULL CHECK (stage IN ('provider', 'bank')),
    type                    text NOT NULL CHECK (type IN (
        'missing_internal', 'missing_at_provider', 'missing_at_bank', 'amount_mismatch',
        'fee_mismatch', 'currency_mismatch', 'status_mismatch', 'duplicate', 'timing')),
    status                  text NOT NULL CHECK (status IN ('open', 'resolved')),
    -- What the break is about: a provider transaction, an expectation, both (a matched
    -- pair that differs), a payout or a bank line.
    provider_transaction_id bigint,
    expectation_id          bigint REFERENCES settlement_expectations (id),
    payout_id               text REFERENCES recon_payouts (id),
    bank_line_id            bigint REFERENCES recon_bank_lines (id),
    reference               text NOT NULL,
    currency                text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    expected_net            bigint NOT NULL,  -- payrail's side, 0 when it has none
    reported_net            bigint NOT NULL,  -- the provider's (or bank's), 0 likewise
    -- What was moved to suspense for it, so that the ledger ties out; moved back when
    -- the break closes by itself.
    suspense_amount         bigint NOT NULL DEFAULT 0,
    -- A timing break escalates when this passes without the item arriving.
    due_on                  date,
    opened_run_id           text NOT NULL REFERENCES recon_runs (id),
    closed_run_id           text REFERENCES recon_runs (id),
    resolution              text CHECK (resolution IN ('arrived', 'resolved_by_user')),
    note                    text,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    CHECK ((status = 'resolved') = (resolution IS NOT NULL))
);
-- An item has one open break at a time; a timing break that escalates keeps its row.
CREATE UNIQUE INDEX recon_breaks_per_provider_transaction ON recon_breaks
    (provider_transaction_id) WHERE status = 'open';
CREATE UNIQUE INDEX recon_breaks_per_expectation ON recon_breaks (expectation_id)
    WHERE status = 'open' AND provider_transaction_id IS NULL;
CREATE UNIQUE INDEX recon_breaks_per_payout ON recon_breaks (payout_id) WHERE status = 'open';
CREATE UNIQUE INDEX recon_breaks_per_bank_line ON recon_breaks (bank_line_id)
    WHERE status = 'open';
-- Lists page by (merchant, mode, seq) as every listed table does; the CLI and the API's
-- `run` filter find a run's breaks.
CREATE INDEX recon_breaks_listed ON recon_breaks (merchant_id, livemode, seq);
CREATE INDEX recon_breaks_of_run ON recon_breaks (opened_run_id);
CREATE INDEX recon_breaks_open ON recon_breaks (merchant_id, livemode, connector_account_id)
    WHERE status = 'open';

-- Every change of a break, kept: who or which run, what, and why.
CREATE TABLE recon_break_history (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    break_id                text NOT NULL REFERENCES recon_breaks (id),
    merchant_id             text NOT NULL REFERENCES merchants (id),
    action                  text NOT NULL CHECK (action IN (
        'opened', 'escalated', 'arrived', 'resolved')),
    type                    text NOT NULL,
    run_id                  text REFERENCES recon_runs (id),
    note                    text,
    at                      timestamptz NOT NULL
);
CREATE INDEX recon_break_history_of ON recon_break_history (break_id, id);

CREATE TABLE recon_ledger_accounts (
    merchant_id             text NOT NULL REFERENCES merchants (id),
    livemode                boolean NOT NULL,
    purpose                 text NOT NULL CHECK (purpose IN (
        'suspense', 'payouts_in_transit', 'bank')),
    currency                text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    ledger_account_id       text NOT NULL UNIQUE REFERENCES ledger_accounts (id),
    PRIMARY KEY (merchant_id, livemode, purpose, currency)
);
"""
