"""Two networks joined by one link that a test can take down: Linux network namespaces.

::

    test process (root namespace)
      |  10.A.B.1 - 10.A.B.2          |  10.A.B.5 - 10.A.B.6
    +-+------------------+          +-+---------------------------+
    | web namespace      |  uplink  | desk namespace              |
    |  visitor node      +----------+  agent node                 |
    |        10.A.B.9    |  (veth)  |  10.A.B.10: PostgreSQL,     |
    +--------------------+          |             Redis           |
                                    +-----------------------------+

Each namespace has a veth pair to the root namespace, so the test (the
visitors' browsers, the agents' consoles) reaches both nodes whatever happens
to the uplink; the uplink is the only path between the two sides. The
namespaces, and with them every veth, are deleted on :meth:`Network.close`.

Needs root and ``ip`` (iproute2); :func:`require_netns` skips (fails under
``CI=true``) without them.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from tests.live import HOST_MODULE, SECRET, LiveServer

from .servers import skip_or_fail


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def require_netns() -> None:
    """Skip the calling test unless it may create network namespaces (root, iproute2)."""
    if os.geteuid() != 0:
        skip_or_fail("network namespaces need root")
    if shutil.which("ip") is None:
        skip_or_fail("the ip command (iproute2) is not installed")
    probe = f"ls-probe-{secrets.token_hex(3)}"
    try:
        ip("netns", "add", probe)
    except RuntimeError as error:
        skip_or_fail(f"cannot create network namespaces: {error}")
    ip("netns", "del", probe)


def unused_subnet() -> str:
    """``10.A.B`` of a /24 that no address or route of the root namespace touches."""
    taken = ip("-4", "route", "show", "table", "all") + ip("-4", "addr")
    for _ in range(100):
        prefix = f"10.{secrets.randbelow(150) + 100}.{secrets.randbelow(256)}"
        if not re.search(rf"\b{re.escape(prefix)}\.", taken):
            return prefix
    raise RuntimeError("no free 10.x.y.0/24 subnet")


class Network:
    """The two namespaces of the picture above, and the uplink between them."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.web, self.desk = f"ls-{tag}-web", f"ls-{tag}-desk"
        net = unused_subnet()
        self.web_address, self.desk_address = f"{net}.2", f"{net}.6"  # from the root namespace
        self.web_uplink, self.desk_uplink = f"{net}.9", f"{net}.10"  # on the uplink
        self._created: list[str] = []
        try:
            for namespace in (self.web, self.desk):
                ip("netns", "add", namespace)
                self._created.append(namespace)
                ip("-n", namespace, "link", "set", "lo", "up")
            for namespace, host, root_side in ((self.web, net + ".1", f"lsw{tag}"),
                                               (self.desk, net + ".5", f"lsd{tag}")):  # fmt: skip
                ip("link", "add", root_side, "type", "veth", "peer", "name", "c0", "netns",
                   namespace)  # fmt: skip
                ip("addr", "add", f"{host}/30", "dev", root_side)
                ip("link", "set", root_side, "up")
                inside = f"{net}.{int(host.rsplit('.', 1)[1]) + 1}/30"
                ip("-n", namespace, "addr", "add", inside, "dev", "c0")
                ip("-n", namespace, "link", "set", "c0", "up")
            ip("-n", self.web, "link", "add", "up0", "type", "veth", "peer", "name", "up0",
               "netns", self.desk)  # fmt: skip
            for namespace, address in ((self.web, self.web_uplink),
                                       (self.desk, self.desk_uplink)):  # fmt: skip
                ip("-n", namespace, "addr", "add", f"{address}/30", "dev", "up0")
                ip("-n", namespace, "link", "set", "up0", "up")
        except BaseException:
            self.close()
            raise

    def cut(self) -> None:
        """Take the uplink down (at the agent network's end): from now on nothing passes,
        connections open across it hang, and new ones fail."""
        ip("-n", self.desk, "link", "set", "up0", "down")

    def heal(self) -> None:
        ip("-n", self.desk, "link", "set", "up0", "up")

    def close(self) -> None:
        """Delete the namespaces (their veths, and the root ends of those, go with them).
        Stop the processes running in them first: a namespace lives as long as they do."""
        while self._created:
            namespace = self._created.pop()
            for pid in ip("netns", "pids", namespace).split():
                try:
                    os.kill(int(pid), 9)
                except ProcessLookupError:
                    pass
            ip("netns", "del", namespace)


class NamespacedNode(LiveServer):
    """A :class:`~tests.live.LiveServer` run inside a network namespace, listening on
    ``host`` (one of that namespace's addresses) at port 8000."""

    def __init__(self, namespace: str, host: str, workdir: Path, store: str, *, node_id: str,
                 role: str, bus: str, env: dict[str, str]) -> None:  # fmt: skip
        self.workdir, self.store, self.node_id = workdir, store, node_id
        (workdir / "live_host.py").write_text(HOST_MODULE)
        self.port = 8000  # the namespace's own ports: all free
        self.url = f"http://{host}:{self.port}"
        self.api = self.url + "/livesupport/api/v1"
        environment = dict(os.environ, PYTHONPATH=str(workdir), LIVESUPPORT_SECRET_KEY=SECRET,
                           **env)  # fmt: skip
        command = ["ip", "netns", "exec", namespace, sys.executable, "-m", "livesupport",
                   "serve", "--host", host, "--port", str(self.port), "--store", store,
                   "--node-id", node_id, "--role", role, "--bus", bus, "live_host:app"]  # fmt: skip
        self.log_path = workdir / f"server-{node_id}.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(command, cwd=workdir, env=environment, stdout=self.log,
                                        stderr=subprocess.STDOUT)  # fmt: skip
