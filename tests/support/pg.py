"""A private, throw-away PostgreSQL 15 cluster for the reference parse-server.

The cluster lives in a fresh temp dir, listens on 127.0.0.1 only (plus a unix socket in the temp
dir) on a free port, and is stopped and deleted on exit. PostgreSQL refuses to run as root, so when
the tests run as root the server binaries are run as the `postgres` user (created if missing).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import SetupError, free_port, tail

PG_USER = "parse"
PG_PASSWORD = "parse-e2e-pw"
PG_DATABASE = "parse"
FALLBACK_BINDIR = Path("/usr/lib/postgresql/15/bin")
OS_USER = "postgres"


@dataclass
class PgCluster:
    uri: str
    port: int
    base_dir: Path
    data_dir: Path
    socket_dir: Path
    bindir: Path
    run_as: str | None

    def psql(self, sql: str, database: str = PG_DATABASE) -> str:
        """Run SQL through psql on the unix socket; return its stdout."""
        cmd = [
            str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-h", str(self.socket_dir), "-p", str(self.port), "-U", PG_USER, "-d", database, "-c", sql,
        ]
        return _run(cmd, self.run_as).stdout

    def fresh_database(self, name: str) -> str:
        """Drop and create database ``name``; its URI."""
        self.psql(f"DROP DATABASE IF EXISTS {name}", database="postgres")
        self.psql(f"CREATE DATABASE {name}", database="postgres")
        return self.uri.rsplit("/", 1)[0] + "/" + name


def find_bindir() -> Path:
    """The PostgreSQL server binaries: `pg_config --bindir`, else /usr/lib/postgresql/15/bin."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            candidates.append(Path(out.stdout.strip()))
    candidates.append(FALLBACK_BINDIR)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    raise SetupError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found via `pg_config --bindir` nor in "
        f"{FALLBACK_BINDIR}; install them, e.g. `apt-get install postgresql-15`"
    )


def _ensure_os_user() -> str | None:
    """The OS user to run PostgreSQL as: None when we are not root, else `postgres` (created if missing)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        useradd = shutil.which("useradd")
        if not useradd:
            raise SetupError(f"running as root, no `{OS_USER}` user and no useradd to create one") from None
        subprocess.run([useradd, "--system", "--no-create-home", "--shell", "/bin/sh", OS_USER], check=True)
    if not shutil.which("runuser"):
        raise SetupError("running as root but `runuser` is missing; cannot start PostgreSQL as a non-root user")
    return OS_USER


def _run(cmd: list[str], run_as: str | None, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    if run_as:
        cmd = ["runuser", "-u", run_as, "--", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if proc.returncode != 0:
        raise SetupError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    return proc


@contextlib.contextmanager
def pg_cluster(*, durable: bool = False) -> Iterator[PgCluster]:
    """Start a private PostgreSQL cluster; yield a PgCluster whose `uri` is postgres://user:pass@127.0.0.1:PORT/db.

    Tests run it with fsync off; ``durable``: PostgreSQL's defaults (fsync, synchronous commits, full-page
    writes), as a production server runs (benchmarks)."""
    bindir = find_bindir()
    run_as = _ensure_os_user()
    base = Path(tempfile.mkdtemp(prefix="parsectl-pg-"))
    data_dir = base / "data"
    socket_dir = base / "sock"
    socket_dir.mkdir()
    pwfile = base / "pwfile"
    pwfile.write_text(PG_PASSWORD + "\n")
    if run_as:
        pw = pwd.getpwnam(run_as)
        os.chmod(base, 0o755)
        for p in (base, socket_dir, pwfile):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    port = free_port()
    log = base / "postgres.log"
    started = False
    try:
        _run(
            [
                str(bindir / "initdb"), "-D", str(data_dir), "-U", PG_USER, f"--pwfile={pwfile}",
                "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync",
            ],
            run_as,
            timeout=120,
        )
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={socket_dir} "
            "-c max_connections=200 -c shared_buffers=64MB"
        )
        if not durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        _run([str(bindir / "pg_ctl"), "-D", str(data_dir), "-l", str(log), "-o", opts, "-w", "-t", "60", "start"],
             run_as, timeout=90)
        started = True
        cluster = PgCluster(
            uri=f"postgres://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{port}/{PG_DATABASE}",
            port=port, base_dir=base, data_dir=data_dir, socket_dir=socket_dir, bindir=bindir, run_as=run_as,
        )
        cluster.psql(f"CREATE DATABASE {PG_DATABASE}", database="postgres")
        yield cluster
    except SetupError as exc:
        raise SetupError(f"{exc}\n--- postgres log ---\n{tail(log)}") from None
    finally:
        if started:
            with contextlib.suppress(Exception):
                _run([str(bindir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w", "-t", "30", "stop"],
                     run_as, timeout=60)
        shutil.rmtree(base, ignore_errors=True)
