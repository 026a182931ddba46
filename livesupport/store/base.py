"""The storage contract: what every store backend must do, and the records it keeps.

A store holds the durable state of a deployment: agents and their sessions,
visitors, conversations and their events (messages and the system events
agent_joined, agent_left, transferred, conversation_closed). Every method is
one atomic transaction: when it returns, what it wrote is committed and
visible to every node; when it raises, it wrote nothing.

Two numbers order events:

``seq``
    Per conversation: 1, 2, 3, ... with no gap or duplicate, assigned in the
    transaction that stores the event.
``pos``
    Per deployment: the *feed position*. Every transaction that stores events
    or changes a conversation takes the next positions, in commit order: when
    :meth:`Store.feed_position` returns ``P``, every position up to ``P`` is
    committed and no later transaction gets one. Cursors are feed positions,
    so a reader that has seen everything up to ``P`` never misses a later
    commit. A conversation's ``pos`` is the position of its latest change.

Backends: :class:`~livesupport.store.memory.MemoryStore` (tests, one process)
and :class:`~livesupport.store.sql.SQLStore` (SQLite, PostgreSQL). Both pass
``tests/store/test_contract.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

ConversationStatus = Literal["waiting", "active", "closed"]
AuthorKind = Literal["visitor", "agent", "system"]
AgentRole = Literal["agent", "supervisor"]
AgentStatus = Literal["online", "away", "offline"]
DURABLE_TYPES = ("message", "agent_joined", "agent_left", "transferred", "conversation_closed")


class StoreError(Exception):
    """Base of the errors a store raises on purpose."""


class StoreUnavailable(StoreError):
    """The backend cannot be reached; nothing was written. Callers answer 503."""


class StoreConflict(StoreError):
    """The change contradicts the current state (a duplicate email, a closed conversation...)."""


class NotHeld(StoreError):
    """The conversation is held by another agent."""


class QuotaExceeded(StoreError):
    """A :class:`Quota` or the send rate is used up; nothing was written. Callers answer 429.

    ``retry_after``: seconds until the same request would be accepted (if nothing
    else is counted meanwhile); ``key``: the quota's, ``None`` for the send rate.
    """

    def __init__(self, message: str, retry_after: float, key: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.key = key


@dataclass(frozen=True, slots=True)
class Quota:
    """At most ``limit`` uses under ``key`` in any ``window`` seconds, counted by the
    store, so the limit holds across every node that shares it.

    ``key`` is ``"<scope>:<subject>"`` (``"new-visitor:203.0.113.7"``); the scope
    has no colon, and a store may forget the expired uses of a whole scope at once.
    Keys share one namespace with :meth:`Store.record_attempt`.
    """

    key: str
    limit: int
    window: float  # seconds


@dataclass(frozen=True, slots=True)
class Author:
    kind: AuthorKind
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Agent:
    id: str
    email: str
    name: str
    role: AgentRole
    password_hash: str
    disabled: bool = False
    status: AgentStatus = "offline"
    last_seen_at: datetime | None = None
    created_at: datetime | None = None

    @property
    def author(self) -> Author:
        return Author("agent", self.id, self.name)


@dataclass(frozen=True, slots=True)
class AgentSession:
    token_hash: str
    agent_id: str
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime


@dataclass(frozen=True, slots=True)
class Visitor:
    id: str
    name: str = ""
    email: str = ""
    page: str = ""
    referrer: str = ""
    user_agent: str = ""
    locale: str = ""
    # The host application's user id when ``identify`` named one: a signed-in
    # customer is the same visitor on every browser.
    external_id: str | None = None
    created_at: datetime | None = None


VISITOR_FIELDS = ("name", "email", "page", "referrer", "user_agent", "locale")


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    visitor_id: str
    status: ConversationStatus
    agent_id: str | None
    created_at: datetime
    updated_at: datetime
    last_seq: int
    node_id: str
    pos: int


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A durable event. For ``message``: ``id``, ``client_msg_id``, ``author``, ``body``.

    For agent_joined, agent_left and transferred, ``agent`` is the agent the
    event is about (for transferred, the new holder); for conversation_closed
    ``author`` is who closed it.
    """

    type: str
    conversation_id: str
    seq: int
    pos: int
    at: datetime
    id: str = ""
    client_msg_id: str | None = None
    author: Author | None = None
    body: str | None = None
    agent: Author | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    """What a send stored. ``created`` is False when ``client_msg_id`` was seen before,
    and ``message`` is then the message first stored with it."""

    message: StoredEvent
    conversation: Conversation
    created: bool
    # Every event the transaction stored, oldest first (agent_joined before the
    # message when a send claims a waiting conversation); empty on a repeat.
    events: Sequence[StoredEvent] = field(default_factory=tuple)
    conversation_created: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    """The result of a state change: the conversation after it and the events it stored."""

    conversation: Conversation
    events: Sequence[StoredEvent]


