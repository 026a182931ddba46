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

from sqlalchemy import Connection, Engine, delete, exists, insert, select, update
from sqlalchemy import exc as sa_exc

from ..clock import new_id, utcnow
from . import sql_log as log
from .base import (
    VISITOR_FIELDS,
    Agent,
    AgentRole,
    AgentSession,
    AgentStatus,
    Store,
    StoreConflict,
    Visitor,
)
from .sql_engine import constraint_violated, transaction
from .sql_schema import agent_sessions, agents, attempts, to_agent, to_session, to_visitor, visitors

T = TypeVar("T")
# A racing transaction can make ours hit a unique key at most twice (a
# conversation opened, then the same message stored); retrying then finds it.
ATTEMPTS = 4


class SQLPeople(Store):
    """Records of agents and visitors in the database behind ``engine``."""

    engine: Engine

    # -- agents ----------------------------------------------------------
    def create_agent(self, email: str, name: str, role: AgentRole, password_hash: str) -> Agent:
        agent = Agent(new_id("a"), email.lower(), name, role, password_hash, created_at=utcnow())
        try:
            with self._write() as c:
                if c.scalar(select(exists().where(agents.c.email == agent.email))):
                    raise StoreConflict(f"an agent with email {agent.email!r} exists")
                c.execute(insert(agents).values(dataclasses.asdict(agent)))
        except sa_exc.IntegrityError as e:
            if constraint_violated(e) != "unique":
                raise
            # Created concurrently, after the check above.
            raise StoreConflict(f"an agent with email {agent.email!r} exists") from e
        return agent

    def get_agent(self, agent_id: str) -> Agent | None:
        return self._one(to_agent, select(agents).where(agents.c.id == agent_id))

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
        with self._write() as c:
            query = update(agents).where(agents.c.id == agent_id).values(changes)
            row = c.execute(query.returning(*agents.c)).one_or_none()
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
            with self._write() as c:
                c.execute(insert(agent_sessions).values(dataclasses.asdict(session)))
        except sa_exc.IntegrityError as e:
            violated = constraint_violated(e)
            if violated == "foreign_key":
                raise KeyError(session.agent_id) from e
            if violated == "unique":
                raise StoreConflict("the session exists") from e
            raise

    def get_session(self, token_hash: str) -> AgentSession | None:
        query = select(agent_sessions).where(agent_sessions.c.token_hash == token_hash)
        return self._one(to_session, query)

    def touch_session(self, token_hash: str, at: datetime) -> None:
        with self._write() as c:
            c.execute(
                update(agent_sessions)
                .where(agent_sessions.c.token_hash == token_hash)
                .values(last_seen_at=at)
            )

    def delete_session(self, token_hash: str) -> None:
        with self._write() as c:
            c.execute(delete(agent_sessions).where(agent_sessions.c.token_hash == token_hash))

    def delete_agent_sessions(self, agent_id: str) -> None:
        with self._write() as c:
            c.execute(delete(agent_sessions).where(agent_sessions.c.agent_id == agent_id))

    # -- throttling ------------------------------------------------------
    def record_attempt(self, key: str, at: datetime) -> None:
        with self._write() as c:
            c.execute(insert(attempts).values(key=key, at=at))

    def attempts_since(self, key: str, since: datetime) -> list[datetime]:
        with self._write() as c:  # forgets the older ones, so the table stays small
            c.execute(delete(attempts).where(attempts.c.key == key, attempts.c.at < since))
            query = select(attempts.c.at).where(attempts.c.key == key).order_by(attempts.c.at)
            return list(c.scalars(query))

    def clear_attempts(self, key: str) -> None:
        with self._write() as c:
            c.execute(delete(attempts).where(attempts.c.key == key))

    # -- visitors ----------------------------------------------------------
    def create_visitor(self, visitor: Visitor) -> Visitor:
        if visitor.created_at is None:
            visitor = dataclasses.replace(visitor, created_at=utcnow())
        return self._retrying(lambda: self._create_visitor(visitor))

    def _create_visitor(self, visitor: Visitor) -> Visitor:
        with self._write() as c:
            if visitor.external_id is not None:
                query = select(visitors).where(visitors.c.external_id == visitor.external_id)
                existing = c.execute(query).one_or_none()
                if existing is not None:
                    return to_visitor(existing)
            if c.scalar(select(exists().where(visitors.c.id == visitor.id))):
                raise StoreConflict(f"visitor {visitor.id!r} exists")
            c.execute(insert(visitors).values(dataclasses.asdict(visitor)))
            return visitor

    def get_visitor(self, visitor_id: str) -> Visitor | None:
        return self._one(to_visitor, select(visitors).where(visitors.c.id == visitor_id))

    def find_visitor(self, external_id: str) -> Visitor | None:
        return self._one(to_visitor, select(visitors).where(visitors.c.external_id == external_id))

    def update_visitor(self, visitor_id: str, **fields: str) -> Visitor | None:
        unknown = set(fields) - set(VISITOR_FIELDS)
        if unknown:
            raise ValueError(f"not visitor fields: {sorted(unknown)}")
        with self._write() as c:
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

    # -- transactions ---------------------------------------------------------------
    def _read(self) -> AbstractContextManager[Connection]:
        return transaction(self.engine, write=False)

    def _write(self) -> AbstractContextManager[Connection]:
        return transaction(self.engine, write=True)

    def _one(self, convert: Callable[[Any], T], query: Any) -> T | None:
        with self._read() as c:
            row = c.execute(query).one_or_none()
        return convert(row) if row is not None else None

    def _all(self, convert: Callable[[Any], T], query: Any) -> list[T]:
        with self._read() as c:
            return [convert(row) for row in c.execute(query)]

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
