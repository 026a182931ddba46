"""The conversation log of the SQL store: sends, state changes and feeds.

Each function runs inside a transaction that :class:`~livesupport.store.sql.SQLStore`
opened (writing ones with the SQLite write lock already held), and relies on
the database for what concurrent nodes could otherwise break:

- ``seq`` is gapless because the conversation row is locked (``FOR UPDATE``
  on PostgreSQL, the single writer on SQLite) from the state check to commit;
- feed positions are commit-ordered because they come from one counter row
  that is updated as late as possible and stays locked until commit;
- a repeated ``client_msg_id`` or a second open conversation hits a unique
  key, and the caller retries the whole transaction, which then sees the
  winner's commit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from ..clock import new_id
from .base import (
    Agent,
    Author,
    Change,
    Conversation,
    FeedPage,
    NotHeld,
    SendResult,
    StoreConflict,
    StoredEvent,
    Visitor,
)
from .sql_schema import (
    BIGINT_MAX,
    INT_MAX,
    agents,
    bounded,
    conversations,
    event_row,
    events,
    feed,
    to_agent,
)
from .sql_schema import to_conversation as conversation_of
from .sql_schema import to_event as event_of


# -- sends ---------------------------------------------------------------------
def visitor_send(
    c: Connection, visitor: Visitor, client_msg_id: str, body: str, node_id: str, at: datetime
) -> SendResult:
    author = Author("visitor", visitor.id, visitor.name)
    repeated = repeat(c, author, client_msg_id)
    if repeated is not None:
        return repeated
    conversation = open_conversation(c, visitor.id, lock=True)
    opened = conversation is None
    if conversation is None:
        conversation = Conversation(new_id("c"), visitor.id, "waiting", None, at, at, 0, node_id, 0)
        # A concurrent first send of the same visitor fails here, on the partial unique index.
        c.execute(insert(conversations).values(dataclasses.asdict(conversation)))
    message = draft(
        "message", conversation, at, client_msg_id=client_msg_id, author=author, body=body
    )
    conversation, stored = append(c, conversation, [message], updated_at=at)
    return SendResult(stored[-1], conversation, True, stored, opened)


def agent_send(
    c: Connection, conversation_id: str, agent: Agent, client_msg_id: str, body: str, at: datetime
) -> SendResult:
    repeated = repeat(c, agent.author, client_msg_id)
    if repeated is not None:
        return repeated
    conversation = locked(c, conversation_id)
    if conversation.status == "closed":
        raise StoreConflict("the conversation is closed")
    if (
        conversation.status == "active"
        and conversation.agent_id != agent.id
        and agent.role != "supervisor"
    ):
        raise NotHeld("another agent holds the conversation")
    drafts: list[StoredEvent] = []
    changes: dict[str, Any] = {"updated_at": at}
    if conversation.status == "waiting":
        drafts.append(draft("agent_joined", conversation, at, agent=agent.author))
        changes.update(status="active", agent_id=agent.id)
    drafts.append(
        draft(
            "message", conversation, at, client_msg_id=client_msg_id, author=agent.author, body=body
        )
    )
    conversation, stored = append(c, conversation, drafts, **changes)
    return SendResult(stored[-1], conversation, True, stored)


def repeat(c: Connection, author: Author, client_msg_id: str) -> SendResult | None:
    """What an earlier send with ``client_msg_id`` by ``author`` stored, if there was one."""
    query = select(events).where(
        events.c.author_kind == author.kind,
        events.c.author_id == author.id,
        events.c.client_msg_id == client_msg_id,
    )
    row = c.execute(query).one_or_none()
    if row is None:
        return None
    message = event_of(row)
    query = select(conversations).where(conversations.c.id == message.conversation_id)
    return SendResult(message, conversation_of(c.execute(query).one()), False)


# -- state changes -------------------------------------------------------------
def claim(c: Connection, conversation_id: str, agent: Agent, at: datetime) -> Change:
    conversation = locked(c, conversation_id)
    if conversation.status == "closed":
        raise StoreConflict("the conversation is closed")
    if conversation.status == "active":
        if conversation.agent_id == agent.id:
            return Change(conversation, ())
        raise NotHeld("another agent holds the conversation")
    joined = draft("agent_joined", conversation, at, agent=agent.author)
    return Change(
        *append(c, conversation, [joined], status="active", agent_id=agent.id, updated_at=at)
    )


def transfer(c: Connection, conversation_id: str, by: Agent, to: Agent, at: datetime) -> Change:
    conversation = locked(c, conversation_id)
    if conversation.status == "closed":
        raise StoreConflict("the conversation is closed")
    if conversation.agent_id not in (None, by.id) and by.role != "supervisor":
        raise NotHeld("another agent holds the conversation")
    drafts: list[StoredEvent] = []
    if conversation.agent_id is not None:
        previous = to_agent(
            c.execute(select(agents).where(agents.c.id == conversation.agent_id)).one()
        )
        drafts.append(draft("agent_left", conversation, at, agent=previous.author))
    drafts.append(draft("transferred", conversation, at, agent=to.author))
    return Change(*append(c, conversation, drafts, status="active", agent_id=to.id, updated_at=at))


def release(c: Connection, conversation_id: str, agent: Agent, at: datetime) -> Change:
    conversation = locked(c, conversation_id)
    if conversation.status != "active" or conversation.agent_id != agent.id:
        raise NotHeld("the agent does not hold the conversation")
    left = draft("agent_left", conversation, at, agent=agent.author)
    return Change(*append(c, conversation, [left], status="waiting", agent_id=None, updated_at=at))


def close(c: Connection, conversation_id: str, by: Author, at: datetime) -> Change:
    conversation = locked(c, conversation_id)
    if conversation.status == "closed":
        return Change(conversation, ())
    closed = draft("conversation_closed", conversation, at, author=by)
    return Change(*append(c, conversation, [closed], status="closed", updated_at=at))


def bump(c: Connection, conversation: Conversation, at: datetime) -> None:
    """Give ``conversation`` (locked by the caller) a new position without an event."""
    query = update(conversations).where(conversations.c.id == conversation.id)
    c.execute(query.values(pos=take(c, 1), updated_at=at))


# -- feeds -----------------------------------------------------------------------
def visitor_page(c: Connection, visitor_id: str, after: int, limit: int) -> FeedPage:
    """Pages through the visitor's own events only: a visitor back after an hour must
    not walk through everyone else's."""
    top = committed_position(c)  # first: every position up to it is committed
    mine = select(conversations.c.id).where(conversations.c.visitor_id == visitor_id)
    limit, since = min(limit, INT_MAX), bounded(after, BIGINT_MAX)
    rows = c.execute(
        select(events)
        .where(events.c.conversation_id.in_(mine), events.c.pos > since, events.c.pos <= top)
        .order_by(events.c.pos)
        .limit(limit + 1)
    ).all()
    more = len(rows) > limit
    upto = rows[limit - 1].pos if more else top
    return FeedPage([event_of(r) for r in rows[:limit]], max(upto, after), more)


