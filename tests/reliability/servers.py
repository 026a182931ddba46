"""Servers of a test's own, which it may stop, crash and restart at will.

The machine's PostgreSQL and Redis serve every other test: stopping them would
fail whatever runs beside. These run from a new directory, on a port (or in a
network namespace) of their own, and are removed afterwards.

PostgreSQL refuses to run as root; as root the cluster belongs to the
``postgres`` user and its commands run through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.live import free_port


def skip_or_fail(reason: str) -> None:
    """Skip the calling test; under ``CI=true`` fail it (CI must not go green by skipping)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (required under CI=true)", pytrace=False)
    pytest.skip(reason)


def postgres_bindir() -> Path:
    """The directory of ``initdb`` and ``pg_ctl`` (Debian keeps them off the PATH)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parts[-3]))  # fmt: skip
    if not versions:
        skip_or_fail("PostgreSQL's server programs (initdb, pg_ctl) are not installed")
    return Path(versions[-1]).parent


class PrivatePostgres:
    """A PostgreSQL cluster in a new directory, trust authentication, database ``postgres``.

    :param netns: A network namespace to run it in (its addresses are that namespace's).
    :param listen: ``listen_addresses``.
    :param port: Its port; a free one by default.

    ``stop("immediate")`` is a crash (no checkpoint; recovery replays the WAL at the
    next start), as when the database machine loses power or is killed.
    """

    def __init__(
        self, *, netns: str | None = None, listen: str = "127.0.0.1", port: int | None = None
    ) -> None:
        self.bindir = postgres_bindir()
        self.netns, self.listen = netns, listen
        self.port = free_port() if port is None else port
        self.owner = "postgres" if os.geteuid() == 0 else None
        if self.owner is not None:
            try:
                pwd.getpwnam(self.owner)
            except KeyError:
                skip_or_fail("running as root without a postgres user to run PostgreSQL as")
        self.directory = Path(tempfile.mkdtemp(prefix="ls-pg-"))  # /tmp: reachable by its owner
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        if self.owner is not None:
            shutil.chown(self.directory, self.owner)
        try:
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                      "-E", "UTF8", "--no-sync")  # fmt: skip
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.write("host all all 0.0.0.0/0 trust\n")  # the namespaces' own addresses
            self.start()
        except BaseException:
            self.close()
            raise

    def url(self, host: str = "127.0.0.1", database: str = "postgres") -> str:
        return f"postgresql://postgres@{host}:{self.port}/{database}"

    def create_database(self, name: str, host: str = "127.0.0.1") -> str:
        """A new, empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url(host), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(host, name)

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.bindir / program), *args]
        if self.owner is not None:
            command = ["runuser", "-u", self.owner, "--", *command]
        if self.netns is not None:
            command = ["ip", "netns", "exec", self.netns, *command]
        return command

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(self._command(program, *args), capture_output=True, text=True,
                              timeout=60, check=False)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args)}: {done.stdout}{done.stderr}"
                               f"{self.server_log()}")  # fmt: skip

    def start(self) -> None:
        """Start it and return once it accepts connections (after any crash recovery)."""
        settings = (f"-c listen_addresses={self.listen} -c port={self.port} "
                    f"-c unix_socket_directories={self.directory}")  # fmt: skip
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", "60", "-o", settings)  # fmt: skip

    def stop(self, mode: str = "fast") -> float:
        """``pg_ctl stop -m mode``; when it was done (``time.monotonic()``)."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60")
        return time.monotonic()

    def running(self) -> bool:
        status = subprocess.run(self._command("pg_ctl", "status", "-D", str(self.data)),
                                capture_output=True, check=False)  # fmt: skip
        return status.returncode == 0

    def server_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def close(self) -> None:
        """Stop it if it runs and remove its directory; never raises."""
        try:
            if self.data.exists() and self.running():
                self.stop("immediate")
        except Exception:  # noqa: S110 (cleaning up after a failure: carry on removing)
            pass
        shutil.rmtree(self.directory, ignore_errors=True)


class NamespacedRedis:
    """``redis-server`` without persistence in a network namespace, on all its addresses
    (the namespace is the boundary; nothing outside it can reach them)."""

    def __init__(self, netns: str, directory: Path, port: int = 6379) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            skip_or_fail("redis-server is not installed (apt-get install redis-server)")
        self.port = port
        command = ["ip", "netns", "exec", netns, str(binary), "--port", str(port), "--bind",
                   "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no",
                   "--dir", str(directory)]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)

    def url(self, host: str) -> str:
        return f"redis://{host}:{self.port}/0"

    def wait_ready(self, host: str, within: float = 10.0) -> None:
        """Return once it answers PING on ``host`` (an address the caller can reach)."""
        import redis

        client = redis.Redis(host=host, port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + within
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    assert self.process.poll() is None, "redis-server exited"
                    assert time.monotonic() < deadline, "redis-server did not start"
                    time.sleep(0.05)  # another process: nothing to wait on but its port
        finally:
            client.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
