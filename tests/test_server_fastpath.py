"""The trimmed request path of livesupport's gevent server: its own header parser
and one write per small response, checked over a real socket."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from gevent import socket  # the server runs in this thread's hub: the client must yield to it

from livesupport.server import MAX_HEADERS, LiveSupportServer, _read_headers


def test_headers_are_parsed_as_http_client_does() -> None:
    raw = (
        b"Host: example.com\r\nContent-Type: application/json\r\n"
        b"X-Folded: first\r\n  second\r\nCookie: a=1\r\nCookie: b=2\r\n\r\nBODY"
    )
    stream = io.BytesIO(raw)
    headers = _read_headers(stream)
    assert headers.status == ""
    assert headers.get("host") == "example.com"
    assert headers.typeheader == "application/json"
    assert headers.get("X-FOLDED") == "first second"
    assert headers.get("missing", "x") == "x"
    assert [v for k, v in headers.pairs if k == "Cookie"] == ["a=1", "b=2"]
    assert stream.read() == b"BODY"  # the body is left for wsgi.input
    del headers["cookie"]
    assert headers.get("Cookie") is None


@pytest.mark.parametrize(
    "raw",
    [
        b"No colon here\r\n\r\n",
        b"Bad : space before the colon\r\n\r\n",
        b"X-Long: " + b"a" * 70_000 + b"\r\n\r\n",
        b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS + 1)) + b"\r\n",
    ],
)
def test_malformed_headers_are_refused(raw: bytes) -> None:
    assert _read_headers(io.BytesIO(raw)).status


@pytest.fixture
def server() -> Iterator[tuple[str, int, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(dict(environ))
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"echo:" + body]

    server = LiveSupportServer(("127.0.0.1", 0), app)
    server.start()
    try:
        yield "127.0.0.1", server.server_port, seen
    finally:
        server.stop(timeout=1)


def _exchange(address: tuple[str, int], data: bytes) -> bytes:
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received or not received.endswith((b"ok", b"\r\n\r\n")):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_requests_become_the_usual_environ(server: tuple[str, int, list[dict[str, Any]]]) -> None:
    host, port, seen = server
    request = (
        b"POST /path%20x?q=1 HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 2\r\nX-Custom: v\r\nX_Sneaky: no\r\nCookie: a=1\r\n"
        b"Cookie: b=2\r\n\r\nok"
    )
    answer = _exchange((host, port), request)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"\r\nDate: " in head
    assert body == b"echo:ok"
    environ = seen[0]
    assert environ["PATH_INFO"] == "/path x" and environ["QUERY_STRING"] == "q=1"
    assert environ["CONTENT_TYPE"] == "text/plain" and environ["CONTENT_LENGTH"] == "2"
    assert environ["HTTP_X_CUSTOM"] == "v" and "HTTP_X_SNEAKY" not in environ
    assert environ["HTTP_COOKIE"] == "a=1; b=2"
    assert "HTTP_CONTENT_TYPE" not in environ


def test_a_bad_header_answers_400(server: tuple[str, int, list[dict[str, Any]]]) -> None:
    host, port, seen = server
    answer = _exchange((host, port), b"GET / HTTP/1.1\r\nHost: h\r\nnonsense\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400") and not seen
