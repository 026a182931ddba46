"""The SQL store's tables, as SQLAlchemy Core objects, and the row-to-record mapping.

The schema itself is created and changed only by the Alembic migrations in
``migrations/versions``; these definitions mirror them for the queries (a test
checks that the two agree). Everything is plain SQL that SQLite and
PostgreSQL both run: no dialect-specific types, partial indexes spelled for both.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)

from .base import Agent, AgentSession, Author, Conversation, StoredEvent, Visitor

ID = 64  # room for new_id()'s 24 characters and then some
INT_MAX = 2**31 - 1  # the largest INTEGER (seq), on PostgreSQL
BIGINT_MAX = 2**63 - 1  # the largest BIGINT (pos)
OPEN = text("status <> 'closed'")
# The rows a visitor's send rate counts (spelled the same in the queries, so that
# SQLite and PostgreSQL's generic plans see that the partial index applies).
VISITOR_MESSAGE = text("author_kind = 'visitor' AND type = 'message'")
CHANGE = text("type <> 'message'")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on every backend.

    PostgreSQL keeps ``timestamptz``; SQLite has no time type, so the value is
    stored as naive UTC text with microseconds (which sorts chronologically)
    and the zone re-attached on the way out. Naive datetimes are refused: the
    store cannot know what zone they meant.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

# One row: the highest position handed out. Updating it row-locks it until
# commit, so positions are taken in commit order (see base.py on ``pos``).
feed = Table(
    "feed",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("pos", BigInteger, nullable=False),
)

agents = Table(
    "agents",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),  # stored lower-case
    Column("name", Text, nullable=False),
    Column("role", String(16), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("status", String(16), nullable=False),
    Column("last_seen_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
)

agent_sessions = Table(
    "agent_sessions",
    metadata,
    Column("token_hash", String(128), primary_key=True),
    Column("agent_id", String(ID), ForeignKey("agents.id", ondelete="CASCADE"), nullable=False),
    Column("csrf_token", String(128), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Index("ix_agent_sessions_agent_id", "agent_id"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(320), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_attempts_key_at", "key", "at"),
)

visitors = Table(
    "visitors",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("name", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("page", Text, nullable=False),
    Column("referrer", Text, nullable=False),
    Column("user_agent", Text, nullable=False),
    Column("locale", Text, nullable=False),
    Column("external_id", String(255), unique=True),
    Column("created_at", UTCDateTime, nullable=False),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("visitor_id", String(ID), ForeignKey("visitors.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("agent_id", String(ID), ForeignKey("agents.id")),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("last_seq", Integer, nullable=False),
    Column("node_id", String(ID), nullable=False),
    Column("pos", BigInteger, nullable=False),
    # One open conversation per visitor, enforced where concurrent nodes meet.
    Index(
        "uq_conversations_open_visitor",
        "visitor_id",
        unique=True,
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    ),
    Index("ix_conversations_visitor_id", "visitor_id", "created_at"),
    Index("ix_conversations_status_created_at", "status", "created_at"),
    Index("ix_conversations_agent_id_created_at", "agent_id", "created_at"),
    Index("ix_conversations_created_at_id", "created_at", "id"),
    Index("ix_conversations_pos", "pos"),
    # For agents' polls: the waiting ones and an agent's own, changed since a position.
    Index("ix_conversations_status_pos", "status", "pos"),
    Index("ix_conversations_agent_id_pos", "agent_id", "pos"),
)

events = Table(
    "events",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("conversation_id", String(ID), ForeignKey("conversations.id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("pos", BigInteger, nullable=False),
    Column("type", String(32), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("client_msg_id", String(128)),
    Column("author_kind", String(16)),
    Column("author_id", String(ID)),
    Column("author_name", Text),
    Column("body", Text),
    Column("agent_id", String(ID)),
    Column("agent_name", Text),
    UniqueConstraint("conversation_id", "seq", name="uq_events_conversation_seq"),
    # NULLs are distinct, so only messages (which have a client_msg_id) collide.
    UniqueConstraint("author_kind", "author_id", "client_msg_id", name="uq_events_client_msg"),
    Index("ix_events_pos", "pos", unique=True),
    Index("ix_events_conversation_pos", "conversation_id", "pos"),
    # A visitor's latest messages, for its send rate: a send reads at most the limit.
    Index(
        "ix_events_visitor_message_at",
        "author_id",
        "at",
        sqlite_where=VISITOR_MESSAGE,
        postgresql_where=VISITOR_MESSAGE,
    ),
    # Changes of status or holder (every event but messages), for agents' polls.
    Index("ix_events_changes_pos", "pos", sqlite_where=CHANGE, postgresql_where=CHANGE),
)

ratings = Table(
    "ratings",
    metadata,
    Column("conversation_id", String(ID), ForeignKey("conversations.id"), primary_key=True),
    Column("score", Integer, nullable=False),
    Column("comment", Text, nullable=False),
    Column("at", UTCDateTime, nullable=False),
)


def bounded(value: int, high: int) -> int:
    """``value`` clamped to ``[-1, high]``: compared with a column that holds 0..high it
    selects the same rows, and no driver overflows on a cursor of 10**30."""
    return max(-1, min(value, high))


# -- rows to records -----------------------------------------------------------
def to_agent(row: Row[Any], prefix: str = "") -> Agent:
    """The agent in ``row``, whose agent columns' labels start with ``prefix``."""
    m = row._mapping
    return Agent(
        id=m[prefix + "id"],
        email=m[prefix + "email"],
        name=m[prefix + "name"],
        role=m[prefix + "role"],
        password_hash=m[prefix + "password_hash"],
        disabled=bool(m[prefix + "disabled"]),
        status=m[prefix + "status"],
        last_seen_at=m[prefix + "last_seen_at"],
        created_at=m[prefix + "created_at"],
    )


def to_session(row: Row[Any]) -> AgentSession:
    m = row._mapping
    return AgentSession(
        m["token_hash"], m["agent_id"], m["csrf_token"], m["created_at"], m["last_seen_at"]
    )


def to_visitor(row: Row[Any]) -> Visitor:
    m = row._mapping
    return Visitor(**{c.name: m[c.name] for c in visitors.columns})


def to_conversation(row: Row[Any]) -> Conversation:
    m = row._mapping
    return Conversation(**{c.name: m[c.name] for c in conversations.columns})


def to_event(row: Row[Any]) -> StoredEvent:
    m = row._mapping
    author = agent = None
    if m["author_kind"] is not None:
        author = Author(m["author_kind"], m["author_id"], m["author_name"])
    if m["agent_id"] is not None:
        agent = Author("agent", m["agent_id"], m["agent_name"])
    return StoredEvent(
        type=m["type"],
        conversation_id=m["conversation_id"],
        seq=m["seq"],
        pos=m["pos"],
        at=m["at"],
        id=m["id"],
        client_msg_id=m["client_msg_id"],
        author=author,
        body=m["body"],
        agent=agent,
    )


def event_row(event: StoredEvent) -> dict[str, Any]:
    """The ``events`` row that stores ``event``."""
    author, agent = event.author, event.agent
    return {
        "id": event.id,
        "conversation_id": event.conversation_id,
        "seq": event.seq,
        "pos": event.pos,
        "type": event.type,
        "at": event.at,
        "client_msg_id": event.client_msg_id,
        "author_kind": author.kind if author else None,
        "author_id": author.id if author else None,
        "author_name": author.name if author else None,
        "body": event.body,
        "agent_id": agent.id if agent else None,
        "agent_name": agent.name if agent else None,
    }
