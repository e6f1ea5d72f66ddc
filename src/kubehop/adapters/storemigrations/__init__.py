"""alembic scripts of kubehop's store: run by :class:`kubehop.adapters.store.Store` on open."""
