"""The one-process bus: notices go straight to this process's subscribers."""

from __future__ import annotations

from .base import Bus, Notice


class LocalBus(Bus):
    """For a single node (the default). ``local://``."""

    def __init__(self, url: str = "local://", **_options: object) -> None:
        super().__init__()
        self.url = url

    def publish(self, channel: str, notice: Notice) -> None:
        self._dispatch(channel, notice)
