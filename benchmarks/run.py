"""``python -m benchmarks [--quick] [--scenarios ...] [--stores ...]``: run the
benchmark, print the tables, write ``results.json`` and the plots.

This process is the load generator: it monkey-patches gevent, raises its
open-file limit, pins itself to the client core(s) and starts every server
pinned to the server core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SCENARIOS = ("capacity", "chat", "passthrough", "crossnode")
STORES = ("memory", "sqlite", "postgresql")
RESULTS = Path(__file__).resolve().parent / "results"


def raise_fd_limit(wanted: int = 200_000) -> int:
    """Raise this process's open-file limit (and so its servers'): every held poll
    is a socket on each side. Root may raise the hard limit too."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limits in ((wanted, max(wanted, hard)), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def machine() -> dict[str, Any]:
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(
            (line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line),
            "",
        )
    except OSError:
        pass
    load = os.getloadavg()
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="about a minute: small sizes")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument(
        "--stores", nargs="+", choices=STORES, help="default: all (memory and sqlite if --quick)"
    )
    parser.add_argument("--no-baselines", action="store_true", help="livesupport only")
    parser.add_argument("--out", type=Path, default=RESULTS, help="default: %(default)s")
    parser.add_argument("--name", default="results", help="JSON file name (without .json)")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument(
        "--markdown", type=Path, metavar="JSON", help="print the tables of an earlier run's JSON "
        "as Markdown (for the README) and exit",
    )  # fmt: skip
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="override a setting, e.g. closed_conversations=50")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.markdown:
        from . import report

        print(report.markdown(json.loads(args.markdown.read_text())["results"]))
        return 0
    from gevent import monkey

    monkey.patch_all()
    from . import report, scenarios, servers

    servers.stop_on_exit()
    limit = raise_fd_limit()
    server_cores, client_cores = servers.cores()
    os.sched_setaffinity(0, client_cores)
    stores = args.stores or (["memory", "sqlite"] if args.quick else list(STORES))
    workdir = Path(tempfile.mkdtemp(prefix="livesupport-bench-"))
    settings = scenarios.Settings.make(
        args.quick,
        stores=stores,
        baselines=not args.no_baselines,
        workdir=workdir,
        server_cores=server_cores,
        client_cores=client_cores,
        log=lambda line: print(line, flush=True),
    )
    for item in args.set:
        key, _, value = item.partition("=")
        current = getattr(settings, key)
        setattr(settings, key, type(current)(value) if not isinstance(current, list)
                else [int(v) for v in value.split(",")])  # fmt: skip
    info = machine()
    print(f"livesupport benchmark on {info['nproc']} cores ({info['cpu']}), load "
          f"{info['loadavg_at_start']}; servers on cores {server_cores}, load generator on "
          f"{client_cores}; open-file limit {limit}", flush=True)  # fmt: skip
    results: dict[str, list[dict[str, Any]]] = {}
    began = time.monotonic()
    for name in args.scenarios:
        print(f"{name}:", flush=True)
        results[name] = getattr(scenarios, name)(settings)
    report.add_ratios(results)
    args.out.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": info,
        "quick": args.quick,
        "settings": {k: v for k, v in vars(settings).items() if k not in ("log", "workdir")},
        "seconds": round(time.monotonic() - began, 1),
        "results": results,
    }
    report.write_json(args.out / f"{args.name}.json", document)
    print()
    print(report.render(results))
    if not args.no_plots:
        for path in report.plots(results, args.out):
            print(f"wrote {path}")
    print(f"wrote {args.out / (args.name + '.json')} in {document['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
