"""The systems under test, each started as its own process pinned to the server core.

:class:`Process` wraps a child with what the report needs: its CPU time and
resident memory (from ``/proc``), readiness by TCP, and a clean stop. The
factories start livesupport (``livesupport serve``), the bare host app on the
same gevent server, the python-socketio baseline and nginx with nchan.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SECRET = "bench-secret-key-0123456789abcdefghijklmnopqrstuv"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Every server started and not yet stopped, so that an interrupted run stops them too.
STARTED: list[Process] = []


def stop_all() -> None:
    for process in list(STARTED):
        process.stop()


def signal_all(signum: int = signal.SIGTERM) -> None:
    """Signal every started server's process group, waiting for none (from a signal handler)."""
    for process in STARTED:
        try:
            os.killpg(process.popen.pid, signum)
        except OSError:
            pass


def stop_on_exit() -> None:
    """Stop the servers this process started when it ends or is interrupted
    (Ctrl-C, SIGTERM, an error), so none outlives the run."""
    import atexit

    atexit.register(stop_all)

    def interrupted(signum: int, _frame: Any) -> None:
        signal_all()
        os._exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, interrupted)


def cores() -> tuple[list[int], list[int]]:
    """``(server cores, client cores)``: separate ones where the machine has two or more."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return available, available
    return [available[0]], available[1:]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` and its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


class Process:
    """A server process: ``pids`` are the processes whose CPU and memory count."""

    def __init__(
        self,
        name: str,
        command: list[str],
        port: int,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        pin: list[int] | None = None,
        include_children: bool = False,
    ) -> None:
        self.name, self.port = name, port
        self.include_children = include_children
        self.logfile = tempfile.NamedTemporaryFile(  # noqa: SIM115 (kept for the process's life)
            prefix=f"bench-{name}-", suffix=".log", delete=False
        )
        if pin:
            command = ["taskset", "-c", ",".join(map(str, pin)), *command]
        self.popen = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            cwd=cwd or ROOT,
            stdout=self.logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        STARTED.append(self)

    @property
    def pids(self) -> list[int]:
        pids = [self.popen.pid]
        if self.include_children:
            pids += children(self.popen.pid)
        return pids

    def wait_ready(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.output()}")
            if answers(self.port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen within {within} s:\n{self.output()}")

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids)

    def rss(self) -> int:
        return sum(rss_bytes(p) for p in self.pids)

    def output(self) -> str:
        self.logfile.flush()
        return Path(self.logfile.name).read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self in STARTED:
            STARTED.remove(self)
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        if not self.logfile.closed:
            self.logfile.close()
            os.unlink(self.logfile.name)


# -- stores --------------------------------------------------------------------------
class StoreDB:
    """A fresh database for one run of a scenario: an SQLite file, a PostgreSQL schema."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.schema = ""
        if kind == "memory":
            self.url = "memory://"
        elif kind == "sqlite":
            self.url = f"sqlite:///{workdir / f'bench-{secrets.token_hex(4)}.db'}"
        elif kind == "postgresql":
            import psycopg

            self.schema = f"bench_{secrets.token_hex(6)}"
            with psycopg.connect(POSTGRES, autocommit=True) as connection:
                connection.execute(f'CREATE SCHEMA "{self.schema}"')
            self.url = f"{POSTGRES}?options=-csearch_path%3D{self.schema}"
        else:
            raise ValueError(kind)

    def drop(self) -> None:
        if self.kind == "sqlite":
            path = self.url.removeprefix("sqlite:///")
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.unlink(path + suffix)
        elif self.kind == "postgresql":
            import psycopg

            with psycopg.connect(POSTGRES, autocommit=True) as connection:
                connection.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


def postgres_available() -> bool:
    return answers(5432)


def redis_available() -> bool:
    return answers(6379)


