"""The scenarios of issue 5, each returning rows for the report.

- ``capacity``: N idle long-polls held at once; resident memory, time to open
  them, how many were answered correctly at their timeout;
- ``chat``: C conversations exchanging messages, closed loop (each sends its
  next message when the last arrived: throughput) and open loop (a fixed total
  rate: latency); server and load-generator CPU;
- ``passthrough``: a host page through wrk, bare host app against wrapped;
- ``crossnode``: the open-loop chat with visitors on one node and agents on
  another, through the Redis or PostgreSQL bus.

Every server runs pinned to the server core; this process (the load
generator) to the other one.
"""

from __future__ import annotations

import gc
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
from gevent.lock import Semaphore

from . import livesupport_load, nchan_load, servers, socketio_load
from .loadgen import Exchange, Holder, Recorder, closed_loop, open_loop

MiB = 1024 * 1024


@dataclass
class Settings:
    quick: bool
    stores: list[str]
    baselines: bool
    workdir: Path
    server_cores: list[int]
    client_cores: list[int]
    capacity_counts: list[int] = field(default_factory=lambda: [1000, 5000, 15000])
    capacity_timeout: float = 20.0
    closed_conversations: int = 100
    closed_duration: float = 15.0
    open_conversations: int = 1000
    open_rate: float = 1000.0
    open_duration: float = 15.0
    warmup: float = 3.0
    passthrough_duration: float = 8.0
    wrk_connections: int = 32
    profile_dir: str = ""
    profile_count: int = 0
    log: Callable[[str], None] = print

    @classmethod
    def make(cls, quick: bool, **kw: Any) -> Settings:
        settings = cls(quick=quick, **kw)
        if quick:
            settings.capacity_counts = [1000]
            settings.capacity_timeout = 5.0
            settings.closed_duration = 4.0
            settings.open_conversations = 200
            settings.open_rate = 400.0
            settings.open_duration = 4.0
            settings.warmup = 1.0
            settings.passthrough_duration = 3.0
        return settings


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Usage:
    """CPU of the servers and of this process over a window, in % of one core."""

    def __init__(self, processes: list[servers.Process]) -> None:
        self.processes = processes
        self.began = time.monotonic()
        self.server0 = sum(p.cpu() for p in processes)
        self.client0 = client_cpu()

    def done(self) -> dict[str, float]:
        wall = time.monotonic() - self.began
        server = sum(p.cpu() for p in self.processes) - self.server0
        client = client_cpu() - self.client0
        return {
            "server_cpu_pct": round(100 * server / wall, 1),
            "client_cpu_pct": round(100 * client / wall, 1),
        }


def _windowed_usage(processes: list[servers.Process], recorder_start: float) -> dict[str, Any]:
    """Samples CPU from the start of the measuring window until ``done`` is called."""
    box: dict[str, Any] = {}

    def sample() -> None:
        gevent.sleep(max(0.0, recorder_start - time.monotonic()))
        box["usage"] = Usage(processes)

    box["greenlet"] = gevent.spawn(sample)
    return box


@contextmanager
def store_db(kind: str, settings: Settings) -> Iterator[servers.StoreDB]:
    db = servers.StoreDB(kind, settings.workdir)
    try:
        yield db
    finally:
        db.drop()


@contextmanager
def running(*processes: servers.Process) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            process.stop()


def stores_for(settings: Settings, *, sql_only: bool = False) -> list[str]:
    kinds = [k for k in settings.stores if not (sql_only and k == "memory")]
    if "postgresql" in kinds and not servers.postgres_available():
        settings.log("  PostgreSQL does not answer on 127.0.0.1:5432: its runs are skipped")
        kinds.remove("postgresql")
    return kinds


