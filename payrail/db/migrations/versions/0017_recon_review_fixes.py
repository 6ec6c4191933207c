"""Reconciliation after review: an item that turns up after a person resolved its break,
breaks re-typed and closed by a payout's reversal, and the indexes that let a run find
the few breaks it changes without reading every open one.

What PostgreSQL now enforces, so that no code path can get it wrong:

- what a break moved to suspense comes back at most once after a person resolved it: the
  break that brings it back (`after_resolution`, made when the item the person wrote off
  is reported, reaches the bank or comes back after all) names the resolved break in
  `follows_break_id`, which is unique; and only that type names one, and it always does;
- a break closes by its item arriving, by its payout's reversal (`reversed`: the bank
  will never see it) or by a person, and its history says which (`reversed`), and when a
  run changed its type without escalating it (`retyped`: a row that was missing_internal
  is a duplicate once the first row of its reference matches).

Indexes: a run reads only the breaks it may change, not every open break of its
connector account (a person resolving one would wait for the whole run): the open timing
and missing breaks (`recon_breaks_waiting`, by due day), and the missing breaks a person
resolved (`recon_breaks_resolved_by_hand`), whose item may still turn up.

Revision ID: 0017
Revises: 0016
"""

from alembic import op

revision = "0017"
down_revision = "0016"


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE recon_breaks
            DROP CONSTRAINT recon_breaks_type_check,
            ADD CONSTRAINT recon_breaks_type_check CHECK (type IN (
                'missing_internal', 'missing_at_provider', 'missing_at_bank', 'amount_mismatch',
                'fee_mismatch', 'currency_mismatch', 'status_mismatch', 'duplicate', 'timing',
                'after_resolution')),
            DROP CONSTRAINT recon_breaks_resolution_check,
            ADD CONSTRAINT recon_breaks_resolution_check
                CHECK (resolution IN ('arrived', 'reversed', 'resolved_by_user')),
            ADD COLUMN follows_break_id text UNIQUE REFERENCES recon_breaks (id),
            ADD CONSTRAINT recon_breaks_follows_check
                CHECK ((type = 'after_resolution') = (follows_break_id IS NOT NULL));
        ALTER TABLE recon_break_history
            DROP CONSTRAINT recon_break_history_action_check,
            ADD CONSTRAINT recon_break_history_action_check CHECK (action IN (
                'opened', 'escalated', 'retyped', 'arrived', 'reversed', 'resolved'));
        CREATE INDEX recon_breaks_waiting
            ON recon_breaks (merchant_id, livemode, connector_account_id, due_on)
            WHERE status = 'open' AND type IN ('timing', 'missing_at_provider', 'missing_at_bank');
        CREATE INDEX recon_breaks_resolved_by_hand
            ON recon_breaks (merchant_id, livemode, connector_account_id)
            WHERE resolution = 'resolved_by_user'
              AND type IN ('missing_at_provider', 'missing_at_bank');
        """
    )
