"""Engines, transactions, errors and migrations for :class:`~livesupport.store.sql.SQLStore`.

Everything here is about talking to the database safely, not about chat:
turning a store URL into a configured SQLAlchemy engine (SQLite pragmas and
transaction control, PostgreSQL through psycopg 3), telling connection
failures from programming errors, and running the Alembic migrations.
"""

from __future__ import annotations

import select
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, exc, text
from sqlalchemy.engine import URL, make_url

from .base import StoreError, StoreUnavailable

# Set on a connection whose transaction will write; SQLite then takes the
# write lock up front (BEGIN IMMEDIATE) instead of upgrading a read lock
# later, which can fail with SQLITE_BUSY regardless of busy_timeout.
WRITE = "livesupport_write"
# Set on a connection that runs one statement outside a transaction: a single
# statement is atomic on its own, and BEGIN and COMMIT cost two more calls.
SINGLE = "livesupport_single"
# PostgreSQL connections across a network that drops packets (a partition, a
# vanished host) must fail in seconds rather than hang for as long as it lasts:
# the client gives up on data left unacknowledged (tcp_user_timeout, libpq 12+)
# or on a silent peer (keepalives); and the server ends a transaction of ours
# left idle, whose locks (the writers' lock among them) would otherwise stop the
# writes of every node until the network heals.
POSTGRES_LIVENESS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 5,  # seconds
    "keepalives_interval": 2,  # seconds
    "keepalives_count": 3,
}
TCP_USER_TIMEOUT = 5000  # milliseconds
IDLE_IN_TRANSACTION = "-c idle_in_transaction_session_timeout=5000"  # milliseconds
VERSION_TABLE = "livesupport_schema_version"  # not alembic_version: the host may use Alembic too
MIGRATIONS = "livesupport.store:migrations"

SQLITE_PRAGMAS = (
    "PRAGMA busy_timeout = 10000",  # milliseconds; first, so the others wait for locks too
    "PRAGMA journal_mode = WAL",  # readers never block the writer, nor it them
    "PRAGMA synchronous = FULL",  # a returned send survives power loss
    "PRAGMA foreign_keys = ON",
)
# SQLite error names that mean "cannot reach or use the file now", as opposed
# to SQLITE_ERROR (no such table, syntax...), which is a bug and propagates.
SQLITE_UNAVAILABLE = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_CANTOPEN",
    "SQLITE_IOERR",
    "SQLITE_FULL",
    "SQLITE_READONLY",
    "SQLITE_PROTOCOL",
    "SQLITE_NOTADB",
    "SQLITE_CORRUPT",
    "SQLITE_PERM",
    "SQLITE_AUTH",
)


def store_url(url: str) -> URL:
    """The SQLAlchemy URL for a store URL, with the driver this package supports.

    Query parameters pass through to the driver, so
    ``postgresql://u@h/db?options=-csearch_path%3Dchat`` works.
    """
    parsed = make_url(url)
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise ValueError(f"unsupported SQLite driver {driver!r}; use sqlite:///path")
        if parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory":
            raise ValueError("an SQLite store needs a file (sqlite:///path); use memory:// instead")
        return parsed.set(drivername="sqlite+pysqlite")
    if backend == "postgresql":
        if driver not in ("", "psycopg"):
            raise ValueError(f"unsupported PostgreSQL driver {driver!r}; use postgresql://")
        try:
            import psycopg  # noqa: F401  (imported here only to fail early and clearly)
        except ImportError as e:
            raise ImportError(
                "PostgreSQL stores need psycopg 3: pip install 'livesupport[postgres]'"
            ) from e
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(f"not an SQL store URL: {url!r}")


