"""The SQL store: SQLite (the embedded default) or PostgreSQL (production), via SQLAlchemy.

Use ``sqlite:///path/to/file.db`` for one machine and ``postgresql://user@host:port/db``
when several nodes share the data. Every method is one transaction; the
database, not this process, enforces the invariants that concurrent nodes
could break: gapless ``seq`` (the conversation row is locked while events are
appended), commit-ordered feed positions (one counter row, taken last in each
writing transaction and held to commit), idempotent sends (a unique key on
the author and ``client_msg_id``) and one open conversation per visitor (a
partial unique index).

The parts: ``sql_engine`` (URLs, connections, errors, migrations),
``sql_schema`` (tables), ``sql_people`` (agents and visitors), ``sql_log``
(sends, state changes, feeds) and ``migrations/`` (Alembic revisions).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, text, tuple_, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite

from . import sql_log as log
from .base import (
    Agent,
    Author,
    Change,
    Conversation,
    ConversationStatus,
    FeedPage,
    Quota,
    QuotaExceeded,
    SendResult,
    StoredEvent,
    StoreUnavailable,
    Visitor,
)
from .sql_batch import GroupCommitter
from .sql_engine import (
    HeldReader,
    constraint_violated,
    make_engine,
    store_url,
    upgrade_schema,
)
from .sql_people import SQLPeople
from .sql_schema import (
    INT_MAX,
    bounded,
    conversations,
    events,
    ratings,
    to_conversation,
    to_event,
)

CONVERSATION_BY_ID = select(conversations).where(conversations.c.id == bindparam("id"))


class SQLStore(SQLPeople):
    """A store in an SQL database that every node of a deployment shares.

    :param url: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or
        ``postgresql://user@host:port/db`` (psycopg 3; query parameters such as
        ``?options=-csearch_path%3Dchat`` go to the driver).
    :param pool_size: Connections kept open (default 4 for SQLite, 10 for PostgreSQL).
    :param max_overflow: Extra connections allowed under load (default 4 / 10).
    :param pool_timeout: Seconds to wait for a free connection before
        :class:`~livesupport.store.base.StoreUnavailable`.
    :param echo: Log every statement.
    :param engine_options: Passed on to :func:`sqlalchemy.create_engine`.

    ::

        store = SQLStore("sqlite:///livesupport.db")
        store.upgrade()
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int | None = None,
        max_overflow: int | None = None,
        pool_timeout: float = 10.0,  # seconds
        echo: bool = False,
        **engine_options: Any,
    ) -> None:
        self.url = url
        parsed = store_url(url)
        self.engine = make_engine(
            parsed,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            echo=echo,
            engine_options=engine_options,
        )
        self._reader = HeldReader(self.engine)
        if self.engine.dialect.name == "sqlite":
            # The writer gets its own connection, used by one batch at a time, possibly
            # on a native thread (see sql_batch): nothing it holds is shared with readers.
            writer = make_engine(
                parsed,
                pool_size=1,
                max_overflow=0,
                pool_timeout=pool_timeout,
                echo=echo,
                engine_options=dict(engine_options),
            )
            self._committer = GroupCommitter(
                writer, native_thread=True, lock_feed_first=False, on_commit=self._committed
            )
        else:
            self._committer = GroupCommitter(
                self.engine, native_thread=False, lock_feed_first=True, on_commit=self._committed
            )

    def _committed(self, conversation: Conversation, events: Sequence[StoredEvent]) -> None:
        if self.on_commit is not None:
            self.on_commit(conversation, events)

    # -- life cycle ------------------------------------------------------
    def upgrade(self) -> None:
        upgrade_schema(self.engine)

    def dispose(self) -> None:
        self._reader.close()
        self.engine.dispose()
        self._committer.dispose()

    def ping(self) -> None:
        try:
            with self._single() as c:
                c.execute(text("SELECT 1"))
        except StoreUnavailable:
            # A connection the server ended a moment ago may have looked alive at
            # checkout; the pool has dropped it now, so a second try says whether
            # the store itself is down.
            with self._single() as c:
                c.execute(text("SELECT 1"))

    def feed_position(self) -> int:
        with self._single() as c:
            return log.committed_position(c)

    # -- conversations -----------------------------------------------------
    def get_conversation(self, conversation_id: str) -> Conversation | None:
        return self._one(to_conversation, CONVERSATION_BY_ID, {"id": conversation_id})

    def visitor_conversations(self, visitor_id: str) -> list[Conversation]:
        query = (
            select(conversations)
            .where(conversations.c.visitor_id == visitor_id)
            .order_by(conversations.c.created_at, conversations.c.id)
        )
        return self._all(to_conversation, query)

    def open_conversation(self, visitor_id: str) -> Conversation | None:
        with self._read() as c:
            return log.open_conversation(c, visitor_id, lock=False)

    def list_conversations(
        self,
        *,
        status: ConversationStatus | None = None,
        agent_id: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[Conversation]:
        if limit <= 0:
            return []
        newest_first = (conversations.c.created_at.desc(), conversations.c.id.desc())
        query = select(conversations).order_by(*newest_first).limit(min(limit, INT_MAX))
        if status is not None:
            query = query.where(conversations.c.status == status)
        if agent_id is not None:
            query = query.where(conversations.c.agent_id == agent_id)
        with self._read() as c:
            if before is not None:
                anchor = c.execute(
                    select(conversations.c.created_at, conversations.c.id).where(
                        conversations.c.id == before
                    )
                ).one_or_none()
                if anchor is None:
                    return []
                key = tuple_(conversations.c.created_at, conversations.c.id)
                query = query.where(key < tuple_(*anchor))
            return [to_conversation(r) for r in c.execute(query)]

    def waiting_queue(self) -> list[Conversation]:
        query = (
            select(conversations)
            .where(conversations.c.status == "waiting")
            .order_by(conversations.c.created_at, conversations.c.id)
        )
        return self._all(to_conversation, query)

    def set_node(self, conversation_id: str, node_id: str) -> Conversation | None:
        query = update(conversations).where(conversations.c.id == conversation_id)
        query = query.values(node_id=node_id).returning(*conversations.c)
        row = self._writing(lambda c: c.execute(query).first())
        return to_conversation(row) if row else None

    # -- sends and state changes -------------------------------------------
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
        def send() -> SendResult | QuotaExceeded:
            return self._writing(
                lambda c: log.visitor_send(
                    c, visitor, client_msg_id, body, node_id, at, per_minute, new_conversations
                )
            )

        try:
            result = self._retrying(send)
        except sa_exc.IntegrityError as e:
            if constraint_violated(e) == "foreign_key":
                raise KeyError(visitor.id) from e
            raise
        if isinstance(result, QuotaExceeded):
            raise result
        return result

    def agent_send(
        self, conversation_id: str, agent: Agent, client_msg_id: str, body: str, at: datetime
    ) -> SendResult:
        def send() -> SendResult:
            return self._writing(
                lambda c: log.agent_send(c, conversation_id, agent, client_msg_id, body, at)
            )

        return self._retrying(send)

    def claim(self, conversation_id: str, agent: Agent, at: datetime) -> Change:
        return self._writing(lambda c: log.claim(c, conversation_id, agent, at))

    def transfer(self, conversation_id: str, by: Agent, to: Agent, at: datetime) -> Change:
        return self._writing(lambda c: log.transfer(c, conversation_id, by, to, at))

    def release(self, conversation_id: str, agent: Agent, at: datetime) -> Change:
        return self._writing(lambda c: log.release(c, conversation_id, agent, at))

    def close(self, conversation_id: str, by: Author, at: datetime) -> Change:
        return self._writing(lambda c: log.close(c, conversation_id, by, at))

    # -- reading ---------------------------------------------------------------
    def messages(
        self,
        conversation_id: str,
        *,
        after_seq: int | None = None,
        before_seq: int | None = None,
        limit: int = 100,
    ) -> list[StoredEvent]:
        if limit <= 0:
            return []
        query = select(events).where(
            events.c.conversation_id == conversation_id, events.c.type == "message"
        )
        if after_seq is not None:
            query = query.where(events.c.seq > bounded(after_seq, INT_MAX))
        if before_seq is not None:
            query = query.where(events.c.seq < bounded(before_seq, INT_MAX))
        limit = min(limit, INT_MAX)
        if before_seq is not None and after_seq is None:  # the latest ones, still oldest first
            return self._all(to_event, query.order_by(events.c.seq.desc()).limit(limit))[::-1]
        return self._all(to_event, query.order_by(events.c.seq).limit(limit))

    def visitor_feed(self, visitor_id: str, after: int, limit: int) -> FeedPage:
        _check_limit(limit)
        with self._read() as c:
            return log.visitor_page(c, visitor_id, after, limit)

    def agent_feed(self, agent_id: str, after: int, limit: int) -> FeedPage:
        _check_limit(limit)
        with self._read() as c:
            return log.agent_page(c, agent_id, after, limit)

    def agent_poll_feed(self, agent_id: str, after: int, limit: int) -> log.AgentPollPage:
        """:meth:`agent_feed` as an agent's poll needs it, with the filtering done by the
        database: the same events and range, and in ``conversations`` only those that
        concern the agent (waiting, or held by it) or whose status or holder changed
        (an event other than a message), with their visitors. Every statement starts
        from an index of those, so a poll costs what is new for its agent, not
        everything every agent did since."""
        _check_limit(limit)
        with self._single() as c:
            return log.agent_poll_page(c, agent_id, after, limit)

    # -- ratings ---------------------------------------------------------------
    def rate(self, conversation_id: str, score: int, comment: str, at: datetime) -> None:
        values = {"conversation_id": conversation_id, "score": score, "comment": comment, "at": at}
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        upsert = dialect.insert(ratings).values(values)
        upsert = upsert.on_conflict_do_update(
            index_elements=[ratings.c.conversation_id],
            set_={"score": score, "comment": comment, "at": at},
        )
        try:
            self._writing(lambda c: c.execute(upsert))
        except sa_exc.IntegrityError as e:
            if constraint_violated(e) == "foreign_key":
                raise KeyError(conversation_id) from e
            raise

    def get_rating(self, conversation_id: str) -> tuple[int, str] | None:
        query = select(ratings.c.score, ratings.c.comment).where(
            ratings.c.conversation_id == conversation_id
        )
        with self._read() as c:
            row = c.execute(query).one_or_none()
        return (row.score, row.comment) if row else None


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"a feed page holds at least one event, not {limit}")
