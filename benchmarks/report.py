"""The benchmark's outputs: the printed tables (with livesupport's ratio to each
baseline), ``results.json`` and the PNG plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

Row = dict[str, Any]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(rows: list[Row], columns: list[tuple[str, str]]) -> str:
    cells = [[title for _, title in columns]]
    cells += [[_fmt(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                       enumerate(zip(r, widths, strict=True))) for r in cells]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _ratio(a: float | None, b: float | None) -> float | None:
    if not a or not b:
        return None
    return round(a / b, 2)


def add_ratios(results: dict[str, list[Row]]) -> None:
    """``x_socketio`` and ``x_nchan`` on livesupport's rows: its throughput (chat),
    or memory (capacity: the baseline's over livesupport's, so higher is better)."""
    for row in results.get("chat", []):
        if row["system"] != "livesupport":
            continue
        same = [r for r in results["chat"] if r["scenario"] == row["scenario"]]
        for key, name in (("x_socketio", "python-socketio"),
                          ("x_socketio_no_echo", "python-socketio (no echo)"),
                          ("x_nchan", "nchan")):  # fmt: skip
            base = next((r for r in same if r["system"] == name), None)
            row[key] = _ratio(row.get("throughput"), base and base.get("throughput"))
    for row in results.get("capacity", []):
        if row["system"] != "livesupport":
            continue
        same = [r for r in results["capacity"] if r["held"] == row["held"]]
        for key, name in (("x_socketio", "python-socketio"), ("x_nchan", "nchan")):
            base = next((r for r in same if r["system"] == name), None)
            row[key] = _ratio(base and base.get("rss_mib"), row.get("rss_mib"))


CAPACITY = [("system", "system"), ("store", "store"), ("held", "polls"),
            ("rss_mib", "RSS MiB"), ("idle_rss_mib", "idle MiB"), ("prepare_s", "sessions s"),
            ("open_s", "open s"), ("answered_ok", "answered ok"), ("all_ok", "all ok"),
            ("max_wait_s", "max wait s"),
            ("x_socketio", "socketio RSS/ours"), ("x_nchan", "nchan RSS/ours")]  # fmt: skip
CHAT = [("scenario", "scenario"), ("system", "system"), ("store", "store"),
        ("conversations", "conv"), ("rate", "offered/s"), ("throughput", "msgs/s"),
        ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"),
        ("server_cpu_pct", "server CPU%"), ("client_cpu_pct", "client CPU%"),
        ("lost", "lost"), ("errors", "errors"), ("x_socketio", "x socketio"),
        ("x_socketio_no_echo", "x socketio no echo"), ("x_nchan", "x nchan")]  # fmt: skip
PASSTHROUGH = [("page", "page"), ("system", "system"), ("store", "store"), ("rps", "req/s"),
               ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
               ("server_cpu_us_per_req", "server µs/req"),
               ("overhead_pct", "time overhead %"), ("cpu_overhead_pct", "CPU overhead %"),
               ("non_2xx", "non-2xx")]  # fmt: skip
CROSSNODE = [("bus", "bus"), ("store", "store"), ("conversations", "conv"), ("rate", "offered/s"),
             ("throughput", "msgs/s"), ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"),
             ("p99_ms", "p99 ms"), ("server_cpu_pct", "servers CPU%"),
             ("client_cpu_pct", "client CPU%"), ("lost", "lost"),
             ("skipped", "skipped")]  # fmt: skip
TABLES = {"capacity": CAPACITY, "chat": CHAT, "passthrough": PASSTHROUGH, "crossnode": CROSSNODE}


def markdown(results: dict[str, list[Row]]) -> str:
    """The tables as Markdown, for the README."""
    parts = []
    for name, columns in TABLES.items():
        rows = results.get(name)
        if not rows:
            continue
        lines = ["| " + " | ".join(title for _, title in columns) + " |"]
        lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|")
        lines += ["| " + " | ".join(_fmt(r.get(k)) for k, _ in columns) + " |" for r in rows]
        parts.append(f"**{name}**\n\n" + "\n".join(lines))
    return "\n\n".join(parts)


def render(results: dict[str, list[Row]]) -> str:
    parts = []
    for name, columns in TABLES.items():
        rows = results.get(name)
        if rows:
            parts.append(f"## {name}\n\n{table(rows, columns)}")
    return "\n\n".join(parts)


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=1, default=str))


def plots(results: dict[str, list[Row]], directory: Path) -> list[Path]:
    """``latency.png`` (distribution of delivery latency per system and loop) and
    ``throughput.png`` (closed-loop messages/s per system); ``capacity.png``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    chat = results.get("chat", [])
    if chat:
        modes = sorted({r["scenario"] for r in chat})
        fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4.2), squeeze=False)
        for ax, mode in zip(axes[0], modes, strict=True):
            for row in (r for r in chat if r["scenario"] == mode):
                sample = sorted(row.get("latency_sample_ms") or [])
                if not sample:
                    continue
                ys = [(i + 1) / len(sample) for i in range(len(sample))]
                ax.plot([max(v, 0.01) for v in sample], ys, label=_label(row))
            ax.set_xscale("log")
            ax.set_xlabel("delivery latency, ms (send accepted → other side's poll answered)")
            ax.set_ylabel("fraction of messages")
            first = next(r for r in chat if r["scenario"] == mode)
            detail = (
                f"{first['conversations']} conversations, closed loop"
                if mode.endswith("closed")
                else f"{first['conversations']} conversations, {first['rate']:g} msgs/s offered"
            )
            ax.set_title(detail)  # fmt: skip
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(directory / "latency.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)

        closed = [r for r in chat if r["scenario"] == "chat-closed"]
        if closed:
            fig, ax = plt.subplots(figsize=(8, 4.2))
            labels = [_label(r) for r in closed]
            values = [r.get("throughput", 0) for r in closed]
            bars = ax.barh(labels, values, color=[_color(r) for r in closed])
            ax.bar_label(bars, fmt="%.0f", padding=3, fontsize=8)
            ax.set_xlabel("delivered messages/s (closed loop, one server core)")
            ax.set_title(f"{closed[0]['conversations']} conversations, closed loop")
            ax.invert_yaxis()
            fig.tight_layout()
            written.append(directory / "throughput.png")
            fig.savefig(written[-1], dpi=110)
            plt.close(fig)
    capacity = results.get("capacity", [])
    if capacity:
        fig, ax = plt.subplots(figsize=(8, 4.2))
        for label in sorted({_label(r) for r in capacity}):
            rows = sorted((r for r in capacity if _label(r) == label), key=lambda r: r["held"])
            ax.plot([r["held"] for r in rows], [r["rss_mib"] for r in rows], "o-", label=label)
        ax.axhline(400, color="grey", ls="--", lw=1, label="target: 400 MiB at 15,000")
        ax.set_xlabel("idle long-polls held")
        ax.set_ylabel("server resident memory, MiB")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(directory / "capacity.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


def _label(row: Row) -> str:
    store = row.get("store")
    return row["system"] + (f" ({store})" if store and store != "-" else "")


def _color(row: Row) -> str:
    return {"livesupport": "#2557d6", "nchan": "#999999"}.get(row["system"], "#e07b39")
