"""Sandbox connector accounts exist in test mode only.

The sandbox charges nothing real and is run wherever its operator put it: a live card
number sent to it would leave the vault for a place no processor's PCI controls cover.
PostgreSQL refuses such an account, whatever the code above it does.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.execute(
        "ALTER TABLE connector_accounts ADD CONSTRAINT connector_accounts_sandbox_test_only"
        " CHECK (provider <> 'sandbox' OR NOT livemode)"
    )
