"""The real services tests use: PostgreSQL and Redis on loopback.

On the project's machines both run on 127.0.0.1 (``.ci/run`` starts them if
they are down). Elsewhere a test that needs one skips with a one-line reason,
except under ``CI=true``, where a missing service fails the test: CI must
not go green by skipping.

PostgreSQL tests each get a fresh, uniquely named schema of the ``test``
database (the URL makes every connection use it as its ``search_path``), so
they can run side by side and leave nothing behind::

    require_postgres()
    with postgres_schema() as url:
        store = open_store(url)
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import pytest

POSTGRES_HOST, POSTGRES_PORT = "127.0.0.1", 5432
POSTGRES = f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/test"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _require(service: str, host: str, port: int) -> None:
    if answers(host, port):
        return
    reason = f"{service} does not answer on {host}:{port}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (required under CI=true)", pytrace=False)
    pytest.skip(reason)


def require_postgres() -> None:
    """Skip the calling test (fail it under ``CI=true``) unless PostgreSQL answers."""
    _require("PostgreSQL", POSTGRES_HOST, POSTGRES_PORT)


def require_redis() -> None:
    """Skip the calling test (fail it under ``CI=true``) unless Redis answers."""
    _require("Redis", REDIS_HOST, REDIS_PORT)


# -- PostgreSQL ------------------------------------------------------------------
def postgres_url() -> str:
    """A store URL for a new, empty schema; drop it with :func:`drop_postgres`."""
    import psycopg

    schema = f"t_{secrets.token_hex(8)}"
    with psycopg.connect(POSTGRES, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    # %3D is "=": libpq's options become "-c search_path=<schema>".
    return f"{POSTGRES}?options=-csearch_path%3D{schema}"


def drop_postgres(url: str) -> None:
    """Drop the schema of a :func:`postgres_url` and everything in it."""
    import psycopg

    schema = _schema_of(url)
    with psycopg.connect(POSTGRES, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A :func:`postgres_url`, dropped when the block ends."""
    url = postgres_url()
    try:
        yield url
    finally:
        drop_postgres(url)


def _schema_of(url: str) -> str:
    options = parse_qs(urlsplit(url).query).get("options", [""])[0]
    prefix = "-csearch_path="
    if not options.startswith(prefix) or not options[len(prefix) :].startswith("t_"):
        raise ValueError(f"not a postgres_url(): {url!r}")
    return options[len(prefix) :]


# -- Redis -------------------------------------------------------------------------
def redis_url() -> str:
    """The Redis server's URL. Redis pub/sub channels are server-wide, whatever the
    database number: isolate a test by prefixing its channels with :func:`unique_name`."""
    return REDIS


def unique_name(prefix: str = "t") -> str:
    """A name no other test run uses, for channels, keys and the like."""
    return f"{prefix}_{secrets.token_hex(8)}"
