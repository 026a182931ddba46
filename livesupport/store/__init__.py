"""Durable storage backends, chosen by URL and found through entry points.

``memory://`` (tests), ``sqlite:///path`` (the embedded default) and
``postgresql://user@host:port/db`` (production) ship with the package; a third
party adds a scheme by registering a :class:`~livesupport.store.base.Store`
subclass under the ``livesupport.stores`` entry-point group.
"""

from __future__ import annotations

from ..backends import backend_class
from .base import Store, StoreConflict, StoreError, StoreUnavailable

__all__ = ["Store", "StoreConflict", "StoreError", "StoreUnavailable", "open_store"]


def open_store(url: str, **options: object) -> Store:
    """The store for ``url``, with its schema created or migrated.

    :param url: ``scheme://...``; the scheme names the entry point.
    :param options: Passed on to the backend's constructor.
    """
    store: Store = backend_class("livesupport.stores", url)(url, **options)
    store.upgrade()
    return store
