"""`parsectl serve` as a subprocess on embedded SQLite in a temp data dir."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from . import REPO_ROOT, free_port
from .servers import RunningServer, stop_process, wait_healthy

SHUTDOWN_TIMEOUT = 5.0


def parsectl_command() -> list[str]:
    """The console script next to the running interpreter (the venv's), else `python -m parsectl`."""
    script = Path(sys.executable).parent / "parsectl"
    if script.is_file():
        return [str(script)]
    venv_script = REPO_ROOT / ".venv" / "bin" / "parsectl"
    if venv_script.is_file():
        return [str(venv_script)]
    return [sys.executable, "-m", "parsectl"]


@contextlib.contextmanager
def parsectl_server(
    *,
    app_id: str = "test",
    master_key: str = "test",
    allow_client_class_creation: bool = False,
    data_dir: Path | None = None,
    port: int | None = None,
    startup_timeout: float = 30.0,
    database_uri: str | None = None,
    extra_args: list[str] | None = None,
) -> Iterator[RunningServer]:
    """Start `parsectl serve`; yield a RunningServer once GET /parse/health answers 200 {"status":"ok"}.

    On exit the server gets SIGTERM and must exit within SHUTDOWN_TIMEOUT seconds (AssertionError otherwise).
    """
    port = port or free_port()
    own_dir = data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="parsectl-data-")) if own_dir else Path(data_dir)
    log_path = Path(tempfile.mkdtemp(prefix="parsectl-log-")) / "serve.log"
    cmd = [
        *parsectl_command(), "serve", "--host", "127.0.0.1", "--port", str(port),
        "--app-id", app_id, "--master-key", master_key, "--data-dir", str(data_dir),
    ]
    if allow_client_class_creation:
        cmd.append("--allow-client-class-creation")
    if database_uri:
        cmd += ["--database-uri", database_uri]
    cmd += extra_args or []
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
    server_url = f"http://127.0.0.1:{port}/parse"
    server = RunningServer(
        kind="parsectl", server_url=server_url, app_id=app_id, master_key=master_key, proc=proc,
        log_path=log_path, extra={"data_dir": str(data_dir), "command": cmd},
    )
    clean_exit = True
    try:
        wait_healthy(proc, server_url, startup_timeout, log_path, f"`{' '.join(cmd)}`")
        yield server
    finally:
        was_running = proc.poll() is None
        rc, in_time = stop_process(proc, timeout=SHUTDOWN_TIMEOUT)
        clean_exit = in_time or not was_running
        if own_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
        log_text = server.log_tail()
        shutil.rmtree(log_path.parent, ignore_errors=True)
    assert clean_exit, (
        f"parsectl serve did not exit within {SHUTDOWN_TIMEOUT}s of SIGTERM (killed, rc={rc})\n"
        f"--- log ---\n{log_text}"
    )
