"""The initial schema: agents, sessions, attempts, visitors, conversations, events, ratings.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Spelled out rather than imported from ``sql_schema`` so that this revision
stays what it was when later ones change the tables.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = 64
OPEN = sa.text("status <> 'closed'")


def at(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    feed = op.create_table(
        "feed",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("pos", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(feed, [{"id": 1, "pos": 0}])

    op.create_table(
        "agents",
        sa.Column("id", sa.String(ID), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        at("last_seen_at", nullable=True),
        at("created_at"),
    )
    op.create_table(
        "agent_sessions",
        sa.Column("token_hash", sa.String(128), primary_key=True),
        sa.Column(
            "agent_id",
            sa.String(ID),
            sa.ForeignKey("agents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("csrf_token", sa.String(128), nullable=False),
        at("created_at"),
        at("last_seen_at"),
    )
    op.create_index("ix_agent_sessions_agent_id", "agent_sessions", ["agent_id"])

    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(320), nullable=False),
        at("at"),
    )
    op.create_index("ix_attempts_key_at", "attempts", ["key", "at"])

    op.create_table(
        "visitors",
        sa.Column("id", sa.String(ID), primary_key=True),
        *(
            sa.Column(name, sa.Text, nullable=False)
            for name in ("name", "email", "page", "referrer", "user_agent", "locale")
        ),
        sa.Column("external_id", sa.String(255), unique=True),
        at("created_at"),
    )

    op.create_table(
        "conversations",
        sa.Column("id", sa.String(ID), primary_key=True),
        sa.Column("visitor_id", sa.String(ID), sa.ForeignKey("visitors.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("agent_id", sa.String(ID), sa.ForeignKey("agents.id")),
        at("created_at"),
        at("updated_at"),
        sa.Column("last_seq", sa.Integer, nullable=False),
        sa.Column("node_id", sa.String(ID), nullable=False),
        sa.Column("pos", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "uq_conversations_open_visitor",
        "conversations",
        ["visitor_id"],
        unique=True,
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    )
    for name, columns in (
        ("ix_conversations_visitor_id", ["visitor_id", "created_at"]),
        ("ix_conversations_status_created_at", ["status", "created_at"]),
        ("ix_conversations_agent_id_created_at", ["agent_id", "created_at"]),
        ("ix_conversations_created_at_id", ["created_at", "id"]),
        ("ix_conversations_pos", ["pos"]),
    ):
        op.create_index(name, "conversations", columns)

    op.create_table(
        "events",
        sa.Column("id", sa.String(ID), primary_key=True),
        sa.Column(
            "conversation_id", sa.String(ID), sa.ForeignKey("conversations.id"), nullable=False
        ),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("pos", sa.BigInteger, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        at("at"),
        sa.Column("client_msg_id", sa.String(128)),
        sa.Column("author_kind", sa.String(16)),
        sa.Column("author_id", sa.String(ID)),
        sa.Column("author_name", sa.Text),
        sa.Column("body", sa.Text),
        sa.Column("agent_id", sa.String(ID)),
        sa.Column("agent_name", sa.Text),
        sa.UniqueConstraint("conversation_id", "seq", name="uq_events_conversation_seq"),
        sa.UniqueConstraint(
            "author_kind", "author_id", "client_msg_id", name="uq_events_client_msg"
        ),
    )
    op.create_index("ix_events_pos", "events", ["pos"], unique=True)
    op.create_index("ix_events_conversation_pos", "events", ["conversation_id", "pos"])

    op.create_table(
        "ratings",
        sa.Column(
            "conversation_id", sa.String(ID), sa.ForeignKey("conversations.id"), primary_key=True
        ),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        at("at"),
    )


def downgrade() -> None:
    for table in ("ratings", "events", "conversations", "visitors", "attempts"):
        op.drop_table(table)
    for table in ("agent_sessions", "agents", "feed"):
        op.drop_table(table)
