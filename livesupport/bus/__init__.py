"""Cross-node buses, chosen by URL and found through the ``livesupport.buses`` entry points."""

from __future__ import annotations

from ..backends import backend_class
from .base import Bus, BusUnavailable, Notice

__all__ = ["Bus", "BusUnavailable", "Notice", "open_bus"]


def open_bus(url: str, **options: object) -> Bus:
    """The bus for ``url`` (``local://`` ...), not yet started."""
    bus: Bus = backend_class("livesupport.buses", url)(url, **options)
    return bus