@dataclass(frozen=True, slots=True)
class FeedPage:
    """A page of a feed: events in ``pos`` order, and ``upto``, the position a cursor
    should carry next. ``more`` when events beyond ``upto`` were already committed."""

    events: Sequence[StoredEvent]
    upto: int
    more: bool
    # Conversations whose latest change lies in the page's range (agent feed only).
    conversations: Sequence[Conversation] = ()


class Store:
    """Durable storage for one deployment. Every method is an atomic transaction.

    Methods raise :class:`StoreUnavailable` when the backend cannot be reached,
    and the documented :class:`StoreError` subclasses for state conflicts.
    Datetimes are timezone-aware UTC.
    """

    url: str = ""
    # Told of every committed write that takes feed positions, in position order,
    # before the writer returns: the conversation as the write left it and the events
    # it stored (none when only the visitor's details changed). The middleware sets it
    # to keep its agent log in order; it must not call back into the store.
    on_commit: Callable[[Conversation, Sequence[StoredEvent]], None] | None = None

    # -- life cycle ------------------------------------------------------
    def upgrade(self) -> None:
        """Create or migrate the schema to the current version. Idempotent."""
        raise NotImplementedError

    def dispose(self) -> None:
        """Release connections. The store is not used afterwards.

        Not named ``close``: :meth:`close` closes a conversation."""

    def ping(self) -> None:
        """Return if the backend answers; raise :class:`StoreUnavailable` otherwise."""
        raise NotImplementedError

    def feed_position(self) -> int:
        """The highest committed feed position (0 when nothing was ever written)."""
        raise NotImplementedError

    # -- agents ----------------------------------------------------------
    def create_agent(self, email: str, name: str, role: AgentRole, password_hash: str) -> Agent:
        """Store a new agent. ``email`` is compared case-insensitively and kept lower-case.

        Raises :class:`StoreConflict` if an agent with that email exists."""
        raise NotImplementedError

    def get_agent(self, agent_id: str) -> Agent | None:
        raise NotImplementedError

    def get_agent_by_email(self, email: str) -> Agent | None:
        """Case-insensitive."""
        raise NotImplementedError

    def list_agents(self) -> list[Agent]:
        """All agents, oldest first."""
        raise NotImplementedError

    def update_agent(
        self,
        agent_id: str,
        *,
        disabled: bool | None = None,
        status: AgentStatus | None = None,
        last_seen_at: datetime | None = None,
        password_hash: str | None = None,
    ) -> Agent | None:
        """Change the given fields; ``None`` leaves a field as it is. ``None`` if no such agent."""
        raise NotImplementedError

    def agents_online(self, seen_since: datetime) -> bool:
        """Whether an enabled agent has status ``online`` and ``last_seen_at >= seen_since``."""
        raise NotImplementedError

    # -- agent sessions --------------------------------------------------
    def create_session(self, session: AgentSession) -> None:
        """:class:`KeyError` if the session's agent does not exist."""
        raise NotImplementedError

    def get_session(self, token_hash: str) -> AgentSession | None:
        raise NotImplementedError

    def session_agent(self, token_hash: str) -> tuple[AgentSession, Agent | None] | None:
        """The session and its agent (``None`` if the agent is gone), as one read: every
        agent request starts with it."""
        session = self.get_session(token_hash)
        return None if session is None else (session, self.get_agent(session.agent_id))

    def touch_session(self, token_hash: str, at: datetime) -> None:
        """Set ``last_seen_at``; nothing if the session is gone."""
        raise NotImplementedError

    def delete_session(self, token_hash: str) -> None:
        raise NotImplementedError

    def delete_agent_sessions(self, agent_id: str) -> None:
        raise NotImplementedError

    # -- throttling ------------------------------------------------------
    def record_attempt(self, key: str, at: datetime) -> None:
        """Remember one attempt (a failed login, say) under ``key``."""
        raise NotImplementedError

    def attempts_since(self, key: str, since: datetime) -> list[datetime]:
        """The times of the attempts under ``key`` at or after ``since``, oldest first.
        May forget attempts older than ``since``."""
        raise NotImplementedError

    def clear_attempts(self, key: str) -> None:
        raise NotImplementedError

    def use_quota(self, quota: Quota, at: datetime) -> None:
        """Record one use under ``quota.key`` at ``at``, unless ``quota.limit`` uses are
        recorded in the window ``(at - quota.window, at]`` already: then record nothing
        and raise :class:`QuotaExceeded`, with the seconds until the oldest of those
        that must expire has. Atomic: concurrent uses from every node never exceed
        the limit. May forget uses that have left the window."""
        raise NotImplementedError

    # -- visitors ----------------------------------------------------------
    def create_visitor(self, visitor: Visitor) -> Visitor:
        """Store a new visitor. With an ``external_id`` that another visitor already has,
        store nothing and return that visitor (one visitor per host user).
        Raises :class:`StoreConflict` if a visitor with that ``id`` exists."""
        raise NotImplementedError

    def get_visitor(self, visitor_id: str) -> Visitor | None:
        raise NotImplementedError

    def find_visitor(self, external_id: str) -> Visitor | None:
        raise NotImplementedError

    def update_visitor(self, visitor_id: str, **fields: str) -> Visitor | None:
        """Set the named :data:`VISITOR_FIELDS`. Changing them bumps the ``pos`` of the
        visitor's open conversation (a ``conversation_updated`` for agents)."""
        raise NotImplementedError

    # -- conversations -----------------------------------------------------
    def get_conversation(self, conversation_id: str) -> Conversation | None:
        raise NotImplementedError

    def visitor_conversations(self, visitor_id: str) -> list[Conversation]:
        """The visitor's conversations, oldest first."""
        raise NotImplementedError

    def open_conversation(self, visitor_id: str) -> Conversation | None:
        """The visitor's conversation that is ``waiting`` or ``active``; at most one exists."""
        raise NotImplementedError

    def list_conversations(
        self,
        *,
        status: ConversationStatus | None = None,
        agent_id: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[Conversation]:
        """Newest first (by ``created_at``, then id). ``before`` is a conversation id:
        only conversations older than it. An unknown ``before`` gives ``[]``."""
        raise NotImplementedError

    def waiting_queue(self) -> list[Conversation]:
        """Waiting conversations, oldest first: the order agents should take them."""
        raise NotImplementedError

    def set_node(self, conversation_id: str, node_id: str) -> Conversation | None:
        """Record the node that serves the conversation's visitor. Takes no feed position."""
        raise NotImplementedError

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
        """Store a visitor's message in its open conversation, opening one (``waiting``,
        on ``node_id``) if it has none.

        Idempotent on ``(visitor, client_msg_id)`` across all the visitor's
        conversations: a repeat returns the first message, ``created=False``,
        whatever the body. Concurrent first sends open exactly one conversation.
        :class:`KeyError` if it must open one and the visitor was never stored.

        Limits, checked in the same transaction after the repeat check (a repeat is
        always answered) and before anything is written; a refused send writes
        nothing and raises :class:`QuotaExceeded`:

        - ``per_minute``: at most this many messages of the visitor (in all its
          conversations) with an ``at`` later than 60 seconds before this one's;
        - ``new_conversations``: a send that opens a conversation uses the quota
          (as :meth:`use_quota`); sends to an open conversation do not."""
        raise NotImplementedError

    def agent_send(
        self, conversation_id: str, agent: Agent, client_msg_id: str, body: str, at: datetime
    ) -> SendResult:
        """Store an agent's message. A ``waiting`` conversation is claimed first
        (agent_joined, then the message). Idempotent on ``(agent, client_msg_id)``,
        checked before anything else.

        Raises :class:`StoreConflict` if the conversation is closed,
        :class:`NotHeld` if another agent holds it and ``agent`` is not a
        supervisor, :class:`KeyError` if there is no such conversation."""
        raise NotImplementedError

    # -- state changes -------------------------------------------------------
    def claim(self, conversation_id: str, agent: Agent, at: datetime) -> Change:
        """``waiting`` → ``active`` held by ``agent``, storing agent_joined. Claiming a
        conversation the agent already holds changes nothing (no events).

        Raises :class:`NotHeld` if another agent holds it, :class:`StoreConflict`
        if it is closed, :class:`KeyError` if it does not exist."""
        raise NotImplementedError

    def transfer(self, conversation_id: str, by: Agent, to: Agent, at: datetime) -> Change:
        """Hand an active conversation to ``to``: agent_left (the previous holder, if any),
        then transferred (``agent`` = ``to``). A waiting conversation is assigned to
        ``to`` the same way, becoming ``active``.

        Raises :class:`NotHeld` if ``by`` neither holds it nor is a supervisor,
        :class:`StoreConflict` if it is closed, :class:`KeyError` if missing."""
        raise NotImplementedError

    def release(self, conversation_id: str, agent: Agent, at: datetime) -> Change:
        """The holder lets go without closing: agent_left, back to ``waiting``.

        Raises :class:`NotHeld` unless ``agent`` holds it."""
        raise NotImplementedError

    def close(self, conversation_id: str, by: Author, at: datetime) -> Change:
        """Close the conversation, storing conversation_closed (``author`` = ``by``).
        Closing a closed conversation changes nothing (no events).
        Permission checks are the caller's. :class:`KeyError` if missing."""
        raise NotImplementedError

    # -- reading ---------------------------------------------------------------
    def messages(
        self,
        conversation_id: str,
        *,
        after_seq: int | None = None,
        before_seq: int | None = None,
        limit: int = 100,
    ) -> list[StoredEvent]:
        """Messages (type ``message`` only) oldest first. With ``before_seq`` and no
        ``after_seq``: the ``limit`` latest before it, still oldest first."""
        raise NotImplementedError

    def visitor_feed(self, visitor_id: str, after: int, limit: int) -> FeedPage:
        """Durable events of the visitor's conversations with ``pos > after``, in ``pos``
        order, at most ``limit`` (at least 1). Pages through the visitor's events only:
        ``more`` when more of them are committed beyond ``upto``."""
        raise NotImplementedError

    def agent_feed(self, agent_id: str, after: int, limit: int) -> FeedPage:
        """For an agent's poll: events with ``pos > after`` of conversations that are
        waiting or that ``agent_id`` holds (as they are now), and, in
        ``conversations``, every conversation whose ``pos`` is in ``(after, upto]``.

        Pages through every event, relevant or not, so that the range stays
        bounded: a page may hold fewer than ``limit`` events, even none, with
        ``more`` set."""
        raise NotImplementedError

    def agent_poll_feed(self, agent_id: str, after: int, limit: int) -> FeedPage:
        """:meth:`agent_feed` as an agent's poll needs it: the same range and events;
        ``conversations`` may leave out those that neither concern the agent (waiting,
        or held by it) nor had their status or holder changed in the range (by an
        event other than a message): the poll announces no others. Stores narrow it
        with indexes so that a poll costs what concerns the agent, not everything
        every agent did since."""
        return self.agent_feed(agent_id, after, limit)

    # -- ratings ---------------------------------------------------------------
    def rate(self, conversation_id: str, score: int, comment: str, at: datetime) -> None:
        """Store the visitor's rating of a conversation, replacing an earlier one.
        :class:`KeyError` if there is no such conversation."""
        raise NotImplementedError

    def get_rating(self, conversation_id: str) -> tuple[int, str] | None:
        raise NotImplementedError
