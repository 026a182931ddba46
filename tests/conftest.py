"""Fixtures for the WSGI-level tests: a stdlib host application, the middleware
around it on each store backend, and WebTest clients for visitors and agents.

Every fixture here runs in-process through WebTest (no sockets). The
``store_kind`` parameter runs each protocol test twice: on ``memory://`` (fast)
and on SQLite in a real file under ``tmp_path``.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import re
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
import webtest  # its WebOb imports the deprecated cgi module: filtered in pyproject.toml

from livesupport import LiveSupport
from livesupport.passwords import hash_password
from livesupport.store import open_store

SECRET_KEY = "wsgi-test-secret-key-0123456789-abcdefghijklmnop"  # 48 chars
NODE_ID = "web-1"
PREFIX = "/livesupport"
API = PREFIX + "/api/v1"
WIDGET_TAG = b'<script src="/livesupport/widget.js" async></script>'
AGENT_PASSWORD = "correct horse battery staple"
STORE_KINDS = ("memory", "sqlite")

# -- the host application ------------------------------------------------------

HOST_HTML = (
    b"<!doctype html><html><head><title>Shop</title></head><body><h1>Shop</h1></body></html>"
)
HOST_JSON = b'{"products": [1, 2, 3], "note": "</body>"}'
HOST_GZIP_HTML = gzip.compress(b"<html><body>compressed</body></html>", mtime=0)
HOST_STREAM_CHUNKS = (b"chunk-1\n", b"chunk-2\n", b"chunk-3\n")
HOST_NOT_FOUND = b"no such page"


def _stream() -> Iterator[bytes]:
    yield from HOST_STREAM_CHUNKS


def stdlib_host_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
    """A tiny site: ``/`` (HTML), ``/data.json``, ``/stream`` (text/plain, a generator),
    ``/gzip`` (gzip-encoded HTML) and a 404 for everything else."""
    path = environ.get("PATH_INFO", "")
    if path in ("/", "/index.html"):
        body, headers = HOST_HTML, [("Content-Type", "text/html; charset=utf-8")]
    elif path == "/data.json":
        body, headers = HOST_JSON, [("Content-Type", "application/json")]
    elif path == "/gzip":
        headers = [("Content-Type", "text/html"), ("Content-Encoding", "gzip")]
        body = HOST_GZIP_HTML
    elif path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Host", "stream")])
        return _stream()
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("X-Host", "404")])
        return [HOST_NOT_FOUND]
    headers += [("Content-Length", str(len(body))), ("X-Host", "yes")]
    start_response("200 OK", headers)
    return [body]


@pytest.fixture(scope="session")
def host_app() -> Callable[..., Any]:
    return stdlib_host_app


# -- the middleware on each backend ----------------------------------------------


@pytest.fixture(scope="module", params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """``memory`` or ``sqlite``: every test using an app runs on both."""
    return str(request.param)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file with the schema already migrated, copied for each app: running
    the migrations for every test would dominate the suite's time."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    open_store(f"sqlite:///{path}").dispose()
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


class AppFactory:
    """Builds :class:`LiveSupport` instances around ``host`` and closes them all at the end.

    Each SQLite app gets its own file in ``directory`` (``ls.db``, then ``ls2.db``...).
    """

    def __init__(
        self,
        host: Callable[..., Any],
        kind: str,
        directory: Path,
        template: Path | None = None,
    ) -> None:
        self.host = host
        self.kind = kind
        self.directory = directory
        self.template = template
        self.built: list[LiveSupport] = []
        self._names = itertools.count(1)

    def store_url(self) -> str:
        if self.kind == "memory":
            return "memory://"
        n = next(self._names)
        path = self.directory / ("ls.db" if n == 1 else f"ls{n}.db")
        if self.template is not None:
            shutil.copyfile(self.template, path)
        return f"sqlite:///{path}"

    def __call__(self, **overrides: Any) -> LiveSupport:
        settings: dict[str, Any] = {"secret_key": SECRET_KEY, "node_id": NODE_ID}
        settings.update(overrides)
        settings.setdefault("store", self.store_url())
        host = settings.pop("host", self.host)
        middleware = LiveSupport(host, **settings)
        self.built.append(middleware)
        return middleware

    def close_all(self) -> None:
        while self.built:
            self.built.pop().close()


@pytest.fixture
def make_app(
    host_app: Callable[..., Any], store_kind: str, tmp_path: Path, sqlite_template: Path
) -> Iterator[AppFactory]:
    """``make_app(**overrides)``: a LiveSupport around ``host_app``, closed after the test.
    ``host=`` replaces the host application; ``store=`` the backend's URL (by default
    ``memory://`` or ``sqlite:///{tmp_path}/ls.db``)."""
    factory = AppFactory(host_app, store_kind, tmp_path, sqlite_template)
    yield factory
    factory.close_all()


