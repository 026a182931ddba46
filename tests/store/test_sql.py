"""What only the SQL store promises: URLs, schema and migrations, connection
settings, and how it fails when the database is away."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import exc, inspect

from livesupport.clock import new_id
from livesupport.store import open_store
from livesupport.store.base import StoreUnavailable, Visitor
from livesupport.store.sql import SQLStore
from livesupport.store.sql_engine import VERSION_TABLE, store_url
from livesupport.store.sql_schema import metadata
from tests.services import POSTGRES, postgres_schema, require_postgres

AT = datetime(2026, 11, 27, 22, 0, tzinfo=UTC)


def test_migrations_build_exactly_the_schema_the_queries_use(sql_store: SQLStore) -> None:
    with sql_store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        assert context.get_current_revision() == "0003"
        assert compare_metadata(context, metadata) == []
        tables = set(inspect(connection).get_table_names())
    assert VERSION_TABLE in tables and "alembic_version" not in tables  # leaves the host's alone


def test_upgrade_again_changes_nothing(sql_store: SQLStore) -> None:
    vera = sql_store.create_visitor(Visitor(new_id("v"), "Vera"))
    sql_store.visitor_send(vera, "k1", "hi", "node-1", AT)
    sql_store.upgrade()
    reopened = open_store(sql_store.url)
    try:
        assert reopened.feed_position() == 1
        assert reopened.get_visitor(vera.id) == vera
    finally:
        reopened.dispose()


def test_sqlite_connection_settings(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'chat.db'}")
    assert isinstance(store, SQLStore)
    try:
        with store.engine.connect() as connection:
            pragma = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
        full = 2
        assert pragma == {
            "journal_mode": "wal",
            "synchronous": full,
            "foreign_keys": 1,
            "busy_timeout": 10000,
        }
    finally:
        store.dispose()


def test_sqlite_relative_paths_are_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///data.db")
    store.dispose()
    assert (tmp_path / "data.db").exists()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "mysql://u@h/db",
        "postgresql+psycopg2://u@h/db",
        "sqlite+aiosqlite:///x.db",
    ],
)
def test_unsupported_urls(url: str) -> None:
    with pytest.raises(ValueError):
        store_url(url)


def test_postgres_urls_use_psycopg_and_keep_driver_options() -> None:
    url = store_url("postgresql://chat@db.internal:6543/live?options=-csearch_path%3Dchat")
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port, url.database) == ("db.internal", 6543, "live")
    assert url.query == {"options": "-csearch_path=chat"}


def test_without_psycopg_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # makes "import psycopg" fail
    with pytest.raises(ImportError, match=r"livesupport\[postgres\]"):
        SQLStore("postgresql://postgres@127.0.0.1/test")


def test_unreachable_postgres_is_unavailable() -> None:
    store = SQLStore("postgresql://postgres@127.0.0.1:1/test")  # nothing listens on port 1
    try:
        with pytest.raises(StoreUnavailable):
            store.ping()
        with pytest.raises(StoreUnavailable):
            store.get_agent("a_1")
    finally:
        store.dispose()


def test_unopenable_sqlite_is_unavailable(tmp_path: Path) -> None:
    store = SQLStore(f"sqlite:///{tmp_path / 'missing-dir' / 'chat.db'}")
    try:
        with pytest.raises(StoreUnavailable):
            store.ping()
    finally:
        store.dispose()


def test_programming_errors_are_not_hidden(sql_url: str) -> None:
    store = SQLStore(sql_url)  # never upgraded: no tables
    try:
        with pytest.raises(exc.DBAPIError) as raised:
            store.get_agent("a_1")
        assert not isinstance(raised.value, StoreUnavailable)
        with pytest.raises(exc.StatementError, match="naive datetime"):
            store.record_attempt("login:ann", datetime(2026, 1, 1))  # noqa: DTZ001
    finally:
        store.dispose()


@pytest.mark.postgres
def test_the_store_reconnects_after_postgres_drops_its_connections() -> None:
    require_postgres()
    import psycopg

    name = new_id("app")
    with postgres_schema() as url:
        store = open_store(f"{url}&application_name={name}")
        try:
            store.ping()
            with psycopg.connect(POSTGRES, autocommit=True) as admin:
                killed = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = %s",
                    (name,),
                ).fetchone()
            assert killed is not None and killed[0] >= 1
            store.ping()  # the pool notices the dead connection and opens a new one
            assert store.feed_position() == 0
        finally:
            store.dispose()
