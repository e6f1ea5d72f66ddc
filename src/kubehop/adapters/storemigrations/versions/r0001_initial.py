"""The journal (migrations, steps) and the controller's tables.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "migrations",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("created", sa.Double, nullable=False),
        sa.Column("updated", sa.Double, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("context", sa.JSON, nullable=False),
    )
    op.create_table(
        "steps",
        sa.Column("migration_id", sa.String, sa.ForeignKey("migrations.id"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("started", sa.Double, nullable=False),
        sa.Column("ended", sa.Double, nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_table(
        "clusters",
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("tier", sa.String, nullable=False),
        sa.Column("cpu_capacity", sa.Double, nullable=False),
        sa.Column("cpu_allocatable", sa.Double, nullable=False),
        sa.Column("mem_capacity", sa.Double, nullable=False),
        sa.Column("mem_allocatable", sa.Double, nullable=False),
        sa.Column("load_balancer", sa.String, nullable=False),
        sa.Column("seen", sa.Double, nullable=False),
    )
    op.create_table(
        "links",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("src", sa.String, nullable=False),
        sa.Column("dst", sa.String, nullable=False),
        sa.Column("rtt_ms", sa.Double, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
    )
    op.create_index("ix_links_pair_at", "links", ["src", "dst", "at"])
    op.create_table(
        "services",
        sa.Column("namespace", sa.String, primary_key=True),
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("cluster", sa.String, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("seen", sa.Double, nullable=False),
    )
    op.create_table(
        "placements",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("namespace", sa.String, nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("cluster", sa.String, nullable=False),
        sa.Column("since", sa.Double, nullable=False),
        sa.Column("migration_id", sa.String, nullable=True),
    )
    op.create_index("ix_placements_service_since", "placements", ["namespace", "name", "since"])
    op.create_table(
        "rule_states",
        sa.Column("rule", sa.String, primary_key=True),
        sa.Column("subject", sa.String, primary_key=True),
        sa.Column("state", sa.JSON, nullable=False),
    )
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("rule", sa.String, nullable=False),
        sa.Column("subject", sa.String, nullable=False),
        sa.Column("value", sa.Double, nullable=True),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_evaluations_at", "evaluations", ["at"])
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("namespace", sa.String, nullable=False),
        sa.Column("service", sa.String, nullable=False),
        sa.Column("action", sa.String, nullable=False),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("target", sa.String, nullable=True),
        sa.Column("explanation", sa.Text, nullable=False),
        sa.Column("score_table", sa.JSON, nullable=False),
        sa.Column("migration_id", sa.String, nullable=True),
    )
    op.create_index("ix_decisions_service_at", "decisions", ["namespace", "service", "at"])


def downgrade() -> None:
    for index, table in (("ix_decisions_service_at", "decisions"),
                         ("ix_evaluations_at", "evaluations"),
                         ("ix_placements_service_since", "placements"),
                         ("ix_links_pair_at", "links")):
        op.drop_index(index, table_name=table)
    for table in ("decisions", "evaluations", "rule_states", "placements", "services",
                  "links", "clusters", "steps", "migrations"):
        op.drop_table(table)
