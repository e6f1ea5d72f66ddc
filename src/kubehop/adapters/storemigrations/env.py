"""alembic's entry point, online only: the store hands over its open connection (inside the
transaction that holds the upgrade lock) and its version table."""

from __future__ import annotations

from alembic import context

from kubehop.adapters.store_tables import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("kubehop's schema is upgraded by opening the store (kubehop.adapters."
                       "store.Store), not by the alembic command")
context.configure(connection=connection, target_metadata=metadata,
                  version_table=config.attributes["version_table"],
                  render_as_batch=True)  # SQLite alters tables by copying them
with context.begin_transaction():
    context.run_migrations()
