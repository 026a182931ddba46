"""The python-socketio baseline's side of the exchanges: Engine.IO 4 long-polling,
spoken over the same raw-socket client.

A session is a handshake ``GET`` (``0{"sid": ...}``), the namespace connect
``POST 40``, and then ``GET``s that the server holds until it has packets
(``42["msg", {...}]``, separated by ``\\x1e``) or a ping (``2``, answered by
``POST 3``). Each conversation is a room with its visitor and its agent in it;
with ``echo`` the server sends a message to the whole room, the sender
included, as livesupport does for the sender's other tabs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import gevent

from .http import Connection
from .loadgen import Deliver, Holder, run_all

PATH = "/socket.io/?EIO=4&transport=polling"
TEXT = "text/plain;charset=UTF-8"


class Client:
    def __init__(self, port: int) -> None:
        self.send_conn = Connection("127.0.0.1", port)
        self.poll_conn = Connection("127.0.0.1", port)
        self.sid = ""

    def url(self) -> str:
        return f"{PATH}&sid={self.sid}"

    def post(self, payload: str, conn: Connection | None = None) -> None:
        response = (conn or self.send_conn).request(
            "POST", self.url(), body=payload.encode(), content_type=TEXT
        )
        if response.status != 200:
            raise RuntimeError(f"socket.io POST: {response.status} {response.body[:200]!r}")

    def get(self) -> list[str]:
        response = self.poll_conn.request("GET", self.url())
        if response.status != 200:
            raise RuntimeError(f"socket.io GET: {response.status} {response.body[:200]!r}")
        return response.body.decode().split("\x1e")

    def connect(self) -> None:
        response = self.poll_conn.request("GET", PATH)
        self.sid = json.loads(response.body.decode()[1:])["sid"]
        self.post("40")
        packets = self.get()
        assert any(p.startswith("40") for p in packets), packets

    def emit(self, event: str, data: Any, conn: Connection | None = None) -> None:
        self.post("42" + json.dumps([event, data], separators=(",", ":")), conn)


class SocketIOExchange:
    def __init__(self, port: int, conversations: int, agents: int) -> None:
        self.conversations = conversations
        self.visitors = [Client(port) for _ in range(conversations)]
        self.agents = [Client(port) for _ in range(agents)]
        self.agent_send = [Connection("127.0.0.1", port) for _ in range(conversations)]
        self.pollers: list[gevent.Greenlet] = []

    def agent_of(self, conversation: int) -> Client:
        return self.agents[conversation % len(self.agents)]

    def setup(self) -> None:
        run_all([c.connect for c in [*self.visitors, *self.agents]])
        for i, visitor in enumerate(self.visitors):
            visitor.emit("join", {"room": f"r{i}"})
            self.agent_of(i).emit("join", {"room": f"r{i}"}, self.agent_send[i])

    def start(self, deliver: Deliver) -> None:
        def poller(client: Client, other: str) -> None:
            while True:
                try:
                    packets = client.get()
                except Exception:
                    gevent.sleep(0.5)
                    continue
                at = time.monotonic()
                for packet in packets:
                    if packet.startswith("42"):
                        message_id = json.loads(packet[2:])[1]["id"]
                        if message_id.split("-", 1)[-1].startswith(other):
                            deliver(message_id, at)
                    elif packet == "2":
                        client.post("3", client.send_conn)

        self.pollers = [gevent.spawn(poller, v, "a") for v in self.visitors]
        self.pollers += [gevent.spawn(poller, a, "v") for a in self.agents]

    def send(self, conversation: int, side: str, message_id: str) -> None:
        data = {"room": f"r{conversation}", "id": message_id, "body": f"message {message_id}"}
        if side == "visitor":
            self.visitors[conversation].emit("msg", data)
        else:
            self.agent_of(conversation).emit("msg", data, self.agent_send[conversation])

    def stop(self) -> None:
        gevent.killall(self.pollers)
        for client in [*self.visitors, *self.agents]:
            client.send_conn.close()
            client.poll_conn.close()
        for conn in self.agent_send:
            conn.close()


def capacity(port: int, count: int, timeout: float) -> tuple[float, list[Holder]]:
    """``count`` connected clients; each holder holds a GET until the server's ping
    (started with ``ping_interval`` = ``timeout``)."""
    clients = [Client(port) for _ in range(count)]
    began = time.monotonic()

    def connect(client: Client) -> None:
        client.connect()
        client.send_conn.close()  # only the held GET stays open: one descriptor per client

    run_all([lambda c=c: connect(c) for c in clients], 100)
    connect_s = time.monotonic() - began

    def holder(client: Client) -> Holder:
        def hold(opened: Callable[[], None]) -> bool:
            try:
                client.poll_conn.write("GET", client.url())
                opened()
                response = client.poll_conn.read()
            finally:
                client.poll_conn.close()
            return response.status == 200 and response.body.split(b"\x1e")[0] == b"2"

        return hold

    return connect_s, [holder(c) for c in clients]