# -- the systems ---------------------------------------------------------------------
def livesupport(
    store: str,
    *,
    pin: list[int],
    agents: int = 0,
    bus: str = "local://",
    node_id: str = "web-1",
    role: str = "all",
    extra_env: dict[str, str] | None = None,
) -> Process:
    """``livesupport serve benchmarks.apps:chat`` with ``agents`` agents seeded."""
    port = free_port()
    env = {
        "LIVESUPPORT_SECRET_KEY": SECRET,
        "LIVESUPPORT_STORE": store,
        "LIVESUPPORT_BUS": bus,
        "LIVESUPPORT_NODE_ID": node_id,
        "LIVESUPPORT_ROLE": role,
        # No limits (0): every simulated visitor comes from 127.0.0.1, and a huge send
        # rate is not free (the store would count each visitor's last minute).
        "LIVESUPPORT_MESSAGES_PER_MINUTE": "0",
        "LIVESUPPORT_NEW_VISITORS_PER_IP": "0",
        "LIVESUPPORT_NEW_CONVERSATIONS_PER_IP": "0",
        "LIVESUPPORT_MAX_POLLS_PER_VISITOR": "4",
        "BENCH_AGENTS": str(agents),
        "PYTHONPATH": str(ROOT),
        **(extra_env or {}),
    }
    command = [sys.executable, "-m", "livesupport", "serve", "--host", "127.0.0.1",
               "--port", str(port), "benchmarks.apps:chat"]  # fmt: skip
    process = Process(f"livesupport-{node_id}", command, port, env=env, pin=pin)
    process.wait_ready()
    return process


def bare_host(*, pin: list[int], page: str = "static") -> Process:
    """The host application alone, on the same gevent server as livesupport."""
    port = free_port()
    command = [sys.executable, "-m", "benchmarks.apps", "--port", str(port)]
    env = {"PYTHONPATH": str(ROOT), "BENCH_PAGE": page}
    process = Process("bare-host", command, port, env=env, pin=pin)
    process.wait_ready()
    return process


def wrapped_host(store: str, *, pin: list[int], page: str = "static") -> Process:
    """The same host application wrapped in the middleware (widget injection included)."""
    port = free_port()
    env = {"LIVESUPPORT_SECRET_KEY": SECRET, "LIVESUPPORT_STORE": store,
           "PYTHONPATH": str(ROOT), "BENCH_PAGE": page}  # fmt: skip
    command = [sys.executable, "-m", "livesupport", "serve", "--host", "127.0.0.1",
               "--port", str(port), "benchmarks.apps:host"]  # fmt: skip
    process = Process("wrapped-host", command, port, env=env, pin=pin)
    process.wait_ready()
    return process


def socketio(
    *, pin: list[int], ping_interval: float = 300.0, echo: bool = True, lean: bool = False
) -> Process:
    port = free_port()
    command = [sys.executable, "-m", "benchmarks.socketio_server", "--port", str(port),
               "--ping-interval", str(ping_interval)]  # fmt: skip
    command += (["--echo"] if echo else []) + (["--lean"] if lean else [])
    process = Process("python-socketio", command, port, env={"PYTHONPATH": str(ROOT)}, pin=pin)
    process.wait_ready()
    return process


def nchan_available() -> bool:
    return bool(shutil.which("nginx")) and any(
        Path(p).exists()
        for p in (
            "/usr/lib/nginx/modules/ngx_nchan_module.so",
            "/usr/share/nginx/modules/ngx_nchan_module.so",
        )
    )


NGINX_CONF = """
load_module {module};
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log error;
worker_rlimit_nofile 200000;
events {{ worker_connections 100000; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    nchan_max_reserved_memory 512M;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location ~ ^/pub/(\\w+)$ {{
            nchan_publisher;
            nchan_channel_id $1;
            nchan_message_buffer_length 20;
            nchan_message_timeout 120s;
        }}
        location ~ ^/sub/(\\w+)$ {{
            nchan_subscriber longpoll;
            nchan_channel_id $1;
            nchan_subscriber_first_message newest;
            nchan_subscriber_timeout {timeout}s;
        }}
    }}
}}
"""


def nchan(*, pin: list[int], timeout: float = 60.0) -> Process:
    port = free_port()
    prefix = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    (prefix / "body").mkdir()
    module = next(
        p
        for p in (
            "/usr/lib/nginx/modules/ngx_nchan_module.so",
            "/usr/share/nginx/modules/ngx_nchan_module.so",
        )
        if Path(p).exists()
    )
    conf = prefix / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(module=module, prefix=prefix, port=port, timeout=int(timeout))
    )
    command = ["nginx", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    process = Process("nchan", command, port, pin=pin, include_children=True)
    process.wait_ready()
    return process


def describe(process: Any) -> str:
    return f"{process.name} (pid {process.popen.pid}, port {process.port})"
