"""nchan's side of the exchanges: long-poll pub/sub in nginx, the ceiling a C
server without persistence sets.

A conversation is one channel that both its sides subscribe to (so each also
receives its own messages, as in the other systems); a send is ``POST
/pub/<channel>``; a subscriber's next ``GET /sub/<channel>`` carries the
``Last-Modified`` and ``Etag`` of the previous answer (``If-Modified-Since``,
``If-None-Match``) and is held until the next message or the timeout (304).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import gevent

from .http import Connection
from .loadgen import Deliver, Holder


class Subscriber:
    def __init__(self, port: int, channel: str) -> None:
        self.conn = Connection("127.0.0.1", port)
        self.path = f"/sub/{channel}"
        self.modified = ""
        self.etag = ""

    def headers(self) -> str:
        if not self.modified:
            return ""
        return f"If-Modified-Since: {self.modified}\r\nIf-None-Match: {self.etag}\r\n"


class NchanExchange:
    def __init__(self, port: int, conversations: int) -> None:
        self.conversations = conversations
        run = secrets.token_hex(3)
        self.channels = [f"r{run}x{i}" for i in range(conversations)]
        self.subscribers = [
            (Subscriber(port, ch), Subscriber(port, ch)) for ch in self.channels
        ]  # (visitor, agent)
        self.publishers = [
            (Connection("127.0.0.1", port), Connection("127.0.0.1", port)) for _ in self.channels
        ]
        self.pollers: list[gevent.Greenlet] = []

    def setup(self) -> None:
        pass

    def start(self, deliver: Deliver) -> None:
        def poller(sub: Subscriber, other: str) -> None:
            while True:
                try:
                    response = sub.conn.request("GET", sub.path, headers=sub.headers())
                except Exception:
                    gevent.sleep(0.5)
                    continue
                at = time.monotonic()
                if response.status == 200:
                    sub.modified = response.headers.get("last-modified", "")
                    sub.etag = response.headers.get("etag", "")
                    message_id = response.body.decode()
                    if message_id.split("-", 1)[-1].startswith(other):
                        deliver(message_id, at)

        for visitor, agent in self.subscribers:
            self.pollers += [gevent.spawn(poller, visitor, "a"), gevent.spawn(poller, agent, "v")]
        gevent.sleep(0.5)  # subscribed before the first message

    def send(self, conversation: int, side: str, message_id: str) -> None:
        conn = self.publishers[conversation][0 if side == "visitor" else 1]
        response = conn.request(
            "POST", f"/pub/{self.channels[conversation]}", body=message_id.encode(),
            content_type="text/plain",
        )  # fmt: skip
        if response.status not in (201, 202):
            raise RuntimeError(f"nchan publish: {response.status}")

    def stop(self) -> None:
        gevent.killall(self.pollers)
        for visitor, agent in self.subscribers:
            visitor.conn.close()
            agent.conn.close()
        for a, b in self.publishers:
            a.close()
            b.close()


def capacity(port: int, count: int, timeout: float) -> tuple[float, list[Holder]]:
    """``count`` subscribers on their own channels; nginx answers each with 304 at
    ``nchan_subscriber_timeout`` (started with it set to ``timeout``)."""
    run = secrets.token_hex(3)

    def holder(i: int) -> Holder:
        sub = Subscriber(port, f"cap{run}x{i}")

        def hold(opened: Callable[[], None]) -> bool:
            try:
                sub.conn.write("GET", sub.path)
                opened()
                response = sub.conn.read()
            finally:
                sub.conn.close()
            return response.status in (304, 408)

        return hold

    return 0.0, [holder(i) for i in range(count)]
