"""No change: this revision was reserved for a ledger pass while the events migrations
were written, and databases created then have recorded it. The ledger change landed as
0013.

Revision ID: 0010
Revises: 0009
"""

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    pass
