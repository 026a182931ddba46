"""``python -m benchmarks.soak [--minutes 30] [--visitors 500]``: a long load on one
node, then a check that the node gives back what the load took.

Not part of ``make test`` nor of ``python -m benchmarks``: it runs for half an
hour by default. It starts one ``livesupport serve`` (SQLite store unless
``--store`` says otherwise, agents seeded as in the benchmark), then:

1. **warm-up**: the same load as below for ``--warmup`` seconds with visitors
   of its own, so that caches, connection pools and the allocator's arenas have
   grown to their working size; the load stops and the node goes idle. The
   default, 6 minutes, is longer than a visitor's event buffer is trusted
   (5 minutes): the buffers reach their steady size only then;
2. **baseline**: resident memory, open file descriptors (sockets among them)
   and threads of the server process, read from ``/proc``;
3. **load**: ``--visitors`` new visitors, each with a session, a long-poll
   always parked and a conversation held by one of ``--agents`` agents; the
   visitor and the agent take turns to send, ``--rate`` messages per second in
   total over all conversations at fixed times (open loop, the benchmark's
   :func:`~benchmarks.loadgen.open_loop`), for ``--minutes``, sampling the
   server every ``--interval`` seconds. With ``--cohort-minutes``, visitors
   come and go as on a real site: every so many minutes they all leave and as
   many new ones arrive (what per-visitor state a node forgets shows then);
4. **settle**: the load stops (every connection closed); the server gets
   ``--settle`` seconds to come back within the tolerances of the baseline.

It prints the samples and a summary table, writes ``results/soak.json`` and
exits non-zero if any request was answered 5xx, if the server died, or if
memory, descriptors or threads did not come back. The load generator's HTTP
client, server start-up and open-loop driver are the benchmark's own.

Greenlets: the server exposes no count of them, and counting through the
garbage collector from a signal handler would perturb what is measured. A
connection is one greenlet on the gevent server and a parked poll is one of
those, so the server's sockets stand for them here.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
MiB = 1024 * 1024
IDLE_STEP = 2.0  # seconds between samples while waiting for the server to go idle


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="load (default: %(default)s)")
    parser.add_argument("--visitors", type=int, default=500, help="default: %(default)s")
    parser.add_argument("--agents", type=int, default=5, help="default: %(default)s")
    parser.add_argument(
        "--rate",
        type=float,
        default=50.0,
        help="messages per second in total, both sides (default: %(default)s)",
    )
    parser.add_argument("--store", choices=("memory", "sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--warmup",
        type=float,
        default=360.0,
        help="seconds of warm-up load before the baseline (default: %(default)s)",
    )
    parser.add_argument(
        "--cohort-minutes",
        type=float,
        default=0.0,
        help="replace every visitor by a new one this often; 0: the same visitors throughout "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=10.0,
        help="seconds between samples (default: %(default)s)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=120.0,
        help="seconds the server gets to come back (default: %(default)s)",
    )
    parser.add_argument(
        "--rss-tolerance",
        type=float,
        default=10.0,
        metavar="PCT",
        help="resident memory allowed above the baseline, in %% "
        "(default: %(default)s), and at least --rss-slack",
    )
    parser.add_argument(
        "--rss-slack", type=float, default=16.0, metavar="MIB", help="default: %(default)s"
    )
    parser.add_argument("--fd-tolerance", type=int, default=8, help="default: %(default)s")
    parser.add_argument("--thread-tolerance", type=int, default=2, help="default: %(default)s")
    parser.add_argument(
        "--out", type=Path, default=RESULTS / "soak.json", help="default: %(default)s"
    )
    return parser.parse_args(argv)


# -- what the server holds ----------------------------------------------------------------
def resources(pid: int) -> dict[str, Any]:
    """The server's resident memory, descriptors, sockets and threads, from ``/proc``."""
    from .servers import rss_bytes

    fds = sockets = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        fds += 1
        try:
            sockets += os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:")
        except OSError:
            pass  # closed between the listing and the look
    threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                threads = int(line.split()[1])
    return {
        "rss_mib": round(rss_bytes(pid) / MiB, 1),
        "fds": fds,
        "sockets": sockets,
        "threads": threads,
    }


