"""workflows: runs of @farside.workflow, their children's journal keys, body tokens;
attempts' GPU memory and utilisation, and their memory and CPU over time

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("share_group", sa.String(200), nullable=True),
        sa.Column("body_job_id", Id, nullable=False),
        sa.Column("body_runs", sa.Integer(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("report", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_workflows"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_workflows_owner", "workflows", ["owner", "id"])
    op.create_index("ix_workflows_owner_name", "workflows", ["owner", "name"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("workflow_id", Id, nullable=True))
        batch.add_column(sa.Column("journal_key", sa.String(100), nullable=True))
    op.create_index("ix_jobs_journal", "jobs", ["workflow_id", "journal_key"], unique=True)
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("job_id", Id, nullable=True))
        batch.add_column(sa.Column("job_attempt", sa.Integer(), nullable=True))
    op.create_index("ix_tokens_job", "tokens", ["job_id"])
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("max_gpu_memory", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("gpu_utilization", sa.Float(), nullable=True))
        batch.add_column(sa.Column("usage", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("usage")
        batch.drop_column("gpu_utilization")
        batch.drop_column("max_gpu_memory")
    op.drop_index("ix_tokens_job", table_name="tokens")
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("job_attempt")
        batch.drop_column("job_id")
    op.drop_index("ix_jobs_journal", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("journal_key")
        batch.drop_column("workflow_id")
    op.drop_index("ix_workflows_owner_name", table_name="workflows")
    op.drop_index("ix_workflows_owner", table_name="workflows")
    op.drop_table("workflows")
