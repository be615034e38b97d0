"""webhook intake

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 06:45:30.091524
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("route", sa.String(length=500), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint(
            "owner",
            "method",
            "route",
            "key",
            name=op.f("uq_idempotency_keys_owner_method_route_key"),
        ),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("delivery_key", sa.String(length=300), nullable=False),
        sa.Column("event", sa.String(length=200), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.JSON(), nullable=False),
        sa.Column("runs", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_deliveries_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_deliveries_team_id_teams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint(
            "project_id",
            "provider",
            "delivery_key",
            name=op.f("uq_deliveries_project_id_provider_delivery_key"),
        ),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_deliveries_project_id_received_at"),
            ["project_id", "received_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_deliveries_state_not_before"), ["state", "not_before"], unique=False
        )

    op.create_table(
        "schedule_fires",
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("entry", sa.String(length=300), nullable=False),
        sa.Column("slot", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_schedule_fires_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "entry", "slot", name=op.f("pk_schedule_fires")),
    )
    op.create_table(
        "status_outbox",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("sha", sa.String(length=64), nullable=False),
        sa.Column("ref", sa.String(length=500), nullable=False),
        sa.Column("context", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("description", sa.String(length=140), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_status_outbox_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_status_outbox_run_id_runs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_status_outbox_team_id_teams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_outbox")),
    )
    with op.batch_alter_table("status_outbox", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_status_outbox_sent_at_next_at"), ["sent_at", "next_at"], unique=False
        )

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status_reported", sa.String(length=60), nullable=True))

    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("provider", sa.String(length=20), server_default="git", nullable=False)
        )
        batch_op.add_column(sa.Column("hook_secret", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("hook_secret_old", sa.LargeBinary(), nullable=True))
        batch_op.add_column(
            sa.Column("hook_secret_old_until", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("status_api", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("status_repo", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("status_token", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("status_reported")

    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("status_token")
        batch_op.drop_column("status_repo")
        batch_op.drop_column("status_api")
        batch_op.drop_column("hook_secret_old_until")
        batch_op.drop_column("hook_secret_old")
        batch_op.drop_column("hook_secret")
        batch_op.drop_column("provider")

    with op.batch_alter_table("status_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_status_outbox_sent_at_next_at"))

    op.drop_table("status_outbox")
    op.drop_table("schedule_fires")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_state_not_before"))
        batch_op.drop_index(batch_op.f("ix_deliveries_project_id_received_at"))

    op.drop_table("deliveries")
    op.drop_table("idempotency_keys")
