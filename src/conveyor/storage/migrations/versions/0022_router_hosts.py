"""router hosts: each environment's routing for its team's router hosts, what each
router host reports holding, and the per-second request summaries they report; a
deployment's pre_deploy commands run by a host's agent

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 21:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

NOW = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "routes",
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("updated_at", NOW, nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_routes_team_id_teams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_routes")),
    )
    op.create_table(
        "router_samples",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("host_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("side", sa.String(length=1), nullable=False),
        sa.Column("preview", sa.Boolean(), nullable=False),
        sa.Column("second", sa.BigInteger(), nullable=False),
        sa.Column("statuses", sa.JSON(), nullable=False),
        sa.Column("latency", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"],
            ["hosts.id"],
            name=op.f("fk_router_samples_host_id_hosts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_router_samples")),
    )
    with op.batch_alter_table("router_samples", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_router_samples_key_second"), ["key", "second"], unique=False
        )
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("routing", sa.JSON(), nullable=True))
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pre_deploy_host_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("pre_deploy_result", sa.JSON(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_deployments_pre_deploy_host_id_hosts"),
            "hosts",
            ["pre_deploy_host_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_deployments_pre_deploy_host_id_hosts"), type_="foreignkey"
        )
        batch_op.drop_column("pre_deploy_result")
        batch_op.drop_column("pre_deploy_host_id")
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("routing")
    with op.batch_alter_table("router_samples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_router_samples_key_second"))
    op.drop_table("router_samples")
    op.drop_table("routes")
