"""Requests whose framing lies: what ``fuzz/fuzz_requests.py`` found, kept as tests.

A client can declare a ``Content-Length`` and send fewer bytes, then stop
sending (half-close). The body cannot be read: that is the client's fault, so
the answer is a 400 in the error shape, never a 500 (and no error-level log
with a traceback for every such request).
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from livesupport import LiveSupport
from livesupport.routes import ROUTES

from ..conftest import (
    API,
    PREFIX,
    SECRET_KEY,
    Client,
    call_wsgi,
    new_visitor,
    route_url,
    stdlib_host_app,
)
from ..live import LiveServer
from .conftest import cookie_header, open_session

POST_ROUTES = [r for r in ROUTES if r.method == "POST"]


class GeventInput(io.RawIOBase):
    """``wsgi.input`` as ``livesupport serve`` (gevent) gives it for a client that stopped
    sending early: reading past what arrived raises, as ``gevent.pywsgi.Input`` does."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > len(self.data):
            raise OSError("unexpected end of file while reading request at position 8")
        chunk, self.data = self.data[:size], self.data[size:]
        return chunk


INPUTS = {
    "nothing-sent": lambda: GeventInput(b""),
    "part-sent": lambda: GeventInput(b'{"name":'),
}


@pytest.fixture(scope="module")
def signed_in() -> Iterator[tuple[LiveSupport, dict[str, str]]]:
    """An app, and the headers of a visitor and a signed-in agent at once (each route reads
    the ones it needs), so every route gets as far as reading the body."""
    middleware = LiveSupport(
        stdlib_host_app, secret_key=SECRET_KEY, store="memory://", node_id="web-1"
    )
    try:
        visitor = new_visitor(Client(middleware))
        agent = middleware.store.create_agent("p@example.com", "P", "supervisor", "x")
        session = open_session(middleware, agent.id)
        cookies = {
            **{k: visitor.cookies[k] for k in ("ls_vid", "ls_node")},
            "ls_agent": session.cookie,
        }
        yield middleware, {"HTTP_COOKIE": cookie_header(cookies), "HTTP_X_CSRF_TOKEN": session.csrf}
    finally:
        middleware.close()


@pytest.mark.parametrize("kind", INPUTS)
@pytest.mark.parametrize("route", POST_ROUTES, ids=lambda r: r.endpoint)
def test_a_body_shorter_than_its_length_is_400(
    signed_in: tuple[LiveSupport, dict[str, str]], route: Any, kind: str
) -> None:
    middleware, credentials = signed_in
    environ = {"wsgi.input": INPUTS[kind](), **credentials}
    status, _, body = call_wsgi(
        middleware,
        "POST",
        route_url(route, cid="c_x"),
        CONTENT_TYPE="application/json",
        CONTENT_LENGTH="64",
        **environ,
    )
    assert status == 400, (status, body[:200])
    assert json.loads(body)["error"]["code"] == "bad_request"


@pytest.mark.parametrize("path", ["/visitor/poll", "/agent/session"])
def test_cookie_bytes_that_are_not_utf8_are_no_error(
    signed_in: tuple[LiveSupport, dict[str, str]], path: str
) -> None:
    """A WSGI server hands the Cookie header over decoded as latin-1, whatever its bytes:
    one that is not UTF-8 is an unknown cookie (401), never a 500."""
    middleware, _ = signed_in
    garbage = "ls_vid=\xff\xfe; ls_agent=\xc3(; ls_node=\x80"
    status, _, body = call_wsgi(middleware, "GET", API + path, HTTP_COOKIE=garbage)
    assert status == 401, (status, body[:200])


@pytest.mark.live
def test_a_real_server_answers_a_truncated_body_with_400(tmp_path: Path) -> None:
    try:
        server = LiveServer(tmp_path, f"sqlite:///{tmp_path / 'live.db'}")
    except RuntimeError as exc:
        pytest.skip(f"livesupport serve did not start: {exc}")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
            client.sendall(
                f"POST {PREFIX}/api/v1/visitor/session HTTP/1.1\r\nHost: t\r\n"
                "Content-Type: application/json\r\nContent-Length: 64\r\n\r\n"
                '{"name":'.encode()
            )
            client.shutdown(socket.SHUT_WR)  # no more bytes will come
            answer = b""
            while chunk := client.recv(65536):
                answer += chunk
    finally:
        server.stop()
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.split()[1] == b"400", answer[:300]
    assert "Traceback" not in server.output()
