"""Alembic environment for the SQL store.

It runs only inside :meth:`livesupport.store.sql.SQLStore.upgrade`, which
opens the transaction (and takes the cross-node lock) and hands over its
connection in ``config.attributes``; there is no ``alembic.ini``. To write a
new revision, copy the newest file in ``versions/`` and chain ``down_revision``.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("livesupport migrations run through SQLStore.upgrade() on a live connection")

context.configure(
    connection=connection,
    version_table=context.config.attributes["version_table"],
    # SQLite cannot ALTER most things; batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
