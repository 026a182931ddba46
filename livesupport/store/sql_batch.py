"""Group commit for :class:`~livesupport.store.sql.SQLStore`: the writing transactions
that callers of one process start at about the same time share one database
transaction, so N concurrent sends cost one commit (one fsync) instead of N.

Each write is a function of a connection, queued as a :class:`Job`. Whoever
finds no batch being committed leads: it takes every queued job, runs them in
order inside one transaction (a job that raises gets its error back, and the
others run again without it in a new transaction), commits once, and only
then answers every job of the batch. So a returned write is a committed
write, as before: a ``201`` still means committed. If the commit fails,
every job of the batch fails. While a batch commits, new jobs queue up for
the next one: the slower the disk, the larger the batches.

The jobs of a batch run one after another on one connection, each seeing
the ones before it: ``seq`` stays gapless and feed positions stay in commit
order (they are taken in job order and committed together), and a repeated
``client_msg_id`` inside one batch finds the first one.

Under gevent, SQLite's calls block the whole process, fsync included; a
batch's statements run in the calling greenlet (they take microseconds) and
its ``COMMIT`` on a native thread of gevent's thread pool, so parked polls are
answered while the disk syncs. (Running the whole batch there was slower: each
of its many driver calls must win the GIL back from the busy hub thread.)
PostgreSQL's driver cooperates with gevent and needs no thread.

On PostgreSQL every batch first takes one transaction-level advisory lock, so
the writers of all nodes queue there before locking any row: a transaction
that locks a conversation and then the feed counter could otherwise deadlock
with a batch that holds the counter and reaches for that conversation.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy import exc as sa_exc

from .base import Conversation, StoredEvent, StoreError, StoreUnavailable
from .sql_engine import WRITE, unavailable_on_failure

T = TypeVar("T")
# What a job may raise without spoiling the batch: refusals decided by reading
# (conflicts, missing rows) and constraint violations; the batch runs again without it.
JOB_ERRORS = (StoreError, LookupError, ValueError, sa_exc.IntegrityError)
MAX_BATCH = 500  # jobs per transaction; a larger queue commits in several
# PostgreSQL: every batch of every node takes this first, so batches queue here
# before locking any row (per schema, like the store's tables).
WRITERS_LOCK = text(
    "SELECT pg_advisory_xact_lock("
    "hashtext('livesupport:writers:' || coalesce(current_schema(), '')))"
)


# Where a job's writes note what they changed (``noted``), in the connection's info.
CHANGES = "livesupport.changes"
Changed = tuple[Conversation, Sequence[StoredEvent]]


def noted(c: Connection, conversation: Conversation, events: Sequence[StoredEvent]) -> None:
    """Note a write that took feed positions, for ``on_commit`` once it is committed."""
    changes = c.info.get(CHANGES)
    if changes is not None:
        changes.append((conversation, events))


class Job(Generic[T]):
    __slots__ = ("work", "result", "error", "done", "changes")

    def __init__(self, work: Callable[[Connection], T]) -> None:
        self.work = work
        self.result: T | None = None
        self.error: BaseException | None = None
        self.done = False
        self.changes: list[Changed] = []

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


def _offloader(native_thread: bool) -> Callable[..., Any]:
    """How to run a batch: on a native thread when gevent patched ``threading`` and
    the driver blocks the process, else right here."""
    if native_thread and "gevent" in sys.modules:
        from gevent import monkey

        if monkey.is_module_patched("threading"):
            import gevent

            pool = gevent.get_hub().threadpool
            return lambda fn, *args: pool.apply(fn, args)
    return lambda fn, *args: fn(*args)


class GroupCommitter:
    """Runs write jobs against ``engine`` in shared transactions.

    :param engine: Used by this committer only, one batch at a time.
    :param native_thread: Run batches on gevent's thread pool when gevent is active
        (for drivers that block, such as sqlite3).
    :param lock_feed_first: Take the writers' advisory lock (PostgreSQL) before any job runs.
    :param on_commit: Told of each committed change (see ``Store.on_commit``), in
        position order, before any job of the batch returns.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        native_thread: bool,
        lock_feed_first: bool,
        on_commit: Callable[[Conversation, Sequence[StoredEvent]], None] | None = None,
    ) -> None:
        self.engine = engine
        self.on_commit = on_commit
        self.native_thread = native_thread
        self.lock_feed_first = lock_feed_first
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[Job[Any]] = []
        self._busy = False
        self._offload: Callable[..., Any] | None = None
        # Counters for the benchmark and the curious: transactions and jobs committed.
        self.batches = 0
        self.jobs = 0

    def run(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)`` inside a committed transaction; its result or its error."""
        job: Job[T] = Job(work)
        with self._cond:
            self._queue.append(job)
            while True:
                while self._busy and not job.done:
                    self._cond.wait()
                if job.done:
                    return job.outcome()
                self._busy = True
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                self._cond.release()
                try:
                    self._lead(batch)
                finally:
                    self._cond.acquire()
                    for led in batch:
                        led.done = True
                    self._busy = False
                    self._cond.notify_all()

    def _lead(self, batch: list[Job[Any]]) -> None:
        if self._offload is None:
            self._offload = _offloader(self.native_thread)
        try:
            self._commit(batch)
        except BaseException as error:
            for job in batch:  # nothing of the batch is committed
                job.result, job.error = None, error
            if not isinstance(error, Exception):
                raise
        else:
            self.batches += 1
            self.jobs += len(batch)
            if self.on_commit is not None:
                # Jobs ran, and took their positions, in batch order.
                for job in batch:
                    if job.error is None:
                        for conversation, events in job.changes:
                            self.on_commit(conversation, events)

    def _commit(self, batch: list[Job[Any]]) -> None:
        """Commit the batch's jobs; one that raises is taken out and the others run again
        in a new transaction (cheaper than a savepoint around every job, since
        refusals are rare: a repeated send is found by reading, not by failing)."""
        pending = batch
        while pending:
            failed = self._attempt(pending)
            if failed is None:
                return
            job, error = failed
            job.result, job.error = None, error
            pending = [other for other in pending if other is not job]
            for other in pending:
                other.result = None

    def _attempt(self, jobs: list[Job[Any]]) -> tuple[Job[Any], BaseException] | None:
        """Run ``jobs`` in one transaction and commit it; or roll it back and return the
        first job that raised, with its error."""
        with unavailable_on_failure(self.engine), self.engine.connect() as connection:
            connection.execution_options(**{WRITE: True})
            transaction = connection.begin()
            try:
                if self.lock_feed_first:
                    connection.execute(WRITERS_LOCK)
                for job in jobs:
                    job.changes = connection.info[CHANGES] = []
                    try:
                        job.result = job.work(connection)
                    except JOB_ERRORS as error:
                        if isinstance(error, StoreUnavailable):
                            raise
                        transaction.rollback()
                        return job, error
                # The statements ran here (each is microseconds); only the commit, which
                # waits for the disk, goes to a native thread. The driver's commit ends
                # the transaction; SQLAlchemy's own commit after it finds nothing to do.
                assert self._offload is not None
                dbapi_connection = connection.connection.dbapi_connection
                self._offload(dbapi_connection.commit)  # type: ignore[union-attr]
                transaction.commit()
            except BaseException:
                if transaction.is_active:
                    transaction.rollback()
                raise
            finally:
                connection.info.pop(CHANGES, None)
        return None

    def dispose(self) -> None:
        self.engine.dispose()
