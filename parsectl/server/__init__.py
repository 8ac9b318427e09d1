"""The Parse-compatible REST API server (an ASGI app).

``ParseServer`` and ``mounted`` are imported on first use, so importing the options (the CLI does, for
every command) does not load the whole server."""

from typing import Any

from parsectl.server.config import ConfigError, ServerOptions

__all__ = ["ConfigError", "ParseServer", "ServerOptions", "mounted"]


def __getattr__(name: str) -> Any:
    if name in ("ParseServer", "mounted"):
        from parsectl.server import app

        return getattr(app, name)
    raise AttributeError(f"module 'parsectl.server' has no attribute {name!r}")
