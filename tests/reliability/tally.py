"""What clients got through an outage: every answer, acknowledgement and failure,
with when it happened, so that a test can ask what was answered while a server
was down (``answers_between``) and how soon each sender recovered."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import requests


class Answer(NamedTuple):
    asked: float  # time.monotonic() when the request was sent
    answered: float
    route: str  # "POST /visitor/messages" (route_of)
    status: int


class Ack(NamedTuple):
    asked: float  # when the attempt that was acknowledged was sent
    answered: float
    who: str  # the sender's name
    status: int  # 201, or 200 for a repeat


@dataclass
class Tally:
    """Every answer the clients got; shared by all of them, thread-safe."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[int] = field(default_factory=Counter)
    answers: list[Answer] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)  # 500s, other 5xx, 503s without Retry-After
    unexpected: list[str] = field(default_factory=list)  # 4xx a correct client never gets
    no_answer: list[tuple[float, str]] = field(default_factory=list)  # (asked when, what)
    refused: int = 0  # connection refused or cut (the node's network, not the node)
    retries: int = 0
    acks: list[Ack] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)  # a client thread's own failure

    def answer(self, what: str, route: str, asked: float, response: requests.Response) -> None:
        status = response.status_code
        with self.lock:
            self.statuses[status] += 1
            self.answers.append(Answer(asked, time.monotonic(), route, status))
            if status == 503:
                if not _proper_503(response):
                    self.bad.append(f"{what}: 503 {dict(response.headers)} {response.text[:200]}")
            elif status >= 500:
                self.bad.append(f"{what}: {status} {response.text[:300]}")
            elif status >= 400:
                self.unexpected.append(f"{what}: {status} {response.text[:300]}")

    def failed(self, what: str, error: Exception, asked: float) -> None:
        with self.lock:
            if isinstance(error, requests.Timeout):
                self.no_answer.append((asked, f"{what}: {type(error).__name__}"))
            else:
                self.refused += 1

    def retried(self) -> None:
        with self.lock:
            self.retries += 1

    def acked(self, who: str, status: int, asked: float) -> None:
        with self.lock:
            self.acks.append(Ack(asked, time.monotonic(), who, status))

    def ack_count(self) -> int:
        with self.lock:
            return len(self.acks)

    def acked_between(self, start: float, end: float) -> list[Ack]:
        """Acknowledgements of attempts sent after ``start`` and answered before ``end``."""
        with self.lock:
            return [a for a in self.acks if a.asked >= start and a.answered < end]

    def answers_between(self, start: float, end: float) -> list[Answer]:
        """Answers to requests sent after ``start``, answered before ``end``."""
        with self.lock:
            return [a for a in self.answers if a.asked >= start and a.answered < end]

    def timeline(self, start: float, step: float, side: str) -> str:
        """What became of ``side``'s requests (``visitor``/``agent``), by when they were
        sent, per ``step`` seconds from ``start``: ``"+0s 201x40 timeoutx8 | +5s ..."``."""
        with self.lock:
            rows = [(a.asked, str(a.status)) for a in self.answers if f"/{side}/" in a.route]
            rows += [(t, "timeout") for t, what in self.no_answer if f"/{side}/" in what]
        buckets: dict[int, Counter[str]] = {}
        for at, status in rows:
            if at >= start:
                buckets.setdefault(int((at - start) // step), Counter())[status] += 1
        return " | ".join(
            f"+{k * step:.0f}s " + " ".join(f"{s}x{n}" for s, n in sorted(c.items()))
            for k, c in sorted(buckets.items())
        )

    def recovery(self, restored: float, who: Iterable[str]) -> dict[str, float]:
        """Seconds from ``restored`` to each sender's first acknowledgement after it."""
        with self.lock:
            acks = sorted(self.acks, key=lambda a: a.answered)
        first: dict[str, float] = {}
        for ack in acks:
            if ack.answered >= restored and ack.who not in first:
                first[ack.who] = ack.answered - restored
        return {name: first.get(name, float("inf")) for name in who}


def route_of(method: str, path: str) -> str:
    """``POST /visitor/messages``, ``POST /agent/messages``: the route, without ids."""
    parts = path.split("/")
    return f"{method} /{parts[1]}/{parts[-1]}"


def _proper_503(response: requests.Response) -> bool:
    try:
        retry_after = int(response.headers.get("Retry-After", ""))
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return False
    return retry_after > 0 and code == "unavailable"
