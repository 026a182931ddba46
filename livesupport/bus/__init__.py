"""Cross-node buses, chosen by URL and found through the ``livesupport.buses`` entry points."""

from __future__ import annotations

from importlib.metadata import entry_points

from .base import Bus, BusUnavailable, Notice

__all__ = ["Bus", "BusUnavailable", "Notice", "open_bus"]


def open_bus(url: str, **options: object) -> Bus:
    """The bus for ``url`` (``local://`` ...), not yet started."""
    scheme = url.partition("://")[0].partition("+")[0].lower()
    if not scheme or "://" not in url:
        raise ValueError(f"not a bus URL: {url!r}")
    found = entry_points(group="livesupport.buses", name=scheme)
    if not found:
        raise ValueError(f"no bus for {scheme!r} URLs (is its package installed?)")
    bus: Bus = next(iter(found)).load()(url, **options)
    return bus
