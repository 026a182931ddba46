"""The ``livesupport`` command, run for real as a subprocess against SQLite files.

The ``live`` tests start ``livesupport serve`` / ``livesupport demo`` on a free
loopback port and talk HTTP to them, SIGTERM included.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

import livesupport

from .live import free_port

SECRET = "s" * 48
WIDGET_TAG = '<script src="/livesupport/widget.js" async></script>'


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVESUPPORT_")}
    env.update(extra)
    return env


def run(
    *args: str, stdin: str = "", cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "livesupport", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_env(**env),
        timeout=120,
    )


def assert_clean_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Failed with a short message naming ``words`` and no traceback."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) <= 6 and "error: " in lines[-1], result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ls.db'}"


def add_agent(store_url: str, email: str, password: str = "correct horse", *extra: str) -> Any:
    return run(
        "agents", "add", "--store", store_url, "--email", email, "--name", "Ann Agent",
        "--password-stdin", *extra, stdin=password + "\n",
    )  # fmt: skip


# -- commands without a server ------------------------------------------------------


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"livesupport {livesupport.__version__}"


def test_db_upgrade_is_idempotent(tmp_path: Path, store_url: str) -> None:
    for _ in range(2):
        result = run("db", "upgrade", "--store", store_url)
        assert result.returncode == 0, result.stderr
        assert "up to date" in result.stdout
    assert (tmp_path / "ls.db").exists()


@pytest.mark.postgres
def test_db_upgrade_without_a_schema_to_create_in_says_so() -> None:
    from .services import POSTGRES, require_postgres

    require_postgres()
    url = f"{POSTGRES}?options=-csearch_path%3Dno_such_schema"
    result = run("db", "upgrade", "--store", url)
    assert_clean_error(result, "no schema to create the tables in")


def test_agents_add_list_disable(store_url: str) -> None:
    from livesupport.clock import utcnow
    from livesupport.passwords import verify_password
    from livesupport.store import open_store
    from livesupport.store.base import AgentSession

    assert add_agent(store_url, "Ann@Example.com").returncode == 0
    result = add_agent(store_url, "sup@example.com", "another password", "--role", "supervisor")
    assert result.returncode == 0, result.stderr

    listing = run("agents", "list", "--store", store_url)
    assert listing.returncode == 0, listing.stderr
    rows = [line.split() for line in listing.stdout.splitlines()]
    assert rows[0] == ["EMAIL", "NAME", "ROLE", "STATE"]
    assert rows[1] == ["ann@example.com", "Ann", "Agent", "agent", "enabled"]
    assert rows[2] == ["sup@example.com", "Ann", "Agent", "supervisor", "enabled"]

    store = open_store(store_url)
    try:
        agent = store.get_agent_by_email("ann@example.com")
        assert agent is not None
        assert verify_password("correct horse", agent.password_hash)
        now = utcnow()
        store.create_session(AgentSession("tokenhash", agent.id, "csrf", now, now))

        result = run("agents", "disable", "--email", "ANN@example.com", LIVESUPPORT_STORE=store_url)
        assert result.returncode == 0, result.stderr
        assert store.get_session("tokenhash") is None
        disabled = store.get_agent(agent.id)
        assert disabled is not None and disabled.disabled
    finally:
        store.dispose()
    listing = run("agents", "list", LIVESUPPORT_STORE=store_url)
    assert listing.stdout.splitlines()[1].split()[-1] == "disabled"


def test_agents_add_duplicate_email_is_refused(store_url: str) -> None:
    assert add_agent(store_url, "ann@example.com").returncode == 0
    assert_clean_error(add_agent(store_url, "ANN@example.com"), "already exists")


@pytest.mark.parametrize(("password", "words"), [("", "empty"), ("short", "at least 8")])
def test_agents_add_refuses_weak_password(store_url: str, password: str, words: str) -> None:
    assert_clean_error(add_agent(store_url, "ann@example.com", password), words)
    assert len(run("agents", "list", "--store", store_url).stdout.splitlines()) == 1


def test_agents_disable_unknown_email(store_url: str) -> None:
    result = run("agents", "disable", "--store", store_url, "--email", "nobody@example.com")
    assert_clean_error(result, "no agent", "nobody@example.com")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("agents", "list"), ["no store", "LIVESUPPORT_STORE"]),
        (("agents", "list", "--store", "sqlite:/nope"), ["not a store URL"]),
        (("db", "upgrade", "--store", "nosuch://x"), ["nosuch"]),
        (("agents", "add", "--email", "x@example.com", "--name", "X"), ["--password-stdin"]),
        (("serve", "hostsite"), ["MODULE:APP"]),
        (("serve", "no_such_module_xyz:app"), ["no_such_module_xyz"]),
    ],
)
def test_user_mistakes_get_one_line(args: tuple[str, ...], words: list[str]) -> None:
    result = run(*args, LIVESUPPORT_SECRET_KEY=SECRET)
    assert_clean_error(result, *words)
    assert result.returncode == 2


def test_serve_without_secret_key(tmp_path: Path) -> None:
    (tmp_path / "hostsite.py").write_text("def app(environ, start_response):\n    return []\n")
    assert_clean_error(run("serve", "hostsite:app", cwd=tmp_path), "LIVESUPPORT_SECRET_KEY")
    short = run("serve", "--secret-key", "short", "hostsite:app", cwd=tmp_path)
    assert_clean_error(short, "32 bytes")


def test_serve_missing_attribute(tmp_path: Path) -> None:
    (tmp_path / "hostsite.py").write_text("x = 1\n")
    result = run("serve", "hostsite:app", cwd=tmp_path, LIVESUPPORT_SECRET_KEY=SECRET)
    assert_clean_error(result, "no attribute 'app'")
    result = run("serve", "hostsite:x", cwd=tmp_path, LIVESUPPORT_SECRET_KEY=SECRET)
    assert_clean_error(result, "not a WSGI application")


def test_import_patches_nothing_and_starts_no_thread() -> None:
    code = textwrap.dedent(
        """
        import socket, sys, threading
        before = threading.active_count()
        import livesupport, livesupport.cli, livesupport.demo, livesupport.server
        from livesupport import LiveSupport
        assert threading.active_count() == before, threading.enumerate()
        if "gevent.monkey" in sys.modules:
            assert not sys.modules["gevent.monkey"].is_anything_patched()
        assert socket.socket.__module__ == "socket", socket.socket
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# -- the gevent server, in-process -----------------------------------------------------


