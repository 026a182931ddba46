"""Indexes for agents' polls: conversations by status and by holder in position
order, and the events that change a conversation's status or holder.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

An agent's poll reads the waiting conversations and its own that changed since
its cursor, and the changes of status or holder in its range; with these it
reads those only, not every message of the deployment since its cursor, nor
every conversation the agent ever held.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

CHANGE = sa.text("type <> 'message'")


def upgrade() -> None:
    op.create_index("ix_conversations_status_pos", "conversations", ["status", "pos"])
    op.create_index("ix_conversations_agent_id_pos", "conversations", ["agent_id", "pos"])
    op.create_index(
        "ix_events_changes_pos", "events", ["pos"], sqlite_where=CHANGE, postgresql_where=CHANGE
    )


def downgrade() -> None:
    op.drop_index("ix_conversations_agent_id_pos", table_name="conversations")
    op.drop_index("ix_conversations_status_pos", table_name="conversations")
    op.drop_index("ix_events_changes_pos", table_name="events")
