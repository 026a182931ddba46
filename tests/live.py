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

    def __init__(self, workdir: Path, store: str, *, node_id: str = "web-1", role: str = "all"):
        self.workdir = workdir
        self.store = store
        (workdir / "live_host.py").write_text(HOST_MODULE)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = self.url + "/livesupport/api/v1"
        env = dict(os.environ, PYTHONPATH=str(workdir), LIVESUPPORT_SECRET_KEY=SECRET)
        command = [sys.executable, "-m", "livesupport", "serve", "--host", "127.0.0.1",
                   "--port", str(self.port), "--store", store, "--node-id", node_id,
                   "--role", role, "live_host:app"]  # fmt: skip
        self.log = open(workdir / f"server-{self.port}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        self._wait_ready()

    def _wait_ready(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()}")
            try:
                if requests.get(self.url + "/livesupport/healthz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.05)  # not listening yet; nothing to wait on but the port
        raise RuntimeError(f"server did not answer within {within} s: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        return (self.workdir / f"server-{self.port}.log").read_text(errors="replace")[-4000:]

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
