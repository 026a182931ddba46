"""A lean HTTP/1.1 keep-alive client over raw sockets, for the load generator.

It does only what the benchmark needs, cheaply: one request at a time per
connection, bodies by ``Content-Length`` (or chunked), ``Set-Cookie`` kept in a
small jar. Under gevent (the load generator monkey-patches) every connection
is a greenlet's, so thousands share one core without threads; ``requests`` or
``http.client`` would cost the client more CPU than the server it measures.
"""

from __future__ import annotations

import itertools
import json
import socket
from typing import Any

_SOURCES = itertools.cycle(range(2, 250))


class HTTPError(Exception):
    """The server closed the connection or answered something unparseable."""


class Response:
    __slots__ = ("status", "headers", "body", "cookies")

    def __init__(
        self, status: int, headers: dict[str, str], body: bytes, cookies: dict[str, str]
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.cookies = cookies

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    """One keep-alive connection to ``host:port``.

    Each connection connects from its own loopback source address
    (127.0.0.2-249), so tens of thousands of them never run out of ephemeral ports.
    """

    def __init__(self, host: str, port: int, *, timeout: float = 120.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.sock: socket.socket | None = None
        self.buf = b""

    def connect(self) -> None:
        source = (f"127.0.0.{next(_SOURCES)}", 0) if self.host.startswith("127.") else None
        sock = socket.create_connection(
            (self.host, self.port), timeout=self.timeout, source_address=source
        )
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buf = sock, b""

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    @staticmethod
    def encode(
        host: str, method: str, path: str, headers: str, body: bytes, content_type: str
    ) -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}"
        if body or method == "POST":
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        return head.encode("latin-1") + b"\r\n" + body

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: str = "",
        body: bytes = b"",
        content_type: str = "application/json",
    ) -> Response:
        """Send one request (``headers``: extra ``Name: value\\r\\n`` lines) and read its answer.
        Reconnects once if a kept-alive connection turned out closed before the answer."""
        data = self.encode(self.host, method, path, headers, body, content_type)
        for attempt in (0, 1):
            if self.sock is None:
                self.connect()
            assert self.sock is not None
            try:
                self.sock.sendall(data)
                return self.read()
            except (HTTPError, OSError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def write(self, method: str, path: str, *, headers: str = "", body: bytes = b"") -> None:
        """Send a request without reading the answer (see :meth:`read`)."""
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        data = self.encode(self.host, method, path, headers, body, "application/json")
        self.sock.sendall(data)

    def _fill(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(262144)
        if not chunk:
            raise HTTPError("connection closed by the server")
        self.buf += chunk

    def read(self) -> Response:
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            self._fill()
        head, self.buf = self.buf[:end].decode("latin-1"), self.buf[end + 4 :]
        lines = head.split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        cookies: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "set-cookie":
                pair = value.split(";", 1)[0]
                key, _, val = pair.partition("=")
                cookies[key] = val
            else:
                headers[name] = value
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._chunked()
        else:
            length = int(headers.get("content-length", "0"))
            while len(self.buf) < length:
                self._fill()
            body, self.buf = self.buf[:length], self.buf[length:]
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Response(status, headers, body, cookies)

    def _chunked(self) -> bytes:
        parts = []
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            line, self.buf = self.buf.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            while len(self.buf) < size + 2:
                self._fill()
            parts.append(self.buf[:size])
            self.buf = self.buf[size + 2 :]
            if size == 0:
                return b"".join(parts)


def cookie_header(jar: dict[str, str]) -> str:
    """A ``Cookie:`` line for the jar (empty when it is empty)."""
    if not jar:
        return ""
    return "Cookie: " + "; ".join(f"{k}={v}" for k, v in jar.items()) + "\r\n"