def make_engine(
    url: URL,
    *,
    pool_size: int | None,
    max_overflow: int | None,
    pool_timeout: float,
    echo: bool,
    engine_options: dict[str, Any],
) -> Engine:
    """An engine for ``url`` (from :func:`store_url`) configured for the store's use."""
    # hide_parameters: a failing statement's log line must not carry what it was
    # writing (visitors' emails, session and CSRF tokens).
    options: dict[str, Any] = {
        "pool_timeout": pool_timeout,
        "echo": echo,
        "hide_parameters": True,
        **engine_options,
    }
    if url.get_backend_name() == "sqlite":
        # One writer at a time anyway; a few connections serve concurrent readers.
        options.update(pool_size=_default(pool_size, 4), max_overflow=_default(max_overflow, 4))
        engine = create_engine(url, **options)
        _configure_sqlite(engine)
        return engine
    connect_args = dict(options.pop("connect_args", {}))
    if "connect_timeout" not in url.query:
        connect_args.setdefault("connect_timeout", 5)  # seconds; a dead host is a 503, not a hang
    for key, value in POSTGRES_LIVENESS.items():
        if key not in url.query:
            connect_args.setdefault(key, value)
    import psycopg

    if "tcp_user_timeout" not in url.query and psycopg.pq.version() >= 120000:
        connect_args.setdefault("tcp_user_timeout", TCP_USER_TIMEOUT)
    if "options" not in connect_args:  # it replaces the URL's: keep those (a search_path)
        given = url.query.get("options", "")
        connect_args["options"] = f"{given} {IDLE_IN_TRANSACTION}".strip()
    options.update(
        pool_size=_default(pool_size, 10),
        max_overflow=_default(max_overflow, 10),
        connect_args=connect_args,
    )
    engine = create_engine(url, **options)
    _ping_suspects(engine)
    return engine


def _ping_suspects(engine: Engine) -> None:
    """Ping a pooled PostgreSQL connection before use only if it looks dead.

    ``pool_pre_ping`` sends ``SELECT 1`` at every checkout, which doubled the round
    trips of the short transactions a request makes. A connection the server
    ended while it sat in the pool (a restart, ``pg_terminate_backend``) has
    something to read (the server's farewell, or end of file): only those are
    pinged, and one that fails is replaced before the caller sees it.
    """

    @event.listens_for(engine, "checkout")
    def checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if not (dbapi_connection.closed or _readable(dbapi_connection.fileno())):
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as e:
            raise exc.DisconnectionError("the pooled connection is dead") from e


def _readable(fd: int) -> bool:
    try:
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return True  # a bad descriptor: let the ping decide


