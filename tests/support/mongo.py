"""A throw-away MongoDB-wire server for the tests: SecantusDB (``secantusd-py``), or a real MongoDB.

``mongo_server()`` starts ``secantusd-py`` on 127.0.0.1 and a free port with its data in a fresh temp
dir, waits until it answers ``ping``, and stops it (and deletes the data) on exit. When the
environment variable ``PARSECTL_TEST_MONGODB_URI`` is set, that server is used instead and nothing is
started. Tests get their own database on it with :meth:`MongoServer.database_uri`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from . import SetupError, free_port, tail
from .servers import stop_process

ENV_URI = "PARSECTL_TEST_MONGODB_URI"
_names = itertools.count()


@dataclass
class MongoServer:
    uri: str  # the server, without a database name
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    run_id: str = ""

    def database_uri(self, name: str | None = None) -> str:
        """A ``mongodb://`` URI naming a database no other test uses."""
        name = name or f"t{self.run_id}_{next(_names)}"
        parts = urlsplit(self.uri)
        return urlunsplit(parts._replace(path="/" + name))


def secantusd_bin() -> str:
    candidate = Path(sys.executable).with_name("secantusd-py")
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("secantusd-py")
    if not found:
        raise SetupError("`secantusd-py` (PyPI secantusdb) is not installed in the venv; "
                         f"install it or set {ENV_URI} to a MongoDB server")
    return found


def _ping(uri: str, timeout_ms: int = 1000) -> None:
    from pymongo import MongoClient

    client: MongoClient = MongoClient(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
    try:
        client.admin.command("ping")
    finally:
        client.close()


@contextlib.contextmanager
def mongo_server(startup_timeout: float = 60.0) -> Iterator[MongoServer]:
    run_id = uuid.uuid4().hex[:6]
    external = os.environ.get(ENV_URI)
    if external:
        parts = urlsplit(external)
        try:
            _ping(external, 5000)
        except Exception as exc:  # noqa: BLE001 - reported as a setup error
            raise SetupError(f"{ENV_URI}={external!r} does not answer: {exc}") from None
        yield MongoServer(urlunsplit(parts._replace(path="/")), run_id=run_id)
        return
    work = Path(tempfile.mkdtemp(prefix="parsectl-secantus-"))
    port = free_port()
    log_path = work / "secantusd.log"
    config = work / "secantusd.toml"  # an empty config file: no auto-discovery of a user's config
    config.write_text("")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [secantusd_bin(), "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(work / "data"),
             "--log-level", "WARNING", "--config", str(config)],
            cwd=work, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    uri = f"mongodb://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + startup_timeout
        last: Exception | None = None
        while True:
            if proc.poll() is not None:
                raise SetupError(f"secantusd-py exited with code {proc.returncode}\n{tail(log_path)}")
            try:
                _ping(uri, 500)
                break
            except Exception as exc:  # noqa: BLE001 - retried until the deadline
                last = exc
            if time.monotonic() > deadline:
                raise SetupError(f"secantusd-py did not answer ping within {startup_timeout}s: {last}\n"
                                 f"{tail(log_path)}")
            time.sleep(0.1)
        yield MongoServer(uri, proc=proc, log_path=log_path, run_id=run_id)
    finally:
        stop_process(proc, timeout=10)
        shutil.rmtree(work, ignore_errors=True)
