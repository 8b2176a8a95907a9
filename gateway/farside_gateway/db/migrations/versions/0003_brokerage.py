"""brokerage: GPU model, architecture, environment, fair-share groups, scouts, site status,
attempts by batch id

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _job_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("gpu_model", sa.String(64), nullable=True),
        sa.Column("arch", sa.String(32), nullable=True),
        sa.Column("env", sa.String(200), nullable=True),
        sa.Column("site_order", sa.String(2000), nullable=True),
        sa.Column("share_group", sa.String(200), nullable=True),
        sa.Column("tunable", sa.String(32), nullable=True),
        sa.Column("scout", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("adjusted", sa.Text(), nullable=True),
        sa.Column("resource_failures", sa.Integer(), nullable=False, server_default="0"),
    ]


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        for column in _job_columns():
            batch_op.add_column(column)
        batch_op.create_index(
            "ix_jobs_owner_queue",
            ["state", "owner", sa.literal_column("priority DESC"), "id"],
            unique=False,
        )
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.create_index("ix_attempts_batch_id", ["batch_id"], unique=False)
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("groups", sa.String(1000), nullable=True))
    op.create_table(
        "site_status",
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("changed_by", sa.String(200), nullable=False),
        sa.Column("changed_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("site", name=op.f("pk_site_status")),
    )


def downgrade() -> None:
    op.drop_table("site_status")
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_column("groups")
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_attempts_batch_id")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_owner_queue")
        for column in reversed(_job_columns()):
            batch_op.drop_column(column.name)
