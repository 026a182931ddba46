"""A TCP proxy in front of a real server that a test can cut and restore, and the
gevent hub it runs on.

Stopping the shared PostgreSQL or Redis server would disturb everything else
running on the machine; putting this proxy between a node and the server
gives the node a server that goes away (connections reset, new ones refused)
and comes back on the same port, while nobody else notices. Subclasses relay
otherwise (``tests/reliability/faultproxy.py`` drops, delays and cuts HTTP
answers).

The test process is not monkey-patched (importing the package must not
patch, and most tests use threads), so the proxy's greenlets run on a hub of
their own on a native thread, a :class:`GeventThread`; other threads hand it
work with :meth:`GeventThread.call`. A test can run its own gevent clients on
the same hub, which spares them the GIL hand-overs between two busy threads::

    hub = GeventThread()
    proxy = TcpProxy(("127.0.0.1", 6379), hub=hub)
    hub.call(some_gevent_function, timeout=60)
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import gevent
import gevent.event
import gevent.server
import gevent.socket

T = TypeVar("T")
_Call = tuple[Callable[..., Any], tuple[Any, ...], Future[Any]]
_STOP = None


class GeventThread:
    """A gevent hub on a daemon thread of its own, running what other threads submit."""

    def __init__(self, name: str = "gevent-hub") -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._wakeup: Any = None
        self.closed = False
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), name=name, daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the gevent hub thread did not start")

    def submit(self, function: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``function(*args)`` in a new greenlet on the hub; its future."""
        if self.closed:
            raise RuntimeError("the gevent hub thread is closed")
        future: Future[T] = Future()
        self._calls.put((function, args, future))
        self._wakeup.send()  # the loop's async watcher: safe to send from another thread
        return future

    def call(self, function: Callable[..., T], *args: Any, timeout: float = 30.0) -> T:
        """``function(*args)`` run on the hub; its result or its exception. Called from
        the hub's own thread, it runs at once (waiting there would block the hub)."""
        if threading.current_thread() is self._thread:
            return function(*args)
        return self.submit(function, *args).result(timeout)

    def close(self) -> None:
        """Stop the hub; greenlets still running are abandoned with it."""
        if self.closed:
            return
        self.closed = True
        self._calls.put(_STOP)
        self._wakeup.send()
        self._thread.join(10)

    def _run(self, started: threading.Event) -> None:
        hub = gevent.get_hub()
        done = gevent.event.Event()
        # A started (referenced) watcher also keeps the loop running while idle.
        self._wakeup = hub.loop.async_()
        self._wakeup.start(lambda: self._drain(done))
        started.set()
        done.wait()
        self._wakeup.stop()
        self._wakeup.close()

    def _drain(self, done: gevent.event.Event) -> None:
        while True:
            try:
                item = self._calls.get_nowait()
            except queue.Empty:
                return
            if item is _STOP:
                done.set()
                return
            function, args, future = item
            gevent.spawn(_settle, future, function, args)


def _settle(future: Future[T], function: Callable[..., T], args: tuple[Any, ...]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(function(*args))
    except BaseException as error:  # the caller's thread re-raises it
        future.set_exception(error)
        if isinstance(error, gevent.GreenletExit):
            raise


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``target``; :meth:`cut` and :meth:`restore` it.

    :param target: The server's ``(host, port)``.
    :param hub: The :class:`GeventThread` to run on; by default one of its own,
        stopped by :meth:`close`.
    """

    def __init__(self, target: tuple[str, int], *, hub: GeventThread | None = None) -> None:
        self.target = target
        self.hub = hub or GeventThread("tcp-proxy")
        self._owns_hub = hub is None
        self._server: gevent.server.StreamServer | None = None
        self._sockets: set[gevent.socket.socket] = set()  # touched on the hub only
        self.port = 0
        self.restore()

    def restore(self) -> None:
        """Accept connections again (on the same port as before)."""
        self.hub.call(self._listen)

    def cut(self) -> None:
        """Refuse new connections and reset every open one, as a dead server would."""
        self.hub.call(self._cut)

    def close(self) -> None:
        """:meth:`cut` for good (and stop the hub if it is the proxy's own)."""
        if self.hub.closed:
            return
        self.cut()
        if self._owns_hub:
            self.hub.close()

    def relay(self, client: gevent.socket.socket, upstream: gevent.socket.socket) -> None:
        """Carry one connection until either side closes it (both are closed afterwards)."""
        back = gevent.spawn(_pump, upstream, client)
        _pump(client, upstream)
        back.join()

    def _listen(self) -> None:
        server = gevent.server.StreamServer(("127.0.0.1", self.port), self._handle, backlog=1024)
        server.start()
        self.port = server.server_port
        self._server = server

    def _cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _close(sock)

    def _handle(self, client: gevent.socket.socket, address: Any) -> None:
        listening = self._server
        try:
            upstream = gevent.socket.create_connection(self.target, timeout=5)
        except OSError:
            _close(client)
            return
        if self._server is not listening or listening is None:  # cut while connecting
            _close(client)
            _close(upstream)
            return
        upstream.settimeout(None)
        pair = {client, upstream}
        self._sockets |= pair
        try:
            self.relay(client, upstream)
        except OSError:
            pass  # a side went away (or the proxy was cut): the connection ends here
        finally:
            self._sockets -= pair
            for sock in pair:
                _close(sock)


def _pump(source: gevent.socket.socket, sink: gevent.socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        _close(source)
        _close(sink)


def _close(sock: gevent.socket.socket) -> None:
    try:
        sock.shutdown(2)  # SHUT_RDWR: the peer sees the connection end at once
    except OSError:
        pass
    sock.close()
