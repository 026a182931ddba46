"""An index of visitors' messages by author and time, for the shared send rate.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

Every visitor send counts the visitor's messages of the last minute in its own
transaction; this partial index makes that read at most the limit's number of
entries, and costs agents' and system events nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

VISITOR_MESSAGE = sa.text("author_kind = 'visitor' AND type = 'message'")


def upgrade() -> None:
    op.create_index(
        "ix_events_visitor_message_at",
        "events",
        ["author_id", "at"],
        sqlite_where=VISITOR_MESSAGE,
        postgresql_where=VISITOR_MESSAGE,
    )


def downgrade() -> None:
    op.drop_index("ix_events_visitor_message_at", table_name="events")
