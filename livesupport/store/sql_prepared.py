"""Statements compiled once per dialect and run on the driver's cursor: the SQL store's
hot path (sends, polls).

``Connection.execute`` costs some 75 µs of Python per statement on top of the
driver's own call (the compiled-cache lookup, parameter processing, execution
context and result setup), and a send runs six statements. A :class:`Prepared`
does that work once per dialect: it keeps the SQL that SQLAlchemy compiled,
the order of its parameters, and each parameter's and column's converter (the
types' own processors, so that a ``UTCDateTime`` is stored and read exactly as
Core does). A call then only binds, executes on a cursor of the connection and
converts the rows.

The rest stays SQLAlchemy's. The statement runs in the connection's
transaction (begun on first use, as Core's autobegin does, so SQLite's
``BEGIN`` and the store's ``begin`` hook run as before); it goes through the
connection's cursor-level execution, so its ``before_cursor_execute`` and
``after_cursor_execute`` events fire and ``echo`` logs it; and its errors come
out of the connection's own handling, as Core's would: wrapped
(:class:`sqlalchemy.exc.IntegrityError` for a unique key), the connection
invalidated when the database went away.

Use it for statements run many times a second; anything else reads better as
plain Core::

    BY_ID = Prepared(select(events).where(events.c.id == bindparam("id")))
    row = BY_ID.one_or_none(connection, {"id": event_id})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, cast

from sqlalchemy import BindParameter, ColumnElement, Connection, Dialect, exc, literal_column
from sqlalchemy.sql import visitors
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

Processor = Callable[[Any], Any]
NO_PARAMETERS: Mapping[str, Any] = {}


class Record(tuple[Any, ...]):
    """A result row: a tuple whose values are also found by column name, as attributes
    and in ``_mapping`` (all that the schema's ``to_*`` helpers read of a ``Row``)."""

    __slots__ = ()
    _names: ClassVar[tuple[str, ...]] = ()
    _index: ClassVar[dict[str, int]] = {}

    @property
    def _mapping(self) -> dict[str, Any]:
        return dict(zip(self._names, self, strict=True))

    def __getattr__(self, name: str) -> Any:
        try:
            return self[self._index[name]]
        except KeyError:
            raise AttributeError(name) from None


class Prepared:
    """A Core statement (``select``, ``insert``, ``update``, ``delete``, with named
    ``bindparam`` s) compiled at its first use on each dialect.

    :param statement: The statement. Parameters must render into the SQL as
        placeholders: no ``expanding`` ``IN`` lists, no literal execution.
    """

    __slots__ = ("statement", "_dialects")

    def __init__(self, statement: Executable) -> None:
        if not isinstance(statement, ClauseElement):
            raise TypeError(f"not a Core statement: {statement!r}")
        self.statement = statement
        self._dialects: dict[tuple[str, Any], _Compiled] = {}

    def all(self, c: Connection, params: Mapping[str, Any] = NO_PARAMETERS) -> list[Record]:
        return self._execute(c, params)

    def one_or_none(
        self, c: Connection, params: Mapping[str, Any] = NO_PARAMETERS
    ) -> Record | None:
        rows = self._execute(c, params)
        if len(rows) > 1:
            raise exc.MultipleResultsFound("more than one row where one or none was expected")
        return rows[0] if rows else None

    def one(self, c: Connection, params: Mapping[str, Any] = NO_PARAMETERS) -> Record:
        row = self.one_or_none(c, params)
        if row is None:
            raise exc.NoResultFound("no row where one was expected")
        return row

    def run(self, c: Connection, params: Mapping[str, Any] = NO_PARAMETERS) -> None:
        """Execute a statement whose rows, if any, are not wanted."""
        self._execute(c, params)

    def sql(self, dialect: Dialect) -> str:
        """The SQL that runs on ``dialect``."""
        return self._compiled(dialect).sql

    def _compiled(self, dialect: Dialect) -> _Compiled:
        # By server version too: what SQL a dialect writes (RETURNING, say) may depend
        # on it, and a dialect that has not connected yet does not know it.
        key = (dialect.name, dialect.server_version_info)
        compiled = self._dialects.get(key)
        if compiled is None:
            # Two threads may both compile it once; either result is the same.
            compiled = self._dialects[key] = _Compiled(self.statement, dialect)
        return compiled

    def _execute(self, c: Connection, params: Mapping[str, Any]) -> list[Record]:
        dialect = c.dialect
        compiled = self._compiled(dialect)
        transaction = c.get_transaction()
        if transaction is None:
            c.begin()  # Core's autobegin, with the dialect's and the store's begin hooks
        elif not transaction.is_active:
            raise exc.PendingRollbackError("the connection's transaction must be rolled back")
        try:
            parameters = compiled.parameters(params)
        except Exception as e:
            message = f"({type(e).__module__}.{type(e).__name__}) {e}"
            raise exc.StatementError(message, compiled.sql, None, e, hide_parameters=True) from e
        cursor = c.connection.cursor()
        # The connection's own cursor-level execution: events, echo, and errors wrapped
        # and the connection invalidated on a disconnect, as for every Core statement.
        c._cursor_execute(cursor, compiled.sql, parameters)
        try:
            # Known from the statement: psycopg builds ``description`` anew at each look.
            if not compiled.columns:
                rows: Sequence[Any] = ()
            else:
                rows = cursor.fetchall()
                if compiled.results is None:
                    compiled.results = compiled.result_processors(cursor.description, dialect)
            cursor.close()
        except BaseException as e:  # SQLite reports some errors while stepping to a row
            c._handle_dbapi_exception(e, compiled.sql, parameters, cursor, None)
        record, results = compiled.record, compiled.results
        if not results:
            return [record(row) for row in rows]
        converted = []
        for row in rows:
            values = list(row)
            for i, convert in results:
                values[i] = convert(values[i])
            converted.append(record(values))
        return converted


class _Compiled:
    """A statement as one dialect runs it."""

    __slots__ = ("sql", "order", "escaped", "binds", "defaults", "columns", "record", "results")

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        inlined = _inline_literals(cast(ClauseElement, statement), dialect)
        compiled = inlined.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)  # a statement, not DDL
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("a prepared statement's parameters must all be placeholders")
        self.sql = compiled.string
        self.binds: dict[str, Processor | None] = {}  # the caller's parameters
        self.defaults: dict[str, Any] = {}  # values the compiler added (SQLite's OFFSET 0)
        for param, name in compiled.bind_names.items():
            convert = param.type.dialect_impl(dialect).bind_processor(dialect)
            if param.required:
                self.binds[name] = convert
            else:
                value = param.effective_value
                self.defaults[name] = convert(value) if convert is not None else value
        # What the driver takes: a tuple in placeholder order (qmark), or a dict keyed
        # by the names as rendered, quoted where they had to be (pyformat).
        self.order = None if compiled.positiontup is None else tuple(compiled.positiontup)
        self.escaped = dict(compiled.escaped_bind_names)
        self.columns: list[ColumnElement[Any]] = list(getattr(statement, "exported_columns", ()))
        names = [c.key if isinstance(c.key, str) else f"_{i}" for i, c in enumerate(self.columns)]
        self.record: type[Record] = type(
            "Record",
            (Record,),
            {
                "__slots__": (),
                "_names": tuple(names),
                "_index": {n: i for i, n in enumerate(names)},
            },
        )
        # Result converters may depend on the driver's type codes: set at the first run.
        self.results: tuple[tuple[int, Processor], ...] | None = None

    def parameters(self, params: Mapping[str, Any]) -> Any:
        values = dict(self.defaults) if self.defaults else {}
        for name, convert in self.binds.items():
            try:
                value = params[name]
            except KeyError:
                raise exc.InvalidRequestError(f"no value for parameter {name!r}") from None
            values[name] = convert(value) if convert is not None else value
        if self.order is not None:
            return tuple([values[name] for name in self.order])
        if self.escaped:
            return {self.escaped.get(name, name): value for name, value in values.items()}
        return values

    def result_processors(
        self, description: Sequence[Any], dialect: Dialect
    ) -> tuple[tuple[int, Processor], ...]:
        if len(description) != len(self.columns):
            raise exc.InvalidRequestError("the result's columns are not the statement's")
        found = []
        for i, (column, described) in enumerate(zip(self.columns, description, strict=True)):
            convert = column.type.dialect_impl(dialect).result_processor(dialect, described[1])
            if convert is not None:
                found.append((i, convert))
        return tuple(found)


def _inline_literals(statement: ClauseElement, dialect: Dialect) -> ClauseElement:
    """``statement`` with the values it holds (``status != 'closed'``, ``LIMIT 1``) written
    into its SQL, as in a hand-written statement, rather than bound at each run.

    SQLite plans again, at every execution, a statement in which a bound value could
    decide whether a partial index applies (``status != ?`` against the index's
    ``status <> 'closed'``); that cost an agent's poll some 60 µs per statement.
    PostgreSQL's generic plans likewise see a partial index's predicate only in literals.
    """
    compiler = dialect.statement_compiler(dialect, None)

    def inline(element: Any, **_: Any) -> Any:
        if isinstance(element, BindParameter) and not element.required:
            try:
                value = compiler.render_literal_value(element.effective_value, element.type)
            except (exc.CompileError, NotImplementedError):
                return None  # a type with no literal form stays a parameter
            return literal_column(value, element.type)
        return None

    return cast(ClauseElement, visitors.replacement_traverse(statement, {}, inline))
