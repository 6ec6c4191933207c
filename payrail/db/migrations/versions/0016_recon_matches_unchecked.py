"""Reconciliation at a million rows a day: matches without row-by-row foreign keys, and
each provider row's first sight of its reference.

A run inserts a match per provider row in one statement: a million at a time on a large
day. PostgreSQL checks a foreign key by a trigger per inserted row, so the three of
`recon_matches` (to its expectation, merchant and run) cost more than the insert itself:
at 1M rows the match went from 26 s to 12 s without them (BENCHMARKS.md, `payrail bench
recon`). They guarded nothing the run does not already know: the statement that inserts
a match joins the expectation it names, in the same transaction, and the run and
merchant are the run's own. What a match must never be, matched twice on either side,
is still PostgreSQL's to refuse (the primary key and the unique expectation).

The index of matches by run goes too: every lookup of a run's matches is by provider
transaction or expectation (both unique) or of its differing pairs (their own index).

A provider row that repeats the kind and reference of an earlier row of its report
carries that row's line (`repeat_of_line`), noted as the file streams in. The first row
of a reference is the one matched; finding it in SQL took an anti-join of the report with
itself, a third of the whole match at a million rows.

Revision ID: 0016
Revises: 0015
"""

from alembic import op

revision = "0016"
down_revision = "0015"


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE recon_matches
            DROP CONSTRAINT recon_matches_expectation_id_fkey,
            DROP CONSTRAINT recon_matches_merchant_id_fkey,
            DROP CONSTRAINT recon_matches_run_id_fkey;
        DROP INDEX recon_matches_run;
        ALTER TABLE recon_provider_transactions ADD COLUMN repeat_of_line integer;
        """
    )
