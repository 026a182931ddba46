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
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Connection,
    Row,
    String,
    bindparam,
    delete,
    insert,
    literal_column,
    select,
    union,
    union_all,
    update,
)

from ..clock import new_id
from .base import (
    Agent,
    Author,
    Change,
    Conversation,
    FeedPage,
    NotHeld,
    Quota,
    QuotaExceeded,
    SendResult,
    StoreConflict,
    StoredEvent,
    Visitor,
)
from .sql_batch import noted
from .sql_prepared import Prepared, Record
from .sql_schema import (
    BIGINT_MAX,
    INT_MAX,
    UTCDateTime,
    agents,
    attempts,
    bounded,
    conversations,
    event_row,
    events,
    feed,
    to_agent,
    to_conversation,
    to_event,
    visitors,
)

# The schema's converters read nothing of a row but ``_mapping``, which a Record has too.
conversation_of = cast("Callable[[Record | Row[Any]], Conversation]", to_conversation)
event_of = cast("Callable[[Record | Row[Any]], StoredEvent]", to_event)


# -- sends ---------------------------------------------------------------------
def visitor_send(
    c: Connection,
    visitor: Visitor,
    client_msg_id: str,
    body: str,
    node_id: str,
    at: datetime,
    per_minute: int | None = None,
    new_conversations: Quota | None = None,
) -> SendResult | QuotaExceeded:
    """The send, or the refusal to raise once the batch is committed: a refused send
    has written nothing, and returning rather than raising spares the other sends of
    its batch a second run (see ``sql_batch``)."""
    author = Author("visitor", visitor.id, visitor.name)
    repeated = repeat(c, author, client_msg_id)
    if repeated is not None:
        return repeated
    if per_minute is not None and per_minute <= 0:
        return QuotaExceeded("too many messages", MINUTE.total_seconds())
    if per_minute is None:
        conversation = open_conversation(c, visitor.id, lock=True)
    else:
        # The count rides on the statement that locks the open conversation: a send
        # costs no extra round trip for it.
        since = at - MINUTE
        rate = {"visitor": visitor.id, "since": since, "skip": per_minute - 1}
        row = OPEN_LOCKED_RATED.one_or_none(c, rate)
        if row is not None:
            conversation, nth = conversation_of(row), row.nth_recent
        else:
            recent = NTH_RECENT.one_or_none(c, rate)
            conversation, nth = None, recent[0] if recent is not None else None
        if nth is not None:
            return QuotaExceeded("too many messages", (nth - since).total_seconds())
    opened = conversation is None
    if conversation is None:
        if new_conversations is not None:
            refused = use_quota(c, new_conversations, at)
            if refused is not None:
                return refused
        conversation = Conversation(new_id("c"), visitor.id, "waiting", None, at, at, 0, node_id, 0)
        # A concurrent first send of the same visitor fails here, on the partial unique index.
        INSERT_CONVERSATION.run(c, dataclasses.asdict(conversation))
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


def use_quota(c: Connection, quota: Quota, at: datetime) -> QuotaExceeded | None:
    """Record a use of ``quota`` (see ``Store.use_quota``), or return the refusal
    having written nothing. The caller's transaction holds the writers' lock, so
    the count and the insert are atomic across nodes."""
    window = timedelta(seconds=quota.window)
    if quota.limit <= 0:
        return QuotaExceeded("the quota allows nothing", window.total_seconds(), quota.key)
    since = at - window
    nth = c.execute(NTH_USE, {"key": quota.key, "since": since, "skip": quota.limit - 1})
    oldest = nth.scalar_one_or_none()
    if oldest is not None:
        return QuotaExceeded("the quota is used up", (oldest - since).total_seconds(), quota.key)
    c.execute(FORGET_USES, {"key": quota.key, "since": since})
    if random.random() < FORGET_SCOPE_ODDS:
        # Keys used once (an address seen once) would otherwise stay for good.
        scope = quota.key.partition(":")[0]
        c.execute(FORGET_SCOPE, {"low": scope + ":", "high": scope + ";", "since": since})
    c.execute(INSERT_USE, {"key": quota.key, "at": at})
    return None


def repeat(c: Connection, author: Author, client_msg_id: str) -> SendResult | None:
    """What an earlier send with ``client_msg_id`` by ``author`` stored, if there was one."""
    key = {"kind": author.kind, "author": author.id, "cmid": client_msg_id}
    row = REPEAT.one_or_none(c, key)
    if row is None:
        return None
    message = event_of(row)
    found = CONVERSATION.one(c, {"cid": message.conversation_id})
    return SendResult(message, conversation_of(found), False)


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
    row = c.execute(query.values(pos=take(c, 1), updated_at=at).returning(*conversations.c))
    noted(c, conversation_of(row.one()), ())


