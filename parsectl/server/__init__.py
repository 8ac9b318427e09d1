"""The Parse-compatible REST API server (an ASGI app)."""

from parsectl.server.app import ParseServer, mounted
from parsectl.server.config import ConfigError, ServerOptions

__all__ = ["ConfigError", "ParseServer", "ServerOptions", "mounted"]
