"""An in-process store: the reference implementation of the contract, for tests.

Nothing survives the process, and nodes cannot share it; use ``sqlite:///`` or
``postgresql://`` for anything real. ``memory://`` URLs name a fresh store.
"""

from __future__ import annotations

import bisect
import dataclasses
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from ..clock import new_id, utcnow
from .base import (
    VISITOR_FIELDS,
    Agent,
    AgentRole,
    AgentSession,
    AgentStatus,
    Author,
    Change,
    Conversation,
    ConversationStatus,
    FeedPage,
    NotHeld,
    Quota,
    QuotaExceeded,
    SendResult,
    Store,
    StoreConflict,
    StoredEvent,
    Visitor,
)


class MemoryStore(Store):
    """Keeps everything in dictionaries behind one lock.

    :param url: ``memory://`` (anything after it is ignored).
    """

    def __init__(self, url: str = "memory://", **_options: object) -> None:
        self.url = url
        self._lock = threading.RLock()
        self._pos = 0
        self._agents: dict[str, Agent] = {}
        self._sessions: dict[str, AgentSession] = {}
        self._attempts: dict[str, list[datetime]] = defaultdict(list)
        self._visitors: dict[str, Visitor] = {}
        self._conversations: dict[str, Conversation] = {}
        self._events: list[StoredEvent] = []  # in pos order
        self._by_conversation: dict[str, list[StoredEvent]] = defaultdict(list)
        # Indexes, so that what a poll or a send reads costs what concerns it, not the
        # size of the store: conversations by visitor (oldest first), the waiting ones,
        # those each agent holds, and the positions of events other than messages
        # (changes of status or holder).
        self._by_visitor: dict[str, list[str]] = defaultdict(list)
        self._waiting: dict[str, None] = {}
        self._held: dict[str, dict[str, None]] = defaultdict(dict)  # active ones
        self._closed_by: dict[str, list[tuple[int, str]]] = defaultdict(list)  # (pos, id)
        self._marks: list[tuple[int, str]] = []  # (pos, conversation id), in pos order
        self._sent: dict[tuple[str, str, str], StoredEvent] = {}
        self._visitor_sends: dict[str, list[datetime]] = defaultdict(list)  # sorted
        self._ratings: dict[str, tuple[int, str]] = {}

    def upgrade(self) -> None:
        pass

    def ping(self) -> None:
        pass

    def feed_position(self) -> int:
        return self._pos

    # -- agents ----------------------------------------------------------
    def create_agent(self, email: str, name: str, role: AgentRole, password_hash: str) -> Agent:
        with self._lock:
            if self.get_agent_by_email(email) is not None:
                raise StoreConflict(f"an agent with email {email!r} exists")
            agent = Agent(
                id=new_id("a"),
                email=email.lower(),
                name=name,
                role=role,
                password_hash=password_hash,
                created_at=utcnow(),
            )
            self._agents[agent.id] = agent
            return agent

    def get_agent(self, agent_id: str) -> Agent | None:
        return self._agents.get(agent_id)

    def get_agent_by_email(self, email: str) -> Agent | None:
        email = email.lower()
        return next((a for a in self._agents.values() if a.email == email), None)

    def list_agents(self) -> list[Agent]:
        return list(self._agents.values())

    def update_agent(
        self,
        agent_id: str,
        *,
        disabled: bool | None = None,
        status: AgentStatus | None = None,
        last_seen_at: datetime | None = None,
        password_hash: str | None = None,
    ) -> Agent | None:
        with self._lock:
            agent = self._agents.get(agent_id)
            if agent is None:
                return None
            changes = {
                k: v
                for k, v in dict(
                    disabled=disabled,
                    status=status,
                    last_seen_at=last_seen_at,
                    password_hash=password_hash,
                ).items()
                if v is not None
            }
            agent = self._agents[agent_id] = dataclasses.replace(agent, **changes)  # type: ignore[arg-type]
            return agent

    def agents_online(self, seen_since: datetime) -> bool:
        return any(
            a.status == "online"
            and not a.disabled
            and a.last_seen_at
            and a.last_seen_at >= seen_since
            for a in self._agents.values()
        )

    # -- sessions --------------------------------------------------------
    def create_session(self, session: AgentSession) -> None:
        if session.agent_id not in self._agents:
            raise KeyError(session.agent_id)
        self._sessions[session.token_hash] = session

    def get_session(self, token_hash: str) -> AgentSession | None:
        return self._sessions.get(token_hash)

    def touch_session(self, token_hash: str, at: datetime) -> None:
        with self._lock:
            session = self._sessions.get(token_hash)
            if session is not None:
                self._sessions[token_hash] = dataclasses.replace(session, last_seen_at=at)

    def delete_session(self, token_hash: str) -> None:
        self._sessions.pop(token_hash, None)

    def delete_agent_sessions(self, agent_id: str) -> None:
        with self._lock:
            for key in [k for k, s in self._sessions.items() if s.agent_id == agent_id]:
                del self._sessions[key]

    # -- throttling ------------------------------------------------------
    def record_attempt(self, key: str, at: datetime) -> None:
        with self._lock:
            self._attempts[key].append(at)

    def attempts_since(self, key: str, since: datetime) -> list[datetime]:
        with self._lock:
            kept = self._attempts[key] = [t for t in self._attempts.get(key, []) if t >= since]
            return list(kept)

    def clear_attempts(self, key: str) -> None:
        self._attempts.pop(key, None)

    def use_quota(self, quota: Quota, at: datetime) -> None:
        with self._lock:
            refusal = self._use(quota, at)
        if refusal is not None:
            raise refusal

    def _use(self, quota: Quota, at: datetime) -> QuotaExceeded | None:
        """Record a use, or the refusal to raise (nothing recorded then)."""
        if quota.limit <= 0:
            return QuotaExceeded("the quota allows nothing", quota.window, quota.key)
        since = at - timedelta(seconds=quota.window)
        kept = self._attempts[quota.key] = sorted(
            t for t in self._attempts.get(quota.key, []) if t > since
        )
        if len(kept) >= quota.limit:
            retry = (kept[-quota.limit] - since).total_seconds()
            return QuotaExceeded("the quota is used up", retry, quota.key)
        bisect.insort(kept, at)
        return None

    # -- visitors ----------------------------------------------------------
    def create_visitor(self, visitor: Visitor) -> Visitor:
        with self._lock:
            if visitor.external_id is not None:
                existing = self.find_visitor(visitor.external_id)
                if existing is not None:
                    return existing
            if visitor.id in self._visitors:
                raise StoreConflict(f"visitor {visitor.id!r} exists")
            if visitor.created_at is None:
                visitor = dataclasses.replace(visitor, created_at=utcnow())
            self._visitors[visitor.id] = visitor
            return visitor

    def get_visitor(self, visitor_id: str) -> Visitor | None:
        return self._visitors.get(visitor_id)

    def find_visitor(self, external_id: str) -> Visitor | None:
        return next((v for v in self._visitors.values() if v.external_id == external_id), None)

    def update_visitor(self, visitor_id: str, **fields: str) -> Visitor | None:
        unknown = set(fields) - set(VISITOR_FIELDS)
        if unknown:
            raise ValueError(f"not visitor fields: {sorted(unknown)}")
        with self._lock:
            visitor = self._visitors.get(visitor_id)
            if visitor is None:
                return None
            changed: dict[str, Any] = {k: v for k, v in fields.items() if getattr(visitor, k) != v}
            if not changed:
                return visitor
            visitor = self._visitors[visitor_id] = dataclasses.replace(visitor, **changed)
            conversation = self.open_conversation(visitor_id)
            if conversation is not None:
                self._tell(self._save(conversation, pos=self._take(), updated_at=utcnow()), ())
            return visitor

    # -- conversations -----------------------------------------------------
    def get_conversation(self, conversation_id: str) -> Conversation | None:
        return self._conversations.get(conversation_id)

    def visitor_conversations(self, visitor_id: str) -> list[Conversation]:
        return [self._conversations[cid] for cid in self._by_visitor.get(visitor_id, ())]

    def open_conversation(self, visitor_id: str) -> Conversation | None:
        for cid in reversed(self._by_visitor.get(visitor_id, ())):
            conversation = self._conversations[cid]
            if conversation.status != "closed":
                return conversation
        return None

    def list_conversations(
        self,
        *,
        status: ConversationStatus | None = None,
        agent_id: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[Conversation]:
        rows = sorted(
            self._conversations.values(), key=lambda c: (c.created_at, c.id), reverse=True
        )
        if before is not None:
            anchor = self._conversations.get(before)
            if anchor is None:
                return []
            rows = [c for c in rows if (c.created_at, c.id) < (anchor.created_at, anchor.id)]
        rows = [
            c
            for c in rows
            if (status is None or c.status == status)
            and (agent_id is None or c.agent_id == agent_id)
        ]
        return rows[:limit]

    def waiting_queue(self) -> list[Conversation]:
        waiting = [self._conversations[cid] for cid in self._waiting]
        return sorted(waiting, key=lambda c: (c.created_at, c.id))

    def set_node(self, conversation_id: str, node_id: str) -> Conversation | None:
        with self._lock:
            conversation = self._conversations.get(conversation_id)
            if conversation is None:
                return None
            return self._save(conversation, node_id=node_id)

    # -- sends ---------------------------------------------------------------
    def visitor_send(
        self,
        visitor: Visitor,
        client_msg_id: str,
        body: str,
        node_id: str,
        at: datetime,
        *,
        per_minute: int | None = None,
        new_conversations: Quota | None = None,
    ) -> SendResult:
        with self._lock:
            key = ("visitor", visitor.id, client_msg_id)
            if key in self._sent:
                return self._repeat(key)
            sent = self._visitor_sends[visitor.id]
            if per_minute is not None:
                since = at - timedelta(seconds=60)
                recent = sent[bisect.bisect_right(sent, since) :]
                if len(recent) >= per_minute:
                    retry = (recent[-per_minute] - since).total_seconds() if per_minute else 60
                    raise QuotaExceeded("too many messages", retry)
            conversation = self.open_conversation(visitor.id)
            opened = conversation is None
            if conversation is None:
                if visitor.id not in self._visitors:
                    raise KeyError(visitor.id)
                if new_conversations is not None:
                    refusal = self._use(new_conversations, at)
                    if refusal is not None:
                        raise refusal
                conversation = Conversation(
                    id=new_id("c"),
                    visitor_id=visitor.id,
                    status="waiting",
                    agent_id=None,
                    created_at=at,
                    updated_at=at,
                    last_seq=0,
                    node_id=node_id,
                    pos=0,
                )
            author = Author("visitor", visitor.id, visitor.name)
            message = self._append(
                conversation, "message", at, client_msg_id=client_msg_id, author=author, body=body
            )
            conversation = self._save(
                conversation, last_seq=message.seq, pos=message.pos, updated_at=at
            )
            self._sent[key] = message
            bisect.insort(sent, at)
            self._tell(conversation, (message,))
            return SendResult(message, conversation, True, (message,), opened)

    def agent_send(
        self, conversation_id: str, agent: Agent, client_msg_id: str, body: str, at: datetime
    ) -> SendResult:
        with self._lock:
            key = ("agent", agent.id, client_msg_id)
            if key in self._sent:
                return self._repeat(key)
            conversation = self._existing(conversation_id)
            self._check_sendable(conversation, agent)
            events: list[StoredEvent] = []
            if conversation.status == "waiting":
                joined = self._append(conversation, "agent_joined", at, agent=agent.author)
                events.append(joined)
                conversation = self._save(
                    conversation, status="active", agent_id=agent.id, last_seq=joined.seq
                )
            message = self._append(
                conversation,
                "message",
                at,
                client_msg_id=client_msg_id,
                author=agent.author,
                body=body,
            )
            events.append(message)
            conversation = self._save(
                conversation, last_seq=message.seq, pos=message.pos, updated_at=at
            )
            self._sent[key] = message
            self._tell(conversation, events)
            return SendResult(message, conversation, True, tuple(events))

    def _repeat(self, key: tuple[str, str, str]) -> SendResult:
        message = self._sent[key]
        return SendResult(message, self._conversations[message.conversation_id], False)

    @staticmethod
    def _check_sendable(conversation: Conversation, agent: Agent) -> None:
        if conversation.status == "closed":
            raise StoreConflict("the conversation is closed")
        if (
            conversation.status == "active"
            and conversation.agent_id != agent.id
            and agent.role != "supervisor"
        ):
            raise NotHeld("another agent holds the conversation")

    # -- state changes -------------------------------------------------------
    def claim(self, conversation_id: str, agent: Agent, at: datetime) -> Change:
        with self._lock:
            conversation = self._existing(conversation_id)
            if conversation.status == "closed":
                raise StoreConflict("the conversation is closed")
            if conversation.status == "active":
                if conversation.agent_id == agent.id:
                    return Change(conversation, ())
                raise NotHeld("another agent holds the conversation")
            joined = self._append(conversation, "agent_joined", at, agent=agent.author)
            conversation = self._save(
                conversation,
                status="active",
                agent_id=agent.id,
                last_seq=joined.seq,
                pos=joined.pos,
                updated_at=at,
            )
            self._tell(conversation, (joined,))
            return Change(conversation, (joined,))

    def transfer(self, conversation_id: str, by: Agent, to: Agent, at: datetime) -> Change:
        with self._lock:
            conversation = self._existing(conversation_id)
            if conversation.status == "closed":
                raise StoreConflict("the conversation is closed")
            if conversation.agent_id not in (None, by.id) and by.role != "supervisor":
                raise NotHeld("another agent holds the conversation")
            events = []
            previous = self._agents.get(conversation.agent_id or "")
            if previous is not None:
                events.append(self._append(conversation, "agent_left", at, agent=previous.author))
                conversation = self._save(conversation, last_seq=events[-1].seq)
            events.append(self._append(conversation, "transferred", at, agent=to.author))
            conversation = self._save(
                conversation,
                status="active",
                agent_id=to.id,
                last_seq=events[-1].seq,
                pos=events[-1].pos,
                updated_at=at,
            )
            self._tell(conversation, events)
            return Change(conversation, tuple(events))

    def release(self, conversation_id: str, agent: Agent, at: datetime) -> Change:
        with self._lock:
            conversation = self._existing(conversation_id)
            if conversation.status != "active" or conversation.agent_id != agent.id:
                raise NotHeld("the agent does not hold the conversation")
            left = self._append(conversation, "agent_left", at, agent=agent.author)
            conversation = self._save(
                conversation,
                status="waiting",
                agent_id=None,
                last_seq=left.seq,
                pos=left.pos,
                updated_at=at,
            )
            self._tell(conversation, (left,))
            return Change(conversation, (left,))

    def close(self, conversation_id: str, by: Author, at: datetime) -> Change:
        with self._lock:
            conversation = self._existing(conversation_id)
            if conversation.status == "closed":
                return Change(conversation, ())
            closed = self._append(conversation, "conversation_closed", at, author=by)
            conversation = self._save(
                conversation, status="closed", last_seq=closed.seq, pos=closed.pos, updated_at=at
            )
            self._tell(conversation, (closed,))
            return Change(conversation, (closed,))

    # -- reading ---------------------------------------------------------------
    def messages(
        self,
        conversation_id: str,
        *,
        after_seq: int | None = None,
        before_seq: int | None = None,
        limit: int = 100,
    ) -> list[StoredEvent]:
        rows = [
            e
            for e in self._by_conversation.get(conversation_id, [])
            if e.type == "message"
            and (after_seq is None or e.seq > after_seq)
            and (before_seq is None or e.seq < before_seq)
        ]
        if before_seq is not None and after_seq is None:
            return rows[-limit:] if limit > 0 else []
        return rows[:limit]

    def visitor_feed(self, visitor_id: str, after: int, limit: int) -> FeedPage:
        if limit < 1:
            raise ValueError(f"a feed page holds at least one event, not {limit}")
        with self._lock:
            mine = [
                e for cid in self._by_visitor.get(visitor_id, ()) for e in self._since(cid, after)
            ]
            mine.sort(key=_event_pos)
            if len(mine) > limit:
                return FeedPage(mine[:limit], mine[limit - 1].pos, True)
            return FeedPage(mine, max(self._pos, after), False)

    def agent_poll_feed(self, agent_id: str, after: int, limit: int) -> FeedPage:
        """:meth:`agent_feed` as an agent's poll needs it: the same events and range,
        and in ``conversations`` only those that concern the agent (waiting, or held
        by it) or whose status or holder changed. Costs what concerns the agent, not
        every event of the range."""
        if limit < 1:
            raise ValueError(f"a feed page holds at least one event, not {limit}")
        with self._lock:
            start = bisect.bisect_right(self._events, after, key=_event_pos)
            upto, more = self._pos, False
            if len(self._events) - start > limit:
                upto, more = self._events[start + limit - 1].pos, True
            closed = self._closed_by.get(agent_id, [])
            recent = closed[bisect.bisect_right(closed, after, key=lambda m: m[0]) :]
            concerned = [*self._waiting, *self._held.get(agent_id, ()), *(c for _, c in recent)]
            events = [e for cid in concerned for e in self._since(cid, after) if e.pos <= upto]
            events.sort(key=_event_pos)
            changed = set(concerned)
            first = bisect.bisect_right(self._marks, after, key=lambda m: m[0])
            for pos, cid in self._marks[first:]:
                if pos > upto:
                    break
                changed.add(cid)
            conversations = sorted(
                (c for c in map(self._conversations.__getitem__, changed) if after < c.pos <= upto),
                key=lambda c: c.pos,
            )
            return FeedPage(events, max(upto, after), more, conversations)

    def _since(self, conversation_id: str, after: int) -> list[StoredEvent]:
        """The conversation's events with ``pos > after`` (they are in pos order)."""
        events = self._by_conversation.get(conversation_id, [])
        return events[bisect.bisect_right(events, after, key=_event_pos) :]

    def agent_feed(self, agent_id: str, after: int, limit: int) -> FeedPage:
        with self._lock:

            def relevant(event: StoredEvent) -> bool:
                conversation = self._conversations[event.conversation_id]
                return conversation.status == "waiting" or conversation.agent_id == agent_id

            return self._page(relevant, after, limit, with_conversations=True)

    def _page(
        self,
        keep: Callable[[StoredEvent], bool],
        after: int,
        limit: int,
        *,
        with_conversations: bool,
    ) -> FeedPage:
        if limit < 1:
            raise ValueError(f"a feed page holds at least one event, not {limit}")
        top = self._pos
        # The agent feed pages over every event, which keeps ``conversations``
        # (every change in the range) bounded; the visitor feed over the
        # visitor's own events only, so a returning visitor never pages
        # through everyone else's.
        # Events are kept in pos order: start at the cursor rather than scan them all.
        start = bisect.bisect_right(self._events, after, key=_event_pos)
        later = [e for e in self._events[start:] if with_conversations or keep(e)]
        upto, more = top, False
        if len(later) > limit:
            # Cut by position so that a page never splits what one position holds.
            upto, more = later[limit - 1].pos, True
        events = [e for e in later if e.pos <= upto and keep(e)]
        conversations: list[Conversation] = []
        if with_conversations:
            conversations = sorted(
                (c for c in self._conversations.values() if after < c.pos <= upto),
                key=lambda c: c.pos,
            )
        return FeedPage(events, max(upto, after), more, conversations)

    # -- ratings ---------------------------------------------------------------
    def rate(self, conversation_id: str, score: int, comment: str, at: datetime) -> None:
        self._existing(conversation_id)
        self._ratings[conversation_id] = (score, comment)

    def get_rating(self, conversation_id: str) -> tuple[int, str] | None:
        return self._ratings.get(conversation_id)

    # -- internals ---------------------------------------------------------------
    def _tell(self, conversation: Conversation, events: Sequence[StoredEvent]) -> None:
        """Report a write to ``on_commit`` (under the lock: in position order)."""
        if self.on_commit is not None:
            self.on_commit(conversation, tuple(events))

    def _take(self) -> int:
        self._pos += 1
        return self._pos

    def _existing(self, conversation_id: str) -> Conversation:
        conversation = self._conversations.get(conversation_id)
        if conversation is None:
            raise KeyError(conversation_id)
        return conversation

    def _save(self, conversation: Conversation, **changes: object) -> Conversation:
        before = self._conversations.get(conversation.id)
        conversation = dataclasses.replace(conversation, **changes)  # type: ignore[arg-type]
        self._conversations[conversation.id] = conversation
        if before is None:
            self._by_visitor[conversation.visitor_id].append(conversation.id)
        else:
            self._waiting.pop(before.id, None)
            if before.agent_id is not None:
                self._held[before.agent_id].pop(before.id, None)
        holder = conversation.agent_id
        if conversation.status == "waiting":
            self._waiting[conversation.id] = None
        elif holder is not None and conversation.status == "active":
            self._held[holder][conversation.id] = None
        elif holder is not None and (before is None or before.status != "closed"):
            # A closed conversation changes no more: its holder's polls need it only
            # while their cursors are below its close.
            self._closed_by[holder].append((conversation.pos, conversation.id))
        return conversation

    def _append(
        self, conversation: Conversation, type_: str, at: datetime, **fields: object
    ) -> StoredEvent:
        seq = (
            self._by_conversation[conversation.id][-1].seq
            if self._by_conversation[conversation.id]
            else 0
        ) + 1
        event = StoredEvent(
            type=type_,
            conversation_id=conversation.id,
            seq=seq,
            pos=self._take(),
            at=at,
            id=new_id("m") if type_ == "message" else new_id("e"),
            **fields,  # type: ignore[arg-type]
        )
        self._events.append(event)
        self._by_conversation[conversation.id].append(event)
        if type_ != "message":
            self._marks.append((event.pos, conversation.id))
        return event


def _event_pos(event: StoredEvent) -> int:
    return event.pos
