"""The PostgreSQL bus: LISTEN/NOTIFY through psycopg 3, for several nodes.

Use it when the nodes already share a PostgreSQL server (usually the store's)
and you would rather not run Redis::

    LiveSupport(app, ..., store=DB, bus="postgresql://chat@db:5432/chat")

Each node holds one listening connection and one publishing connection.
Notifications go to every session of the same database that listens on the
channel; like Redis pub/sub, nothing is kept for a node that is not
connected, so a node resynchronises from the store when it is back.

Large notices. PostgreSQL refuses a NOTIFY payload of 8000 bytes or more, and
a notice carrying a message body of 10,000 characters can be several times
that. Such a payload is split into chunks sent in one transaction:
notifications of one transaction are delivered together and in order, so a
listener gets all the chunks or none, and reassembles them. (The other way,
a short notice telling the node to read the store, would cost that node a
database read per long message; chunks keep visitor polls off the database.)

Channel names are identifiers of at most 63 bytes: a longer one (a long
prefix and node id) is replaced by a digest. ``?channel_prefix=...`` in the
URL (or ``channel_prefix=``) separates deployments sharing a database; the
default is ``livesupport:``. The listening session's ``application_name`` is
``<prefix>listen`` (``pg_stat_activity``).

Needs psycopg 3: ``pip install 'livesupport[postgres]'``; imported only when a
PostgreSQL bus is opened.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

from .base import BusUnavailable
from .redis import split_option
from .remote import RemoteBus

MAX_IDENTIFIER = 63  # bytes; PostgreSQL's NAMEDATALEN - 1
CHUNK_BYTES = 7000  # below the 8000-byte payload limit, with room for the chunk header
CHUNK_MARK = "#"  # a whole payload is a JSON object and starts with "{"
MAX_PARTIAL = 256  # chunked payloads being reassembled at once


class PostgresBus(RemoteBus):
    """Notices through PostgreSQL LISTEN/NOTIFY. ``postgresql://USER@HOST:PORT/DB``.

    :param url: A libpq URL (``postgres://`` and ``postgresql+psycopg://`` too),
        plus an optional ``channel_prefix`` parameter.
    :param channel_prefix: Overrides the URL's; default ``livesupport:``.
    :param options: Those of :class:`~livesupport.bus.remote.RemoteBus`.
    """

    def __init__(self, url: str, *, channel_prefix: str | None = None, **options: Any) -> None:
        try:
            import psycopg
            from psycopg import sql
        except ImportError as exc:
            raise ImportError(
                "the PostgreSQL bus needs psycopg 3: pip install 'livesupport[postgres]'"
            ) from exc
        server_url, from_url = split_option(url, "channel_prefix")
        scheme, sep, rest = server_url.partition("://")
        super().__init__(
            url, channel_prefix=channel_prefix or from_url or "livesupport:", **options
        )
        self._psycopg = psycopg
        self._sql = sql
        self._conninfo = "postgresql" + sep + rest
        self._listener: Any = None
        self._publisher: Any = None
        self._publisher_lock = threading.Lock()
        self._publisher_failed_at = 0.0
        self._chunk_ids = itertools.count(1)
        self._partial: OrderedDict[str, list[str | None]] = OrderedDict()

    def _wire(self, channel: str) -> str:
        name = self.channel_prefix + channel
        if len(name.encode()) <= MAX_IDENTIFIER:
            return name
        digest = hashlib.sha256(channel.encode()).hexdigest()[:40]
        return self.channel_prefix.encode()[:20].decode(errors="ignore") + "~" + digest

    def _connect(self, role: str) -> Any:
        seconds = max(1, round(self.timeout))
        options: dict[str, Any] = {
            "connect_timeout": seconds,
            "application_name": (self.channel_prefix + role)[:MAX_IDENTIFIER],
            # A silently vanished server shows up within about half a minute...
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        }
        if self._psycopg.pq.version() >= 120000:
            # ...and a send to it fails after `timeout` instead of blocking for minutes.
            options["tcp_user_timeout"] = seconds * 1000
        return self._psycopg.connect(self._conninfo, autocommit=True, **options)

    # -- listening ---------------------------------------------------------------
    def _open(self) -> None:
        self._listener = self._connect("listen")
        self._partial.clear()
        self._publisher_failed_at = 0.0  # the server is back: sends may try at once

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.close()
            except Exception:  # noqa: S110 (closing a broken connection may fail too)
                pass

    def _listen(self, wires: Iterable[str]) -> None:
        for wire in wires:
            self._listener.execute(self._sql.SQL("LISTEN {}").format(self._sql.Identifier(wire)))

    def _unlisten(self, wires: Iterable[str]) -> None:
        for wire in wires:
            self._listener.execute(self._sql.SQL("UNLISTEN {}").format(self._sql.Identifier(wire)))

    def _receive(self, timeout: float) -> Iterator[tuple[str, str]]:
        for notify in self._listener.notifies(timeout=timeout):
            yield notify.channel, notify.payload

    def _heartbeat(self) -> None:
        self._listener.execute("SELECT 1")

    def _assemble(self, payload: str) -> str | None:
        if not payload.startswith(CHUNK_MARK):
            return payload
        header, _, part = payload[1:].partition(":")
        try:
            key, index_text, total_text = header.rsplit("/", 2)
            index, total = int(index_text), int(total_text)
        except ValueError:
            return None
        parts = self._partial.get(key)
        if parts is None:
            if index != 0:
                return None  # its beginning was lost (a reconnection): nothing to rebuild
            parts = self._partial[key] = [None] * total
            while len(self._partial) > MAX_PARTIAL:
                self._partial.popitem(last=False)
        if not 0 <= index < len(parts):
            return None
        parts[index] = part
        if any(p is None for p in parts):
            return None
        del self._partial[key]
        return "".join(p for p in parts if p is not None)

    # -- publishing ---------------------------------------------------------------
    def _chunks(self, payload: str) -> list[str]:
        data = payload.encode()
        if len(data) < CHUNK_BYTES:
            return [payload]
        pieces, start = [], 0
        while start < len(data):
            end = min(start + CHUNK_BYTES, len(data))
            while end < len(data) and data[end] & 0xC0 == 0x80:
                end -= 1  # never cut a UTF-8 character in two
            pieces.append(data[start:end].decode())
            start = end
        key = f"{self.origin[:12]}.{next(self._chunk_ids)}"
        return [f"{CHUNK_MARK}{key}/{i}/{len(pieces)}:{p}" for i, p in enumerate(pieces)]

    def _with_publisher(self, work: Any) -> Any:
        """``work(connection)`` on the publishing connection, connecting when needed.
        A connection found broken is replaced once at once (the server may have
        restarted since it was last used); failures become :class:`BusUnavailable`."""
        with self._publisher_lock:
            for attempt in (1, 2):
                fresh = self._publisher is None
                if fresh:
                    self._publisher = self._connect_publisher()
                try:
                    return work(self._publisher)
                except self._psycopg.Error as exc:
                    broken, self._publisher = self._publisher, None
                    try:
                        broken.close()
                    except Exception:  # noqa: S110 (closing a broken connection may fail)
                        pass
                    if fresh or attempt == 2:
                        self._publisher_failed_at = time.monotonic()
                        raise BusUnavailable(f"PostgreSQL: {exc}") from exc

    def _connect_publisher(self) -> Any:
        # After a failure, wait a moment before trying again, so that every send
        # during an outage does not wait for a connection attempt of its own.
        if time.monotonic() - self._publisher_failed_at < min(1.0, self.timeout):
            raise BusUnavailable("PostgreSQL: not connected; retrying shortly")
        try:
            return self._connect("publish")
        except self._psycopg.Error as exc:
            self._publisher_failed_at = time.monotonic()
            raise BusUnavailable(f"PostgreSQL: {exc}") from exc

    def _send(self, wire: str, payload: str) -> None:
        chunks = self._chunks(payload)

        def notify(connection: Any) -> None:
            if len(chunks) == 1:
                connection.execute("SELECT pg_notify(%s, %s)", (wire, payload))
                return
            with connection.transaction():  # delivered together, in order, or not at all
                for chunk in chunks:
                    connection.execute("SELECT pg_notify(%s, %s)", (wire, chunk))

        self._with_publisher(notify)

    def _ping_server(self) -> None:
        self._with_publisher(lambda connection: connection.execute("SELECT 1"))

    def _close_publisher(self) -> None:
        with self._publisher_lock:
            publisher, self._publisher = self._publisher, None
        if publisher is not None:
            try:
                publisher.close()
            except Exception:  # noqa: S110
                pass
