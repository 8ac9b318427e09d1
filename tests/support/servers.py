"""Common plumbing for the server subprocesses the end-to-end tests start."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from . import SetupError, tail


@dataclass
class RunningServer:
    """A Parse-compatible server under test."""

    kind: str  # "reference" or "parsectl"
    server_url: str  # e.g. http://127.0.0.1:PORT/parse
    app_id: str
    master_key: str
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    extra: dict = field(default_factory=dict)

    def log_tail(self, limit: int = 4000) -> str:
        return tail(self.log_path, limit) if self.log_path else "<no log>"

    def headers(self, master: bool = False, **extra: str) -> dict[str, str]:
        h = {"X-Parse-Application-Id": self.app_id}
        if master:
            h["X-Parse-Master-Key"] = self.master_key
        h.update(extra)
        return h


def wait_healthy(proc: subprocess.Popen, server_url: str, timeout: float, log_path: Path, what: str) -> None:
    """Poll GET <server_url>/health until it answers 200 {"status": "ok"}; fail early if the process dies."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            rc = proc.poll()
            if rc is not None:
                raise SetupError(f"{what} exited with code {rc} before it was healthy\n--- log ---\n{tail(log_path)}")
            try:
                r = client.get(f"{server_url}/health")
                if r.status_code == 200 and r.json() == {"status": "ok"}:
                    return
                last = f"{r.status_code} {r.text[:200]!r}"
            except (httpx.HTTPError, ValueError) as exc:
                last = repr(exc)
            time.sleep(0.1)
    stop_process(proc, timeout=5)
    raise SetupError(
        f"{what} did not answer GET {server_url}/health with 200 {{'status':'ok'}} within {timeout}s "
        f"(last: {last})\n--- log ---\n{tail(log_path)}"
    )


def stop_process(proc: subprocess.Popen, timeout: float = 5.0) -> tuple[int | None, bool]:
    """SIGTERM the process (group); SIGKILL after `timeout`. Return (returncode, exited_in_time)."""
    if proc.poll() is not None:
        return proc.returncode, True
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
        return proc.returncode, True
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        return proc.returncode, False
