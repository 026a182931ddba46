"""Opening buses by URL, without a server: entry points, options, lazy imports, and the
PostgreSQL bus's names and chunks (checked end to end in test_contract.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from livesupport.bus import open_bus
from livesupport.bus.local import LocalBus
from livesupport.bus.postgres import CHUNK_BYTES, MAX_IDENTIFIER, PostgresBus
from livesupport.bus.redis import RedisBus


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("local://", LocalBus),
        ("redis://127.0.0.1:6379/0", RedisBus),
        ("rediss://cache.example:6380/1", RedisBus),
        ("postgresql://chat@db:5432/chat", PostgresBus),
        ("postgres://chat@db/chat", PostgresBus),
        ("postgresql+psycopg://chat@db/chat", PostgresBus),
    ],
)
def test_the_scheme_picks_the_bus_and_opening_connects_to_nothing(url: str, kind: type):
    bus = open_bus(url)  # hosts that do not exist: nothing is contacted before start()
    assert type(bus) is kind and not getattr(bus, "_thread", None)
    bus.close()


def test_an_unknown_scheme_is_a_readable_error():
    with pytest.raises(ValueError, match="no bus for 'amqp' URLs"):
        open_bus("amqp://rabbit/")


def test_channel_prefixes_default_per_redis_database_and_come_from_the_url():
    assert open_bus("redis://h:6379/3").channel_prefix == "livesupport:3:"  # type: ignore[attr-defined]
    bus = open_bus("redis://h:6379/0?channel_prefix=shop:&socket_keepalive=true")
    assert bus.channel_prefix == "shop:"  # type: ignore[attr-defined]
    assert open_bus("postgresql://h/db?channel_prefix=a:").channel_prefix == "a:"  # type: ignore[attr-defined]


def test_importing_the_buses_imports_no_driver():
    code = ("import sys, livesupport.bus.redis, livesupport.bus.postgres; "
            "print('redis' in sys.modules, 'psycopg' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(("module", "extra"), [("redis", "redis"), ("psycopg", "postgres")])
def test_a_missing_driver_names_the_extra_to_install(monkeypatch, module: str, extra: str):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    url = "redis://h/0" if module == "redis" else "postgresql://h/db"
    with pytest.raises(ImportError, match=rf"pip install 'livesupport\[{extra}\]'"):
        open_bus(url)


def test_long_postgres_channel_names_become_digests_that_fit():
    bus = PostgresBus("postgresql://h/db", channel_prefix="a-rather-long-deployment-prefix:")
    long_node = "node." + "n" * 64
    wire = bus._wire(long_node)
    assert len(wire.encode()) <= MAX_IDENTIFIER
    assert wire != bus._wire("node." + "m" * 64)
    assert bus._wire("agents") == "a-rather-long-deployment-prefix:agents"


def test_large_postgres_payloads_are_chunked_on_character_boundaries():
    bus = PostgresBus("postgresql://h/db")
    payload = '{"body": "' + "é中😀" * 5000 + '"}'
    chunks = bus._chunks(payload)
    assert len(chunks) > 1
    assert all(len(c.encode()) < 8000 for c in chunks)
    assert [bus._assemble(c) for c in chunks] == [None] * (len(chunks) - 1) + [payload]
    assert bus._chunks('{"small": 1}') == ['{"small": 1}']
    assert len(payload.encode()) > CHUNK_BYTES


def test_a_chunked_payload_missing_its_beginning_is_dropped():
    bus = PostgresBus("postgresql://h/db")
    chunks = bus._chunks('{"body": "' + "x" * 20_000 + '"}')
    assert [bus._assemble(c) for c in chunks[1:]] == [None] * (len(chunks) - 1)
