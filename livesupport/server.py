"""The production server behind ``livesupport serve`` and ``livesupport demo``.

A gevent WSGI server tuned for long-polling: one greenlet per connection (a
parked poll costs kilobytes, not a thread), ``TCP_NODELAY`` on every accepted
socket, a deep listen backlog, the open-file limit raised, and a graceful stop
on SIGTERM/SIGINT that answers the parked polls first so that clients
reconnect to another node at once instead of timing out.

Use it through the command line; call :func:`serve` directly only from a
process that has already run ``gevent.monkey.patch_all()``.
"""

from __future__ import annotations

import gc
import importlib
import os
import signal
import socket
import sys
import time
import types
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import gevent
from gevent.pool import Pool
from gevent.pywsgi import WSGIHandler, WSGIServer, format_date_time

SINGLE_WRITE = 64 * 1024  # bytes: responses up to this go out in one write with their headers
# bytes: a connection's read buffer, held for its life. pywsgi's default (8 KiB) was
# the largest part of a parked poll's memory; request lines and headers are a few
# hundred bytes, and a longer request costs one more recv, not an error.
RFILE_BUFFER = 1024
BACKLOG = 2048  # pending connections; the kernel caps it at net.core.somaxconn
STOP_TIMEOUT = 10.0  # seconds in-flight requests get to finish after SIGTERM
# Seconds a native thread (SQLite's commits run on one) waits at most for the
# GIL while the hub runs Python; the default 5 ms would add up to that to a commit.
SWITCH_INTERVAL = 0.0005
# Allocations before a young collection (the default is 700), young collections per
# middle one, middle ones per full one (3.11 also waits for a quarter of the heap).
GC_THRESHOLDS = (20_000, 20, 50)


class AppNotFound(Exception):
    """``MODULE:APP`` does not name a WSGI application; the message says why."""


