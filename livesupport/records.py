"""Store records as bus notices carry them: plain JSON values, and back.

Agent-facing nodes keep a copy of the recent feed (:mod:`livesupport.agent_log`)
from what writers publish, so the records cross the bus: datetimes travel as
ISO 8601 strings, authors as ``[kind, id, name]``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .store.base import Author, Conversation, StoredEvent

_parse = datetime.fromisoformat


def _author(author: Author | None) -> list[str] | None:
    return None if author is None else [author.kind, author.id, author.name]


def _author_of(value: list[str] | None) -> Author | None:
    return None if value is None else Author(value[0], value[1], value[2])  # type: ignore[arg-type]


def event_to_json(e: StoredEvent) -> list[Any]:
    return [e.type, e.conversation_id, e.seq, e.pos, e.at.isoformat(), e.id, e.client_msg_id,
            _author(e.author), e.body, _author(e.agent)]  # fmt: skip


def event_of(v: list[Any]) -> StoredEvent:
    return StoredEvent(v[0], v[1], v[2], v[3], _parse(v[4]), v[5], v[6], _author_of(v[7]), v[8],
                       _author_of(v[9]))  # fmt: skip


def conversation_to_json(c: Conversation) -> list[Any]:
    return [c.id, c.visitor_id, c.status, c.agent_id, c.created_at.isoformat(),
            c.updated_at.isoformat(), c.last_seq, c.node_id, c.pos]  # fmt: skip


def conversation_of(v: list[Any]) -> Conversation:
    return Conversation(v[0], v[1], v[2], v[3], _parse(v[4]), _parse(v[5]), v[6], v[7], v[8])
