"""atheris fuzz target: arbitrary requests through the middleware's request parsing.

Each input is cut by :class:`atheris.FuzzedDataProvider` into a method, a path
(a known route mangled, or raw bytes), a query string, headers (cookies, content
type and length, CSRF token, fetch metadata...) and a body, built into a WSGI
environ with werkzeug's test tools and sent to a :class:`livesupport.LiveSupport`
on the memory store, with ``wsgi.input`` behaving as gevent's server's does (bounded
by ``Content-Length``, raising when the client stopped sending early). Valid
cookies and a valid CSRF token are mixed in at random so the fuzzer gets past
authentication to the body and query parsers.

A crash is: an exception out of the WSGI callable, any 5xx, or an error under
the prefix that is not in the protocol's error shape.

Run it for a bounded time (it is not part of the test suite)::

    .venv/bin/python fuzz/fuzz_requests.py -max_total_time=60

Other libFuzzer options work too (``-runs=N``, ``-jobs=N``, a corpus folder);
``requests.dict`` beside this file is used as the dictionary unless ``-dict=``
names another.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports(include=["livesupport", "werkzeug"]):
    from werkzeug.test import EnvironBuilder

    from livesupport import LiveSupport
    from livesupport.clock import utcnow
    from livesupport.routes import ROUTES
    from livesupport.signing import token_hash
    from livesupport.store.base import AgentSession

PREFIX = "/livesupport"
METHODS = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"]
HEADER_NAMES = [
    "Cookie",
    "Content-Type",
    "Content-Length",
    "X-CSRF-Token",
    "Origin",
    "Sec-Fetch-Site",
    "Host",
    "If-None-Match",
    "Last-Event-ID",
    "User-Agent",
    "Transfer-Encoding",
    "Accept-Encoding",
    "Accept",
]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded",
]


def _host(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [b"<!doctype html><html><body><h1>Host</h1></body></html>"]


def _principals(app: LiveSupport) -> tuple[str, str, str]:
    """A visitor's cookies, an agent's session cookie and its CSRF token."""
    environ = EnvironBuilder(
        PREFIX + "/api/v1/visitor/session", method="POST", json={}
    ).get_environ()
    headers: list[tuple[str, str]] = []
    b"".join(app(environ, lambda status, h, exc_info=None: headers.extend(h)))
    cookies = [v.split(";")[0] for k, v in headers if k.lower() == "set-cookie"]
    agent = app.store.create_agent("fuzz@example.com", "Fuzz", "supervisor", "x")
    token, csrf = "fuzz-session-token-" + "x" * 24, "fuzz-csrf-token"
    app.store.create_session(AgentSession(token_hash(token), agent.id, csrf, utcnow(), utcnow()))
    return "; ".join(cookies), "ls_agent=" + app.ctx.signer.sign("agent", token), csrf


APP = LiveSupport(
    _host,
    secret_key="fuzz-secret-key-0123456789-abcdefghijklmnop",
    store="memory://",
    node_id="fuzz-1",
    messages_per_minute=10**6,
)
APP.shutdown()  # polls answer at once: a parked poll would stall the fuzzer for its timeout
VISITOR_COOKIES, AGENT_COOKIE, CSRF = _principals(APP)
PATHS = [PREFIX + r.path.replace("<id:cid>", "c_x") for r in ROUTES]


class ServerInput(io.RawIOBase):
    """``wsgi.input`` as gevent's server gives it: bounded by ``Content-Length``, and
    raising when the client stopped sending before that many bytes arrived."""

    def __init__(self, body: bytes, content_length: str | None) -> None:
        self.body = body
        try:
            self.remaining = max(0, int(content_length or 0))
        except ValueError:
            self.remaining = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        want = self.remaining if size is None or size < 0 else min(size, self.remaining)
        if want > len(self.body):
            raise OSError("unexpected end of file while reading request")
        chunk, self.body = self.body[:want], self.body[want:]
        self.remaining -= len(chunk)
        return chunk

    def readinto(self, buffer: Any) -> int:
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def _text(fdp: atheris.FuzzedDataProvider, most: int) -> str:
    """Bytes as WSGI carries them: each byte one latin-1 character (PEP 3333)."""
    return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, most)).decode("latin-1")


def _path(fdp: atheris.FuzzedDataProvider) -> str:
    choice = fdp.ConsumeIntInRange(0, 3)
    if choice == 0:
        return fdp.PickValueInList(PATHS)
    if choice == 1:
        return fdp.PickValueInList(PATHS) + _text(fdp, 40)
    if choice == 2:
        return PREFIX + "/" + _text(fdp, 80)
    return "/" + _text(fdp, 80)


def _headers(fdp: atheris.FuzzedDataProvider) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    if fdp.ConsumeBool():
        headers.append(("Cookie", VISITOR_COOKIES))
    if fdp.ConsumeBool():
        headers.append(("Cookie", AGENT_COOKIE))
        if fdp.ConsumeBool():
            headers.append(("X-CSRF-Token", CSRF))
    if fdp.ConsumeBool():
        headers.append(("Content-Type", fdp.PickValueInList(CONTENT_TYPES)))
    for _ in range(fdp.ConsumeIntInRange(0, 6)):
        name = fdp.PickValueInList(HEADER_NAMES) if fdp.ConsumeBool() else _text(fdp, 20)
        headers.append((name, _text(fdp, 120)))
    return headers


def _environ(fdp: atheris.FuzzedDataProvider) -> dict[str, Any] | None:
    method = fdp.PickValueInList(METHODS) if fdp.ConsumeIntInRange(0, 9) else _text(fdp, 10)
    path, query = _path(fdp), _text(fdp, 200)
    headers = _headers(fdp)
    length = _text(fdp, 12) if fdp.ConsumeIntInRange(0, 9) == 0 else None
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        environ = EnvironBuilder(path="/", method=method or "GET", data=body).get_environ()
    except ValueError:
        return None  # werkzeug's test tools refuse it: no server would build it either
    # Set directly: the test builder would quote, validate or re-encode what a server passes on.
    environ["PATH_INFO"] = path
    environ["QUERY_STRING"] = query
    for name, value in headers:
        key = "HTTP_" + name.upper().replace("-", "_")
        if name.lower() == "content-type":
            key = "CONTENT_TYPE"
        elif name.lower() == "content-length":
            key = "CONTENT_LENGTH"
        environ[key] = (
            f"{environ[key]}; {value}" if key == "HTTP_COOKIE" and key in environ else value
        )
    if length is not None:
        environ["CONTENT_LENGTH"] = length
    environ["wsgi.input"] = ServerInput(body, environ.get("CONTENT_LENGTH"))
    return environ


def TestOneInput(data: bytes) -> None:  # noqa: N802 (atheris's name)
    fdp = atheris.FuzzedDataProvider(data)
    environ = _environ(fdp)
    if environ is None:
        return
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"] = int(status.split()[0])
        return lambda chunk: None

    result = APP(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    status = captured["status"]
    if status >= 500:
        raise RuntimeError(f"{status} for {environ['REQUEST_METHOD']!r} {environ['PATH_INFO']!r}")
    path = environ["PATH_INFO"]
    under_prefix = path == PREFIX or path.startswith(PREFIX + "/")
    if under_prefix and status >= 400 and environ["REQUEST_METHOD"] != "HEAD":
        error = json.loads(body)["error"]
        if set(error) != {"code", "message"}:
            raise RuntimeError(f"error not in the protocol's shape: {body[:200]!r}")


def main() -> None:
    logging.disable(logging.WARNING)  # a crash is reported by the status, not by log lines
    argv = list(sys.argv)
    if not any(a.startswith("-dict=") for a in argv):
        argv.append(f"-dict={Path(__file__).with_name('requests.dict')}")
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