class Tally:
    """Every answer of every request the load made, by status; and dropped connections."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.connection_errors = 0
        self.first_5xx: list[str] = []

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


def counted(exchange: Any, tally: Tally) -> None:
    """Route every connection of a :class:`~benchmarks.livesupport_load.LiveSupportExchange`
    through ``tally``: the exchange itself only raises on errors, and its pollers
    swallow them, so a 5xx answered to a poll would go unseen."""
    from .http import Connection, HTTPError, Response

    class Counted(Connection):
        def request(self, method: str, path: str, **kw: Any) -> Response:
            try:
                response = super().request(method, path, **kw)
            except (OSError, HTTPError):
                tally.connection_errors += 1
                raise
            tally.statuses[response.status] += 1
            if response.status >= 500 and len(tally.first_5xx) < 20:
                tally.first_5xx.append(
                    f"{method} {path.split('?')[0]}: {response.status} {response.body[:200]!r}"
                )
            return response

    def swap(conn: Connection) -> Counted:
        return Counted(conn.host, conn.port, timeout=conn.timeout)

    for side in [*exchange.visitors, *exchange.agents]:
        side.send_conn, side.poll_conn = swap(side.send_conn), swap(side.poll_conn)
    exchange.agent_send = [swap(conn) for conn in exchange.agent_send]


def load(
    port: int, args: argparse.Namespace, seconds: float, tally: Tally, phase: str
) -> dict[str, Any]:
    """One run of the load with visitors of its own; the open loop's summary.

    The agents are the same accounts in every phase, and a ``client_msg_id`` is
    unique per agent: the open loop's ids (``c<conv>-a<n>``) take the phase's name
    in front, or the load's replies would be repeats of the warm-up's, answered
    ``200`` with the warm-up's message and never delivered."""
    from .livesupport_load import LiveSupportExchange
    from .loadgen import Deliver, open_loop

    class Phased(LiveSupportExchange):
        def send(self, conversation: int, side: str, message_id: str) -> None:
            super().send(conversation, side, phase + message_id)

        def start(self, deliver: Deliver) -> None:
            super().start(lambda message_id, at: deliver(message_id.removeprefix(phase), at))

    exchange = Phased(port, port, args.visitors, args.agents)
    counted(exchange, tally)
    began = time.monotonic()
    exchange.setup()
    setup_s = time.monotonic() - began
    summary = open_loop(exchange, rate=args.rate, duration=seconds, warmup=0.0).summary()
    summary.pop("latency_sample_ms", None)
    return {"setup_s": round(setup_s, 1), **summary}


class Sampler:
    """The server's resources every ``interval`` seconds, with the load's counts."""

    def __init__(self, process: Any, tally: Tally, began: float) -> None:
        self.process, self.tally, self.began = process, tally, began
        self.samples: list[dict[str, Any]] = []
        self.phase = "load"
        self.cpu0, self.at0 = process.cpu(), time.monotonic()

    def take(self) -> dict[str, Any]:
        if self.process.popen.poll() is not None:
            raise RuntimeError(f"the server exited:\n{self.process.output()}")
        now, cpu = time.monotonic(), self.process.cpu()
        sample = {
            "t_s": round(now - self.began, 1),
            "phase": self.phase,
            **resources(self.process.popen.pid),
            "cpu_pct": round(100 * (cpu - self.cpu0) / max(now - self.at0, 1e-6), 1),
            "requests": self.tally.requests,
            "5xx": self.tally.server_errors,
            "conn_errors": self.tally.connection_errors,
        }
        self.cpu0, self.at0 = cpu, now
        self.samples.append(sample)
        return sample

    def every(self, interval: float, log: Any) -> None:
        import gevent

        while True:
            log(self.line(self.take()))
            gevent.sleep(interval)

    @staticmethod
    def line(s: dict[str, Any]) -> str:
        return (
            f"  {s['t_s']:8.1f} s {s['phase']:>6}: RSS {s['rss_mib']:7.1f} MiB, "
            f"fds {s['fds']:5}, sockets {s['sockets']:5}, threads {s['threads']:3}, "
            f"CPU {s['cpu_pct']:5.1f}%, requests {s['requests']:,}, 5xx {s['5xx']}"
        )


def settle(sampler: Sampler, within: float, done: Any, log: Any) -> dict[str, Any]:
    """Samples until ``done(sample)`` holds (and the load's last polls have had their
    timeout to end) or ``within`` seconds pass; the last sample."""
    import gevent

    from .livesupport_load import POLL_TIMEOUT

    began = time.monotonic()
    sampler.phase = "settle"
    while True:
        sample = sampler.take()
        elapsed = time.monotonic() - began
        sample["settle_s"] = round(elapsed, 1)
        if elapsed > POLL_TIMEOUT + IDLE_STEP and done(sample):
            return sample
        if elapsed > within:
            return sample
        if len(sampler.samples) % 5 == 0:
            log(sampler.line(sample))
        gevent.sleep(IDLE_STEP)


def steady(sampler: Sampler) -> Any:
    """Idle: the descriptors stopped falling over the last three samples."""

    def done(sample: dict[str, Any]) -> bool:
        recent = [s["fds"] for s in sampler.samples[-3:]]
        return len(recent) == 3 and len(set(recent)) == 1

    return done


def limits(baseline: dict[str, Any], args: argparse.Namespace) -> dict[str, float]:
    rss = baseline["rss_mib"]
    return {
        "rss_mib": round(rss + max(rss * args.rss_tolerance / 100, args.rss_slack), 1),
        "fds": baseline["fds"] + args.fd_tolerance,
        "sockets": baseline["sockets"] + args.fd_tolerance,
        "threads": baseline["threads"] + args.thread_tolerance,
    }


