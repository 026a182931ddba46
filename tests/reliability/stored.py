"""What the store holds after an outage, read directly (SQL, not the API), against
what the clients were told: nothing acknowledged missing, nothing stored twice,
nothing stored that no one was told of, no gap in any conversation's ``seq``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from .traffic import Load


@dataclass
class StoreCheck:
    """What the store holds against what was acknowledged."""

    stored: int  # messages in the store
    lost: list[str]  # acknowledged, not stored (or stored differently)
    unacknowledged: list[str]  # stored, never acknowledged to anyone
    duplicated: list[str]  # bodies stored more than once
    gaps: list[str]  # conversations whose seqs are not 1..last_seq


def check_store(conninfo: str, acked: dict[str, dict[str, Any]]) -> StoreCheck:
    """Read every event of the store at ``conninfo`` (a libpq URL) and compare."""
    import psycopg

    with psycopg.connect(conninfo, connect_timeout=10) as connection:
        rows = connection.execute(
            "SELECT id, conversation_id, seq, type, client_msg_id, body FROM events"
        ).fetchall()
        last: dict[str, int] = dict(
            connection.execute("SELECT id, last_seq FROM conversations").fetchall()
        )
    messages = {r[0]: r for r in rows if r[3] == "message"}
    lost = [mid for mid, m in acked.items()
            if mid not in messages or messages[mid][5] != m["body"]
            or messages[mid][4] != m["client_msg_id"]]  # fmt: skip
    unacknowledged = [mid for mid in messages if mid not in acked]
    bodies = Counter(r[5] for r in messages.values())
    duplicated = [body for body, n in bodies.items() if n > 1]
    seqs: dict[str, list[int]] = {}
    for row in rows:
        seqs.setdefault(row[1], []).append(row[2])
    gaps = [cid for cid, found in seqs.items()
            if sorted(found) != list(range(1, last[cid] + 1))]  # fmt: skip
    return StoreCheck(len(messages), lost, unacknowledged, duplicated, gaps)


def assert_nothing_lost(load: Load, check: StoreCheck) -> None:
    """Every acknowledged message stored once, nothing else stored (``check`` is
    :func:`check_store` after the load ended); the caller waited for delivery with
    :meth:`Load.wait_delivered`."""
    assert not check.lost, f"acknowledged but not stored: {check.lost[:10]}"
    assert not check.unacknowledged, f"stored, never acknowledged: {check.unacknowledged[:10]}"
    assert not check.duplicated, f"stored twice: {check.duplicated[:10]}"
    assert not check.gaps, f"seq gaps in {check.gaps[:10]}"
    assert check.stored == len(load.acked)
