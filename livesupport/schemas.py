"""JSON Schemas of the protocol's bodies and objects, and the validator that applies them.

These dictionaries are the one source of truth: request bodies are checked
against them, and :mod:`livesupport.openapi` publishes them. The validator
covers the subset of JSON Schema used here (type, properties, required,
string length and pattern, integer bounds, enum, nullable types).
"""

from __future__ import annotations

import re
from typing import Any

from .errors import Invalid

ID = {"type": "string"}
ID_PATTERN = "^[A-Za-z0-9_-]{1,64}$"
TIME = {"type": "string", "format": "date-time"}
CLIENT_MSG_ID = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9_-]+$"}
BODY = {"type": "string", "minLength": 1, "maxLength": 10000, "pattern": "^[^\\x00]*$"}
SHORT_TEXT = {"type": "string", "maxLength": 200}
LONG_TEXT = {"type": "string", "maxLength": 2000}

# -- request bodies ----------------------------------------------------------
VISITOR_SESSION = {
    "type": "object",
    "properties": {
        "name": SHORT_TEXT,
        "email": {"type": "string", "maxLength": 254},
        "page": LONG_TEXT,
        "referrer": LONG_TEXT,
        "locale": {"type": "string", "maxLength": 35},
    },
}
SEND = {
    "type": "object",
    "properties": {"client_msg_id": CLIENT_MSG_ID, "body": BODY},
    "required": ["client_msg_id", "body"],
}
TYPING = {"type": "object", "properties": {"typing": {"type": "boolean"}}, "required": ["typing"]}
READ = {
    "type": "object",
    "properties": {"seq": {"type": "integer", "minimum": 0}},
    "required": ["seq"],
}
RATING = {
    "type": "object",
    "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5}, "comment": LONG_TEXT},
    "required": ["score"],
}
LOGIN = {
    "type": "object",
    "properties": {
        "email": {"type": "string", "minLength": 1, "maxLength": 254},
        "password": {"type": "string", "minLength": 1, "maxLength": 1024},
    },
    "required": ["email", "password"],
}
AGENT_STATUS = {
    "type": "object",
    "properties": {"status": {"type": "string", "enum": ["online", "away", "offline"]}},
    "required": ["status"],
}
TRANSFER = {
    "type": "object",
    "properties": {"agent_id": {"type": "string", "pattern": ID_PATTERN}},
    "required": ["agent_id"],
}
EMPTY = {"type": "object"}

# -- objects -----------------------------------------------------------------
AUTHOR = {
    "type": "object",
    "properties": {
        "kind": {"type": "string", "enum": ["visitor", "agent", "system"]},
        "id": ID,
        "name": {"type": "string"},
    },
    "required": ["kind", "id", "name"],
}
MESSAGE = {
    "type": "object",
    "properties": {
        "id": ID,
        "conversation_id": ID,
        "seq": {"type": "integer", "minimum": 1},
        "client_msg_id": {"type": ["string", "null"]},
        "author": AUTHOR,
        "body": {"type": "string"},
        "at": TIME,
    },
    "required": ["id", "conversation_id", "seq", "client_msg_id", "author", "body", "at"],
}
VISITOR = {
    "type": "object",
    "properties": {
        k: {"type": "string"}
        for k in ("id", "name", "email", "page", "referrer", "user_agent", "locale")
    },
    "required": ["id"],
}
CONVERSATION = {
    "type": "object",
    "properties": {
        "id": ID,
        "status": {"type": "string", "enum": ["waiting", "active", "closed"]},
        "visitor": VISITOR,
        "agent_id": {"type": ["string", "null"]},
        "created_at": TIME,
        "updated_at": TIME,
        "last_seq": {"type": "integer", "minimum": 0},
        "node_id": {"type": "string"},
    },
    "required": [
        "id",
        "status",
        "visitor",
        "agent_id",
        "created_at",
        "updated_at",
        "last_seq",
        "node_id",
    ],
}
EVENT_TYPES = [
    "message", "typing", "read", "agent_joined", "agent_left", "transferred",
    "conversation_closed", "conversation_waiting", "conversation_updated", "queue",
]  # fmt: skip
EVENT = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": EVENT_TYPES},
        "conversation_id": ID,
        "seq": {"type": ["integer", "null"]},
        "at": TIME,
        "data": {"type": "object"},
    },
    "required": ["type", "conversation_id", "seq", "at", "data"],
}
POLL_ANSWER = {
    "type": "object",
    "properties": {
        "events": {"type": "array", "items": EVENT},
        "cursor": {"type": "string"},
        "more": {"type": "boolean"},
    },
    "required": ["events", "cursor", "more"],
}
ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
    "null": (type(None),),
}
_PATTERNS: dict[str, re.Pattern[str]] = {}


def validate(value: Any, schema: dict[str, Any], where: str = "body") -> None:
    """Raise :class:`~livesupport.errors.Invalid` (422) naming the first thing wrong.

    Unknown object members are ignored, so clients of later protocol versions work.
    """
    kinds = schema.get("type")
    if kinds is not None:
        names = [kinds] if isinstance(kinds, str) else kinds
        ok = any(
            isinstance(value, _TYPES[n]) and not (n == "integer" and isinstance(value, bool))
            for n in names
        )
        if not ok:
            raise Invalid(f"{where} must be {' or '.join(names)}")
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                raise Invalid(f"{where}.{name} is required")
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                validate(value[name], sub, f"{where}.{name}")
    elif isinstance(value, str):
        if "\x00" in value:
            raise Invalid(f"{where} must not contain U+0000")
        if len(value) < schema.get("minLength", 0):
            raise Invalid(
                f"{where} must not be empty" if len(value) == 0 else f"{where} is too short"
            )
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise Invalid(f"{where} must be at most {schema['maxLength']} characters")
        pattern = schema.get("pattern")
        if pattern is not None:
            compiled = _PATTERNS.get(pattern) or _PATTERNS.setdefault(pattern, re.compile(pattern))
            if not compiled.fullmatch(value):
                raise Invalid(f"{where} has characters that are not allowed")
    elif isinstance(value, int) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise Invalid(f"{where} must be at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise Invalid(f"{where} must be at most {schema['maximum']}")
    if "enum" in schema and value not in schema["enum"]:
        raise Invalid(f"{where} must be one of {', '.join(map(str, schema['enum']))}")