def _default(value: int | None, default: int) -> int:
    return default if value is None else value


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module (which begins
        # lazily, and never for SELECT); ``begin`` below emits BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            for pragma in SQLITE_PRAGMAS:
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        if options.get(SINGLE, False):
            return
        connection.exec_driver_sql("BEGIN IMMEDIATE" if options.get(WRITE, False) else "BEGIN")


@contextmanager
def transaction(engine: Engine, *, write: bool) -> Iterator[Connection]:
    """One transaction: committed when the block ends, rolled back if it raises.

    Connection failures become :class:`StoreUnavailable`; other database
    errors (constraint violations, SQL mistakes) propagate unchanged.
    """
    with unavailable_on_failure(engine), engine.connect() as connection:
        if write:
            connection.execution_options(**{WRITE: True})
        with connection.begin():
            yield connection


@contextmanager
def single_statement(engine: Engine) -> Iterator[Connection]:
    """A connection for reads that need no transaction around them: one statement is
    atomic, and a few whose reads stay below a committed feed position need no
    common snapshot. No BEGIN and COMMIT (SQLite), autocommit (PostgreSQL).
    Failures as in :func:`transaction`."""
    with unavailable_on_failure(engine), engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            # No BEGIN and ROLLBACK around it: one round trip instead of three.
            connection.execution_options(isolation_level="AUTOCOMMIT")
        else:
            connection.execution_options(**{SINGLE: True})
        yield connection


def gevent_active() -> bool:
    """Whether gevent has patched ``threading``: this process then runs its requests
    as greenlets of one hub thread."""
    if "gevent" not in sys.modules:
        return False
    from gevent import monkey

    return bool(monkey.is_module_patched("threading"))


class HeldReader:
    """A reading connection that stays checked out, for SQLite under gevent.

    SQLite's calls never yield to another greenlet, so the reads of every greenlet
    of the hub thread can share one connection, one read after another; that
    saves the pool's checkout and return, which cost twice the read itself.
    Elsewhere (threads, PostgreSQL, whose driver yields) reads check out a
    connection each as usual (:func:`single_statement`).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.connection: Connection | None = None
        # The native thread whose greenlets share the connection; -1: none do.
        self.thread: int | None = None if engine.dialect.name == "sqlite" else -1

    @contextmanager
    def __call__(self) -> Iterator[Connection]:
        if self.thread is None:
            if not gevent_active():
                self.thread = -1  # not shared: check out a connection per read
            else:
                from gevent.monkey import get_original

                self.thread = get_original("threading", "get_ident")()
        if self.thread == -1 or self.thread != _native_thread():
            with single_statement(self.engine) as connection:
                yield connection
            return
        with unavailable_on_failure(self.engine):
            if self.connection is None or self.connection.closed or self.connection.invalidated:
                self.connection = self.engine.connect()
                self.connection.execution_options(**{SINGLE: True})
            try:
                yield self.connection
            except BaseException:
                # Start afresh after any failure rather than reason about its state.
                self.close()
                raise

    def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # closing a broken connection may fail too
                pass


def _native_thread() -> int:
    from gevent.monkey import get_original

    ident: int = get_original("threading", "get_ident")()
    return ident


@contextmanager
def unavailable_on_failure(engine: Engine) -> Iterator[None]:
    """Turn errors that mean "the database cannot be reached now" into StoreUnavailable."""
    dbapi = engine.dialect.loaded_dbapi
    try:
        yield
    except exc.TimeoutError as e:  # no pooled connection came free in pool_timeout
        raise StoreUnavailable("the store is overloaded: no connection available") from e
    except exc.DBAPIError as e:
        if e.connection_invalidated or _is_unavailable(e.orig):
            raise StoreUnavailable(f"the store cannot be reached: {e.orig}") from e
        raise
    except dbapi.OperationalError as e:  # a driver error SQLAlchemy did not wrap
        if _is_unavailable(e):
            raise StoreUnavailable(f"the store cannot be reached: {e}") from e
        raise


def _is_unavailable(error: BaseException | None) -> bool:
    name = getattr(error, "sqlite_errorname", None)
    if name is not None:
        return bool(name.startswith(SQLITE_UNAVAILABLE))
    module = type(error).__module__
    if module.startswith("psycopg"):
        # OperationalError covers lost connections, shutdowns, lock and
        # statement timeouts, deadlocks; InterfaceError a closed connection.
        import psycopg

        return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)
    return False


def constraint_violated(error: exc.IntegrityError) -> str:
    """``unique``, ``foreign_key`` or ``other``: which kind of constraint ``error`` hit."""
    orig = error.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "sqlite_errorname", None) or ""
    if code in ("23505", "SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"):
        return "unique"
    if code in ("23503", "SQLITE_CONSTRAINT_FOREIGNKEY"):
        return "foreign_key"
    return "other"


def upgrade_schema(engine: Engine) -> None:
    """``alembic upgrade head`` in one transaction, serialized across nodes.

    SQLite serializes it by BEGIN IMMEDIATE; PostgreSQL by a transaction-level
    advisory lock keyed on the schema, so nodes starting together queue up and
    all but the first find the schema at head.
    """
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    with transaction(engine, write=True) as connection:
        if connection.dialect.name == "postgresql":
            if connection.execute(text("SELECT current_schema()")).scalar() is None:
                raise StoreError(
                    "no schema to create the tables in: the search_path names no existing "
                    "schema (create it, or fix the URL's options)"
                )
            connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtext('livesupport:' || current_schema()))")
            )
        config.attributes["connection"] = connection
        config.attributes["version_table"] = VERSION_TABLE
        command.upgrade(config, "head")
