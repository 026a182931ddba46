"""The Redis bus: Redis pub/sub through redis-py, for several nodes.

Use it when the nodes of a deployment share a Redis server::

    LiveSupport(app, ..., bus="redis://10.0.0.5:6379/0")

Each node holds one subscribing connection (channels ``agents``,
``visitors`` and its own ``node.<id>``, as its role needs) and publishes
through a small pool. Redis pub/sub keeps nothing: a notice published while a
node is disconnected never reaches it, which is why the node resynchronises
from the store when it is back (see :mod:`livesupport.bus.remote`).

Pub/sub channels are server-wide, whatever the database number, so channel
names start with ``livesupport:<db>:`` by default; ``?channel_prefix=...``
in the URL (or ``channel_prefix=``) separates deployments sharing a server.
The subscribing connection is named ``<prefix>listen`` (``CLIENT LIST``).

Needs redis-py: ``pip install 'livesupport[redis]'``; imported only when a
Redis bus is opened.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .base import BusUnavailable
from .remote import RemoteBus


def split_option(url: str, name: str) -> tuple[str, str | None]:
    """``url`` without the query parameter ``name``, and that parameter's value."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    value = next((v for k, v in query if k == name), None)
    rest = urlencode([(k, v) for k, v in query if k != name])
    return urlunsplit(parts._replace(query=rest)), value


class RedisBus(RemoteBus):
    """Notices through Redis pub/sub. ``redis://HOST:PORT/DB`` (``rediss://`` for TLS).

    :param url: A redis-py URL, plus an optional ``channel_prefix`` parameter.
    :param channel_prefix: Overrides the URL's; default ``livesupport:<db>:``.
    :param options: Those of :class:`~livesupport.bus.remote.RemoteBus`
        (``timeout``, ``reconnect_min``, ``reconnect_max``, ``start_timeout``).

    Example::

        bus = RedisBus("redis://127.0.0.1:6379/0")
        bus.subscribe("node.web-1", lambda channel, notice: print(notice))
        bus.start()
        bus.publish("node.web-1", {"keys": ["visitor:v_1"]})
    """

    def __init__(self, url: str, *, channel_prefix: str | None = None, **options: Any) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:
            raise ImportError(
                "the Redis bus needs redis-py: pip install 'livesupport[redis]'"
            ) from exc
        server_url, from_url = split_option(url, "channel_prefix")
        db = urlsplit(server_url).path.strip("/") or "0"
        prefix = channel_prefix or from_url or f"livesupport:{db}:"
        super().__init__(url, channel_prefix=prefix, **options)
        self._redis = redis
        self._server_url = server_url
        # One quick retry: a pooled connection may be stale after a server restart.
        self._publisher = redis.Redis.from_url(
            server_url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
            client_name=f"{self._client_name()}publish",
        )
        self._client: Any = None
        self._pubsub: Any = None
        self._confirmed: set[str] = set()
        self._ping_sent = 0.0
        self._pong_seen = 0.0

    def _client_name(self) -> str:
        # Client names cannot hold spaces; ours identify the deployment in CLIENT LIST.
        return "".join(c if c.isprintable() and c != " " else "_" for c in self.channel_prefix)

    # -- listening ---------------------------------------------------------------
    def _open(self) -> None:
        # Its own client without retries: a lost connection must surface here, so that
        # the node resynchronises, instead of being re-established behind our back.
        self._client = self._redis.Redis.from_url(
            self._server_url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            socket_keepalive=True,
            retry=None,
            client_name=f"{self._client_name()}listen",
        )
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=False)
        self._confirmed = set()
        self._ping_sent = self._pong_seen = 0.0
        self._pubsub.ping()  # connects now, so an absent server fails here

    def _close_listener(self) -> None:
        pubsub, client, self._pubsub, self._client = self._pubsub, self._client, None, None
        for thing in (pubsub, client):
            try:
                if thing is not None:
                    thing.close()
            except Exception:  # noqa: S110 (closing a broken connection may fail too)
                pass

    def _listen(self, wires: Iterable[str]) -> None:
        wanted = set(wires)
        self._pubsub.subscribe(*wanted)
        deadline = time.monotonic() + self.timeout
        while not wanted <= self._confirmed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._redis.TimeoutError("no SUBSCRIBE confirmation from Redis")
            for wire, payload in self._receive(min(remaining, self.tick)):
                self._deliver(wire, payload)

    def _unlisten(self, wires: Iterable[str]) -> None:
        gone = list(wires)
        self._pubsub.unsubscribe(*gone)
        self._confirmed.difference_update(gone)

    def _receive(self, timeout: float) -> Iterator[tuple[str, str]]:
        message = self._pubsub.get_message(timeout=timeout)
        while message is not None:
            kind, channel = message["type"], _text(message.get("channel"))
            if kind == "message":
                yield channel, _text(message["data"])
            elif kind == "subscribe":
                self._confirmed.add(channel)
            elif kind == "pong":
                self._pong_seen = time.monotonic()
            message = self._pubsub.get_message(timeout=0)

    def _heartbeat(self) -> None:
        if not self._pubsub.subscribed:
            return  # replies are read only once subscribed; nothing to lose meanwhile
        # The answer to the last PING must have come by now (it is read as a message).
        if self._ping_sent and self._pong_seen < self._ping_sent:
            raise self._redis.ConnectionError("Redis did not answer PING")
        self._ping_sent = time.monotonic()
        self._pubsub.ping()

    # -- publishing ---------------------------------------------------------------
    def _send(self, wire: str, payload: str) -> None:
        try:
            self._publisher.publish(wire, payload)
        except self._redis.RedisError as exc:
            raise BusUnavailable(f"Redis: {exc}") from exc

    def _ping_server(self) -> None:
        try:
            self._publisher.ping()
        except self._redis.RedisError as exc:
            raise BusUnavailable(f"Redis: {exc}") from exc

    def _close_publisher(self) -> None:
        try:
            self._publisher.close()
        except Exception:  # noqa: S110
            pass


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
