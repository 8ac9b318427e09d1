"""Parse Dashboard end-to-end plumbing: Debian's chromium, the dashboard server (tests/js/dashboard-server.js)
and the Playwright driver (tests/js/dashboard.js)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import JS_DIR, SetupError
from .reference import ensure_npm_ci, node_bin
from .servers import stop_process

CHROMIUM = Path("/usr/bin/chromium")


def ensure_chromium() -> str:
    """The path of Debian's chromium, installed with apt-get when missing (skips when apt is impossible)."""
    if CHROMIUM.exists():
        return str(CHROMIUM)
    apt = shutil.which("apt-get")
    if apt is None:
        pytest.skip("chromium is not installed and there is no apt-get to install it (Debian's `chromium` package)")
    if os.geteuid() != 0:
        pytest.skip("chromium is not installed and installing it (`apt-get install -y chromium`) needs root")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    lock = Path(tempfile.gettempdir()) / "parsectl-e2e-apt-chromium.lock"
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # one install even when several test sessions start together
        if CHROMIUM.exists():
            return str(CHROMIUM)
        install = [apt, "install", "-y", "chromium"]
        proc = subprocess.run(install, capture_output=True, text=True, timeout=900, env=env)
        if proc.returncode != 0:  # a stale package list: refresh it once and try again
            subprocess.run([apt, "update"], capture_output=True, text=True, timeout=600, env=env)
            proc = subprocess.run(install, capture_output=True, text=True, timeout=900, env=env)
        if proc.returncode != 0 or not CHROMIUM.exists():
            raise SetupError(f"`apt-get install -y chromium` failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                             f"{proc.stderr[-2000:]}")
    return str(CHROMIUM)


@contextlib.contextmanager
def dashboard_server(server_url: str, app_id: str, master_key: str, timeout: float = 30.0) -> Iterator[str]:
    """Run parse-dashboard on 127.0.0.1 for that Parse server; yield its URL (…/dashboard/)."""
    ensure_npm_ci()
    env = dict(os.environ, PARSE_SERVER_URL=server_url, PARSE_APP_ID=app_id, PARSE_MASTER_KEY=master_key,
               DASHBOARD_PORT="0")
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([node_bin(), str(JS_DIR / "dashboard-server.js")], cwd=JS_DIR, env=env,
                                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True,
                                start_new_session=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # it prints its URL once listening, or exits
            if not line:
                proc.wait(timeout)
                log.seek(0)
                raise SetupError(f"dashboard-server.js exited ({proc.returncode}):\n{log.read().decode()[-3000:]}")
            yield json.loads(line)["url"]
        finally:
            stop_process(proc, timeout=5)


def run_dashboard(dashboard_url: str, chromium: str, artifacts_dir: Path, timeout: float = 150.0) -> dict:
    """Run the dashboard scenarios (tests/js/dashboard.js); return its report."""
    env = dict(os.environ, DASHBOARD_URL=dashboard_url, CHROMIUM=chromium, ARTIFACTS_DIR=str(artifacts_dir))
    try:
        proc = subprocess.run([node_bin(), str(JS_DIR / "dashboard.js")], cwd=JS_DIR, env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise SetupError(f"dashboard.js timed out after {timeout}s\n{exc.stderr}") from None
    if proc.returncode != 0:
        raise SetupError(f"dashboard.js failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise SetupError(f"dashboard.js printed no JSON report:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}") from None
