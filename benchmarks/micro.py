"""The hot path in-process, without sockets: CPU per request of what a message costs.

``python -m benchmarks.micro [--store URL] [-n N] [--profile]`` calls the
middleware as a WSGI server would for a conversation's steady state (visitor
send, the agent's poll answered, agent send, the visitor's poll answered,
and each side's poll of its own echo) and prints microseconds per request of
each kind; ``--profile`` prints cProfile's top functions. Times are CPU time of this
process, so other load on the machine barely moves them. Polls always find
news here, so nothing waits: it measures CPU only.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from .apps import AGENT_PASSWORD, agent_email, cheap_hash, host

API = "/livesupport/api/v1"


class Caller:
    """Builds environs like gevent's pywsgi and keeps cookies."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.jar: dict[str, str] = {}
        self.csrf = ""

    def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        raw = json.dumps(body).encode() if body is not None else b""
        path, _, query = path.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
            "SCRIPT_NAME": "", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1:8000",
            "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(raw), "wsgi.errors": sys.stderr,
            "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
            "wsgi.version": (1, 0),
        }  # fmt: skip
        if raw:
            environ["CONTENT_TYPE"] = "application/json"
            environ["CONTENT_LENGTH"] = str(len(raw))
        if self.jar:
            environ["HTTP_COOKIE"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        if self.csrf:
            environ["HTTP_X_CSRF_TOKEN"] = self.csrf
        seen: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
            seen["status"] = int(status[:3])
            for name, value in headers:
                if name.lower() == "set-cookie":
                    key, _, rest = value.partition("=")
                    self.jar[key] = rest.split(";", 1)[0]
            return lambda data: None

        result = self.app(environ, start_response)
        data = b"".join(result)
        getattr(result, "close", lambda: None)()
        return seen["status"], (json.loads(data) if data[:1] == b"{" else data)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", default="memory://")
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    from livesupport import LiveSupport

    store = args.store
    if store == "sqlite":
        store = f"sqlite:///{tempfile.mkdtemp()}/micro.db"
    # No abuse limits (0): one visitor sends thousands of messages here.
    limits = {"messages_per_minute": 0, "new_visitors_per_ip": 0, "new_conversations_per_ip": 0}
    app = LiveSupport(host, secret_key="m" * 40, store=store, node_id="web-1", **limits)
    app.store.create_agent(agent_email(0), "Agent", "agent", cheap_hash(AGENT_PASSWORD))
    visitor, agent = Caller(app), Caller(app)
    visitor("POST", API + "/visitor/session", {})
    status, sent = visitor("POST", API + "/visitor/messages", {"client_msg_id": "h", "body": "hi"})
    cid = sent["message"]["conversation_id"]
    status, login = agent(
        "POST", API + "/agent/login", {"email": agent_email(0), "password": AGENT_PASSWORD}
    )
    agent.csrf = login["csrf_token"]
    agent("POST", f"{API}/agent/conversations/{cid}/claim")
    cursors = {"visitor": "", "agent": ""}

    def poll(side: str, caller: Caller, *, news: bool = True) -> None:
        path = f"{API}/{side}/poll?timeout=1"
        if cursors[side]:
            path += "&cursor=" + quote(cursors[side], safe="")
        status, page = caller("GET", path)
        assert status == 200 and (page["events"] or not news), page
        cursors[side] = page["cursor"]

    poll("visitor", visitor)
    poll("agent", agent, news=False)  # from now on
    timings: dict[str, float] = {"visitor send": 0, "agent send": 0, "visitor poll": 0,
                                 "agent poll": 0, "host page": 0}  # fmt: skip

    def step(i: int) -> None:
        for name, call in (
            ("visitor send", lambda: visitor("POST", API + "/visitor/messages",
                                             {"client_msg_id": f"v{i}", "body": "hello there"})),
            ("agent poll", lambda: poll("agent", agent)),
            ("visitor poll", lambda: poll("visitor", visitor)),
            ("agent send", lambda: agent("POST", f"{API}/agent/conversations/{cid}/messages",
                                         {"client_msg_id": f"a{i}", "body": "how can I help?"})),
            ("host page", lambda: visitor("GET", "/")),
        ):  # fmt: skip
            began = time.process_time()
            call()
            timings[name] += time.process_time() - began
        poll("visitor", visitor)  # the agent's reply, not timed separately: a second poll
        poll("agent", agent)

    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    for i in range(args.n):
        step(i)
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(35)
    log = app.agent_log
    print(f"agent log: {log.answered} pages answered, {log.refused} refused")
    for name, total in timings.items():
        print(f"{name:>14}: {total / args.n * 1e6:8.1f} µs")
    app.close()


if __name__ == "__main__":
    main()
