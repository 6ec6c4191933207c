"""Billing: the catalog (products, prices), test clocks, subscriptions, invoices with their
lines and pending items, credit notes, customer credit balances, dunning policies and the
record of every attempt to collect an invoice.

What PostgreSQL enforces here, so that no code path can get it wrong:

- a price that has been used (by a subscription or an invoice line) keeps its amount,
  currency, interval and product for ever: a change is a new price;
- an invoice for a subscription's period exists once: UNIQUE (subscription, period start)
  for the invoices that bill a period, and every invoice has a merchant-unique
  `billing_key` naming the reason it exists, so a retried run finds the one it made;
- invoice numbers are unique per merchant and mode;
- amounts never go negative where they cannot: paid never exceeds due, a credit note
  never exceeds what it credits.

A subscription's `next_action_at` is when the billing engine must look at it next (trial
end, period end, a scheduled cancel or resume); `lease_expires_at` is the engine's lease,
as `next_check_at` is the janitor's: a worker that dies lets it pass, another takes over.
Invoices carry the same pair for collecting payment (`next_payment_attempt`).

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"


def upgrade() -> None:
    op.execute(SCHEMA)


SCHEMA = r"""
CREATE TABLE products (
    id              text PRIMARY KEY,
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id     text NOT NULL REFERENCES merchants (id),
    livemode        boolean NOT NULL,
    name            text NOT NULL CHECK (name <> ''),
    description     text,
    active          boolean NOT NULL DEFAULT true,
    default_price_id text,
    metadata        jsonb NOT NULL CHECK (jsonb_typeof(metadata) = 'object'),
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX products_merchant ON products (merchant_id, livemode, seq);

CREATE TABLE prices (
    id              text PRIMARY KEY,
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id     text NOT NULL REFERENCES merchants (id),
    livemode        boolean NOT NULL,
    product_id      text NOT NULL REFERENCES products (id),
    type            text NOT NULL CHECK (type IN ('one_time', 'recurring')),
    currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    unit_amount     bigint NOT NULL CHECK (unit_amount >= 0),
    recurring_interval text CHECK (recurring_interval IN ('day', 'week', 'month', 'year')),
    recurring_interval_count integer CHECK (recurring_interval_count > 0),
    trial_period_days integer CHECK (trial_period_days >= 0),
    active          boolean NOT NULL DEFAULT true,
    nickname        text,
    lookup_key      text,
    metadata        jsonb NOT NULL CHECK (jsonb_typeof(metadata) = 'object'),
    -- Set (never cleared) when a subscription or an invoice line first refers to it.
    used            boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL,
    CONSTRAINT prices_recurring CHECK (
        (type = 'recurring') = (recurring_interval IS NOT NULL)
        AND (recurring_interval IS NULL) = (recurring_interval_count IS NULL)
        AND (type = 'recurring' OR trial_period_days IS NULL))
);
CREATE INDEX prices_merchant ON prices (merchant_id, livemode, seq);
CREATE INDEX prices_product ON prices (product_id, seq);
CREATE UNIQUE INDEX prices_lookup_key ON prices (merchant_id, livemode, lookup_key)
    WHERE lookup_key IS NOT NULL;
ALTER TABLE products ADD CONSTRAINT products_default_price
    FOREIGN KEY (default_price_id) REFERENCES prices (id) DEFERRABLE INITIALLY DEFERRED;

CREATE FUNCTION prices_immutable_once_used() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.used AND NOT NEW.used THEN
        RAISE EXCEPTION 'price % was used: it stays used', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.used AND (NEW.unit_amount, NEW.currency, NEW.type, NEW.recurring_interval,
                     NEW.recurring_interval_count, NEW.product_id)
            IS DISTINCT FROM (OLD.unit_amount, OLD.currency, OLD.type, OLD.recurring_interval,
                              OLD.recurring_interval_count, OLD.product_id) THEN
        RAISE EXCEPTION 'price % was used: its amount and terms cannot change; create a new price', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER prices_immutable_once_used BEFORE UPDATE ON prices
    FOR EACH ROW EXECUTE FUNCTION prices_immutable_once_used();
CREATE FUNCTION prices_never_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'prices are never deleted: archive one with active=false'
        USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER prices_never_deleted BEFORE DELETE ON prices
    FOR EACH ROW EXECUTE FUNCTION prices_never_deleted();

-- Stripe's test clocks: a frozen time that customers attached to it are billed by.
CREATE TABLE test_clocks (
    id              text PRIMARY KEY,
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id     text NOT NULL REFERENCES merchants (id),
    livemode        boolean NOT NULL CHECK (NOT livemode),
    name            text,
    frozen_time     timestamptz NOT NULL,
    -- While advancing: the time billing has reached, stepped by the engine from one due
    -- moment to the next up to frozen_time, so that renewals, retries and final actions
    -- between the old and the new frozen time happen in their order, each at its time.
    billing_time    timestamptz,
    status          text NOT NULL CHECK (status IN ('ready', 'advancing', 'internal_failure')),
    deletes_after   timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    deleted_at      timestamptz
);
CREATE INDEX test_clocks_merchant ON test_clocks (merchant_id, livemode, seq);
CREATE INDEX test_clocks_advancing ON test_clocks (id) WHERE status = 'advancing';

ALTER TABLE customers
    ADD COLUMN test_clock_id text REFERENCES test_clocks (id),
    -- Billing periods are cut at midnight and month ends in the customer's zone.
    ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC';
CREATE INDEX customers_test_clock ON customers (test_clock_id) WHERE test_clock_id IS NOT NULL;

-- What a customer has in credit (negative) or owes beyond invoices (positive), per
-- currency, as Stripe's customer balance: downgrade credits land here and pay later
-- invoices first.
CREATE TABLE customer_balances (
    merchant_id     text NOT NULL REFERENCES merchants (id),
    livemode        boolean NOT NULL,
    customer_id     text NOT NULL REFERENCES customers (id),
    currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    balance         bigint NOT NULL,
    PRIMARY KEY (customer_id, currency)
);
CREATE TABLE customer_balance_transactions (
    id              text PRIMARY KEY,
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id     text NOT NULL REFERENCES merchants (id),
    livemode        boolean NOT NULL,
    customer_id     text NOT NULL REFERENCES customers (id),
    currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    amount          bigint NOT NULL CHECK (amount <> 0),
    ending_balance  bigint NOT NULL,
    type            text NOT NULL CHECK (type IN (
        'applied_to_invoice', 'unapplied_from_invoice', 'credit_note', 'proration', 'adjustment')),
    invoice_id      text,
    credit_note_id  text,
    -- What made it, so that a retried step finds it instead of applying it twice.
    source_key      text NOT NULL,
    created_at      timestamptz NOT NULL,
    UNIQUE (merchant_id, livemode, source_key)
);
CREATE INDEX customer_balance_transactions_customer
    ON customer_balance_transactions (customer_id, seq);

CREATE TABLE subscriptions (
    id              text PRIMARY KEY,
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id     text NOT NULL REFERENCES merchants (id),
    livemode        boolean NOT NULL,
    customer_id     text NOT NULL REFERENCES customers (id),
    test_clock_id   text REFERENCES test_clocks (id),
    status          text NOT NULL CHECK (status IN (
        'incomplete', 'incomplete_expired', 'trialing', 'active', 'past_due', 'unpaid',
        'canceled', 'paused')),
    -- One item, as tiers are sold: Basic, Premium, Premium+.
    item_id         text NOT NULL UNIQUE,
    price_id        text NOT NULL REFERENCES prices (id),
    quantity        integer NOT NULL CHECK (quantity > 0),
    currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    collection_method text NOT NULL CHECK (collection_method IN ('charge_automatically', 'send_invoice')),
    -- send_invoice: how long the customer has to pay each invoice.
    days_until_due  integer NOT NULL DEFAULT 30 CHECK (days_until_due >= 0),
    default_payment_method_id text REFERENCES payment_methods (id),
    billing_cycle_anchor timestamptz NOT NULL,
    time_zone       text NOT NULL,
    current_period_start timestamptz NOT NULL,
    current_period_end   timestamptz NOT NULL,
    trial_start     timestamptz,
    trial_end       timestamptz,
    cancel_at_period_end boolean NOT NULL DEFAULT false,
    cancel_at       timestamptz,
    canceled_at     timestamptz,
    ended_at        timestamptz,
    cancellation_reason text CHECK (cancellation_reason IN (
        'cancellation_requested', 'payment_disputed', 'payment_failed')),
    cancellation_comment text,
    cancellation_feedback text,
    -- pause_collection: what becomes of invoices while paused, and when it ends.
    pause_behavior  text CHECK (pause_behavior IN ('keep_as_draft', 'mark_uncollectible', 'void')),
    pause_resumes_at timestamptz,
    -- A downgrade asked for at period end: the price (and quantity) the next period gets.
    pending_price_id text REFERENCES prices (id),
    pending_quantity integer CHECK (pending_quantity > 0),
    -- trial_settings[end_behavior][missing_payment_method]: a trial ending with no card.
    missing_payment_method text NOT NULL DEFAULT 'create_invoice'
        CHECK (missing_payment_method IN ('create_invoice', 'pause', 'cancel')),
    latest_invoice_id text,
    metadata        jsonb NOT NULL CHECK (jsonb_typeof(metadata) = 'object'),
    start_date      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    next_action_at  timestamptz,
    lease_owner     text,
    lease_expires_at timestamptz,
    CONSTRAINT subscriptions_period CHECK (current_period_end > current_period_start),
    CONSTRAINT subscriptions_pending CHECK ((pending_price_id IS NULL) = (pending_quantity IS NULL)),
    CONSTRAINT subscriptions_ended CHECK (
        (status IN ('canceled', 'incomplete_expired')) = (ended_at IS NOT NULL))
);
CREATE INDEX subscriptions_merchant ON subscriptions (merchant_id, livemode, seq);
CREATE INDEX subscriptions_customer ON subscriptions (customer_id, seq);
CREATE INDEX subscriptions_due ON subscriptions (next_action_at) WHERE next_action_at IS NOT NULL;
CREATE INDEX subscriptions_test_clock ON subscriptions (test_clock_id, next_action_at)
    WHERE test_clock_id IS NOT NULL AND next_action_at IS NOT NULL;

CREATE TABLE invoices (
    id              text PRIMARY KEY,
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id     text NOT NULL REFERENCES merchants (id),
    livemode        boolean NOT NULL,
    customer_id     text NOT NULL REFERENCES customers (id),
    subscription_id text REFERENCES subscriptions (id),
    test_clock_id   text REFERENCES test_clocks (id),
    billing_key     text NOT NULL,
    billing_reason  text NOT NULL CHECK (billing_reason IN (
        'subscription_create', 'subscription_cycle', 'subscription_update', 'manual')),
    status          text NOT NULL CHECK (status IN ('draft', 'open', 'paid', 'void', 'uncollectible')),
    number          text,
    currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    collection_method text NOT NULL CHECK (collection_method IN ('charge_automatically', 'send_invoice')),
    default_payment_method_id text REFERENCES payment_methods (id),
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL,
    subtotal        bigint NOT NULL,
    total           bigint NOT NULL,
    -- Customer credit applied (negative) or debt carried in (positive).
    starting_balance bigint NOT NULL DEFAULT 0,
    ending_balance  bigint,
    amount_due      bigint NOT NULL CHECK (amount_due >= 0),
    amount_paid     bigint NOT NULL DEFAULT 0,
    amount_remaining bigint NOT NULL,
    -- Credited by credit notes: lowers what is due on an open invoice.
    pre_payment_credit_notes_amount bigint NOT NULL DEFAULT 0,
    post_payment_credit_notes_amount bigint NOT NULL DEFAULT 0,
    attempt_count   integer NOT NULL DEFAULT 0,
    -- The intent of the collection attempt under way; cleared when it has an outcome.
    payment_intent_id text REFERENCES payment_intents (id),
    next_payment_attempt timestamptz,
    -- Dunning's last word: when its final action falls due (no retry comes before it).
    final_action_at timestamptz,
    lease_owner     text,
    lease_expires_at timestamptz,
    auto_advance    boolean NOT NULL DEFAULT true,
    due_date        timestamptz,
    description     text,
    metadata        jsonb NOT NULL CHECK (jsonb_typeof(metadata) = 'object'),
    -- The moment the invoice was made on the clock that bills it (a test clock's time).
    created_at      timestamptz NOT NULL,
    finalized_at    timestamptz,
    paid_at         timestamptz,
    voided_at       timestamptz,
    marked_uncollectible_at timestamptz,
    updated_at      timestamptz NOT NULL,
    UNIQUE (merchant_id, livemode, billing_key),
    CONSTRAINT invoices_paid CHECK (amount_paid BETWEEN 0 AND amount_due),
    CONSTRAINT invoices_remaining CHECK (amount_remaining >= 0),
    CONSTRAINT invoices_numbered CHECK (status = 'draft' OR number IS NOT NULL),
    CONSTRAINT invoices_credited CHECK (
        pre_payment_credit_notes_amount >= 0 AND post_payment_credit_notes_amount >= 0)
);
-- Invariant 3: a subscription's period is billed once, whatever crashes or races.
CREATE UNIQUE INDEX invoices_one_per_period ON invoices (subscription_id, period_start)
    WHERE billing_reason IN ('subscription_create', 'subscription_cycle');
CREATE UNIQUE INDEX invoices_number ON invoices (merchant_id, livemode, number)
    WHERE number IS NOT NULL;
CREATE INDEX invoices_merchant ON invoices (merchant_id, livemode, seq);
CREATE INDEX invoices_customer ON invoices (customer_id, seq);
CREATE INDEX invoices_subscription ON invoices (subscription_id, seq) WHERE subscription_id IS NOT NULL;
CREATE INDEX invoices_test_clock ON invoices (test_clock_id) WHERE test_clock_id IS NOT NULL;
CREATE INDEX invoices_collect ON invoices (next_payment_attempt)
    WHERE next_payment_attempt IS NOT NULL;
CREATE INDEX invoices_final_action ON invoices (final_action_at)
    WHERE final_action_at IS NOT NULL;
-- An attempt whose intent has no outcome yet: looked at again when its lease passes.
CREATE INDEX invoices_collecting ON invoices (lease_expires_at)
    WHERE payment_intent_id IS NOT NULL;
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_latest_invoice
    FOREIGN KEY (latest_invoice_id) REFERENCES invoices (id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE customer_balance_transactions ADD CONSTRAINT customer_balance_transactions_invoice
    FOREIGN KEY (invoice_id) REFERENCES invoices (id);

-- Stripe's invoice items: pending (no invoice yet) until the next invoice takes them.
CREATE TABLE invoice_items (
    id              text PRIMARY KEY,
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id     text NOT NULL REFERENCES merchants (id),
    livemode        boolean NOT NULL,
    customer_id     text NOT NULL REFERENCES customers (id),
    subscription_id text REFERENCES subscriptions (id),
    invoice_id      text REFERENCES invoices (id),
    price_id        text REFERENCES prices (id),
    currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    amount          bigint NOT NULL,
    quantity        integer NOT NULL DEFAULT 1 CHECK (quantity > 0),
    description     text,
    proration       boolean NOT NULL DEFAULT false,
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL,
    -- What made it (a plan change), so a retried change does not make it twice.
    source_key      text NOT NULL,
    created_at      timestamptz NOT NULL,
    UNIQUE (merchant_id, livemode, source_key)
);
CREATE INDEX invoice_items_pending ON invoice_items (customer_id, currency)
    WHERE invoice_id IS NULL;

CREATE TABLE invoice_lines (
    id              text PRIMARY KEY,
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id     text NOT NULL REFERENCES merchants (id),
    livemode        boolean NOT NULL,
    invoice_id      text NOT NULL REFERENCES invoices (id),
    type            text NOT NULL CHECK (type IN ('subscription', 'invoiceitem')),
    subscription_id text REFERENCES subscriptions (id),
    invoice_item_id text REFERENCES invoice_items (id),
    price_id        text REFERENCES prices (id),
    currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    amount          bigint NOT NULL,
    quantity        integer NOT NULL CHECK (quantity > 0),
    description     text,
    proration       boolean NOT NULL,
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL,
    -- How much of it the ledger has moved from deferred to recognised revenue.
    recognized_amount bigint NOT NULL DEFAULT 0,
    CONSTRAINT invoice_lines_period CHECK (period_end >= period_start),
    CONSTRAINT invoice_lines_recognized CHECK (
        recognized_amount = 0 OR sign(recognized_amount) = sign(amount)
        AND abs(recognized_amount) <= abs(amount))
);
CREATE INDEX invoice_lines_invoice ON invoice_lines (invoice_id, seq);
CREATE INDEX invoice_lines_unrecognized ON invoice_lines (period_start)
    WHERE recognized_amount <> amount;

-- Invoice numbers: gapless per merchant and mode, taken under the counter's row lock
-- in the transaction that finalizes the invoice.
CREATE TABLE invoice_number_counters (
    merchant_id     text NOT NULL REFERENCES merchants (id),
    livemode        boolean NOT NULL,
    prefix          text NOT NULL,
    next_number     bigint NOT NULL CHECK (next_number > 0),
    PRIMARY KEY (merchant_id, livemode)
);

CREATE TABLE credit_notes (
    id              text PRIMARY KEY,
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id     text NOT NULL REFERENCES merchants (id),
    livemode        boolean NOT NULL,
    invoice_id      text NOT NULL REFERENCES invoices (id),
    customer_id     text NOT NULL REFERENCES customers (id),
    number          text NOT NULL,
    currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    amount          bigint NOT NULL CHECK (amount > 0),
    -- Where the credit went: off what is due (open invoice), to the customer's balance,
    -- back to the card (a refund), or settled outside payrail.
    type            text NOT NULL CHECK (type IN ('pre_payment', 'post_payment')),
    credit_amount   bigint NOT NULL DEFAULT 0 CHECK (credit_amount >= 0),
    refund_amount   bigint NOT NULL DEFAULT 0 CHECK (refund_amount >= 0),
    out_of_band_amount bigint NOT NULL DEFAULT 0 CHECK (out_of_band_amount >= 0),
    refund_id       text REFERENCES refunds (id),
    reason          text CHECK (reason IN (
        'duplicate', 'fraudulent', 'order_change', 'product_unsatisfactory')),
    memo            text,
    status          text NOT NULL CHECK (status IN ('issued', 'void')),
    metadata        jsonb NOT NULL CHECK (jsonb_typeof(metadata) = 'object'),
    created_at      timestamptz NOT NULL,
    voided_at       timestamptz,
    UNIQUE (merchant_id, livemode, number),
    CONSTRAINT credit_notes_split CHECK (
        type = 'pre_payment' AND credit_amount + refund_amount + out_of_band_amount = 0
        OR type = 'post_payment' AND credit_amount + refund_amount + out_of_band_amount = amount)
);
CREATE INDEX credit_notes_merchant ON credit_notes (merchant_id, livemode, seq);
CREATE INDEX credit_notes_invoice ON credit_notes (invoice_id, seq);
ALTER TABLE customer_balance_transactions ADD CONSTRAINT customer_balance_transactions_credit_note
    FOREIGN KEY (credit_note_id) REFERENCES credit_notes (id);

-- The intent that pays an invoice names it (Stripe's payment_intent.invoice); its
-- capture credits payment clearing rather than sales, and billing clears it against
-- the receivable.
ALTER TABLE payment_intents ADD COLUMN invoice_id text REFERENCES invoices (id);
CREATE INDEX payment_intents_invoice ON payment_intents (invoice_id) WHERE invoice_id IS NOT NULL;

-- Per merchant and mode; a merchant without a row gets the defaults (dunning/policy.py).
CREATE TABLE dunning_policies (
    merchant_id     text NOT NULL REFERENCES merchants (id),
    livemode        boolean NOT NULL,
    retry_days      integer[] NOT NULL CHECK (cardinality(retry_days) BETWEEN 0 AND 12),
    technical_retry_hours integer NOT NULL CHECK (technical_retry_hours > 0),
    grace_period_days integer NOT NULL CHECK (grace_period_days >= 0),
    final_action    text NOT NULL CHECK (final_action IN ('cancel', 'mark_unpaid', 'leave_past_due')),
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, livemode)
);

-- Every attempt to collect an invoice and what came of it: the dunning history, and the
-- source of the failed-payments report (recovery by attempt).
CREATE TABLE invoice_payment_attempts (
    invoice_id      text NOT NULL REFERENCES invoices (id),
    attempt         integer NOT NULL CHECK (attempt > 0),
    merchant_id     text NOT NULL REFERENCES merchants (id),
    livemode        boolean NOT NULL,
    payment_intent_id text NOT NULL REFERENCES payment_intents (id),
    amount          bigint NOT NULL CHECK (amount > 0),
    currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- pending until the intent has an outcome.
    outcome         text NOT NULL CHECK (outcome IN ('pending', 'succeeded', 'failed')),
    decline_code    text,
    decision        text,
    connector_account_id text,
    attempted_at    timestamptz NOT NULL,
    decided_at      timestamptz,
    next_attempt_at timestamptz,
    PRIMARY KEY (invoice_id, attempt)
);
CREATE INDEX invoice_payment_attempts_merchant ON invoice_payment_attempts (merchant_id, livemode, attempted_at);

CREATE TABLE billing_ledger_accounts (
    merchant_id     text NOT NULL REFERENCES merchants (id),
    livemode        boolean NOT NULL,
    purpose         text NOT NULL CHECK (purpose IN (
        'receivable', 'deferred_revenue', 'subscription_revenue', 'customer_credit',
        'bad_debt')),
    currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    ledger_account_id text NOT NULL UNIQUE REFERENCES ledger_accounts (id),
    PRIMARY KEY (merchant_id, livemode, purpose, currency)
);

ALTER TABLE payment_ledger_accounts DROP CONSTRAINT payment_ledger_accounts_purpose_check;
ALTER TABLE payment_ledger_accounts ADD CONSTRAINT payment_ledger_accounts_purpose_check
    CHECK (purpose IN ('provider_balance', 'sales', 'refunds', 'processor_fees', 'disputes',
                       'payment_clearing'));
"""