# -- capacity ---------------------------------------------------------------------------
def hold_many(
    process: servers.Process,
    holders: list[Holder],
    timeout: float,
    min_wait: float,
) -> dict[str, Any]:
    """Open every holder's poll (a few hundred connecting at once), then wait for all."""
    count = len(holders)
    connecting = Semaphore(256)
    opened_at: list[float] = []
    outcomes: list[bool] = []
    waits: list[float] = []
    began = time.monotonic()

    def run(hold: Holder) -> None:
        connecting.acquire()
        released = False
        start = [0.0]

        def opened() -> None:
            nonlocal released
            start[0] = time.monotonic()
            opened_at.append(start[0])
            connecting.release()
            released = True

        try:
            ok = hold(opened)
            waited = time.monotonic() - start[0]
            # Right answer, not before its timeout; how late, the waits say.
            outcomes.append(ok and min_wait <= waited)
            waits.append(waited)
        except Exception:
            outcomes.append(False)
        finally:
            if not released:
                connecting.release()

    greenlets = [gevent.spawn(run, h) for h in holders]
    while len(opened_at) < count and any(not g.dead for g in greenlets):
        gevent.sleep(0.05)
    open_s = (max(opened_at) if opened_at else time.monotonic()) - began
    # A poll written is not yet a poll parked: the server may still be reading the
    # last few thousand, and its memory grows until it has parked them all, then
    # falls as they are answered. The highest reading before the first answer is
    # the memory of all of them held at once, however far behind the server was.
    rss = process.rss()
    deadline = time.monotonic() + timeout + 5
    while not outcomes and time.monotonic() < deadline and not all(g.dead for g in greenlets):
        gevent.sleep(0.25)
        rss = max(rss, process.rss())
    gevent.joinall(greenlets, timeout=timeout + 90)
    gevent.killall(greenlets)
    holders.clear()
    gc.collect()  # the sockets of failed holders, before the next system needs the descriptors
    return {
        "held": count,
        "open_s": round(open_s, 2),
        "rss_mib": round(rss / MiB, 1),
        "answered_ok": sum(outcomes),
        "all_ok": sum(outcomes) == count,
        # Seconds from writing the poll to its answer: timeout plus the server's backlog.
        "max_wait_s": round(max(waits), 2) if waits else None,
    }


def capacity(settings: Settings) -> list[dict[str, Any]]:
    rows = []
    pin, timeout = settings.server_cores, settings.capacity_timeout
    for count in settings.capacity_counts:
        for kind in stores_for(settings):
            with store_db(kind, settings) as db:
                process = servers.livesupport(
                    db.url, pin=pin, extra_env={"LIVESUPPORT_POLL_TIMEOUT_MAX": "55"}
                )
                with running(process):
                    idle = process.rss()
                    sessions_s, holders = livesupport_load.capacity(process.port, count, timeout)
                    row = hold_many(process, holders, timeout, timeout - 0.5)
            rows.append({"system": "livesupport", "store": kind, "prepare_s": round(sessions_s, 2),
                         "idle_rss_mib": round(idle / MiB, 1), **row})  # fmt: skip
            settings.log(f"  capacity livesupport/{kind} {count}: {_brief(rows[-1])}")
        if not settings.baselines:
            continue
        process = servers.socketio(pin=pin, ping_interval=timeout)
        with running(process):
            idle = process.rss()
            connect_s, holders = socketio_load.capacity(process.port, count, timeout)
            row = hold_many(process, holders, timeout, 0.0)
        rows.append({"system": "python-socketio", "store": "-", "prepare_s": round(connect_s, 2),
                     "idle_rss_mib": round(idle / MiB, 1), **row})  # fmt: skip
        settings.log(f"  capacity python-socketio {count}: {_brief(rows[-1])}")
        if servers.nchan_available():
            process = servers.nchan(pin=pin, timeout=timeout)
            with running(process):
                idle = process.rss()
                prepare_s, holders = nchan_load.capacity(process.port, count, timeout)
                row = hold_many(process, holders, timeout, timeout - 1.0)
            rows.append({"system": "nchan", "store": "-", "prepare_s": prepare_s,
                         "idle_rss_mib": round(idle / MiB, 1), **row})  # fmt: skip
            settings.log(f"  capacity nchan {count}: {_brief(rows[-1])}")
    return rows


# -- chat -------------------------------------------------------------------------------
def _drive(
    exchange: Exchange,
    processes: list[servers.Process],
    settings: Settings,
    mode: str,
    rate: float = 0.0,
) -> dict[str, Any]:
    exchange.setup()
    start = time.monotonic() + settings.warmup + 0.5  # the pollers start first
    duration = settings.closed_duration if mode == "closed" else settings.open_duration
    box = _windowed_usage(processes, start)
    profile = _profile(processes, start, duration, settings)

    def stop_usage() -> None:
        gevent.sleep(max(0.0, start + duration - time.monotonic()))
        box["result"] = box["usage"].done()

    stopper = gevent.spawn(stop_usage)
    recorder: Recorder
    if mode == "closed":
        recorder = closed_loop(exchange, duration=duration, warmup=settings.warmup + 0.5)
    else:
        recorder = open_loop(exchange, rate=rate, duration=duration, warmup=settings.warmup + 0.5)
    stopper.join()
    if profile is not None:
        profile.join()
    return {**recorder.summary(), **box.get("result", {})}


