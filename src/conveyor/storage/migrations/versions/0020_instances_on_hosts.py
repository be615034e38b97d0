"""instances on hosts: the host whose agent runs each instance and its address, what
the agent starts (command, env, health check) and what it last reported

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 15:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("host_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("address", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("launch", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("observed", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("observed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_instances_host_id"), ["host_id"])
        batch_op.create_foreign_key(
            batch_op.f("fk_instances_host_id_hosts"),
            "hosts",
            ["host_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_instances_host_id_hosts"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_instances_host_id"))
        batch_op.drop_column("observed_at")
        batch_op.drop_column("observed")
        batch_op.drop_column("launch")
        batch_op.drop_column("address")
        batch_op.drop_column("host_id")
