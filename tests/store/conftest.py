"""Stores for the contract and concurrency tests.

``store`` runs a test once per backend: ``memory``, ``sqlite`` (a real file
in ``tmp_path``) and ``postgresql`` (a real server, a fresh schema dropped
afterwards; marked ``postgres``). ``sql_url`` gives the SQL backends' URLs
for tests that open several stores on one database; ``sql_store`` one
``SQLStore`` on each.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from livesupport.store import open_store
from livesupport.store.base import Store
from livesupport.store.memory import MemoryStore
from livesupport.store.sql import SQLStore
from tests.services import postgres_schema, require_postgres

SQL_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@contextmanager
def sql_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of ``backend``, removed afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    require_postgres()
    with postgres_schema() as url:
        yield url


@pytest.fixture(params=SQL_BACKENDS)
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL naming an empty SQL database (no schema yet)."""
    with sql_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def sql_store(sql_url: str) -> Iterator[SQLStore]:
    """An ``SQLStore`` (schema created) on each SQL backend in turn."""
    store = open_store(sql_url)
    assert isinstance(store, SQLStore)
    yield store
    store.dispose()


@pytest.fixture(params=["memory", *SQL_BACKENDS])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store of each backend in turn, schema created."""
    if request.param == "memory":
        yield MemoryStore()
        return
    with sql_database(request.param, tmp_path) as url:
        opened = open_store(url)
        try:
            yield opened
        finally:
            opened.dispose()
