"""concurrency groups

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 10:52:25.695299
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("concurrency_group", sa.String(length=200), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_jobs_team_id_concurrency_group_status"),
            ["team_id", "concurrency_group", "status"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_team_id_concurrency_group_status"))
        batch_op.drop_column("concurrency_group")
