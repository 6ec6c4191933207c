"""The ledger's two trigger functions keep one generic plan per connection.

Measured (docs/DESIGN.md, "Measured decisions on the write path"): on connections
opened against a ledger that already holds rows, as every connection of a running
deployment is, PostgreSQL's plan cache kept choosing custom plans for the commit check,
re-planning it on about half of all commits at ~190 µs each. With a forced generic plan
the check costs ~71 µs per commit, and server CPU per single transfer fell from
~910-950 to ~530-690 µs with 8 clients. A generic plan is made without the parameters'
values, and, when made while a table is still small, could pick a sequential scan and
keep it as the table grows: sequential scans are therefore off in both functions, whose
every lookup is an index probe by key. Nothing the functions check changes.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"


def upgrade() -> None:
    op.execute(SCHEMA)


SCHEMA = r"""
ALTER FUNCTION ledger_check_transactions()
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
ALTER FUNCTION ledger_apply_entries()
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
"""
