"""Alembic migrations of the SQL store; run by :meth:`SQLStore.upgrade`, not by hand."""
