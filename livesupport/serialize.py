"""The protocol's JSON objects (Message, Event, Conversation) from stored records."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .clock import rfc3339 as _rfc3339_any
from .store.base import Author, Conversation, StoredEvent, Visitor

_UTC_OFFSET = timedelta(0)


def rfc3339(at: datetime) -> str:
    """:func:`livesupport.clock.rfc3339`, through ``isoformat`` (C) for the UTC datetimes
    the stores return: ``strftime`` was a third of an agent poll's time."""
    if at.utcoffset() == _UTC_OFFSET and at.year >= 1000:
        return at.isoformat(timespec="milliseconds")[:-6] + "Z"
    return _rfc3339_any(at)


def author_json(author: Author | None) -> dict[str, str]:
    if author is None:
        return {"kind": "system", "id": "system", "name": ""}
    return {"kind": author.kind, "id": author.id, "name": author.name}


def message_json(event: StoredEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "conversation_id": event.conversation_id,
        "seq": event.seq,
        "client_msg_id": event.client_msg_id,
        "author": author_json(event.author),
        "body": event.body,
        "at": rfc3339(event.at),
    }


def visitor_json(visitor: Visitor | None, visitor_id: str) -> dict[str, str]:
    if visitor is None:
        return {"id": visitor_id, "name": "", "email": "", "page": "", "referrer": "",
                "user_agent": "", "locale": ""}  # fmt: skip
    return {
        "id": visitor.id,
        "name": visitor.name,
        "email": visitor.email,
        "page": visitor.page,
        "referrer": visitor.referrer,
        "user_agent": visitor.user_agent,
        "locale": visitor.locale,
    }


def conversation_json(conversation: Conversation, visitor: Visitor | None) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "status": conversation.status,
        "visitor": visitor_json(visitor, conversation.visitor_id),
        "agent_id": conversation.agent_id,
        "created_at": rfc3339(conversation.created_at),
        "updated_at": rfc3339(conversation.updated_at),
        "last_seq": conversation.last_seq,
        "node_id": conversation.node_id,
    }


def event_json(event: StoredEvent, conversation: dict[str, Any] | None = None) -> dict[str, Any]:
    """A durable event. ``conversation`` (its JSON) is the data of conversation_closed."""
    data: dict[str, Any]
    if event.type == "message":
        data = message_json(event)
    elif event.type == "conversation_closed":
        data = conversation or {"id": event.conversation_id}
    else:
        agent = event.agent
        data = {"agent": {"id": agent.id, "name": agent.name} if agent else None}
    return {
        "type": event.type,
        "conversation_id": event.conversation_id,
        "seq": event.seq,
        "at": rfc3339(event.at),
        "data": data,
    }


def ephemeral_json(
    type_: str, conversation_id: str, at: datetime, data: dict[str, Any]
) -> dict[str, Any]:
    """An event outside the conversation's sequence (typing, read, queue, agent notices)."""
    return {
        "type": type_,
        "conversation_id": conversation_id,
        "seq": None,
        "at": rfc3339(at),
        "data": data,
    }
