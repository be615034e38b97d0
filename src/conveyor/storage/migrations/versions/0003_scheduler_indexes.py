"""scheduler indexes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 10:20:37.822094
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_jobs_run_id_status"), ["run_id", "status"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_jobs_team_id_started_at"), ["team_id", "started_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_team_id_started_at"))
        batch_op.drop_index(batch_op.f("ix_jobs_run_id_status"))
