"""Helpers for parsectl's end-to-end tests: private PostgreSQL clusters, the reference node
parse-server, a `parsectl serve` subprocess and the Parse JS SDK scenario runner."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
JS_DIR = REPO_ROOT / "tests" / "js"


class SetupError(RuntimeError):
    """A prerequisite of the end-to-end tests (node, npm, PostgreSQL, ...) is missing or broken."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05, what: str = "") -> None:
    """Poll `predicate` until it returns true; raise TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as exc:
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate!r}: last error {last_exc!r}")


def tail(path: Path, limit: int = 4000) -> str:
    """The last `limit` characters of a log file (or a note that it is missing)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return text[-limit:]
