"""SQLite backups: URIs, snapshot + manifest, dedup of files, gc grace, restore safety."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from parsectl.backup import sqlite as sq


@pytest.mark.parametrize(("uri", "path"), [
    ("sqlite:////srv/parse/parse.db", "/srv/parse/parse.db"), ("sqlite:///srv/p.db", "/srv/p.db"),
    ("sqlite:rel/p.db", "rel/p.db"), ("sqlite:////a/b.db?mode=rw", "/a/b.db"),
])
def test_db_path_from_uri(uri: str, path: str) -> None:
    assert sq.db_path_from_uri(uri) == Path(path)


def test_db_path_refusals() -> None:
    with pytest.raises(sq.BackupError, match="strata"):
        sq.db_path_from_uri("mongodb://db1:27017/parse")
    with pytest.raises(sq.BackupError):
        sq.db_path_from_uri("sqlite://:memory:")


def make_store(tmp_path: Path, rows: int = 10) -> Path:
    data = tmp_path / "data"
    (data / "files" / "sub").mkdir(parents=True)
    con = sqlite3.connect(data / "parse.db")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute('CREATE TABLE "Item" ("n" INTEGER)')
    con.executemany('INSERT INTO "Item" VALUES (?)', [(i,) for i in range(rows)])
    con.commit()
    con.close()
    (data / "files" / "a.bin").write_bytes(b"a" * 100)
    (data / "files" / "sub" / "b.bin").write_bytes(b"b" * 10)
    (data / "files" / ".upload-x.tmp").write_bytes(b"partial")
    return data / "parse.db"


def test_backup_manifest_and_dedup(tmp_path: Path) -> None:
    db = make_store(tmp_path)
    store = sq.FolderStore(tmp_path / "bk")
    m1 = sq.run_backup(db, store)
    assert m1["database"]["integrity"] == "ok" and m1["database"]["tables"] == {"Item": 10}
    assert sorted(e["name"] for e in m1["files"]) == ["a.bin", "sub/b.bin"]  # temp upload files skipped
    m2 = sq.run_backup(db, store)
    assert m2["id"] != m1["id"] and m2["new_files"] == 0
    copy = sqlite3.connect(tmp_path / "bk" / m1["database"]["key"])
    assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
    copy.close()
    assert [r.id for r in sq.show(store)] == [m1["id"], m2["id"]]


def test_gc_grace_and_incomplete(tmp_path: Path) -> None:
    db = make_store(tmp_path)
    store = sq.FolderStore(tmp_path / "bk")
    m1 = sq.run_backup(db, store)
    (db.parent / "files" / "a.bin").unlink()
    m2 = sq.run_backup(db, store)
    sq.delete(store, backup_ids=[m1["id"]])
    (tmp_path / "bk" / "snapshots" / "20000101T000000Z").mkdir()
    (tmp_path / "bk" / "snapshots" / "20000101T000000Z" / "parse.db").write_bytes(b"half")
    assert sq.gc(store)["deleted"] == []  # everything is younger than the grace period
    old = time.time() - 2 * sq.GC_GRACE_SECONDS
    for path in (tmp_path / "bk").rglob("*"):
        os.utime(path, (old, old))
    result = sq.gc(store)
    assert sorted(result["deleted"]) == sorted([sq.blob_key(m1["files"][0]["sha256"]),
                                                "snapshots/20000101T000000Z/parse.db"])
    assert [r.id for r in sq.show(store)] == [m2["id"]]


def test_restore_refuses_non_empty_and_unsafe(tmp_path: Path) -> None:
    db = make_store(tmp_path)
    store = sq.FolderStore(tmp_path / "bk")
    m = sq.run_backup(db, store)
    with pytest.raises(sq.BackupError, match="--yes"):
        sq.restore(store, m["id"], db)
    with pytest.raises(sq.BackupError, match="no complete backup"):
        sq.restore(store, "nope", tmp_path / "x" / "parse.db")
    # a manifest naming a file outside the files directory is refused
    bad = json.loads((tmp_path / "bk" / "snapshots" / m["id"] / "manifest.json").read_text())
    bad["files"][0]["name"] = "../../etc/evil"
    (tmp_path / "bk" / "snapshots" / m["id"] / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(sq.BackupError, match="outside"):
        sq.restore(store, m["id"], tmp_path / "y" / "parse.db")


def test_freshness() -> None:
    now = 1_000_000.0
    assert sq.freshness("n", None, 3600, now=now).ok is False
    assert sq.freshness("n", now - 100, 3600, now=now).ok is True
    stale = sq.freshness("n", now - 7200, 3600, now=now)
    assert not stale.ok and stale.message == "n: newest backup is 2h old (limit 1h)"
