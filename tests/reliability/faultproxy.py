"""A fault-injecting HTTP proxy: between clients and a node, it loses, holds back and
cuts answers on purpose, so that a test can check what survives.

Each request from the client is framed (:func:`~tests.reliability.http1.read_message`),
then one of these happens to it, drawn by :class:`Faults`:

- ``relay``: forwarded, and the node's answer relayed whole;
- ``drop``: forwarded, the node's answer read and thrown away, the client's
  connection closed. The request took effect but the client cannot know: a
  send answered this way must be retried with the same ``client_msg_id``;
- ``cut``: forwarded, then only the first half of the answer relayed before
  the connection closes;
- ``delay``: relayed whole after ``delay_s`` seconds;
- ``reset``: the connection closed before the request is forwarded: it never
  reached the node.

Draws are deterministic: a keyed hash (the seed) of the request's method, its
path and query with conversation ids left out, its body, and how many
identical requests came before; so a given send (its ``client_msg_id``) meets
the same fate in every run with the same seed, whatever the interleaving. Every
action is counted, in total and per route (:meth:`FaultProxy.counts`).
"""

from __future__ import annotations

import hashlib
import io
import re
from collections import Counter
from dataclasses import dataclass

import gevent
from gevent.socket import socket as Socket

from tests.proxy import GeventThread, TcpProxy

from .http1 import Incomplete, read_message

ACTIONS = ("reset", "drop", "cut", "delay")
_ID_SEGMENT = re.compile(r"/conversations/[^/?]+")
Reader = io.BufferedReader


@dataclass(frozen=True)
class Faults:
    """How often each fault happens, as probabilities per request (they add up).

    :param drop: Forward the request, lose the answer, close the connection.
    :param cut: Forward the request, relay half the answer, close the connection.
    :param delay: Relay the answer ``delay_s`` seconds late.
    :param reset: Close the connection without forwarding the request.
    :param seed: Keys the draws: the same seed, the same fate for the same request.
    """

    drop: float = 0.0
    cut: float = 0.0
    delay: float = 0.0
    delay_s: float = 0.05  # seconds
    reset: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.drop + self.cut + self.delay + self.reset <= 1:
            raise ValueError("the probabilities must add up to at most 1")

    def draw(self, request: bytes, nth: int) -> str:
        """The action for the ``nth`` (from 0) sight of this exact ``request``."""
        digest = hashlib.blake2b(
            nth.to_bytes(8, "big") + request, digest_size=8, key=self.seed.to_bytes(8, "big")
        ).digest()
        chance = int.from_bytes(digest, "big") / 2**64
        for action in ACTIONS:
            chance -= getattr(self, action)
            if chance < 0:
                return action
        return "relay"


class FaultProxy(TcpProxy):
    """A :class:`~tests.proxy.TcpProxy` to an HTTP node that applies :class:`Faults`
    to every request; ``cut()`` and ``restore()`` work as there.

    :param target: The node's ``(host, port)``.
    :param faults: What to do to the requests.
    :param hub: The :class:`~tests.proxy.GeventThread` to run on (the clients' own,
        ideally).
    """

    def __init__(
        self, target: tuple[str, int], faults: Faults, *, hub: GeventThread | None = None
    ) -> None:
        self.faults = faults
        self._counts: Counter[str] = Counter()
        self._seen: Counter[bytes] = Counter()
        super().__init__(target, hub=hub)

    def counts(self) -> Counter[str]:
        """What the proxy did so far: ``requests``, each action, and each of those
        per route (``"drop POST /livesupport/api/v1/visitor/messages"``)."""
        return self.hub.call(lambda: Counter(self._counts))

    def _count(self, action: str, route: str) -> None:
        self._counts[action] += 1
        self._counts[f"{action} {route}"] += 1

    def relay(self, client: Socket, upstream: Socket) -> None:
        from_client, from_node = client.makefile("rb"), upstream.makefile("rb")
        try:
            self._exchanges(client, upstream, from_client, from_node)
        finally:  # a socket read through a file is closed only once the file is too
            from_client.close()
            from_node.close()

    def _exchanges(
        self, client: Socket, upstream: Socket, from_client: Reader, from_node: Reader
    ) -> None:
        while True:
            try:
                request = read_message(from_client)
            except Incomplete:
                return
            if request is None:
                return
            target = _ID_SEGMENT.sub("/conversations/{id}", request.target)
            route = f"{request.method} {target.split('?', 1)[0]}"
            # Without the run's random ids (conversation ids, cookies), a send's key is
            # the same in every run: its fate follows from the seed alone.
            key = f"{request.method} {target}\n".encode() + request.body
            action = self.faults.draw(key, self._seen[key])
            self._seen[key] += 1
            self._count("requests", route)
            if action == "reset":
                self._count(action, route)
                return
            upstream.sendall(request.raw)
            answer = read_message(from_node, response_to=request.method)
            if answer is None:
                raise Incomplete("the node closed the connection without answering")
            self._count(action, route)
            if action == "drop":
                return
            if action == "cut":
                client.sendall(answer.raw[: len(answer.raw) // 2])
                return
            if action == "delay":
                gevent.sleep(self.faults.delay_s)  # the fault itself, not a synchronisation
            client.sendall(answer.raw)
            if not (request.keep_alive and answer.keep_alive):
                return