def agent_page(c: Connection, agent_id: str, after: int, limit: int) -> FeedPage:
    """Pages through every event, keeping those of conversations waiting or held by
    the agent as they are now; cutting by every event keeps the range, and with it
    ``conversations``, bounded by ``limit``."""
    top = committed_position(c)
    holder = conversations.c.agent_id.label("holder")
    limit, since = min(limit, INT_MAX), bounded(after, BIGINT_MAX)
    rows = c.execute(
        select(events, conversations.c.status, holder)
        .join(conversations, conversations.c.id == events.c.conversation_id)
        .where(events.c.pos > since, events.c.pos <= top)
        .order_by(events.c.pos)
        .limit(limit + 1)
    ).all()
    more = len(rows) > limit
    upto = rows[limit - 1].pos if more else top
    changed = c.execute(
        select(conversations)
        .where(conversations.c.pos > since, conversations.c.pos <= upto)
        .order_by(conversations.c.pos)
    ).all()
    kept = [event_of(r) for r in rows[:limit] if r.status == "waiting" or r.holder == agent_id]
    return FeedPage(kept, max(upto, after), more, [conversation_of(r) for r in changed])


def committed_position(c: Connection) -> int:
    """The counter as committed: never a position a running transaction holds."""
    return int(c.execute(select(feed.c.pos).where(feed.c.id == 1)).scalar_one())


# -- building blocks ---------------------------------------------------------------
def take(c: Connection, count: int) -> int:
    """Take ``count`` feed positions and return the last. The counter row stays
    locked until commit, so call this as late in the transaction as possible."""
    query = update(feed).where(feed.c.id == 1).values(pos=feed.c.pos + count)
    return int(c.execute(query.returning(feed.c.pos)).scalar_one())


def locked(c: Connection, conversation_id: str) -> Conversation:
    """The conversation, row-locked until commit; :class:`KeyError` if there is none."""
    query = select(conversations).where(conversations.c.id == conversation_id)
    row = c.execute(query.with_for_update()).one_or_none()
    if row is None:
        raise KeyError(conversation_id)
    return conversation_of(row)


def open_conversation(c: Connection, visitor_id: str, *, lock: bool) -> Conversation | None:
    query = select(conversations).where(
        conversations.c.visitor_id == visitor_id, conversations.c.status != "closed"
    )
    # Locking re-reads a row a concurrent close just committed, and then skips it.
    row = c.execute(query.with_for_update() if lock else query).one_or_none()
    return conversation_of(row) if row is not None else None


def draft(type_: str, conversation: Conversation, at: datetime, **fields: Any) -> StoredEvent:
    """An event before :func:`append` gives it its seq and position."""
    prefix = "m" if type_ == "message" else "e"
    return StoredEvent(type_, conversation.id, 0, 0, at, new_id(prefix), **fields)


def append(
    c: Connection, conversation: Conversation, drafts: Sequence[StoredEvent], **changes: Any
) -> tuple[Conversation, tuple[StoredEvent, ...]]:
    """Store ``drafts`` in ``conversation`` (locked by the caller) with the next seqs
    and positions, and apply ``changes``; the conversation after it, and the events."""
    last = take(c, len(drafts))
    first_pos, first_seq = last - len(drafts) + 1, conversation.last_seq + 1
    stored = tuple(
        dataclasses.replace(d, seq=first_seq + i, pos=first_pos + i) for i, d in enumerate(drafts)
    )
    c.execute(insert(events), [event_row(e) for e in stored])
    query = (
        update(conversations)
        .where(conversations.c.id == conversation.id)
        .values(last_seq=stored[-1].seq, pos=stored[-1].pos, **changes)
        .returning(*conversations.c)
    )
    return conversation_of(c.execute(query).one()), stored
