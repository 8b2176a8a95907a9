"""job inputs: parents whose results a job takes as arguments (graph offload)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("inputs", sa.Text(), nullable=True))
    with op.batch_alter_table("job_deps", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("input", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("job_deps", schema=None) as batch_op:
        batch_op.drop_column("input")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("inputs")
