"""Statements run on the driver's cursor (``livesupport.store.sql_prepared``) behave as
SQLAlchemy Core runs them: the same rows and types, datetimes stored and read
alike, inside the same transaction, with the same events and errors."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, bindparam, event, exc, select, text

from livesupport.clock import new_id
from livesupport.store import open_store
from livesupport.store import sql_log as log
from livesupport.store.base import StoreUnavailable, Visitor
from livesupport.store.sql import SQLStore
from livesupport.store.sql_engine import constraint_violated, unavailable_on_failure
from livesupport.store.sql_prepared import Prepared
from livesupport.store.sql_schema import event_row, events
from tests.services import POSTGRES
from tests.store.conftest import sql_database

# Microseconds, and a zone other than UTC on the way in.
KOLKATA = timezone(timedelta(hours=5, minutes=30))
AT = datetime(2026, 11, 27, 23, 30, 0, 123456, tzinfo=KOLKATA)


@pytest.fixture
def busy_store(sql_store: SQLStore) -> tuple[SQLStore, Visitor, str]:
    """Two visitors' conversations, one claimed, with messages and state changes."""
    vera = sql_store.create_visitor(Visitor(new_id("v"), "Vera", email="vera@example.com"))
    walt = sql_store.create_visitor(Visitor(new_id("v"), "Walt"))  # empty email, no external id
    agent = sql_store.create_agent("ann@example.com", "Ann", "agent", "x")
    first = sql_store.visitor_send(vera, "v1", "hello", "web-1", AT)
    sql_store.visitor_send(walt, "w1", "hi", "web-1", AT + timedelta(microseconds=1))
    sql_store.claim(first.conversation.id, agent, AT + timedelta(seconds=1))
    sql_store.agent_send(first.conversation.id, agent, "a1", "how can I help?", AT)
    sql_store.visitor_send(vera, "v2", "a question", "web-1", AT + timedelta(seconds=2))
    return sql_store, vera, agent.id


@contextmanager
def connection(store: SQLStore) -> Iterator[Connection]:
    with unavailable_on_failure(store.engine), store.engine.connect() as c:
        with c.begin():
            yield c


