"""What every bus on a server shares: a listener, reconnection and resynchronisation.

A backend (:class:`~livesupport.bus.redis.RedisBus`,
:class:`~livesupport.bus.postgres.PostgresBus`) implements only the wire: open
and close a listening connection, listen to and unlisten from server
channels, receive, send, ping. This class runs the listener on a thread of
its own (a greenlet under ``livesupport serve``, which monkey-patches; a
real thread elsewhere), reconnects with exponential back-off and jitter when
the server goes away, and calls :attr:`~Bus.on_resync` once subscribed again.

Every payload is stamped with the publishing bus's ``origin`` (random per
instance): a publisher hands its notice to its own subscribers at once, in
its own thread, and ignores the copy the server echoes back. So a node's
notices to itself cost no round trip and keep their order with respect to
the node's own writes.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Iterable, Iterator

from .base import Bus, BusUnavailable, Handler, Notice

log = logging.getLogger(__name__)


def backoff(attempt: int, low: float, high: float) -> float:
    """Seconds to wait before reconnection ``attempt`` (0, 1, ...): doubling from ``low``
    up to ``high``, half of it random ("equal jitter"), so that nodes that lost the
    server together do not all come back in the same instant."""
    ceiling = min(high, low * 2**attempt)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class RemoteBus(Bus):
    """The generic part of a bus that talks to a server.

    :param url: The server's URL, as the backend takes it.
    :param channel_prefix: Put before every channel name on the server, so that
        several deployments can share one server.
    :param timeout: Seconds a connection attempt, a send or a ping may take.
    :param reconnect_min: Seconds before the first reconnection attempt.
    :param reconnect_max: Longest wait between reconnection attempts, in seconds.
    :param start_timeout: Seconds :meth:`start` (and a :meth:`subscribe` after it)
        waits for the server; past it the bus carries on unavailable and keeps trying.
    :param tick: Seconds the listener waits for traffic before it looks for new
        subscriptions or a :meth:`close`: how long those take at most.
    """

    #: Seconds without traffic after which the listener checks its connection.
    HEARTBEAT = 10.0

    def __init__(
        self,
        url: str,
        *,
        channel_prefix: str,
        timeout: float = 2.0,
        reconnect_min: float = 0.1,
        reconnect_max: float = 5.0,
        start_timeout: float = 5.0,
        tick: float = 0.25,
    ) -> None:
        super().__init__()
        self.url = url
        self.channel_prefix = channel_prefix
        self.timeout = timeout
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.start_timeout = start_timeout
        self.tick = tick
        self.origin = uuid.uuid4().hex
        #: Successful (re)connections so far; the first one is 1.
        self.connections = 0
        self._available = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = threading.Condition()
        self._listening: set[str] = set()  # server channels of the current connection

    # -- what a backend implements ---------------------------------------------
    def _wire(self, channel: str) -> str:
        """The server's name for ``channel``."""
        return self.channel_prefix + channel

    def _open(self) -> None:
        """Open the listening connection (raise on failure)."""
        raise NotImplementedError

    def _close_listener(self) -> None:
        """Close the listening connection; never raises."""
        raise NotImplementedError

    def _listen(self, wires: Iterable[str]) -> None:
        """Subscribe the listening connection; return once the server confirmed."""
        raise NotImplementedError

    def _unlisten(self, wires: Iterable[str]) -> None:
        raise NotImplementedError

    def _receive(self, timeout: float) -> Iterator[tuple[str, str]]:
        """``(server channel, payload)`` as they arrive, for up to ``timeout`` seconds."""
        raise NotImplementedError

    def _heartbeat(self) -> None:
        """Prove the listening connection alive (raise if it is not)."""

    def _send(self, wire: str, payload: str) -> None:
        """Publish; :class:`BusUnavailable` on failure."""
        raise NotImplementedError

    def _ping_server(self) -> None:
        """A round trip on the publishing connection; :class:`BusUnavailable` on failure."""
        raise NotImplementedError

    def _close_publisher(self) -> None:
        """Release the publishing connections; never raises."""

    def _assemble(self, payload: str) -> str | None:
        """The whole payload, for backends that split large ones; ``None``: not yet."""
        return payload

    # -- the contract ------------------------------------------------------------
    @property
    def available(self) -> bool:
        return self._available

    def subscribe(self, channel: str, handler: Handler) -> None:
        super().subscribe(channel, handler)
        if self._thread is None or not self._available:
            return  # subscribed on (re)connection
        wire = self._wire(channel)
        with self._state:
            self._state.wait_for(
                lambda: wire in self._listening or not self._available or self._stopping.is_set(),
                timeout=self.start_timeout,
            )

    def publish(self, channel: str, notice: Notice) -> None:
        data = {"o": self.origin, "c": channel, "n": notice}
        payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        self._dispatch(channel, notice)
        self._send(self._wire(channel), payload)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="livesupport-bus", daemon=True)
        self._thread.start()
        with self._state:
            if not self._state.wait_for(lambda: self._available, timeout=self.start_timeout):
                log.error(
                    "bus %s: not connected after %s s; still trying", self, self.start_timeout
                )

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(self.tick * 4 + self.timeout)
        self._close_publisher()

    def ping(self) -> None:
        if not self._available:
            raise BusUnavailable("not connected to the bus; reconnecting")
        self._ping_server()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.channel_prefix!r}>"

    # -- the listener ----------------------------------------------------------------
    def _run(self) -> None:
        attempt, lost_at = 0, 0.0
        while not self._stopping.is_set():
            try:
                self._open()
                self._sync_channels()
            except Exception as exc:
                self._close_listener()
                if attempt == 0:
                    log.warning("bus %s unavailable (%s); reconnecting", self, exc)
                self._stopping.wait(backoff(attempt, self.reconnect_min, self.reconnect_max))
                attempt += 1
                continue
            connected_at = time.monotonic()
            if lost_at:
                log.warning("bus %s back after %.1f s", self, connected_at - lost_at)
            self._connected()
            try:
                self._listen_until_lost()
            except Exception as exc:
                if not self._stopping.is_set():
                    log.warning("bus %s connection lost (%s); reconnecting", self, exc)
            finally:
                self._close_listener()
                self._disconnected()
            lost_at = time.monotonic()
            # A connection that dies at once is no reason to hammer the server.
            attempt = 0 if lost_at - connected_at > self.reconnect_max else attempt + 1
            if not self._stopping.is_set():
                self._stopping.wait(backoff(attempt, self.reconnect_min, self.reconnect_max) / 2)

    def _listen_until_lost(self) -> None:
        quiet_since = time.monotonic()
        while not self._stopping.is_set():
            for wire, payload in self._receive(self.tick):
                quiet_since = time.monotonic()
                self._deliver(wire, payload)
            self._sync_channels()
            if time.monotonic() - quiet_since > self.HEARTBEAT:
                self._heartbeat()
                quiet_since = time.monotonic()

    def _sync_channels(self) -> None:
        wanted = {self._wire(c) for c in self.channels()}
        with self._state:
            listening = set(self._listening)
        if wanted - listening:
            self._listen(sorted(wanted - listening))
        if listening - wanted:
            self._unlisten(sorted(listening - wanted))
        with self._state:
            self._listening = wanted
            self._state.notify_all()

    def _connected(self) -> None:
        # Subscribed already, so whatever the resync reads, later notices will follow;
        # available only after it, so that start() returns with the node resynchronised.
        if self.on_resync is not None:
            try:
                self.on_resync()
            except Exception:
                log.exception("bus %s: resync hook failed", self)
        with self._state:
            self._available = True
            self.connections += 1
            self._state.notify_all()

    def _disconnected(self) -> None:
        with self._state:
            was_available, self._available = self._available, False
            self._listening = set()
            self._state.notify_all()
        if self.on_outage is not None and was_available and not self._stopping.is_set():
            try:
                self.on_outage()
            except Exception:
                log.exception("bus %s: outage hook failed", self)

    def _deliver(self, wire: str, payload: str) -> None:
        whole = self._assemble(payload)
        if whole is None:
            return
        try:
            data = json.loads(whole)
            origin, channel, notice = data["o"], data["c"], data["n"]
        except (ValueError, KeyError, TypeError):
            log.warning("bus %s: ignoring a malformed payload on %s", self, wire)
            return
        if origin != self.origin and self._wire(channel) == wire:
            self._dispatch(channel, notice)


__all__ = ["RemoteBus", "BusUnavailable", "backoff"]