def _ok_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def _request(client: Any) -> bytes:
    client.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    data = b""
    while not data.endswith(b"ok"):
        chunk = client.recv(4096)
        assert chunk, data
        data += chunk
    return data


def test_server_sets_tcp_nodelay_on_accepted_sockets() -> None:
    import socket

    from gevent import socket as gsocket

    from livesupport.server import LiveSupportServer

    accepted: list[Any] = []
    nodelay: list[int] = []

    class Probe(LiveSupportServer):
        def handle(self, sock: Any, address: Any) -> None:
            accepted.append(sock)
            super().handle(sock, address)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        nodelay.append(accepted[-1].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        return _ok_app(environ, start_response)

    server = Probe(("127.0.0.1", 0), app)
    server.start()
    try:
        with gsocket.create_connection(("127.0.0.1", server.server_port)) as client:
            assert _request(client).startswith(b"HTTP/1.1 200")
            client.shutdown(socket.SHUT_WR)  # ends the keep-alive loop
            assert client.recv(1) == b""
    finally:
        server.stop()
    assert nodelay == [1]


def test_graceful_stop_closes_idle_keepalive_connections_at_once() -> None:
    from gevent import socket as gsocket

    from livesupport.server import LiveSupportServer

    server = LiveSupportServer(("127.0.0.1", 0), _ok_app)
    server.start()
    with gsocket.create_connection(("127.0.0.1", server.server_port)) as client:
        _request(client)  # the connection now idles, kept alive
        started = time.monotonic()
        server.graceful_stop(timeout=20)
        assert time.monotonic() - started < 5
        assert client.recv(1) == b""  # closed by the server


# -- live servers ---------------------------------------------------------------------


class Server:
    """A ``livesupport`` server process, its output captured in files."""

    def __init__(self, args: list[str], cwd: Path, port: int, **env: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.out = (cwd / f"server-{port}.out").open("w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "livesupport", *args, "--port", str(port)],
            cwd=cwd,
            env=_env(**env),
            stdout=self.out,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def output(self) -> str:
        self.out.flush()
        return Path(self.out.name).read_text()

    def wait_healthy(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited:\n{self.output()}"
            try:
                if requests.get(f"{self.url}/livesupport/healthz", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        pytest.fail(f"server not healthy within {within} s:\n{self.output()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.out.close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


HOST_MODULE = """
PAGE = b"<!doctype html><html><body><h1>Host page</h1></BODY></html>"

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(PAGE)))])
    return [PAGE]
"""


@pytest.mark.live
@pytest.mark.slow
def test_serve_injects_widget_and_stops_gracefully(
    tmp_path: Path, store_url: str, servers: list[Server]
) -> None:
    (tmp_path / "hostsite.py").write_text(HOST_MODULE)
    args = ["serve", "--store", store_url, "--node-id", "test-node", "hostsite:app"]
    server = Server(args, tmp_path, free_port(), LIVESUPPORT_SECRET_KEY=SECRET)
    servers.append(server)
    server.wait_healthy()

    page = requests.get(f"{server.url}/some/page", timeout=10)
    assert page.status_code == 200
    assert page.text.count(WIDGET_TAG) == 1
    assert page.text.index(WIDGET_TAG) < page.text.index("</BODY>")

    visitor = requests.Session()
    session = visitor.post(f"{server.url}/livesupport/api/v1/visitor/session", json={}, timeout=10)
    assert session.status_code == 200, session.text
    answer: dict[str, Any] = {}

    def poll() -> None:
        url = f"{server.url}/livesupport/api/v1/visitor/poll?timeout=30"
        started = time.monotonic()
        response = visitor.get(url, timeout=45)
        answer.update(status=response.status_code, body=response.json())
        answer["after"] = time.monotonic() - started

    poller = threading.Thread(target=poll)
    poller.start()
    poller.join(1.0)
    assert poller.is_alive(), f"the poll was not held: {answer}"

    server.proc.send_signal(signal.SIGTERM)
    poller.join(15)
    assert not poller.is_alive(), "the parked poll was not answered on SIGTERM"
    assert answer["status"] == 200
    assert answer["body"]["events"] == []
    assert answer["body"]["cursor"]
    assert answer["after"] < 15
    assert server.proc.wait(15) == 0, server.output()
    assert "listening on " + server.url in server.output()


@pytest.mark.live
def test_serve_an_app_wrapped_already(
    tmp_path: Path, store_url: str, servers: list[Server]
) -> None:
    (tmp_path / "hostsite.py").write_text(HOST_MODULE)
    (tmp_path / "wrapped.py").write_text(
        "from livesupport import LiveSupport\n"
        "from hostsite import app\n"
        f"application = LiveSupport(app, store={store_url!r}, node_id='wrapped-node')\n"
    )
    args = ["serve", "--store", store_url, "--node-id", "other", "wrapped:application"]
    server = Server(args, tmp_path, free_port(), LIVESUPPORT_SECRET_KEY=SECRET)
    servers.append(server)
    server.wait_healthy()

    health = requests.get(f"{server.url}/livesupport/healthz", timeout=10).json()
    assert health["node_id"] == "wrapped-node"
    assert requests.get(f"{server.url}/", timeout=10).text.count(WIDGET_TAG) == 1
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(15) == 0, server.output()
    output = server.output()
    assert "ignoring --node-id\n" in output, output


@pytest.mark.live
@pytest.mark.slow
def test_demo_serves_shop_and_console(tmp_path: Path, servers: list[Server]) -> None:
    data = tmp_path / "demo-data"
    port = free_port()
    server = Server(["demo", "--data", str(data)], tmp_path, port)
    servers.append(server)
    server.wait_healthy()

    output = server.output()
    assert f"{server.url}/livesupport/agent/" in output
    password = (data / "agent-password").read_text().strip()
    assert f"password: {password}" in output
    for path in ("/", "/pricing", "/contact"):
        page = requests.get(server.url + path, timeout=10)
        assert page.status_code == 200
        assert WIDGET_TAG in page.text
    login = requests.post(
        f"{server.url}/livesupport/api/v1/agent/login",
        json={"email": "demo@example.com", "password": password},
        timeout=10,
    )
    assert login.status_code == 200, login.text
    secret_key = (data / "secret-key").read_text()

    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(15) == 0, server.output()
    again = Server(["demo", "--data", str(data)], tmp_path, port)
    servers.append(again)
    again.wait_healthy()
    assert (data / "secret-key").read_text() == secret_key
    assert f"password: {password}" in again.output()
