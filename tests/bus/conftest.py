"""Buses for the contract and reconnection tests.

``make_bus`` runs a test once per backend: ``local`` (a named in-process bus,
so several instances hear each other), ``redis`` and ``postgresql`` (the real
servers, marked; skipped without them, failed under ``CI=true``). Every test
gets channel names no other test uses, and every bus it opens is closed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from livesupport.bus import Bus, open_bus
from tests.services import (
    POSTGRES,
    REDIS,
    REDIS_PORT,
    require_postgres,
    require_redis,
    unique_name,
)

BACKENDS = [
    "local",
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("postgresql", marks=pytest.mark.postgres),
]
FAST = {"reconnect_min": 0.05, "reconnect_max": 0.5, "tick": 0.05}  # seconds: tests wait


def bus_url(kind: str, prefix: str, *, redis: str = REDIS, postgres: str = POSTGRES) -> str:
    """A URL of ``kind`` whose channels start with ``prefix``."""
    if kind == "local":
        return f"local://{prefix}"
    if kind == "redis":
        require_redis()
        return f"{redis}?channel_prefix={prefix}:"
    require_postgres()
    return f"{postgres}?channel_prefix={prefix}:"


class BusFactory:
    """``make_bus()``: a started bus of this test's backend; all share one namespace."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.prefix = unique_name("bus")
        self.opened: list[Bus] = []

    def url(self, **servers: str) -> str:
        return bus_url(self.kind, self.prefix, **servers)

    def __call__(self, *, start: bool = True, url: str | None = None, **options: Any) -> Bus:
        if self.kind != "local":
            options = {**FAST, **options}
        bus = open_bus(url or self.url(), **options)
        self.opened.append(bus)
        if start:
            bus.start()
        return bus

    def close_all(self) -> None:
        while self.opened:
            self.opened.pop().close()


@pytest.fixture(params=BACKENDS)
def make_bus(request: pytest.FixtureRequest) -> Iterator[BusFactory]:
    factory = BusFactory(request.param)
    yield factory
    factory.close_all()


class Inbox:
    """A handler that records what it receives and lets a test wait for it."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self._changed = threading.Condition()

    def __call__(self, channel: str, notice: dict[str, Any]) -> None:
        with self._changed:
            self.received.append((channel, notice))
            self._changed.notify_all()

    @property
    def notices(self) -> list[dict[str, Any]]:
        with self._changed:
            return [n for _, n in self.received]

    def wait_for(self, count: int, within: float = 5.0) -> list[dict[str, Any]]:
        """The notices once there are ``count`` of them; fails after ``within`` seconds."""
        with self._changed:
            ok = self._changed.wait_for(lambda: len(self.received) >= count, within)
        assert ok, f"got {len(self.received)} of {count} notices in {within} s"
        return self.notices


def eventually(condition: Callable[[], Any], within: float = 10.0, what: str = "") -> Any:
    """Poll ``condition`` until it is true (for state in another thread or process that
    offers nothing to wait on); fails after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {within} s: {what or condition}"
        time.sleep(0.02)


def kill_listener(kind: str, prefix: str) -> int:
    """Cut the server side of the listening connections of the buses named by
    ``prefix`` (no one else's); how many were cut."""
    name = f"{prefix}:listen"
    if kind == "redis":
        import redis

        client = redis.Redis(port=REDIS_PORT)
        try:
            ids = [c["id"] for c in client.client_list() if c.get("name") == name]
            for client_id in ids:
                client.client_kill_filter(_id=client_id)
            return len(ids)
        finally:
            client.close()
    import psycopg

    with psycopg.connect(POSTGRES, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (name,),
        ).fetchall()
    return len(rows)