def _profile(
    processes: list[servers.Process], start: float, duration: float, settings: Settings
) -> gevent.Greenlet | None:
    """With ``profile_dir`` set: py-spy records the first server over the window, as
    collapsed stacks (``--idle``: waiting shows too) in ``<dir>/<name>.txt``."""
    pyspy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    if not settings.profile_dir or not pyspy:
        return None
    settings.profile_count += 1
    out = Path(settings.profile_dir) / f"profile-{settings.profile_count}-{processes[0].name}.txt"

    def record() -> None:
        gevent.sleep(max(0.0, start - time.monotonic()))
        command = [pyspy, "record", "-p", str(processes[0].popen.pid), "-o", str(out),
                   "-f", "raw", "-r", "250", "-d", str(max(1, int(duration - 1))), "--idle",
                   "--nonblocking"]  # fmt: skip
        subprocess.run(command, capture_output=True)

    return gevent.spawn(record)


def chat(settings: Settings) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    pin = settings.server_cores
    plans = [
        ("closed", settings.closed_conversations, 0.0),
        ("open", settings.open_conversations, settings.open_rate),
    ]
    for mode, conversations, rate in plans:
        if not conversations:  # --set closed_conversations=0: that loop is not run
            continue
        label = f"chat-{mode}"
        common = {"scenario": label, "conversations": conversations, "rate": rate or None}
        for kind in stores_for(settings):
            with store_db(kind, settings) as db:
                process = servers.livesupport(db.url, pin=pin, agents=conversations)
                with running(process):
                    exchange = livesupport_load.LiveSupportExchange(
                        process.port, process.port, conversations, conversations
                    )
                    result = _drive(exchange, [process], settings, mode, rate)
                    result["rss_mib"] = round(process.rss() / MiB, 1)
            rows.append({**common, "system": "livesupport", "store": kind, **result})
            settings.log(f"  {label} livesupport/{kind}: {_brief(rows[-1])}")
        if not settings.baselines:
            continue
        for echo, lean in ((True, False), (False, False), (False, True)):
            name = "python-socketio" + ("" if echo else " (no echo)") + (", lean" if lean else "")
            process = servers.socketio(pin=pin, echo=echo, lean=lean)
            with running(process):
                sio = socketio_load.SocketIOExchange(process.port, conversations, conversations)
                result = _drive(sio, [process], settings, mode, rate)
                result["rss_mib"] = round(process.rss() / MiB, 1)
            rows.append({**common, "system": name, "store": "-", **result})
            settings.log(f"  {label} {name}: {_brief(rows[-1])}")
        if servers.nchan_available():
            process = servers.nchan(pin=pin)
            with running(process):
                nchan = nchan_load.NchanExchange(process.port, conversations)
                result = _drive(nchan, [process], settings, mode, rate)
                result["rss_mib"] = round(process.rss() / MiB, 1)
            rows.append({**common, "system": "nchan", "store": "-", **result})
            settings.log(f"  {label} nchan: {_brief(rows[-1])}")
    return rows


# -- passthrough ------------------------------------------------------------------------
WRK_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def wrk(port: int, settings: Settings) -> dict[str, Any]:
    command = ["wrk", "-t1", f"-c{settings.wrk_connections}",
               f"-d{settings.passthrough_duration:g}s", "--latency",
               f"http://127.0.0.1:{port}/"]  # fmt: skip
    command = ["taskset", "-c", ",".join(map(str, settings.client_cores)), *command]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    lat = {q: float(v) * scale[u] for q, v, u in WRK_LATENCY.findall(out)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": lat.get("50"), "p99_ms": lat.get("99"),
            "non_2xx": int(errors.group(1)) if errors else 0}  # fmt: skip


