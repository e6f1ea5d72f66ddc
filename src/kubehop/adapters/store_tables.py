"""kubehop's tables as SQLAlchemy Core: the one schema the store writes and alembic upgrades to.

Kept apart from :class:`kubehop.adapters.store.Store` so the alembic environment and the schema
test can import the metadata without opening a database.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

migrations = sa.Table(
    "migrations", metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("request", sa.JSON, nullable=False),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("created", sa.Double, nullable=False),
    sa.Column("updated", sa.Double, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("context", sa.JSON, nullable=False),
)

steps = sa.Table(
    "steps", metadata,
    sa.Column("migration_id", sa.String, sa.ForeignKey("migrations.id"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("state", sa.String, nullable=False),
    sa.Column("started", sa.Double, nullable=False),
    sa.Column("ended", sa.Double, nullable=True),
    sa.Column("detail", sa.Text, nullable=False),
)

clusters = sa.Table(
    "clusters", metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("tier", sa.String, nullable=False),
    sa.Column("cpu_capacity", sa.Double, nullable=False),
    sa.Column("cpu_allocatable", sa.Double, nullable=False),
    sa.Column("mem_capacity", sa.Double, nullable=False),
    sa.Column("mem_allocatable", sa.Double, nullable=False),
    sa.Column("load_balancer", sa.String, nullable=False),
    sa.Column("seen", sa.Double, nullable=False),
)

links = sa.Table(
    "links", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("src", sa.String, nullable=False),
    sa.Column("dst", sa.String, nullable=False),
    sa.Column("rtt_ms", sa.Double, nullable=False),
    sa.Column("at", sa.Double, nullable=False),
    sa.Index("ix_links_pair_at", "src", "dst", "at"),
)

services = sa.Table(
    "services", metadata,
    sa.Column("namespace", sa.String, primary_key=True),
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("cluster", sa.String, nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("seen", sa.Double, nullable=False),
)

placements = sa.Table(
    "placements", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("namespace", sa.String, nullable=False),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("cluster", sa.String, nullable=False),
    sa.Column("since", sa.Double, nullable=False),
    sa.Column("migration_id", sa.String, nullable=True),
    sa.Index("ix_placements_service_since", "namespace", "name", "since"),
)

rule_states = sa.Table(
    "rule_states", metadata,
    sa.Column("rule", sa.String, primary_key=True),
    sa.Column("subject", sa.String, primary_key=True),
    sa.Column("state", sa.JSON, nullable=False),
)

evaluations = sa.Table(
    "evaluations", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("rule", sa.String, nullable=False),
    sa.Column("subject", sa.String, nullable=False),
    sa.Column("value", sa.Double, nullable=True),
    sa.Column("state", sa.String, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Index("ix_evaluations_at", "at"),
)

decisions = sa.Table(
    "decisions", metadata,
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
    sa.Index("ix_decisions_service_at", "namespace", "service", "at"),
)
