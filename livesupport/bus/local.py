"""The in-process bus: notices go straight to subscribers in this process.

``local://`` (the default) is private to one middleware: right for a single
node. ``local://NAME`` is shared by every middleware of this process that
names it, so several nodes can run in one process (tests, or one process
serving two sites) and still hear each other.
"""

from __future__ import annotations

import threading
import weakref

from .base import Bus, Notice

_named_lock = threading.Lock()
# Buses by name; weak, so a middleware that is dropped without close() leaves nothing.
_named: dict[str, weakref.WeakSet[LocalBus]] = {}


class LocalBus(Bus):
    """Notices dispatched synchronously, in the publisher's thread.

    :param url: ``local://`` (private) or ``local://NAME`` (shared in this process).
    """

    def __init__(self, url: str = "local://", **_options: object) -> None:
        super().__init__()
        self.url = url
        self.name = url.partition("://")[2].strip("/")
        if self.name:
            with _named_lock:
                _named.setdefault(self.name, weakref.WeakSet()).add(self)

    def publish(self, channel: str, notice: Notice) -> None:
        if not self.name:
            self._dispatch(channel, notice)
            return
        with _named_lock:
            peers = list(_named.get(self.name, ()))
        for peer in peers:
            peer._dispatch(channel, notice)

    def close(self) -> None:
        if self.name:
            with _named_lock:
                peers = _named.get(self.name)
                if peers is not None:
                    peers.discard(self)
                    if not peers:
                        del _named[self.name]