def passthrough(settings: Settings) -> list[dict[str, Any]]:
    if not shutil.which("wrk"):
        settings.log("  wrk is not installed (apt-get install wrk): passthrough skipped")
        return []
    rows = []
    pin = settings.server_cores

    def measure(process: servers.Process) -> dict[str, Any]:
        wrk(process.port, dataclass_replace(settings, passthrough_duration=1.0))  # warm-up
        best: dict[str, Any] = {}
        for _ in range(2):  # the better of two: other load on the machine only slows
            usage = Usage([process])
            result = wrk(process.port, settings)
            result.update(usage.done())
            if not best or result["rps"] > best["rps"]:
                best = result
        best["server_cpu_us_per_req"] = round(best["server_cpu_pct"] / 100 / best["rps"] * 1e6, 1)
        return best

    for page in ("static", "rendered"):
        bare = servers.bare_host(pin=pin, page=page)
        with running(bare):
            base = measure(bare)
        rows.append({"system": "bare host", "page": page, "store": "-", **base})
        settings.log(f"  passthrough bare host, {page} page: {_brief(rows[-1])}")
        for kind in stores_for(settings):
            with store_db(kind, settings) as db:
                process = servers.wrapped_host(db.url, pin=pin, page=page)
                with running(process):
                    result = measure(process)
            # Request time is 1/throughput at a saturated core; CPU per request says the same
            # without the noise of other load on the machine.
            result["overhead_pct"] = round(100 * (base["rps"] / result["rps"] - 1), 2)
            result["cpu_overhead_pct"] = round(
                100 * (result["server_cpu_us_per_req"] / base["server_cpu_us_per_req"] - 1), 2
            )
            rows.append({"system": "livesupport", "page": page, "store": kind, **result})
            settings.log(f"  passthrough livesupport/{kind}, {page} page: {_brief(rows[-1])}")
    return rows


def dataclass_replace(settings: Settings, **changes: Any) -> Settings:
    import dataclasses

    return dataclasses.replace(settings, **changes)


# -- cross-node ---------------------------------------------------------------------------
def bus_missing(url: str) -> str | None:
    """Why ``url``'s bus cannot be used here, or ``None`` if it can."""
    probe = (
        "import sys\nfrom livesupport.bus import open_bus\n"
        "bus = open_bus(sys.argv[1]); bus.start(); bus.ping(); bus.close()"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, url], capture_output=True, text=True, timeout=30
    )
    if done.returncode == 0:
        return None
    return (done.stderr.strip().splitlines() or ["unknown error"])[-1]


def crossnode(settings: Settings) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    pin = settings.server_cores
    buses = []
    if servers.redis_available():
        buses.append(("redis", servers.REDIS))
    else:
        settings.log("  Redis does not answer on 127.0.0.1:6379: its bus is skipped")
    if servers.postgres_available():
        buses.append(("postgresql", servers.POSTGRES))
    for bus_kind, bus_url in buses:
        why = bus_missing(bus_url)
        if why is not None:
            settings.log(f"  cross-node through {bus_kind}: skipped, the bus is not there: {why}")
            rows.append({"system": "livesupport", "bus": bus_kind, "skipped": why})
            continue
        for kind in stores_for(settings, sql_only=True):
            conversations, rate = settings.open_conversations, settings.open_rate
            with store_db(kind, settings) as db:
                visitors = servers.livesupport(
                    db.url, pin=pin, bus=bus_url, node_id="web-1", role="visitor"
                )
                agents = servers.livesupport(
                    db.url, pin=pin, bus=bus_url, node_id="web-2", role="agent",
                    agents=conversations,
                )  # fmt: skip
                with running(visitors, agents):
                    exchange = livesupport_load.LiveSupportExchange(
                        visitors.port, agents.port, conversations, conversations
                    )
                    result = _drive(exchange, [visitors, agents], settings, "open", rate)
            rows.append({"system": "livesupport", "bus": bus_kind, "store": kind,
                         "conversations": conversations, "rate": rate, **result})  # fmt: skip
            settings.log(f"  cross-node {bus_kind}/{kind}: {_brief(rows[-1])}")
    return rows


def _brief(row: dict[str, Any]) -> str:
    keys = ("throughput", "p50_ms", "p99_ms", "server_cpu_pct", "client_cpu_pct", "rps",
            "overhead_pct", "rss_mib", "open_s", "answered_ok", "lost", "errors")  # fmt: skip
    return ", ".join(f"{k}={row[k]}" for k in keys if k in row)
