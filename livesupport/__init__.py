"""livesupport: self-hosted live customer-support chat as a WSGI middleware.

Wrap the WSGI application a site already runs::

    from livesupport import LiveSupport
    application = LiveSupport(app, secret_key="...", store="sqlite:///livesupport.db")

Importing the package opens nothing, starts nothing and patches nothing; the
middleware's parts load when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["LiveSupport", "__version__"]

if TYPE_CHECKING:
    from .middleware import LiveSupport


def __getattr__(name: str) -> Any:
    # Lazy, so that ``livesupport serve`` can monkey-patch before werkzeug,
    # SQLAlchemy and the standard library's socket users are imported.
    if name == "LiveSupport":
        from .middleware import LiveSupport

        return LiveSupport
    raise AttributeError(f"module 'livesupport' has no attribute {name!r}")