def both(c: Connection, prepared: Prepared, params: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """The rows of ``prepared`` run by Core and on the cursor, as plain tuples."""
    core = [tuple(row) for row in c.execute(prepared.statement, params)]
    fast = [tuple(row) for row in prepared.all(c, params)]
    return core, fast


def test_the_hot_statements_give_cores_rows_and_types(busy_store: Any) -> None:
    store, vera, agent_id = busy_store
    top = store.feed_position()
    cases = [
        (log.REPEAT, {"kind": "visitor", "author": vera.id, "cmid": "v1"}),
        (log.OPEN, {"visitor": vera.id}),
        (log.OPEN_LOCKED_RATED, {"visitor": vera.id, "since": AT - log.MINUTE, "skip": 1}),
        (log.NTH_RECENT, {"visitor": vera.id, "since": AT - log.MINUTE, "skip": 0}),
        (log.TOP_AND_PAGE_END, {"since": 0, "skip": 1}),
        (log.RELEVANT_EVENTS, {"since": 0, "upto": top, "agent": agent_id}),
        (log.ANNOUNCED, {"since": 0, "upto": top, "agent": agent_id}),
        (log.VISITOR_EVENTS, {"visitor": vera.id, "since": 0, "upto": top, "limit": 10}),
        (log.FEED_POSITION, {}),
    ]
    with connection(store) as c:
        for prepared, params in cases:
            core, fast = both(c, prepared, params)
            assert core, prepared.sql(c.dialect)  # each case reads something
            assert fast == core
            assert [[type(v) for v in row] for row in fast] == [[type(v) for v in r] for r in core]
            for row in fast:
                for value in row:
                    if isinstance(value, datetime):
                        assert value.tzinfo is UTC
    # NULLs came back as such: the waiting conversation has no agent, messages no agent.
    with connection(store) as c:
        rows = log.RELEVANT_EVENTS.all(c, {"since": 0, "upto": top, "agent": agent_id})
    assert any(row.agent_id is None for row in rows)
    assert any(row._mapping["client_msg_id"] is None for row in rows)  # agent_joined


def test_a_rows_values_are_found_by_name_too(busy_store: Any) -> None:
    store, vera, _ = busy_store
    with connection(store) as c:
        row = log.OPEN.one(c, {"visitor": vera.id})
        core = c.execute(log.OPEN.statement, {"visitor": vera.id}).one()
    assert row.status == core.status and row._mapping == dict(core._mapping)
    assert log.conversation_of(row) == log.conversation_of(core)
    with pytest.raises(AttributeError):
        row.no_such_column  # noqa: B018


def test_datetimes_are_stored_as_core_stores_them(sql_store: SQLStore) -> None:
    vera = sql_store.create_visitor(Visitor(new_id("v"), "Vera"))
    sent = sql_store.visitor_send(vera, "k", "hi", "web-1", AT)
    drafts = [
        log.draft("message", sent.conversation, AT, client_msg_id=f"c{i}", body="x")
        for i in range(2)
    ]
    rows = [event_row(d) | {"seq": 10 + i, "pos": 100 + i} for i, d in enumerate(drafts)]
    with connection(sql_store) as c:
        c.execute(events.insert(), rows[0])  # Core
        log.INSERT_EVENT.run(c, rows[1])  # the driver's cursor
        read = select(events.c.at).where(events.c.seq >= 10).order_by(events.c.seq)
        by_core = c.execute(read).scalars().all()
        by_cursor = [row[0] for row in Prepared(read).all(c)]
        # As the driver has them: naive UTC text (SQLite), or timestamptz (PostgreSQL).
        raw = c.exec_driver_sql("SELECT at FROM events WHERE seq >= 10 ORDER BY seq").all()
    assert by_core == by_cursor == [AT, AT]
    assert all(at.tzinfo is UTC and at.microsecond == 123456 for at in by_cursor)
    assert raw[0] == raw[1]
    if sql_store.engine.dialect.name == "sqlite":
        assert raw[0][0] == "2026-11-27 18:00:00.123456"


def test_naive_datetimes_are_refused_as_by_core(sql_store: SQLStore) -> None:
    naive = datetime(2026, 1, 1)  # noqa: DTZ001
    with connection(sql_store) as c:
        with pytest.raises(exc.StatementError, match="naive datetime"):
            log.NTH_RECENT.all(c, {"visitor": "v_1", "since": naive, "skip": 0})


def test_a_unique_key_is_an_integrity_error_and_the_store_retries(
    sql_store: SQLStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    vera = sql_store.create_visitor(Visitor(new_id("v"), "Vera"))
    sent = sql_store.visitor_send(vera, "k", "hi", "web-1", AT)
    again = event_row(sent.message) | {"seq": 99, "pos": 999}  # the same id
    with connection(sql_store) as c:
        with pytest.raises(exc.IntegrityError) as raised:
            log.INSERT_EVENT.run(c, again)
        assert constraint_violated(raised.value) == "unique"
        assert not raised.value.connection_invalidated
    # A send that hits a unique key is run again and then finds the first one.
    calls = []
    real_repeat = log.repeat

    def late_repeat(c: Connection, author: Any, client_msg_id: str) -> Any:
        calls.append(client_msg_id)  # the first run misses the earlier send, as in a race
        return None if len(calls) == 1 else real_repeat(c, author, client_msg_id)

    monkeypatch.setattr(log, "repeat", late_repeat)
    repeated = sql_store.visitor_send(vera, "k", "hi again", "web-1", AT)
    assert len(calls) == 2 and not repeated.created
    assert repeated.message == sent.message


def test_statements_run_in_the_connections_transaction(sql_store: SQLStore) -> None:
    vera = sql_store.create_visitor(Visitor(new_id("v"), "Vera"))
    sent = sql_store.visitor_send(vera, "k", "hi", "web-1", AT)
    before = sql_store.feed_position()
    with sql_store.engine.connect() as c:
        log.take(c, 5)  # begins the transaction, as Core's autobegin would
        assert c.in_transaction()
        assert log.committed_position(c) == before + 5  # seen inside it...
        c.rollback()
    assert sql_store.feed_position() == before  # ...and rolled back with it
    # Core and the cursor see each other's uncommitted writes: one transaction.
    with sql_store.engine.connect() as c:
        c.begin()
        c.execute(text("UPDATE feed SET pos = pos + 1"))
        assert log.committed_position(c) == before + 1
        log.locked(c, sent.conversation.id)
        c.rollback()
    assert sql_store.feed_position() == before


def test_the_statements_fire_cursor_events(sql_store: SQLStore) -> None:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(sql_store.engine, "before_cursor_execute", record)
    try:
        sql_store.feed_position()
    finally:
        event.remove(sql_store.engine, "before_cursor_execute", record)
    assert seen == [log.FEED_POSITION.sql(sql_store.engine.dialect)]


def test_a_busy_database_makes_a_send_unavailable(sql_store: SQLStore) -> None:
    vera = sql_store.create_visitor(Visitor(new_id("v"), "Vera"))
    engine = sql_store._committer.engine

    def busy(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO events"):
            if engine.dialect.name == "sqlite":
                error = sqlite3.OperationalError("database is locked")
                error.sqlite_errorname = "SQLITE_BUSY"
                raise error
            import psycopg

            raise psycopg.errors.LockNotAvailable("lock timeout")

    event.listen(engine, "before_cursor_execute", busy)
    try:
        with pytest.raises(StoreUnavailable):
            sql_store.visitor_send(vera, "k", "hi", "web-1", AT)
    finally:
        event.remove(engine, "before_cursor_execute", busy)
    assert sql_store.open_conversation(vera.id) is None  # nothing half-written
    assert sql_store.visitor_send(vera, "k", "hi", "web-1", AT).created


@pytest.fixture
def pg_store(tmp_path: Path) -> Iterator[SQLStore]:
    with sql_database("postgresql", tmp_path) as url:
        store = open_store(url)
        assert isinstance(store, SQLStore)
        yield store
        store.dispose()


@pytest.mark.postgres
def test_postgres_locks_still_apply(pg_store: SQLStore) -> None:
    import psycopg

    sql_store = pg_store

    vera = sql_store.create_visitor(Visitor(new_id("v"), "Vera"))
    sent = sql_store.visitor_send(vera, "k", "hi", "web-1", AT)
    assert "FOR UPDATE" in log.LOCKED.sql(sql_store.engine.dialect)
    held: list[int] = []

    def job(c: Connection) -> None:
        log.locked(c, sent.conversation.id)
        mine = (
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
        advisory = c.execute(text(mine)).scalar_one()
        held.append(advisory)
        with psycopg.connect(sql_store.url) as other:
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute(
                    "SELECT id FROM conversations WHERE id = %s FOR UPDATE NOWAIT",
                    (sent.conversation.id,),
                )

    sql_store._committer.run(job)
    assert held == [1]  # the writers' advisory lock, in the same transaction


@pytest.mark.postgres
def test_a_connection_lost_mid_batch_is_unavailable_and_replaced(pg_store: SQLStore) -> None:
    import psycopg

    sql_store = pg_store

    vera = sql_store.create_visitor(Visitor(new_id("v"), "Vera"))
    errors: list[BaseException] = []

    def job(c: Connection) -> None:
        pid = c.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))  # waits, ms
        try:
            log.take(c, 1)
        except exc.DBAPIError as error:
            errors.append(error)
            raise

    with pytest.raises(StoreUnavailable):
        sql_store._committer.run(job)
    assert len(errors) == 1 and isinstance(errors[0], exc.DBAPIError)
    assert errors[0].connection_invalidated
    assert sql_store.visitor_send(vera, "k", "hi", "web-1", AT).created


def test_parameters_must_be_given(sql_store: SQLStore) -> None:
    prepared = Prepared(select(events.c.id).where(events.c.id == bindparam("id")))
    with connection(sql_store) as c:
        with pytest.raises(exc.StatementError, match="'id'"):
            prepared.all(c, {})