# -- feeds -----------------------------------------------------------------------
def visitor_page(c: Connection, visitor_id: str, after: int, limit: int) -> FeedPage:
    """Pages through the visitor's own events only: a visitor back after an hour must
    not walk through everyone else's."""
    top = committed_position(c)  # first: every position up to it is committed
    limit, since = min(limit, INT_MAX), bounded(after, BIGINT_MAX)
    window = {"visitor": visitor_id, "since": since, "upto": top, "limit": limit + 1}
    rows = VISITOR_EVENTS.all(c, window)
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


@dataclass(frozen=True, slots=True)
class AgentPollPage(FeedPage):
    """A :class:`FeedPage` with the visitors of its ``conversations`` (read in the same
    statement), so that rendering them costs no query per conversation."""

    visitors: Mapping[str, Visitor] = field(default_factory=dict)


def agent_poll_page(c: Connection, agent_id: str, after: int, limit: int) -> AgentPollPage:
    """:func:`agent_page` narrowed by the database (see ``SQLStore.agent_poll_feed``):
    the same range and events, fewer conversations, and no row read that the
    agent's poll would throw away. Needs no transaction: every statement reads
    below ``top``, which is committed and final."""
    since = bounded(after, BIGINT_MAX)
    limit = min(limit, INT_MAX)
    # The range still ends after ``limit`` events, relevant or not: the limit-th and the
    # next, below the committed top, all read by one statement.
    top, end, beyond = TOP_AND_PAGE_END.one(c, {"since": since, "skip": limit - 1})
    more = beyond is not None
    upto = end if more else top
    window = {"since": since, "upto": upto, "agent": agent_id}
    kept = [event_of(r) for r in RELEVANT_EVENTS.all(c, window)]
    changed, visitors = [], {}
    for row in ANNOUNCED.all(c, window):
        conversation = conversation_of(row)
        changed.append(conversation)
        m = row._mapping
        if m["v_id"] is not None:
            visitors[m["v_id"]] = Visitor(**{k: m["v_" + k] for k in VISITOR_COLUMNS})
    return AgentPollPage(kept, max(upto, after), more, changed, visitors)


def committed_position(c: Connection) -> int:
    """The counter as committed: never a position a running transaction holds."""
    return int(FEED_POSITION.one(c)[0])


# Statements of every send and poll, compiled once per dialect and run on the driver's
# cursor (see ``sql_prepared``); the rarer ones below stay plain Core.
FEED_POSITION = Prepared(select(feed.c.pos).where(feed.c.id == 1))
TAKE = Prepared(
    update(feed)
    .where(feed.c.id == 1)
    .values(pos=feed.c.pos + bindparam("count", type_=BigInteger))
    .returning(feed.c.pos)
)
REPEAT = Prepared(
    select(events).where(
        events.c.author_kind == bindparam("kind"),
        events.c.author_id == bindparam("author"),
        events.c.client_msg_id == bindparam("cmid"),
    )
)
_conversation = select(conversations).where(conversations.c.id == bindparam("cid"))
CONVERSATION = Prepared(_conversation)
LOCKED = Prepared(_conversation.with_for_update())
_open = select(conversations).where(
    conversations.c.visitor_id == bindparam("visitor"), conversations.c.status != "closed"
)
OPEN = Prepared(_open)
OPEN_LOCKED = Prepared(_open.with_for_update())
MINUTE = timedelta(seconds=60)  # the window of a visitor's send rate
_since_at = bindparam("since", type_=UTCDateTime())
# The visitor's messages of the window, latest first: the ``skip``-th after the
# first exists only when the rate is reached. Literal kind and type, as in the
# partial index's predicate, so that the planner uses it.
_nth_recent = (
    select(events.c.at)
    .where(
        events.c.author_kind == literal_column("'visitor'"),
        events.c.type == literal_column("'message'"),
        events.c.author_id == bindparam("visitor"),
        events.c.at > _since_at,
    )
    .order_by(events.c.at.desc())
    .offset(bindparam("skip"))
    .limit(1)
)
NTH_RECENT = Prepared(_nth_recent)
OPEN_LOCKED_RATED = Prepared(
    select(conversations, _nth_recent.scalar_subquery().label("nth_recent"))
    .where(conversations.c.visitor_id == bindparam("visitor"), conversations.c.status != "closed")
    .with_for_update(of=conversations)
)
# Quotas, in the attempts table: the nth latest use of a key in the window, etc.
NTH_USE = (
    select(attempts.c.at)
    .where(attempts.c.key == bindparam("key"), attempts.c.at > _since_at)
    .order_by(attempts.c.at.desc())
    .offset(bindparam("skip"))
    .limit(1)
)
FORGET_USES = delete(attempts).where(attempts.c.key == bindparam("key"), attempts.c.at <= _since_at)
FORGET_SCOPE = delete(attempts).where(
    attempts.c.key >= bindparam("low"),
    attempts.c.key < bindparam("high"),
    attempts.c.at <= _since_at,
)
FORGET_SCOPE_ODDS = 1 / 64  # how often a use also forgets its whole scope's expired uses
INSERT_USE = insert(attempts)
INSERT_EVENT = Prepared(insert(events))  # every column, as event_row() gives them
INSERT_CONVERSATION = Prepared(insert(conversations))
_since = bindparam("since", type_=BigInteger)
_upto = bindparam("upto", type_=BigInteger)
_agent = bindparam("agent", type_=String)
_top = select(feed.c.pos).where(feed.c.id == 1).scalar_subquery()


