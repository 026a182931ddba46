"""A node whose network stops mid-write must not stop every other node's writes.

Every write batch on PostgreSQL first takes one advisory lock shared by all
nodes (``sql_batch.WRITERS_LOCK``) and holds it until its commit. If a node's
network stops passing packets just after it took the lock (a partition, a
dead switch), the server sees a session "idle in transaction" that still
holds the lock, and waits for it: no error reaches the server, whose TCP
keepalives start after two hours by default. Meanwhile every other node's
writes queue behind the lock. The partition test (``test_partition.py``)
meets this by chance, whenever the cut falls inside a write; this test puts
it there every time.

A proxy between one store and the shared PostgreSQL relays until that store
sends the writers' lock statement, then carries nothing either way (both
connections kept open: packets lost, not refused) until the test thaws it.
A second store, straight to the server, must then still commit within
seconds.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import gevent
import gevent.event
import gevent.socket
import pytest

from livesupport.clock import new_id, utcnow
from livesupport.store import open_store
from livesupport.store.base import Store, Visitor
from tests.proxy import TcpProxy
from tests.services import POSTGRES_PORT, drop_postgres, postgres_url, require_postgres

pytestmark = pytest.mark.postgres

WRITERS_LOCK = b"livesupport:writers:"  # in the lock statement every write batch sends first
PATIENCE = 10.0  # seconds another node's write may wait: a 503 comes sooner than that


class StallingProxy(TcpProxy):
    """Relays until :meth:`arm` was called and a client sends ``marker``; from then
    on that connection carries nothing in either direction until :meth:`thaw`."""

    def __init__(self, target: tuple[str, int], marker: bytes) -> None:
        self.marker = marker
        self.armed = False
        self.stalled = threading.Event()  # set on the proxy's hub thread, waited on by tests
        self._thawed = gevent.event.Event()
        super().__init__(target)

    def arm(self) -> None:
        self.armed = True

    def thaw(self) -> None:
        if not self.hub.closed:
            self.hub.call(self._thawed.set)

    def relay(self, client: gevent.socket.socket, upstream: gevent.socket.socket) -> None:
        state = {"stalled": False}
        back = gevent.spawn(self._pump, upstream, client, state, False)
        self._pump(client, upstream, state, True)
        back.join()

    def _pump(self, source: gevent.socket.socket, sink: gevent.socket.socket,
              state: dict[str, bool], from_client: bool) -> None:  # fmt: skip
        try:
            while data := source.recv(65536):
                if from_client and self.armed and self.marker in data and not self.stalled.is_set():
                    state["stalled"] = True  # before sending: its answer is held back too
                    self.stalled.set()
                    sink.sendall(data)  # the server takes the lock...
                    continue
                if state["stalled"]:
                    self._thawed.wait()  # ...and hears nothing more, nor is heard
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(2)
                except OSError:
                    pass
                sock.close()


def new_visitor(store: Store) -> Visitor:
    return store.create_visitor(Visitor(id=new_id("v"), created_at=utcnow()))


def test_a_node_cut_off_mid_write_does_not_stop_the_others():
    require_postgres()
    url = postgres_url()
    proxy = StallingProxy(("127.0.0.1", POSTGRES_PORT), WRITERS_LOCK)
    stores: list[Store] = []
    try:
        cut_off = open_store(url.replace(f":{POSTGRES_PORT}/", f":{proxy.port}/"))
        stores.append(cut_off)
        other = open_store(url)
        stores.append(other)
        mine, theirs = new_visitor(cut_off), new_visitor(other)
        proxy.arm()
        with ThreadPoolExecutor(2) as pool:
            pool.submit(cut_off.visitor_send, mine, "m-1", "sent as the network died", "web-1",
                        utcnow())  # fmt: skip
            assert proxy.stalled.wait(10), "the cut-off store never sent the lock statement"
            started = time.monotonic()
            write = pool.submit(other.visitor_send, theirs, "m-2", "from another node", "web-2",
                                utcnow())  # fmt: skip
            try:
                result = write.result(timeout=PATIENCE)
                waited = time.monotonic() - started
            except FutureTimeout:
                waited = float("inf")
            finally:
                proxy.thaw()  # whatever happened, so that both sends end
        print(f"\nanother node's write waited {waited:.2f} s behind a cut-off node's lock")
        assert waited < PATIENCE, (
            f"another node's write waited more than {PATIENCE:.0f} s for the writers' lock "
            "held by a node whose network stopped mid-transaction"
        )
        assert result.created
    finally:
        proxy.thaw()
        for store in stores:
            store.dispose()
        proxy.close()
        drop_postgres(url)