@pytest.fixture(scope="module")
def make_module_app(
    host_app: Callable[..., Any],
    store_kind: str,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
) -> Iterator[AppFactory]:
    """Like ``make_app``, for module-scoped fixtures (closed after the module)."""
    factory = AppFactory(host_app, store_kind, tmp_path_factory.mktemp("ls"), sqlite_template)
    yield factory
    factory.close_all()


# -- routes -----------------------------------------------------------------------

_PARAM = re.compile(r"<(?:\w+:)?(\w+)>")


def route_url(route: Any, **params: str) -> str:
    """The full URL path of a :class:`~livesupport.routes.Route`, its ``<...>`` filled in."""
    return PREFIX + _PARAM.sub(lambda m: params[m.group(1)], route.path)


def openapi_path(route: Any) -> str:
    """The route's path as the OpenAPI document spells it (``{cid}``)."""
    return _PARAM.sub(r"{\1}", route.path)


# -- clients ----------------------------------------------------------------------


class Client(webtest.TestApp):
    """A WebTest app with its own cookie jar and a few protocol shortcuts.

    ``session`` is a visitor's session answer; ``csrf`` and ``agent`` an agent's login.
    Every shortcut allows error statuses: tests assert the status themselves.
    """

    session: dict[str, Any]
    csrf: str = ""
    agent: dict[str, Any]

    @property
    def middleware(self) -> LiveSupport:
        return self.app  # type: ignore[no-any-return]

    def get_api(self, path: str, params: Any = None, **kw: Any) -> webtest.TestResponse:
        return self.get(API + path, params=params, expect_errors=True, **kw)

    def post_api(
        self,
        path: str,
        body: Any = None,
        *,
        csrf: bool = True,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> webtest.TestResponse:
        """POST ``body`` as JSON (none when ``None``), with the CSRF token if known."""
        headers = dict(headers or {})
        if csrf and self.csrf:
            headers.setdefault("X-CSRF-Token", self.csrf)
        if body is None:
            return self.post(API + path, headers=headers, expect_errors=True, **kw)
        return self.post_json(API + path, body, headers=headers, expect_errors=True, **kw)

    def post_raw(
        self,
        path: str,
        data: bytes,
        content_type: str | None = "application/json",
        *,
        csrf: bool = True,
        headers: dict[str, str] | None = None,
    ) -> webtest.TestResponse:
        """POST exact bytes to ``path`` (under the prefix) with exactly this content type."""
        headers = dict(headers or {})
        if csrf and self.csrf:
            headers.setdefault("X-CSRF-Token", self.csrf)
        if content_type is not None:
            headers["Content-Type"] = content_type
        request = webtest.TestRequest.blank(PREFIX + path, method="POST", headers=headers)
        request.body = data
        if content_type is None:
            request.environ.pop("CONTENT_TYPE", None)
        return self.do_request(request, status=None, expect_errors=True)

    # -- visitor shortcuts --------------------------------------------------
    def send(self, body: str, cmid: str | None = None) -> webtest.TestResponse:
        cmid = cmid or f"m-{next(_ids)}"
        return self.post_api("/visitor/messages", {"client_msg_id": cmid, "body": body})

    def poll(self, cursor: str | None = None, timeout: float = 1, side: str = "visitor") -> Any:
        params: dict[str, Any] = {"timeout": timeout}
        if cursor is not None:
            params["cursor"] = cursor
        response = self.get_api(f"/{side}/poll", params)
        assert response.status_int == 200, response.text
        return response.json


_ids = itertools.count(1)


def sharing_app(middleware: Any) -> Client:
    """A new client on the same WSGI app, with an empty cookie jar."""
    return Client(middleware)


def new_visitor(app: webtest.TestApp, **session_body: Any) -> Client:
    """A new visitor on ``app``'s WSGI app: its own cookies, a session already open."""
    client = sharing_app(app.app)
    response = client.post_json(API + "/visitor/session", session_body)
    client.session = response.json
    return client


@lru_cache(maxsize=1)
def _password_hash() -> str:
    return hash_password(AGENT_PASSWORD)  # Argon2: about 60 ms, so hashed once


def create_agent(middleware: Any, role: str = "agent", name: str | None = None) -> Any:
    """A stored agent (not signed in) with the password :data:`AGENT_PASSWORD`."""
    n = next(_ids)
    return middleware.store.create_agent(
        f"agent{n}@example.com", name or f"Agent {n}", role, _password_hash()
    )


def login(middleware: Any, email: str, password: str = AGENT_PASSWORD) -> Client:
    client = sharing_app(middleware)
    response = client.post_json(API + "/agent/login", {"email": email, "password": password})
    client.csrf = response.json["csrf_token"]
    client.agent = response.json["agent"]
    return client


def new_agent(
    app: webtest.TestApp, role: str = "agent", name: str | None = None
) -> tuple[Client, str, dict[str, Any]]:
    """Create an agent in the store and sign it in: ``(client, csrf_token, agent_json)``."""
    stored = create_agent(app.app, role, name)
    client = login(app.app, stored.email)
    return client, client.csrf, client.agent


@pytest.fixture
def app(make_app: AppFactory) -> Client:
    """A WebTest client on a fresh middleware (memory or SQLite)."""
    return Client(make_app())


@pytest.fixture(scope="module")
def shared_app(make_module_app: AppFactory) -> Client:
    """One middleware for a whole module (per backend): for tests that only read, or
    that each work with their own new visitor and expect nothing else to change."""
    return Client(make_module_app())


@pytest.fixture
def visitor() -> Callable[..., Client]:
    """``visitor(app, **session_body)``: a new visitor client with its session open."""
    return new_visitor


@pytest.fixture
def agent() -> Callable[..., tuple[Client, str, dict[str, Any]]]:
    """``agent(app, role="agent")``: ``(client, csrf_token, agent_json)`` of a new agent."""
    return new_agent


def call_wsgi(
    application: Callable[..., Any], method: str, path: str, query: str = "", **environ: Any
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Call ``application`` as a server would, with a hand-made environ (for bytes WebOb
    cannot build, such as non-UTF-8 ``PATH_INFO``): ``(status, headers, body)``, the body
    including what was given to the legacy ``write()`` callable."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "wsgi.input": io.BytesIO(b""),
        "CONTENT_LENGTH": "0",
    }
    env.update(environ)
    setup_testing_defaults(env)
    captured: dict[str, Any] = {}
    written: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"], captured["headers"] = status, list(headers)
        return written.append

    result = application(env, start_response)
    try:
        chunks = list(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return int(captured["status"].split()[0]), captured["headers"], b"".join(written + chunks)


# -- assertions -------------------------------------------------------------------

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}


def assert_error(response: webtest.TestResponse, status: int | tuple[int, ...]) -> None:
    """``response`` is one of ``status`` in exactly the protocol's error shape."""
    allowed = status if isinstance(status, tuple) else (status,)
    assert response.status_int in allowed, (response.status, response.text[:500])
    assert response.content_type == "application/json", response.headers
    data = json.loads(response.body)
    assert set(data) == {"error"}, data
    assert set(data["error"]) == {"code", "message"}, data
    assert data["error"]["code"] == ERROR_CODES[response.status_int], data
    assert isinstance(data["error"]["message"], str) and data["error"]["message"], data


def set_cookies(response: webtest.TestResponse) -> dict[str, dict[str, str]]:
    """The ``Set-Cookie`` headers by cookie name: ``{"value": ..., "<attr lower>": ...}``."""
    found: dict[str, dict[str, str]] = {}
    for header in response.headers.getall("Set-Cookie"):
        first, *attributes = (part.strip() for part in header.split(";"))
        name, _, value = first.partition("=")
        cookie = {"value": value}
        for attribute in attributes:
            key, _, val = attribute.partition("=")
            cookie[key.lower()] = val
        found[name] = cookie
    return found
