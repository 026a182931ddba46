"""Several nodes: in one process (WebTest, a named ``local://`` bus, one SQLite
file) for forced interleavings, and as real processes behind a real nginx
(see ``cluster.py``) for the failure tests."""

from __future__ import annotations

import itertools
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from livesupport import LiveSupport
from tests.conftest import SECRET_KEY, Client, stdlib_host_app
from tests.services import unique_name


class HookedStore:
    """A store that runs a test's hook just before or just after one of its methods,
    once: how a test puts another node's write at an exact point of a request."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._before: dict[str, Callable[[], None]] = {}
        self._after: dict[str, Callable[[], None]] = {}

    def before(self, method: str, hook: Callable[[], None]) -> None:
        self._before[method] = hook

    def after(self, method: str, hook: Callable[[], None]) -> None:
        self._after[method] = hook

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute

        def hooked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                first = self._before.pop(name, None)
                then = self._after.pop(name, None)
            if first is not None:
                first()
            result = attribute(*args, **kwargs)
            if then is not None:
                then()
            return result

        return hooked


class Nodes:
    """``nodes("web-1", role="visitor")``: middlewares sharing one store file and one
    in-process bus, as nodes of a deployment; each has a :class:`HookedStore`."""

    def __init__(self, directory: Path, template: Path) -> None:
        self.store = f"sqlite:///{directory / 'cluster.db'}"
        shutil.copyfile(template, directory / "cluster.db")
        self.bus = f"local://{unique_name('cluster')}"
        self.built: list[LiveSupport] = []
        self.hooks: dict[str, HookedStore] = {}

    def __call__(self, node_id: str, role: str = "all") -> LiveSupport:
        node = LiveSupport(stdlib_host_app, secret_key=SECRET_KEY, store=self.store,
                           bus=self.bus, node_id=node_id, role=role)  # fmt: skip
        self.hooks[node_id] = node.ctx.store = HookedStore(node.store)  # type: ignore[assignment]
        self.built.append(node)
        return node

    def close_all(self) -> None:
        while self.built:
            self.built.pop().close()


@pytest.fixture
def nodes(tmp_path: Path, sqlite_template: Path) -> Iterator[Nodes]:
    factory = Nodes(tmp_path, sqlite_template)
    yield factory
    factory.close_all()


_ids = itertools.count(1)


def moved_visitor(node: LiveSupport, visitor: Client) -> Client:
    """The same browser (its cookies) sending its next request to ``node``."""
    client = Client(node)
    for cookie in visitor.cookiejar:  # as they are, so that the node's answers replace them
        client.cookiejar.set_cookie(cookie)
    return client


def reply(agent: Client, cid: str, body: str) -> dict[str, Any]:
    answer = agent.post_api(f"/agent/conversations/{cid}/messages",
                            {"client_msg_id": f"r-{next(_ids)}", "body": body})  # fmt: skip
    assert answer.status_int == 201, answer.text
    return dict(answer.json["message"])
