"""The reference: node parse-server 9.10 (tests/js/reference-server.js) on a PostgreSQL database."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from . import JS_DIR, SetupError, free_port
from .servers import RunningServer, stop_process, wait_healthy

REQUIRED_PACKAGES = ("parse", "parse-server", "express", "@parse/fs-files-adapter")


def node_bin() -> str:
    node = shutil.which("node")
    if not node:
        raise SetupError("`node` is not on PATH; the end-to-end tests need Node.js 20+ (e.g. `apt-get install nodejs npm`)")
    return node


def _installed_ok() -> bool:
    nm = JS_DIR / "node_modules"
    marker = nm / ".package-lock.json"
    if not marker.is_file():
        return False
    if marker.stat().st_mtime < (JS_DIR / "package-lock.json").stat().st_mtime:
        return False
    return all((nm / pkg / "package.json").is_file() for pkg in REQUIRED_PACKAGES)


def ensure_npm_ci() -> None:
    """Run `npm ci` in tests/js unless its node_modules is already installed from the current lock file."""
    node_bin()
    if _installed_ok():
        return
    npm = shutil.which("npm")
    if not npm:
        raise SetupError("`npm` is not on PATH; it is needed to install tests/js (npm ci)")
    lock = Path(tempfile.gettempdir()) / f"parsectl-e2e-npm-ci-{hashlib.sha1(str(JS_DIR).encode()).hexdigest()[:12]}.lock"
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # concurrent test sessions install once
        if _installed_ok():
            return
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=JS_DIR, capture_output=True, text=True, timeout=600,
        )
        if proc.returncode != 0:
            raise SetupError(f"`npm ci` in {JS_DIR} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        router = subprocess.run([npm, "ls", "router", "--json"], cwd=JS_DIR, capture_output=True, text=True)
        if '"version": "2.2.0"' not in router.stdout:
            raise SetupError(f"tests/js must resolve router 2.2.0 (npm overrides); `npm ls router`:\n{router.stdout}")


@contextlib.contextmanager
def reference_server(
    database_uri: str,
    *,
    app_id: str = "test",
    master_key: str = "test",
    allow_client_class_creation: bool = False,
    port: int | None = None,
    startup_timeout: float = 60.0,
    cloud: Path | None = None,
    work_dir: Path | None = None,
) -> Iterator[RunningServer]:
    """Start node parse-server on `database_uri` (with `cloud`, a main.js, if given); yield a RunningServer
    once /parse/health answers. Its working directory (where its FSFilesAdapter keeps `files/`) is
    `work_dir` if given (kept), else a temporary one (removed)."""
    ensure_npm_ci()
    port = port or free_port()
    own_dir = work_dir is None
    work_dir = Path(tempfile.mkdtemp(prefix="parse-ref-")) if work_dir is None else work_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / "server.log"
    env = dict(os.environ)
    env.update(
        DATABASE_URI=database_uri, PORT=str(port), APP_ID=app_id, MASTER_KEY=master_key, WORK_DIR=str(work_dir),
        ALLOW_CCC="1" if allow_client_class_creation else "0",
    )
    if cloud is not None:
        env["CLOUD"] = str(cloud)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [node_bin(), str(JS_DIR / "reference-server.js")],
            cwd=work_dir, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server_url = f"http://127.0.0.1:{port}/parse"
    try:
        wait_healthy(proc, server_url, startup_timeout, log_path, "the reference parse-server")
        yield RunningServer(
            kind="reference", server_url=server_url, app_id=app_id, master_key=master_key, proc=proc,
            log_path=log_path, extra={"work_dir": str(work_dir), "database_uri": database_uri},
        )
    finally:
        stop_process(proc, timeout=5)
        if own_dir:
            shutil.rmtree(work_dir, ignore_errors=True)


def ready_info(log_path: Path) -> dict | None:
    """The JSON of the PARSE-REFERENCE-READY line, if the server printed it."""
    with contextlib.suppress(OSError):
        for line in Path(log_path).read_text(errors="replace").splitlines():
            if line.startswith("PARSE-REFERENCE-READY "):
                return json.loads(line.split(" ", 1)[1])
    return None
