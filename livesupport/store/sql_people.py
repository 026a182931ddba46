"""Agents, agent sessions, login attempts and visitors: the SQL store's people.

:class:`SQLPeople` is the half of :class:`~livesupport.store.sql.SQLStore`
that is plain records; the subclass adds conversations and their log. It
also holds the transaction helpers both halves use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Row, bindparam, delete, exists, insert, select, update
from sqlalchemy import exc as sa_exc

from ..clock import new_id, utcnow
from . import sql_log as log
from .base import (
    VISITOR_FIELDS,
    Agent,
    AgentRole,
    AgentSession,
    AgentStatus,
    Quota,
    Store,
    StoreConflict,
    Visitor,
)
from .sql_batch import GroupCommitter
from .sql_engine import HeldReader, constraint_violated, transaction
from .sql_prepared import Prepared
from .sql_schema import agent_sessions, agents, attempts, to_agent, to_session, to_visitor, visitors

T = TypeVar("T")
# The lookups every request makes, run on the driver's cursor (see ``sql_prepared``).
AGENT_BY_ID = Prepared(select(agents).where(agents.c.id == bindparam("id")))
SESSION_BY_HASH = Prepared(
    select(agent_sessions).where(agent_sessions.c.token_hash == bindparam("hash"))
)
SESSION_AGENT = Prepared(
    select(agent_sessions, *(column.label("a_" + column.name) for column in agents.c))
    .outerjoin(agents, agents.c.id == agent_sessions.c.agent_id)
    .where(agent_sessions.c.token_hash == bindparam("hash"))
)
VISITOR_BY_ID = Prepared(select(visitors).where(visitors.c.id == bindparam("id")))
# A racing transaction can make ours hit a unique key at most twice (a
# conversation opened, then the same message stored); retrying then finds it.
ATTEMPTS = 4


class SQLPeople(Store):
    """Records of agents and visitors in the database behind ``engine``."""

    engine: Engine
    _committer: GroupCommitter
    _reader: HeldReader

    # -- agents ----------------------------------------------------------
    def create_agent(self, email: str, name: str, role: AgentRole, password_hash: str) -> Agent:
        agent = Agent(new_id("a"), email.lower(), name, role, password_hash, created_at=utcnow())

        def create(c: Connection) -> None:
            if c.scalar(select(exists().where(agents.c.email == agent.email))):
                raise StoreConflict(f"an agent with email {agent.email!r} exists")
            c.execute(insert(agents).values(dataclasses.asdict(agent)))

        try:
            self._writing(create)
        except sa_exc.IntegrityError as e:
            if constraint_violated(e) != "unique":
                raise
            # Created concurrently, after the check above.
            raise StoreConflict(f"an agent with email {agent.email!r} exists") from e
        return agent

    def get_agent(self, agent_id: str) -> Agent | None:
        return self._one(to_agent, AGENT_BY_ID, {"id": agent_id})

    def get_agent_by_email(self, email: str) -> Agent | None:
        return self._one(to_agent, select(agents).where(agents.c.email == email.lower()))

    def list_agents(self) -> list[Agent]:
        return self._all(to_agent, select(agents).order_by(agents.c.created_at, agents.c.id))

    def update_agent(
        self,
        agent_id: str,
        *,
        disabled: bool | None = None,
        status: AgentStatus | None = None,
        last_seen_at: datetime | None = None,
        password_hash: str | None = None,
    ) -> Agent | None:
        given = dict(
            disabled=disabled, status=status, last_seen_at=last_seen_at, password_hash=password_hash
        )
        changes: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        if not changes:
            return self.get_agent(agent_id)
        query = update(agents).where(agents.c.id == agent_id).values(changes)
        row = self._writing(lambda c: c.execute(query.returning(*agents.c)).one_or_none())
        return to_agent(row) if row else None

    def agents_online(self, seen_since: datetime) -> bool:
        online = exists().where(
            agents.c.status == "online",
            agents.c.disabled.is_(False),
            agents.c.last_seen_at >= seen_since,
        )
        with self._read() as c:
            return bool(c.scalar(select(online)))

    # -- agent sessions --------------------------------------------------
    def create_session(self, session: AgentSession) -> None:
        try:
            self._writing(
                lambda c: c.execute(insert(agent_sessions).values(dataclasses.asdict(session)))
            )
        except sa_exc.IntegrityError as e:
            violated = constraint_violated(e)
            if violated == "foreign_key":
                raise KeyError(session.agent_id) from e
            if violated == "unique":
                raise StoreConflict("the session exists") from e
            raise

    def get_session(self, token_hash: str) -> AgentSession | None:
        return self._one(to_session, SESSION_BY_HASH, {"hash": token_hash})

    def session_agent(self, token_hash: str) -> tuple[AgentSession, Agent | None] | None:
        return self._one(_session_and_agent, SESSION_AGENT, {"hash": token_hash})

    def touch_session(self, token_hash: str, at: datetime) -> None:
        query = (
            update(agent_sessions)
            .where(agent_sessions.c.token_hash == token_hash)
            .values(last_seen_at=at)
        )
        self._writing(lambda c: c.execute(query))

    def delete_session(self, token_hash: str) -> None:
        query = delete(agent_sessions).where(agent_sessions.c.token_hash == token_hash)
        self._writing(lambda c: c.execute(query))

    def delete_agent_sessions(self, agent_id: str) -> None:
        query = delete(agent_sessions).where(agent_sessions.c.agent_id == agent_id)
        self._writing(lambda c: c.execute(query))

    # -- throttling ------------------------------------------------------
    def record_attempt(self, key: str, at: datetime) -> None:
        self._writing(lambda c: c.execute(insert(attempts).values(key=key, at=at)))

    def attempts_since(self, key: str, since: datetime) -> list[datetime]:
        def forget_and_list(c: Connection) -> list[datetime]:
            # Forgets the older ones, so the table stays small.
            c.execute(delete(attempts).where(attempts.c.key == key, attempts.c.at < since))
            query = select(attempts.c.at).where(attempts.c.key == key).order_by(attempts.c.at)
            return list(c.scalars(query))

        return self._writing(forget_and_list)

    def clear_attempts(self, key: str) -> None:
        self._writing(lambda c: c.execute(delete(attempts).where(attempts.c.key == key)))

    def use_quota(self, quota: Quota, at: datetime) -> None:
        refused = self._writing(lambda c: log.use_quota(c, quota, at))
        if refused is not None:
            raise refused

    # -- visitors ----------------------------------------------------------
    def create_visitor(self, visitor: Visitor) -> Visitor:
        if visitor.created_at is None:
            visitor = dataclasses.replace(visitor, created_at=utcnow())
        return self._retrying(lambda: self._create_visitor(visitor))

    def _create_visitor(self, visitor: Visitor) -> Visitor:
        def create(c: Connection) -> Visitor:
            if visitor.external_id is not None:
                query = select(visitors).where(visitors.c.external_id == visitor.external_id)
                existing = c.execute(query).one_or_none()
                if existing is not None:
                    return to_visitor(existing)
            if c.scalar(select(exists().where(visitors.c.id == visitor.id))):
                raise StoreConflict(f"visitor {visitor.id!r} exists")
            c.execute(insert(visitors).values(dataclasses.asdict(visitor)))
            return visitor

        return self._writing(create)

    def get_visitor(self, visitor_id: str) -> Visitor | None:
        return self._one(to_visitor, VISITOR_BY_ID, {"id": visitor_id})

    def find_visitor(self, external_id: str) -> Visitor | None:
        return self._one(to_visitor, select(visitors).where(visitors.c.external_id == external_id))

    def update_visitor(self, visitor_id: str, **fields: str) -> Visitor | None:
        unknown = set(fields) - set(VISITOR_FIELDS)
        if unknown:
            raise ValueError(f"not visitor fields: {sorted(unknown)}")

        def update_fields(c: Connection) -> Visitor | None:
            row = c.execute(select(visitors).where(visitors.c.id == visitor_id)).one_or_none()
            if row is None:
                return None
            visitor = to_visitor(row)
            changed: dict[str, Any] = {k: v for k, v in fields.items() if getattr(visitor, k) != v}
            if not changed:
                return visitor
            c.execute(update(visitors).where(visitors.c.id == visitor_id).values(changed))
            conversation = log.open_conversation(c, visitor_id, lock=True)
            if conversation is not None:  # agents see the new details as a conversation change
                log.bump(c, conversation, utcnow())
            return dataclasses.replace(visitor, **changed)

        return self._writing(update_fields)

    # -- transactions ---------------------------------------------------------------
    def _read(self) -> AbstractContextManager[Connection]:
        return transaction(self.engine, write=False)

    def _writing(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)`` in a committed writing transaction, which it may share
        with other callers' (see :mod:`~livesupport.store.sql_batch`)."""
        return self._committer.run(work)

    def _single(self) -> AbstractContextManager[Connection]:
        """A connection for reads that need no transaction (see ``single_statement``)."""
        return self._reader()

    def _one(
        self, convert: Callable[[Any], T], query: Any, params: dict[str, Any] | None = None
    ) -> T | None:
        row: Any
        with self._single() as c:
            if isinstance(query, Prepared):
                row = query.one_or_none(c, params or {})
            else:
                row = c.execute(query, params).one_or_none()
        return convert(row) if row is not None else None

    def _all(
        self, convert: Callable[[Any], T], query: Any, params: dict[str, Any] | None = None
    ) -> list[T]:
        with self._single() as c:
            return [convert(row) for row in c.execute(query, params)]

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """``attempt()``, run again after a unique key stopped it: a concurrent
        transaction committed what this one was about to, and the next attempt
        sees it (and returns it, or builds on it)."""
        for _ in range(ATTEMPTS - 1):
            try:
                return attempt()
            except sa_exc.IntegrityError as e:
                if constraint_violated(e) != "unique":
                    raise
        return attempt()


def _session_and_agent(row: Row[Any]) -> tuple[AgentSession, Agent | None]:
    agent = to_agent(row, "a_") if row._mapping["a_id"] is not None else None
    return to_session(row), agent
