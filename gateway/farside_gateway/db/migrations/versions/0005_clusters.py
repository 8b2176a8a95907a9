"""clusters: interactive Dask clusters whose workers are leases in the pool

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clusters",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("instance", sa.String(200), nullable=False),
        sa.Column("scheduler_address", sa.String(300), nullable=True),
        sa.Column("dashboard_link", sa.String(300), nullable=True),
        sa.Column("tls_cert", sa.Text(), nullable=False),
        sa.Column("tls_key", sa.Text(), nullable=False),
        sa.Column("groups", sa.Text(), nullable=False),
        sa.Column("share_group", sa.String(200), nullable=True),
        sa.Column("idle_timeout", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_client_seen", sa.Float(), nullable=True),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_clusters")),
    )
    with op.batch_alter_table("clusters", schema=None) as batch_op:
        batch_op.create_index("ix_clusters_owner_state", ["owner", "state"], unique=False)
        batch_op.create_index("ix_clusters_instance_state", ["instance", "state"], unique=False)


def downgrade() -> None:
    op.drop_table("clusters")
