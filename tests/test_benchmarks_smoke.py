"""The benchmark runs end to end: a tiny chat scenario on the memory store.

It checks that ``python -m benchmarks`` starts a real server, drives both loops
and writes a sane JSON document. It asserts nothing about speed: numbers from a
shared test machine mean nothing, and the benchmark itself reports them.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.live
def test_the_quick_chat_scenario_writes_sane_json(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "benchmarks", "--quick", "--scenarios", "chat",
        "--stores", "memory", "--no-baselines", "--no-plots", "--out", str(tmp_path),
        "--name", "smoke", "--set", "closed_conversations=5", "open_conversations=10",
        "open_rate=20", "closed_duration=2", "open_duration=2", "warmup=0.5",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    document = json.loads((tmp_path / "smoke.json").read_text())

    assert document["quick"] is True
    assert document["machine"]["nproc"] >= 1
    rows = document["results"]["chat"]
    assert {(r["scenario"], r["system"], r["store"]) for r in rows} == {
        ("chat-closed", "livesupport", "memory"),
        ("chat-open", "livesupport", "memory"),
    }
    for row in rows:
        assert row["delivered"] > 0 and row["throughput"] > 0, row
        assert row["errors"] == 0, row
        # In open loop a message may still be in flight when the run ends.
        assert row["lost"] == 0 or row["scenario"] == "chat-open", row
        for key in ("p50_ms", "p95_ms", "p99_ms"):
            assert math.isfinite(row[key]) and row[key] >= 0, row
        assert row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"], row
        assert 0 <= row["server_cpu_pct"] and 0 <= row["client_cpu_pct"], row
        assert row["latency_sample_ms"], row
    assert "chat-closed" in done.stdout  # the table was printed
