"""The served ``widget.js``: the static file with the site owner's settings inside.

The widget reads its settings from a JSON object that replaces the
``/*@config*/{}`` marker inside the file's IIFE, so a site owner changes
colours, texts or position through :class:`~livesupport.config.Config` and
never edits JavaScript. The result is built once per set of settings and
carries a strong ETag computed from its bytes, so nodes with the same settings
answer the same ETag.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache

from . import assets
from .config import Config

MARKER = b"/*@config*/{}"


def widget_settings(config: Config) -> dict[str, object]:
    """What the widget needs to know, and nothing secret."""
    return {
        "prefix": config.prefix,
        "title": config.widget_title,
        "greeting": config.widget_greeting,
        "color": config.widget_color,
        "position": config.widget_position,
        "locale": config.widget_locale,
        "prechat": config.widget_prechat,
    }


def widget_script(config: Config) -> tuple[bytes, str]:
    """``widget.js`` for ``config``, and its strong ETag."""
    return _build(json.dumps(widget_settings(config), sort_keys=True))


@lru_cache(maxsize=8)
def _build(settings: str) -> tuple[bytes, str]:
    source, _ = assets.load("widget.js")
    if source.count(MARKER) != 1:
        raise RuntimeError("widget.js must contain the config marker exactly once")
    # ensure_ascii: the JSON is pure ASCII, so nothing in it can end the literal early.
    data = source.replace(MARKER, b"/*@config*/" + settings.encode("ascii"))
    return data, hashlib.sha256(data).hexdigest()[:32]
