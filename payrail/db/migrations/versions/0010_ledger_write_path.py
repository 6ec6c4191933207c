"""Reserved for the ledger write-path pass (issue 2's benchmark); no change yet.

Revision ID: 0010
Revises: 0009
"""

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    pass
