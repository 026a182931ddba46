"""A real ``livesupport serve`` process on a free loopback port, for live tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

HOST_MODULE = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [b"<!doctype html><html><body><h1>Shop</h1></body></html>"]
"""
SECRET = "live-test-secret-key-0123456789abcdefghijklmnop"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """``livesupport serve`` in a child process; ``url`` once it answers."""

    def __init__(
        self,
        workdir: Path,
        store: str,
        *,
        node_id: str = "web-1",
        role: str = "all",
        host_module: str = HOST_MODULE,
        env: dict[str, str] | None = None,
        bus: str | None = None,
        port: int | None = None,
        wait: bool = True,
    ):
        """``host_module``: the source of the host application's module (``app`` in it);
        ``env``: more environment variables, such as ``LIVESUPPORT_WIDGET_COLOR``;
        ``bus``: the bus URL (default: the server's, ``local://``); ``port``: a given
        port rather than a free one (to restart a node where it was); ``wait=False``
        returns at once (call :meth:`wait_ready`), so several nodes can start together."""
        self.workdir = workdir
        self.store = store
        self.node_id = node_id
        (workdir / "live_host.py").write_text(host_module)
        self.port = free_port() if port is None else port
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = self.url + "/livesupport/api/v1"
        env = {
            # Every client of a live test is 127.0.0.1: the per-address limits would count
            # them all as one. Tests of those limits set them (env, or the environment).
            "LIVESUPPORT_NEW_VISITORS_PER_IP": "0",
            "LIVESUPPORT_NEW_CONVERSATIONS_PER_IP": "0",
            **os.environ,
            "PYTHONPATH": str(workdir),
            "LIVESUPPORT_SECRET_KEY": SECRET,
            **(env or {}),
        }
        command = [sys.executable, "-m", "livesupport", "serve", "--host", "127.0.0.1",
                   "--port", str(self.port), "--store", store, "--node-id", node_id,
                   "--role", role, *(["--bus", bus] if bus else []), "live_host:app"]  # fmt: skip
        self.log_path = workdir / f"server-{node_id}-{self.port}.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        if wait:
            self.wait_ready()

    def wait_ready(self, within: float = 30.0) -> None:
        """Return once ``/healthz`` answers 200 (store and bus connected)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()}")
            try:
                if requests.get(self.url + "/livesupport/healthz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)  # not listening yet; nothing to wait on but the port
        raise RuntimeError(f"server did not answer within {within} s: {self.output()}")

    _wait_ready = wait_ready  # the name earlier tests used

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """SIGKILL: the node dies at once, without answering its parked polls."""
        self.stop(signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
        finally:
            self.log.close()
