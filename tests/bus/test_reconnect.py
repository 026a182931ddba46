"""Buses on a server that goes away: reconnection, back-off and the resync hook.

The shared servers are not restarted: the Redis test kills the bus's
subscriber connection (``CLIENT KILL``), the PostgreSQL test terminates its
listening backend (``pg_terminate_backend``), and the outage tests put a
:class:`~tests.proxy.TcpProxy` between the bus and the server and cut it.
"""

from __future__ import annotations

import threading

import pytest

from livesupport.bus import Bus, BusUnavailable
from tests.proxy import TcpProxy
from tests.services import POSTGRES_PORT, REDIS_PORT

from .conftest import BusFactory, Inbox, eventually, kill_listener

SERVERS = [
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("postgresql", marks=pytest.mark.postgres),
]


class Hooks:
    """Counts the bus's outage and resync calls."""

    def __init__(self, bus: Bus) -> None:
        self.outages = self.resyncs = 0
        self.lock = threading.Lock()
        bus.on_outage = self._outage
        bus.on_resync = self._resync

    def _outage(self) -> None:
        with self.lock:
            self.outages += 1

    def _resync(self) -> None:
        with self.lock:
            self.resyncs += 1


@pytest.fixture(params=SERVERS)
def make_server_bus(request: pytest.FixtureRequest) -> BusFactory:
    factory = BusFactory(request.param)
    yield factory
    factory.close_all()


def test_a_killed_listener_reconnects_and_resyncs(make_server_bus: BusFactory):
    make_bus = make_server_bus
    sender = make_bus()
    receiver = make_bus(start=False)
    hooks = Hooks(receiver)
    inbox = Inbox()
    receiver.subscribe("node.web-1", inbox)
    receiver.start()
    assert hooks.resyncs == 1
    sender.publish("node.web-1", {"n": 1})
    inbox.wait_for(1)

    assert kill_listener(make_bus.kind, make_bus.prefix) >= 1
    eventually(lambda: hooks.resyncs == 2, what="the second resync")
    assert hooks.outages == 1 and receiver.available
    sender.publish("node.web-1", {"n": 2})
    receiver.publish("node.web-1", {"n": 3})  # its own notices still reach it, once
    got = inbox.wait_for(3)
    assert sorted(n["n"] for n in got) == [1, 2, 3]
    receiver.ping()


def proxied(kind: str, make_bus: BusFactory, proxy: TcpProxy) -> str:
    if kind == "redis":
        return make_bus.url(redis=f"redis://127.0.0.1:{proxy.port}/0")
    return make_bus.url(postgres=f"postgresql://postgres@127.0.0.1:{proxy.port}/test")


def test_through_an_outage_the_bus_is_unavailable_then_comes_back(make_server_bus: BusFactory):
    make_bus = make_server_bus
    port = REDIS_PORT if make_bus.kind == "redis" else POSTGRES_PORT
    proxy = TcpProxy(("127.0.0.1", port))
    try:
        url = proxied(make_bus.kind, make_bus, proxy)
        node = make_bus(start=False, url=url)
        hooks = Hooks(node)
        inbox = Inbox()
        node.subscribe("agents", inbox)
        node.start()
        other = make_bus()  # straight to the server: it keeps working all along
        other.publish("agents", {"n": 1})
        inbox.wait_for(1)

        proxy.cut()
        eventually(lambda: not node.available, what="the outage noticed")
        assert hooks.outages == 1
        with pytest.raises(BusUnavailable):
            node.ping()
        with pytest.raises(BusUnavailable):
            node.publish("agents", {"lost": True})
        other.publish("agents", {"missed": True})  # gone for good: resync covers it

        proxy.restore()
        eventually(lambda: node.available, what="reconnected after the outage")
        assert hooks.resyncs == 2
        node.ping()
        other.publish("agents", {"n": 2})
        # Its own notice reached its own handlers at once, even with the server gone.
        assert inbox.wait_for(3) == [{"n": 1}, {"lost": True}, {"n": 2}]
    finally:
        proxy.close()
