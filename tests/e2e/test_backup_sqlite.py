"""SQLite backups of the embedded store taken while `parsectl serve` writes, restored and compared."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.parsectl_proc import parsectl_command, parsectl_server

pytestmark = pytest.mark.slow


def backup(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*parsectl_command(), "backup", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


class Writer(threading.Thread):
    """Creates Item objects with increasing `seq` (one at a time, in order) and uploads a file every 5th."""

    def __init__(self, server_url: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=server_url, headers=headers, timeout=10)
        self.stop = threading.Event()
        self.seq = 0
        self.files: dict[str, str] = {}  # stored name -> sha256
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                if self.seq % 5 == 0:
                    data = os.urandom(2048 + self.seq)
                    r = self.client.post(f"/files/blob{self.seq}.bin", content=data,
                                         headers={"Content-Type": "application/octet-stream"})
                    r.raise_for_status()
                    self.files[r.json()["name"]] = hashlib.sha256(data).hexdigest()
                r = self.client.post("/classes/Item", json={"seq": self.seq, "pad": "x" * 200})
                r.raise_for_status()
                self.seq += 1
            except Exception as exc:  # pragma: no cover - reported by the test
                self.errors.append(repr(exc))
                return


def seqs(db: Path) -> list[int]:
    con = sqlite3.connect(db)
    try:
        return [row[0] for row in con.execute('SELECT "seq" FROM "Item" ORDER BY "seq"')]
    finally:
        con.close()


def check_restored(db: Path, manifest: dict, files_dir: Path, written_files: dict[str, str]) -> list[int]:
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        tables = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
        counts = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        con.close()
    assert counts == manifest["database"]["tables"]  # object counts equal the snapshot's
    got = seqs(db)
    assert got == list(range(len(got))), "the snapshot is not one point in time (a gap in the write sequence)"
    restored = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files_dir.iterdir()}
    assert {e["name"]: e["sha256"] for e in manifest["files"]} == restored
    for name, sha in restored.items():
        assert written_files.get(name, sha) == sha
    return got


def test_hot_backup_while_serving_restore_and_compare(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = tmp_path / "backups"
    with parsectl_server(data_dir=data) as server:
        db_uri = f"sqlite:///{data / 'parse.db'}"
        writer = Writer(server.server_url, server.headers(master=True))
        writer.start()
        try:
            while writer.seq < 60 and not writer.errors:
                time.sleep(0.02)
            before = writer.seq
            first = backup("run", "--database", db_uri, "--to", str(store), "--output", "json")
            during = writer.seq
            second = backup("run", "--database", db_uri, "--to", str(store), "--output", "json")
        finally:
            writer.stop.set()
            writer.join(10)
        assert not writer.errors, writer.errors
        assert first.returncode == 0, first.stderr
        assert second.returncode == 0, second.stderr
        m1, m2 = json.loads(first.stdout)["manifest"], json.loads(second.stdout)["manifest"]
        assert during > before, "the server did not write while the backup ran"
        assert m2["new_files"] < len(m2["files"])  # files are stored once across backups

        # restoring over the live store is refused
        live = backup("restore", "--database", db_uri, "--to", str(store), "--backup-id", m1["id"], "--yes")
        assert live.returncode == 4 and "in use" in live.stderr

        target = tmp_path / "restored" / "parse.db"
        done = backup("restore", "--database", f"sqlite:///{target}", "--to", str(store), "--backup-id", m1["id"],
                      "--output", "json")
        assert done.returncode == 0, done.stderr
        got = check_restored(target, m1, target.parent / "files", writer.files)
        assert before <= len(got) <= during  # the state at a moment during the backup

        # a non-empty target needs --yes; the old data is moved aside
        again = backup("restore", "--database", f"sqlite:///{target}", "--to", str(store), "--backup-id", m2["id"])
        assert again.returncode == 4 and "--yes" in again.stderr
        over = backup("restore", "--database", f"sqlite:///{target}", "--to", str(store), "--backup-id", m2["id"],
                      "--yes", "--output", "json")
        assert over.returncode == 0, over.stderr
        assert Path(json.loads(over.stdout)["moved_aside"], "parse.db").exists()
        assert len(check_restored(target, m2, target.parent / "files", writer.files)) >= len(got)

    # the restored store serves: the same objects through the REST API
    with parsectl_server(data_dir=target.parent) as restored:
        r = httpx.get(f"{restored.server_url}/classes/Item", params={"count": 1, "limit": 0},
                      headers=restored.headers(master=True))
        assert r.json()["count"] == m2["database"]["tables"]["Item"]

    # show / last / check / delete guard / gc
    shown = json.loads(backup("show", "--database", db_uri, "--to", str(store), "-o", "json").stdout)
    assert [b["id"] for b in shown["backups"]] == [m1["id"], m2["id"]]
    assert backup("check", "--database", db_uri, "--to", str(store), "--max-age", "1h").returncode == 0
    newest = backup("delete", "--database", db_uri, "--to", str(store), "--backup-id", m2["id"], "--yes")
    assert newest.returncode == 4 and "newest" in newest.stderr
    pruned = backup("delete", "--database", db_uri, "--to", str(store), "--older-than", "1s", "--yes", "-o", "json")
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout)["delete"] == [m1["id"]]
    assert backup("check", "--database", db_uri, "--to", str(store), "--max-age", "1s").returncode in (0, 1)


def test_backup_to_s3_and_restore(tmp_path: Path) -> None:
    from tests.support.s3 import FAKE_ENV, s3_server

    data = tmp_path / "data"
    data.mkdir()
    (data / "files").mkdir()
    (data / "files" / "a.txt").write_bytes(b"hello")
    con = sqlite3.connect(data / "parse.db")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute('CREATE TABLE "Item" ("seq" INTEGER)')
    con.executemany('INSERT INTO "Item" VALUES (?)', [(i,) for i in range(500)])
    con.commit()
    with s3_server() as endpoint:
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="parse-backups")
        s3 = ["--bucket", "parse-backups", "--prefix", "prod/parse", "--endpoint", endpoint, "--region", "us-east-1"]
        made = backup("run", "--database", f"sqlite:///{data / 'parse.db'}", *s3, "-o", "json", env=FAKE_ENV)
        con.close()
        assert made.returncode == 0, made.stderr
        manifest = json.loads(made.stdout)["manifest"]
        keys = [o["Key"] for o in boto3.client("s3", endpoint_url=endpoint).list_objects_v2(
            Bucket="parse-backups")["Contents"]]
        assert f"prod/parse/snapshots/{manifest['id']}/manifest.json" in keys
        target = tmp_path / "r" / "parse.db"
        done = backup("restore", "--database", f"sqlite:///{target}", *s3, "-i", manifest["id"], env=FAKE_ENV)
        assert done.returncode == 0, done.stderr
        assert seqs(target) == list(range(500))
        assert (target.parent / "files" / "a.txt").read_bytes() == b"hello"
        last = backup("last", "--database", "sqlite:///x.db", *s3, "-o", "json", env=FAKE_ENV)
        assert json.loads(last.stdout)["age_seconds"] < 120
