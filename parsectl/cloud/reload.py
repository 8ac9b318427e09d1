"""``parsectl serve --reload``: load Cloud Code again when its files change, without stopping the server.

The cloud file's directory (or the module's package directory) is polled once a second for changes to
``*.py`` files. On a change the code is loaded afresh (modules imported from that directory are loaded
again too); if it fails to load (a syntax error, an exception at import) the previous code stays in
service and the error is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("parsectl.cloud.reload")
POLL_SECONDS = 1.0
_MAX_FILES = 5000


def watched_directory(spec: str) -> Path | None:
    """The directory whose Python files make up the cloud code ``spec`` names."""
    path = Path(spec).expanduser()
    if spec.endswith(".py") or "/" in spec or path.is_file():
        return path.resolve().parent
    try:
        found = importlib.util.find_spec(spec)
    except (ImportError, ValueError):
        return None
    if found is None or not found.origin:
        return None
    return Path(found.origin).resolve().parent


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for path in directory.rglob("*.py"):
        if len(out) >= _MAX_FILES:
            break
        try:
            stat = path.stat()
        except OSError:
            continue
        out[str(path)] = (stat.st_mtime_ns, stat.st_size)
    return out


def _forget_modules(directory: Path) -> None:
    """Drop modules loaded from ``directory`` so that a new load imports their current text."""
    prefix = str(directory) + "/"
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None)
        if isinstance(origin, str) and origin.startswith(prefix):
            del sys.modules[name]


class CloudReloader:
    """Polls the cloud code's files and swaps the runtime's registry when they change and load."""

    def __init__(self, spec: str, runtime: Any) -> None:
        self.spec = spec
        self.runtime = runtime
        self.directory = watched_directory(spec)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.directory is None:
            log.error("--reload: cannot find the files of cloud code %s; it will not be reloaded", self.spec)
            return
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def reload(self) -> bool:
        """Load the code again; True when the new code is in service."""
        from parsectl.cloud import CloudLoadError, load

        assert self.directory is not None
        _forget_modules(self.directory)
        try:
            cloud = load(self.spec)
        except CloudLoadError as exc:
            log.error("Cloud Code reload failed; the previous code stays in service: %s", exc)
            return False
        self.runtime.cloud = cloud
        log.warning("Cloud Code reloaded from %s", self.spec)
        return True

    async def _watch(self) -> None:
        assert self.directory is not None
        seen = snapshot(self.directory)
        while True:
            await asyncio.sleep(POLL_SECONDS)
            now = snapshot(self.directory)
            if now != seen:
                seen = now
                self.reload()
