"""Alembic migrations of the store's schema (SQLite and PostgreSQL); run by
``meshplane.store.migrate``.  ``versions/0001`` is the schema of the release before migrations
existed (a database of that release is stamped with it, then upgraded)."""
