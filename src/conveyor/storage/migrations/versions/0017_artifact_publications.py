"""artifact_publications: every run that publishes an artifact finds it, even when the
same content was first published by an earlier run

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 03:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifact_publications",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("artifact_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("job_name", sa.String(length=300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["artifact_id"],
            ["artifacts.id"],
            name=op.f("fk_artifact_publications_artifact_id_artifacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifact_publications")),
    )
    with op.batch_alter_table("artifact_publications", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_artifact_publications_artifact_id"), ["artifact_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_artifact_publications_run_id_job_name"), ["run_id", "job_name"]
        )
    # The runs that published before: each artifact's first provenance.
    op.execute(
        "INSERT INTO artifact_publications (id, artifact_id, run_id, job_id, job_name, "
        "created_at) SELECT id, id, run_id, job_id, job_name, created_at FROM artifacts "
        "WHERE run_id IS NOT NULL AND job_id IS NOT NULL AND job_name IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table("artifact_publications")
