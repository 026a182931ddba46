"""Finding a store or bus class by the scheme of its URL, through entry points."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any


def backend_class(group: str, url: str) -> Any:
    """The class registered under ``group`` for ``url``'s scheme (``postgresql+psycopg``
    counts as ``postgresql``). :class:`ValueError` with a readable message otherwise."""
    kind = {"livesupport.stores": "store", "livesupport.buses": "bus"}.get(group, "backend")
    scheme = url.partition("://")[0].partition("+")[0].lower()
    if not scheme or "://" not in url:
        raise ValueError(f"not a {kind} URL: {url!r}")
    found = entry_points(group=group, name=scheme)
    if not found:
        raise ValueError(f"no {kind} for {scheme!r} URLs (is its package installed?)")
    return next(iter(found)).load()
