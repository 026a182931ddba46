"""Time and identifiers in the formats of the wire protocol."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(at: datetime) -> str:
    """``2026-11-27T22:05:52.123Z``: UTC, milliseconds, ``Z`` suffix."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def new_id(prefix: str) -> str:
    """An opaque id such as ``c_3q2xw...``: 128 random bits, URL- and cookie-safe."""
    return f"{prefix}_{secrets.token_urlsafe(16).replace('-', 'x').replace('_', 'y')}"