def _nth_event(skip: Any) -> Any:
    return (
        select(events.c.pos)
        .where(events.c.pos > _since, events.c.pos <= _top)
        .order_by(events.c.pos)
        .offset(skip)
        .limit(1)
        .scalar_subquery()
    )


TOP_AND_PAGE_END = Prepared(
    select(_top, _nth_event(bindparam("skip")), _nth_event(bindparam("skip") + 1))
)
# Each part starts from an index of the conversations that concern the agent (by
# status, by holder) or of the changes in the range, so that a poll reads what
# concerns its agent, not every message of the deployment since its cursor.
_in_range = (events.c.pos > _since, events.c.pos <= _upto)
_events_of = select(events).join(conversations, conversations.c.id == events.c.conversation_id)
# A conversation's pos is its latest change: one with events in the range is newer.
_newer = conversations.c.pos > _since
_relevant = union_all(
    _events_of.where(conversations.c.status == "waiting", _newer, *_in_range),
    _events_of.where(
        conversations.c.agent_id == _agent, _newer, conversations.c.status != "waiting", *_in_range
    ),
).subquery()
RELEVANT_EVENTS = Prepared(select(_relevant).order_by(_relevant.c.pos))
_changed = (conversations.c.pos > _since, conversations.c.pos <= _upto)
_with_changes = select(events.c.conversation_id).where(events.c.type != "message", *_in_range)
_announced = union(
    select(conversations.c.id).where(conversations.c.status == "waiting", *_changed),
    select(conversations.c.id).where(conversations.c.agent_id == _agent, *_changed),
    select(conversations.c.id).where(conversations.c.id.in_(_with_changes), *_changed),
).subquery()
VISITOR_COLUMNS = tuple(column.name for column in visitors.c)
ANNOUNCED = Prepared(
    select(conversations, *(visitors.c[k].label("v_" + k) for k in VISITOR_COLUMNS))
    .join(_announced, _announced.c.id == conversations.c.id)
    .outerjoin(visitors, visitors.c.id == conversations.c.visitor_id)
    .order_by(conversations.c.pos)
)
# A visitor's own events in a window of positions, for its feed.
_mine = select(conversations.c.id).where(conversations.c.visitor_id == bindparam("visitor"))
VISITOR_EVENTS = Prepared(
    select(events)
    .where(events.c.conversation_id.in_(_mine), *_in_range)
    .order_by(events.c.pos)
    .limit(bindparam("limit", type_=BigInteger))
)
# Appending events: the conversation's new seq and position, and whichever of its
# columns changed with them; one statement per set of columns, built at its first use.
_CHANGES: dict[frozenset[str], Prepared] = {}


def _change(columns: frozenset[str]) -> Prepared:
    prepared = _CHANGES.get(columns)
    if prepared is None:
        # Named apart from the columns, whose own names SQLAlchemy keeps for SET.
        values: dict[Any, Any] = {
            conversations.c[name]: bindparam("new_" + name) for name in columns
        }
        prepared = _CHANGES[columns] = Prepared(
            update(conversations)
            .where(conversations.c.id == bindparam("cid"))
            .values(values)
            .returning(*conversations.c)
        )
    return prepared


# -- building blocks ---------------------------------------------------------------
def take(c: Connection, count: int) -> int:
    """Take ``count`` feed positions and return the last. The counter row stays
    locked until commit, so call this as late in the transaction as possible."""
    return int(TAKE.one(c, {"count": count})[0])


def locked(c: Connection, conversation_id: str) -> Conversation:
    """The conversation, row-locked until commit; :class:`KeyError` if there is none."""
    row = LOCKED.one_or_none(c, {"cid": conversation_id})
    if row is None:
        raise KeyError(conversation_id)
    return conversation_of(row)


def open_conversation(c: Connection, visitor_id: str, *, lock: bool) -> Conversation | None:
    # Locking re-reads a row a concurrent close just committed, and then skips it.
    row = (OPEN_LOCKED if lock else OPEN).one_or_none(c, {"visitor": visitor_id})
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
    for event in stored:
        INSERT_EVENT.run(c, event_row(event))
    changes.update(last_seq=stored[-1].seq, pos=stored[-1].pos)
    values = {"new_" + name: value for name, value in changes.items()}
    values["cid"] = conversation.id
    changed = conversation_of(_change(frozenset(changes)).one(c, values))
    noted(c, changed, stored)
    return changed, stored
