"""Just enough HTTP/1.1 for the reliability tests, on gevent sockets.

:func:`read_message` frames one request or response (``Content-Length``,
chunked, or up to the end of the connection) and keeps its exact bytes, so
the fault proxy relays byte for byte and knows where each answer ends.
:class:`HttpClient` is one browser connection: keep-alive, a cookie jar it
may share with its other connections, and an error (never a half answer)
when the connection breaks, so the caller decides whether to retry.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import gevent.socket

MAX_LINE = 65536  # bytes, as http.client allows
NO_BODY = (204, 304)


class Incomplete(ConnectionError):
    """The connection ended before the message did."""


@dataclass(frozen=True)
class Message:
    """One HTTP message as it crossed the wire: ``raw`` is every byte of it."""

    start: str  # the request or status line
    headers: list[tuple[str, str]]
    raw: bytes
    body: bytes  # the payload, chunked framing removed

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    @property
    def method(self) -> str:
        return self.start.split(" ", 1)[0]

    @property
    def target(self) -> str:
        return self.start.split(" ", 2)[1]

    @property
    def status(self) -> int:
        return int(self.start.split(" ", 2)[1])

    @property
    def keep_alive(self) -> bool:
        return (self.header("Connection") or "").lower() != "close"

    def json(self) -> Any:
        return json.loads(self.body)


def read_message(reader: io.BufferedReader, *, response_to: str | None = None) -> Message | None:
    """The next request (or, given the request's method, response) on ``reader``;
    ``None`` if the connection ended cleanly before it began."""
    first = reader.readline(MAX_LINE)
    if not first:
        return None
    raw = [first]
    headers: list[tuple[str, str]] = []
    while True:
        line = reader.readline(MAX_LINE)
        if not line.endswith(b"\n"):
            raise Incomplete("the connection ended in the headers")
        raw.append(line)
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    start = first.decode("latin-1").rstrip("\r\n")
    message = Message(start, headers, b"", b"")
    length = message.header("Content-Length")
    chunked = "chunked" in (message.header("Transfer-Encoding") or "").lower()
    if response_to is not None and (
        response_to == "HEAD" or message.status in NO_BODY or message.status < 200
    ):
        body = b""
    elif chunked:
        body = _read_chunks(reader, raw)
    elif length is not None:
        body = _read_exactly(reader, int(length))
        raw.append(body)
    elif response_to is not None:
        body = reader.read()  # neither length nor chunks: the body ends with the connection
        raw.append(body)
    else:
        body = b""
    return Message(start, headers, b"".join(raw), body)


def _read_exactly(reader: io.BufferedReader, size: int) -> bytes:
    data = reader.read(size)
    if len(data) < size:
        raise Incomplete(f"the connection ended after {len(data)} of {size} bytes")
    return data


def _read_chunks(reader: io.BufferedReader, raw: list[bytes]) -> bytes:
    body = []
    while True:
        line = reader.readline(MAX_LINE)
        if not line.endswith(b"\n"):
            raise Incomplete("the connection ended in a chunk")
        raw.append(line)
        size = int(line.split(b";", 1)[0], 16)
        if size == 0:
            break
        chunk = _read_exactly(reader, size + 2)  # the data and its CRLF
        raw.append(chunk)
        body.append(chunk[:-2])
    while True:  # trailers, up to the blank line
        line = reader.readline(MAX_LINE)
        if not line.endswith(b"\n"):
            raise Incomplete("the connection ended in the trailers")
        raw.append(line)
        if line in (b"\r\n", b"\n"):
            return b"".join(body)


class HttpClient:
    """Requests over one keep-alive connection to ``host:port``, reopened after a failure.

    :param cookies: The cookie jar, by name; pass another client's to share it, as
        the connections of one browser do.
    :param timeout: Seconds a request may take before it counts as failed.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        cookies: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.address = (host, port)
        self.cookies = {} if cookies is None else cookies
        self.headers: dict[str, str] = {}  # sent with every request
        self.timeout = timeout
        self._sock: gevent.socket.socket | None = None
        self._reader: io.BufferedReader | None = None

    def connect(self) -> None:
        """Open the connection now, so that the next request goes out at once."""
        if self._sock is None:
            self._sock = gevent.socket.create_connection(self.address, timeout=self.timeout)
            self._sock.setsockopt(gevent.socket.IPPROTO_TCP, gevent.socket.TCP_NODELAY, 1)
            self._reader = self._sock.makefile("rb")

    def close(self) -> None:
        sock, reader, self._sock, self._reader = self._sock, self._reader, None, None
        if reader is not None:
            reader.close()  # a socket read through a file is closed only once the file is too
        if sock is not None:
            sock.close()

    def request(
        self, method: str, path: str, body: Any = None, *, timeout: float | None = None
    ) -> Message:
        """The answer to ``method path`` with ``body`` as JSON (if not ``None``).
        Raises :class:`ConnectionError` (or :class:`TimeoutError`) if the connection
        broke or stayed silent before the whole answer came: the request may or may
        not have taken effect."""
        payload = b"" if body is None else json.dumps(body).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.address[0]}:{self.address[1]}"]
        if payload:
            lines.append("Content-Type: application/json")
        if payload or method == "POST":
            lines.append(f"Content-Length: {len(payload)}")
        if self.cookies:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
        try:
            self.connect()
            assert self._sock is not None and self._reader is not None
            self._sock.settimeout(timeout or self.timeout)
            self._sock.sendall(data)
            answer = read_message(self._reader, response_to=method)
            if answer is None:
                raise Incomplete("the connection ended before the answer")
        except OSError:  # ConnectionError, TimeoutError, Incomplete: this connection is done
            self.close()
            raise
        self._keep(answer)
        if not answer.keep_alive:
            self.close()
        return answer

    def _keep(self, answer: Message) -> None:
        for name, value in answer.headers:
            if name.lower() != "set-cookie":
                continue
            first, *attributes = (part.strip() for part in value.split(";"))
            key, _, cookie = first.partition("=")
            if any(a.lower().replace(" ", "") == "max-age=0" for a in attributes):
                self.cookies.pop(key, None)
            else:
                self.cookies[key] = cookie
