"""deployment policy: protection rules, approvals, freeze windows, the stop-the-line
switch, what a deployment's gate needs on its row, the teams a merge requires, and a
finished run's status

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 16:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

COLUMNS = (
    ("policy", sa.JSON()),
    ("requester", sa.String(length=64)),
    ("approved_at", sa.DateTime(timezone=True)),
    ("released_at", sa.DateTime(timezone=True)),
    ("emergency", sa.Text()),
    ("job_id", sa.Uuid()),
)


def upgrade() -> None:
    for table in ("projects", "runs"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("required_teams", sa.JSON(), nullable=True))
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("final_status", sa.String(length=20), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_runs_project_id_final_status"), ["project_id", "final_status"]
        )
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        for name, kind in COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))
    # What had begun before there were gates has passed them.
    op.execute(
        "UPDATE deployments SET released_at = COALESCE(started_at, created_at), "
        "approved_at = created_at WHERE phase <> 'pending'"
    )
    op.create_table(
        "protections",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("environment", sa.String(length=100), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_protections_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_protections_team_id_teams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_protections")),
        sa.UniqueConstraint(
            "project_id", "environment", name=op.f("uq_protections_project_id_environment")
        ),
    )
    op.create_table(
        "approvals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("deployment_id", sa.Uuid(), nullable=False),
        sa.Column("decision", sa.String(length=10), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("approver", sa.String(length=200), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_approvals_deployment_id_deployments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_approvals_team_id_teams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
        sa.UniqueConstraint(
            "deployment_id", "subject", name=op.f("uq_approvals_deployment_id_subject")
        ),
    )
    op.create_table(
        "freeze_windows",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=True),
        sa.Column("project_id", sa.Uuid(), nullable=True),
        sa.Column("environment", sa.String(length=100), nullable=True),
        sa.Column("cron", sa.String(length=100), nullable=False),
        sa.Column("duration_s", sa.Integer(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_freeze_windows_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_freeze_windows_team_id_teams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_freeze_windows")),
    )
    with op.batch_alter_table("freeze_windows", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_freeze_windows_team_id"), ["team_id"])
    op.create_table(
        "switches",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("on", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("changed_by", sa.String(length=200), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_switches")),
    )


def downgrade() -> None:
    op.drop_table("switches")
    with op.batch_alter_table("freeze_windows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_freeze_windows_team_id"))
    op.drop_table("freeze_windows")
    op.drop_table("approvals")
    op.drop_table("protections")
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        for name, _ in reversed(COLUMNS):
            batch_op.drop_column(name)
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_project_id_final_status"))
        batch_op.drop_column("final_status")
    for table in ("runs", "projects"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("required_teams")