def within(sample: dict[str, Any], allowed: dict[str, float]) -> bool:
    return all(sample[key] <= allowed[key] for key in allowed)


# -- the run ------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from gevent import monkey

    monkey.patch_all()
    import gevent

    from . import report, servers
    from .run import machine, raise_fd_limit

    servers.stop_on_exit()

    def log(line: str) -> None:
        print(line, flush=True)

    fd_limit = raise_fd_limit()
    server_cores, client_cores = servers.cores()
    os.sched_setaffinity(0, client_cores)
    info = machine()
    log(
        f"soak: {args.visitors} visitors, {args.agents} agents, {args.rate:g} messages/s, "
        f"{args.minutes:g} min on the {args.store} store; {info['nproc']} cores, load "
        f"{info['loadavg_at_start']}; server on cores {server_cores}, load generator on "
        f"{client_cores}; open-file limit {fd_limit}"
    )
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="livesupport-soak-"))
    db = servers.StoreDB(args.store, workdir)
    tally = Tally()
    try:
        process = servers.livesupport(db.url, pin=server_cores, agents=args.agents)
        pid = process.popen.pid
        log(f"server: {servers.describe(process)}; at start {resources(pid)}")

        log(f"warm-up: {args.warmup:g} s of the same load")
        warmup = load(process.port, args, args.warmup, tally, "warm")
        sampler = Sampler(process, tally, time.monotonic())
        sampler.phase = "idle"
        baseline = settle(sampler, args.settle, steady(sampler), log)
        allowed = limits(baseline, args)
        log(f"baseline: {Sampler.line(baseline)}")

        cohorts = max(1, round(args.minutes / args.cohort_minutes)) if args.cohort_minutes else 1
        log(f"load: {args.minutes:g} min, {cohorts} cohort(s) of {args.visitors} visitors")
        sampler.phase = "load"
        sampling = gevent.spawn(sampler.every, args.interval, log)
        loads = [
            load(process.port, args, args.minutes * 60 / cohorts, tally, f"load{n}")
            for n in range(cohorts)
        ]
        sampling.kill()
        loaded = [s for s in sampler.samples if s["phase"] == "load"]
        after = settle(sampler, args.settle, lambda s: within(s, allowed), log)
        log(f"after:    {Sampler.line(after)}")
        server_alive = process.popen.poll() is None
        process.stop()
    finally:
        servers.stop_all()
        db.drop()

    peak = {key: max(s[key] for s in loaded) for key in allowed} if loaded else {}
    checks = {key: after[key] <= allowed[key] for key in allowed}
    checks["no_5xx"] = tally.server_errors == 0
    checks["server_alive"] = server_alive
    ok = all(checks.values())
    rows = [
        {
            "metric": key,
            "baseline": baseline[key],
            "peak": peak.get(key),
            "after": after[key],
            "allowed": allowed[key],
            "ok": checks[key],
        }
        for key in allowed
    ]
    rows.append(
        {
            "metric": "5xx answers",
            "baseline": 0,
            "peak": None,
            "after": tally.server_errors,
            "allowed": 0,
            "ok": checks["no_5xx"],
        }
    )
    print()
    print(
        report.table(
            rows,
            [
                ("metric", "metric"),
                ("baseline", "baseline"),
                ("peak", "peak"),
                ("after", "after"),
                ("allowed", "allowed"),
                ("ok", "ok"),
            ],
        )
    )
    print()
    print(
        report.table(
            [{"phase": "warm-up", **warmup}]
            + [{"phase": f"load {n + 1}", **summary} for n, summary in enumerate(loads)],
            [
                ("phase", "phase"),
                ("setup_s", "setup s"),
                ("sent", "sent"),
                ("delivered", "delivered"),
                ("throughput", "msgs/s"),
                ("p50_ms", "p50 ms"),
                ("p99_ms", "p99 ms"),
                ("max_ms", "max ms"),
                ("lost", "lost"),
                ("errors", "errors"),
            ],
        )
    )
    statuses = {str(k): v for k, v in sorted(tally.statuses.items())}
    print(f"\nanswers by status: {statuses}; dropped connections: {tally.connection_errors}")
    for line in tally.first_5xx:
        print(f"  5xx: {line}")
    document = {
        "machine": info,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "seconds": round(time.monotonic() - began, 1),
        "ok": ok,
        "checks": checks,
        "baseline": baseline,
        "peak": peak,
        "after": after,
        "allowed": allowed,
        "statuses": statuses,
        "connection_errors": tally.connection_errors,
        "first_5xx": tally.first_5xx,
        "warmup": warmup,
        "load": loads,
        "samples": sampler.samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report.write_json(args.out, document)
    print(f"{'OK' if ok else 'FAILED'}: wrote {args.out} in {document['seconds']} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
