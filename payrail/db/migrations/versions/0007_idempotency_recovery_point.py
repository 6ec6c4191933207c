"""Idempotency keys remember the object a multi-step request committed first.

A request that calls a provider commits in steps (payments). If it dies, or outlives its
lease, after its first step, a retry with the same key must carry on with the object
that step made, not make another: that would charge or refund a second time.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.execute("ALTER TABLE idempotency_keys ADD COLUMN recovery_point text")