def load_app(spec: str) -> Callable[..., Any]:
    """The WSGI callable named by ``MODULE:APP`` (``APP`` may be dotted), importing
    MODULE from the current directory or ``PYTHONPATH``, as gunicorn does.

    Raises :class:`AppNotFound` when the module or attribute does not exist; an
    error inside the module (a missing dependency of its own) propagates as is.
    """
    module_name, colon, attr = spec.partition(":")
    if not colon or not module_name or not attr:
        raise AppNotFound(f"expected MODULE:APP (like mysite.wsgi:application), got {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module_name + ".").startswith(exc.name + "."):
            raise
        raise AppNotFound(
            f"cannot import {module_name!r}: no such module in {os.getcwd()} or PYTHONPATH"
        ) from None
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppNotFound(f"module {module_name!r} has no attribute {attr!r}") from None
    if not callable(target):
        raise AppNotFound(f"{spec} is not a WSGI application (not callable)")
    return target


MAX_HEADER_LINE = 65536  # bytes, as http.client allows
MAX_HEADERS = 100  # as http.client allows
_IGNORED_HEADERS = ("CONTENT_TYPE", "CONTENT_LENGTH")  # in the environ without HTTP_


class _Headers:
    """A request's headers as pywsgi uses them (``get``, ``getheader``, ``typeheader``,
    ``status``, deletion), parsed by :func:`_read_headers` in a few microseconds where
    ``http.client.parse_headers`` runs the email package's feed parser."""

    __slots__ = ("pairs", "status")

    def __init__(self, pairs: list[tuple[str, str]], status: str = "") -> None:
        self.pairs = pairs
        self.status = status

    def get(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for key, value in self.pairs:
            if key.lower() == name:
                return value
        return default

    getheader = get

    @property
    def typeheader(self) -> str | None:
        return self.get("content-type")

    def __delitem__(self, name: str) -> None:
        name = name.lower()
        self.pairs = [(k, v) for k, v in self.pairs if k.lower() != name]


def _read_headers(rfile: Any) -> _Headers:
    pairs: list[tuple[str, str]] = []
    while True:
        line = rfile.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            return _Headers([], "Line too long")
        if line in (b"\r\n", b"\n", b""):
            return _Headers(pairs)
        text = line.decode("latin-1")
        if text[0] in " \t" and pairs:  # an obsolete folded continuation line
            key, value = pairs[-1]
            pairs[-1] = (key, value + " " + text.strip())
            continue
        key, colon, value = text.partition(":")
        if not colon or not key or key != key.strip():
            return _Headers([], "Invalid header line")
        pairs.append((key, value.strip()))
        if len(pairs) > MAX_HEADERS:
            return _Headers([], "Too many headers")


class _Handler(WSGIHandler):
    """Marks its greenlet idle while it waits for the next request on a
    keep-alive connection, so a stopping server can close idle connections at
    once instead of waiting for clients that may never speak again.

    It also trims pywsgi's per-request work, which costs more than a poll's
    answer: headers parsed without the email package, the environ built from
    them directly, the ``Date`` header formatted once a second, and the
    response's headers and body sent in one write (one packet, no wait for a
    delayed ACK) when the body is small.
    """

    server: LiveSupportServer
    headers: Any
    provided_date: Any

    def __init__(self, sock: Any, address: Any, server: Any, rfile: Any = None) -> None:
        if rfile is None:
            rfile = sock.makefile("rb", RFILE_BUFFER)
        super().__init__(sock, address, server, rfile)

    def MessageClass(self, fp: Any, *args: Any) -> _Headers:  # noqa: N802 (pywsgi's name)
        return _read_headers(fp)

    def _headers(self) -> Iterator[tuple[str, str]]:
        for key, value in self.headers.pairs:
            if "_" in key:
                continue  # as pywsgi: such headers could pass for others once in the environ
            name = key.replace("-", "_").upper()
            if name not in _IGNORED_HEADERS:
                yield "HTTP_" + name, value

    def finalize_headers(self) -> None:
        if self.provided_date is None:
            self.response_headers.append((b"Date", _http_date()))
            self.provided_date = True  # appended: the parent must not append another
        super().finalize_headers()

    def _write_with_headers(self, data: bytes) -> None:
        if len(data) > SINGLE_WRITE:
            super()._write_with_headers(data)
            return
        self.headers_sent = True
        self.finalize_headers()
        out = bytearray(b"HTTP/1.1 ")
        out += self.status
        out += b"\r\n"
        for header, value in self.response_headers:
            out += header
            out += b": "
            out += value
            out += b"\r\n"
        out += b"\r\n"
        if data:
            if self.response_use_chunked:
                out += b"%x\r\n" % len(data)
                out += data
                out += b"\r\n"
            else:
                out += data
        self._sendall(out)

    def read_requestline(self) -> str:
        server = self.server
        if server.stopping:
            return ""  # close the connection after the response just sent
        current = gevent.getcurrent()
        server.idle.add(current)
        try:
            line: str = super().read_requestline()
        finally:
            server.idle.discard(current)
        return line

    def log_request(self) -> None:
        # pywsgi formats the access-log line (a datetime and a %-format, about 9% of a
        # poll's CPU) even when it writes it nowhere.
        if self.server.access_log:
            super().log_request()


_date_cache: list[Any] = [0, b""]


def _http_date() -> bytes:
    """``Date`` as pywsgi formats it, recomputed once a second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0], _date_cache[1] = now, format_date_time(now)
    value: bytes = _date_cache[1]
    return value


def _direct(app: Callable[..., Any]) -> Callable[..., Any]:
    """``app``, or its bound ``__call__`` if it is an instance: pywsgi calls the
    application from Python, and a bound method is called within the interpreter's
    frame, where an instance's ``__call__`` goes through C. Each parked poll's
    greenlet saves its C stack while it waits: about 700 bytes less per poll."""
    if isinstance(app, types.FunctionType | types.MethodType):
        return app
    call = getattr(app, "__call__", None)  # noqa: B004 (the method itself is wanted)
    return call if isinstance(call, types.MethodType) else app


class LiveSupportServer(WSGIServer):
    """A :class:`gevent.pywsgi.WSGIServer` for many held connections.

    :param listener: ``(host, port)`` to bind.
    :param application: The WSGI application.
    :param log: Where to write the access log; ``None`` (the default) writes none,
        since a log line per poll costs more than the poll.
    :param backlog: Length of the listen queue.
    """

    handler_class = _Handler

    def __init__(
        self,
        listener: tuple[str, int],
        application: Callable[..., Any],
        *,
        log: TextIO | None = None,
        backlog: int = BACKLOG,
    ) -> None:
        application = _direct(application)
        # An unbounded pool: stop() can only wait for handlers it tracks.
        # SERVER_NAME given so pywsgi skips its reverse-DNS lookup of the address.
        super().__init__(
            listener,
            application,
            backlog=backlog,
            spawn=Pool(),
            log=log,
            environ={"SERVER_NAME": listener[0] or "localhost"},
        )
        self.stopping = False
        self.access_log = log is not None
        self.idle: set[gevent.Greenlet] = set()

    def handle(self, sock: socket.socket, address: Any) -> None:
        # pywsgi sends headers and body in two writes; with Nagle on, a
        # keep-alive response then waits ~40 ms for the client's delayed ACK.
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # not TCP (a Unix socket); nothing to tune
        super().handle(sock, address)

    def graceful_stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop accepting, close idle keep-alive connections, let the requests in
        flight finish for up to ``timeout`` seconds, then kill what remains."""
        self.stopping = True
        self.close()
        self.loop.run_callback(self._close_idle)
        self.stop(timeout=timeout)

    def _close_idle(self) -> None:
        """End the connections parked in their read of a next request. Run by the hub,
        when no handler is running: a greenlet in ``idle`` then is still in that read.
        A kill scheduled from elsewhere (``killall(block=False)``) could land after
        the greenlet had read a request and gone on to handle it, and pywsgi would
        answer that request 500."""
        for greenlet in list(self.idle):
            if greenlet in self.idle and not greenlet.dead:
                greenlet.throw(gevent.GreenletExit)


def raise_open_file_limit() -> int | None:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit: every parked poll holds a
    socket, and the usual soft limit of 1024 would cap a node at about a thousand.
    Returns the new soft limit, or ``None`` where it cannot be changed."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20  # macOS reports "unlimited" but refuses it for files
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def base_url(host: str, port: int) -> str:
    """``http://host:port`` for printing, with IPv6 addresses in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _announce(url: str) -> None:
    print(f"livesupport: listening on {url} (Ctrl-C to stop)", flush=True)


def tune_gc() -> None:
    """Collect cycles less often than the default, tuned for small programs: every
    parked poll keeps a greenlet, a socket and their frames alive, and a collection
    walks them all (a third of the CPU with 2,000 connections open). What the
    process holds once started (modules, the app) is moved out of the collector's
    sight for good."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def serve(
    app: Callable[..., Any],
    host: str,
    port: int,
    *,
    middleware: Any = None,
    log: TextIO | None = None,
    stop_timeout: float = STOP_TIMEOUT,
    on_ready: Callable[[str], None] = _announce,
) -> None:
    """Serve ``app`` on ``host:port`` until SIGTERM or SIGINT, then stop gracefully.

    On the first signal: ``middleware.shutdown()`` answers every parked poll,
    the listener closes, idle connections close, and requests in flight get
    ``stop_timeout`` seconds to finish. A second signal kills what remains.
    Returns when the server has stopped; raises :class:`OSError` if it cannot
    listen.

    :param app: The WSGI application, usually the middleware itself.
    :param middleware: The :class:`~livesupport.LiveSupport` to shut down first
        and close last; ``None`` for a plain WSGI app.
    :param log: Access log destination; ``None`` for none.
    :param on_ready: Called with the base URL once the socket listens.
    """
    raise_open_file_limit()
    sys.setswitchinterval(SWITCH_INTERVAL)
    tune_gc()
    server = LiveSupportServer((host, port), app, log=log)
    server.start()  # binds now, so a busy port fails before the banner
    stopper: list[gevent.Greenlet] = []

    def on_signal(signum: int) -> None:
        if stopper:
            print("livesupport: stopping now", file=sys.stderr, flush=True)
            server.pool.kill(block=False)
            return
        name = signal.Signals(signum).name
        print(f"livesupport: {name}, finishing requests in flight", file=sys.stderr, flush=True)
        stopper.append(gevent.getcurrent())
        if middleware is not None:
            middleware.shutdown()
        server.graceful_stop(stop_timeout)

    handlers = [gevent.signal_handler(s, on_signal, s) for s in (signal.SIGTERM, signal.SIGINT)]
    try:
        on_ready(base_url(host, server.server_port))
        server.serve_forever(stop_timeout=stop_timeout)
        if stopper:
            stopper[0].join()  # serve_forever wakes as soon as the listener closes
    finally:
        for handler in handlers:
            handler.cancel()
        close = getattr(middleware, "close", None)
        if callable(close):
            close()
