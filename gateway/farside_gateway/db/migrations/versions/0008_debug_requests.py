"""debug_requests: stack dumps users asked of running jobs, for their pilots to take

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "debug_requests",
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("pilot_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("requested_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("job_id"),
    )
    op.create_index("ix_debug_requests_pilot", "debug_requests", ["pilot_id"])


def downgrade() -> None:
    op.drop_index("ix_debug_requests_pilot", table_name="debug_requests")
    op.drop_table("debug_requests")
