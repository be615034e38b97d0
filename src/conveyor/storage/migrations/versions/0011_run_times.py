"""when a run's push arrived and when it finished; a deployment's commit time and fix
flag, and a project's production environments (DORA)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 12:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

MOVING = ("created", "pending", "running", "blocked")
"""Job statuses that keep a run open (domain.status.run_status)."""


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("received_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_runs_finished_at_created_at"), ["finished_at", "created_at"]
        )
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("committed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("fix", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("production", sa.JSON(), nullable=True))
    # Runs that finished before this release count as finished when they were created,
    # so that the metrics do not count them again as they are first seen.
    moving = ", ".join(f"'{status}'" for status in MOVING)
    op.execute(
        "UPDATE runs SET finished_at = created_at WHERE NOT EXISTS "
        f"(SELECT 1 FROM jobs WHERE jobs.run_id = runs.id AND jobs.status IN ({moving}))"
    )


def downgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("production")
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_column("fix")
        batch_op.drop_column("committed_at")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_finished_at_created_at"))
        batch_op.drop_column("finished_at")
        batch_op.drop_column("received_at")
