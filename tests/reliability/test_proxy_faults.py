"""The fault proxy does what it says, so that the reliability tests measure the node,
not the tool: each fault reaches (or spares) the server as documented, the client
sees what a broken network shows, clean exchanges cross byte for byte (chunked
answers too), the counters add up, and the draws follow the seed alone.

The server is a gevent WSGI app on the proxy's own hub that counts the
requests it receives.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import gevent.pywsgi
import pytest

from tests.proxy import GeventThread

from .faultproxy import FaultProxy, Faults
from .http1 import HttpClient, Incomplete


class Server:
    """Answers ``/n`` with ``n`` bytes (``/stream`` in chunks) and counts what it got."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.wsgi = gevent.pywsgi.WSGIServer(("127.0.0.1", 0), self.app, log=None)
        self.wsgi.start()
        self.port = self.wsgi.server_port

    def app(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ["PATH_INFO"]
        self.received.append(path)
        if path == "/stream":  # no length: pywsgi sends it chunked
            start_response("200 OK", [("Content-Type", "text/plain")])
            return iter([b"one ", b"two ", b"three"])
        body = b"x" * int(path.strip("/") or 0)
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]


@pytest.fixture
def hub() -> Iterator[GeventThread]:
    thread = GeventThread("proxy-faults")
    yield thread
    thread.close()


def through(hub: GeventThread, faults: Faults, *paths: str) -> tuple[list[Any], list[str], Any]:
    """Each of ``paths`` requested through a proxy with ``faults``: what the client got
    (an answer or the error), what the server received, and the proxy's counts."""

    def run() -> tuple[list[Any], list[str], Any]:
        server = Server()
        proxy = FaultProxy(("127.0.0.1", server.port), faults, hub=hub)
        client = HttpClient("127.0.0.1", proxy.port, timeout=5)
        got: list[Any] = []
        try:
            for path in paths:
                started = time.monotonic()
                try:
                    answer = client.request("GET", path)
                    got.append((answer.status, answer.body, time.monotonic() - started))
                except OSError as error:
                    got.append(error)
            return got, server.received, proxy.counts()
        finally:
            client.close()
            proxy.close()
            server.wsgi.stop()

    return hub.call(run)


def test_a_dropped_answer_reached_the_server_but_not_the_client(hub: GeventThread):
    got, received, counts = through(hub, Faults(drop=1.0), "/10", "/20")
    assert received == ["/10", "/20"]  # the retry opened a new connection
    assert all(isinstance(g, Incomplete) for g in got)
    assert counts["drop"] == counts["requests"] == 2
    assert counts["drop GET /10"] == 1


def test_a_reset_request_never_reaches_the_server(hub: GeventThread):
    got, received, counts = through(hub, Faults(reset=1.0), "/10")
    assert received == [] and isinstance(got[0], Incomplete) and counts["reset"] == 1


def test_a_cut_answer_arrives_in_part_then_the_connection_ends(hub: GeventThread):
    got, received, counts = through(hub, Faults(cut=1.0), "/5000")
    assert received == ["/5000"] and isinstance(got[0], Incomplete)
    assert "after" in str(got[0])  # the head came, the body stopped short
    assert counts["cut"] == 1


def test_a_delayed_answer_arrives_whole_and_late(hub: GeventThread):
    got, _, counts = through(hub, Faults(delay=1.0, delay_s=0.2), "/100")
    status, body, seconds = got[0]
    assert (status, body) == (200, b"x" * 100) and seconds >= 0.2
    assert counts["delay"] == 1


def test_without_faults_every_answer_crosses_whole_on_one_connection(hub: GeventThread):
    got, received, counts = through(hub, Faults(), "/0", "/70000", "/stream", "/3")
    assert [(s, b) for s, b, _ in got] == [
        (200, b""),
        (200, b"x" * 70000),
        (200, b"one two three"),
        (200, b"xxx"),
    ]
    assert received == ["/0", "/70000", "/stream", "/3"]
    assert counts["relay"] == counts["requests"] == 4


def test_the_draws_follow_the_seed_and_the_rates():
    faults = Faults(drop=0.2, cut=0.05, reset=0.05, seed=7)
    requests = [b"POST /send\n" + f'{{"client_msg_id": "m-{n}"}}'.encode() for n in range(20000)]
    fates = [faults.draw(r, 0) for r in requests]
    assert fates == [Faults(drop=0.2, cut=0.05, reset=0.05, seed=7).draw(r, 0) for r in requests]
    assert fates != [Faults(drop=0.2, cut=0.05, reset=0.05, seed=8).draw(r, 0) for r in requests]
    assert [faults.draw(r, 1) for r in requests] != fates  # a retry is drawn afresh
    share = {action: fates.count(action) / len(fates) for action in ("drop", "cut", "reset")}
    assert share["drop"] == pytest.approx(0.2, abs=0.015)
    assert share["cut"] == pytest.approx(0.05, abs=0.01)
    assert share["reset"] == pytest.approx(0.05, abs=0.01)
