"""Backups of the embedded store: a hot, consistent SQLite snapshot plus the files directory.

The database is copied with SQLite's online backup API (``sqlite3.Connection.backup``) in one step, i.e.
inside one read transaction: with the store in WAL mode, ``parsectl serve`` keeps writing meanwhile and
the copy is the database as of one instant. The copy is checked (``PRAGMA integrity_check``) and
counted before it is uploaded. Files (``<dir of the db>/files``) are stored once by content (sha256), so
repeated backups upload only new files; ``gc`` removes contents no snapshot needs any more.

Layout in a folder or under an S3 prefix::

    snapshots/<id>/parse.db          the database copy (rollback-journal mode, one self-contained file)
    snapshots/<id>/manifest.json     written last: a snapshot without it is incomplete
    blobs/<sha256[:2]>/<sha256>      file contents
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parsectl.backup.strata import BackupRecord, DeletePlan, plan_delete

FORMAT = "parsectl-sqlite-backup/1"
GC_GRACE_SECONDS = 3600  # gc leaves blobs and unfinished snapshots younger than this (a backup in progress)
Progress = Callable[[str, int, int], None]  # (stage, done, total)


class BackupError(RuntimeError):
    """A SQLite backup, restore or check could not be done; the message says why."""


def db_path_from_uri(uri: str) -> Path:
    """``sqlite:///abs/path/parse.db`` or ``sqlite:///rel/path.db`` (as ``parsectl serve`` takes them)."""
    if not uri.startswith("sqlite:"):
        raise BackupError(f"--database {uri!r}: give sqlite:///path/to/parse.db (MongoDB nodes are backed up "
                          "with strata: drop --database)")
    # as parsectl serve reads it (parsectl.storage.adapter_for / files.factory.data_dir)
    path = uri.removeprefix("sqlite://").removeprefix("sqlite:").split("?", 1)[0]
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    if not path or ":memory:" in path:
        raise BackupError(f"--database {uri!r} names no database file")
    return Path(path)


# ---------------------------------------------------------------------------------------------------------
# Stores
# ---------------------------------------------------------------------------------------------------------

class FolderStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def put_file(self, key: str, source: Path) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        shutil.copyfile(source, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)

    def put_bytes(self, key: str, data: bytes) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise BackupError(f"{key} is missing from {self.root}") from None

    def get_file(self, key: str, dest: Path) -> None:
        try:
            shutil.copyfile(self._path(key), dest)
        except FileNotFoundError:
            raise BackupError(f"{key} is missing from {self.root}") from None

    def list(self, prefix: str) -> list[tuple[str, float]]:
        """(key, modified unix time) under prefix."""
        base = self.root / prefix
        if not base.is_dir():
            return []
        return sorted((str(p.relative_to(self.root)), p.stat().st_mtime) for p in base.rglob("*")
                      if p.is_file() and not p.name.startswith("."))

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()
        parent = self._path(key).parent
        with contextlib.suppress(OSError):
            while parent != self.root and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent


class S3Store:
    def __init__(self, bucket: str, prefix: str = "", *, region: str | None = None, endpoint: str | None = None,
                 profile: str | None = None) -> None:
        import boto3

        session = boto3.Session(profile_name=profile) if profile else boto3.Session()
        self.client = session.client("s3", region_name=region, endpoint_url=endpoint)
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        return where + (f" at {self.endpoint}" if self.endpoint else "")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, exc: Exception, what: str) -> BackupError:
        return BackupError(f"S3 {what} on {self.describe()} failed: {exc}")

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._error(exc, "HEAD") from exc

    def put_file(self, key: str, source: Path) -> None:
        try:
            self.client.upload_file(str(source), self.bucket, self._key(key))
        except Exception as exc:
            raise self._error(exc, f"upload of {key}") from exc

    def put_bytes(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except Exception as exc:
            raise self._error(exc, f"upload of {key}") from exc

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except Exception as exc:
            raise self._error(exc, f"download of {key}") from exc

    def get_file(self, key: str, dest: Path) -> None:
        try:
            self.client.download_file(self.bucket, self._key(key), str(dest))
        except Exception as exc:
            raise self._error(exc, f"download of {key}") from exc

    def list(self, prefix: str) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        strip = len(self.prefix) + 1 if self.prefix else 0
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                               Prefix=self._key(prefix)):
                out += [(obj["Key"][strip:], obj["LastModified"].timestamp()) for obj in page.get("Contents", [])]
        except Exception as exc:
            raise self._error(exc, "LIST") from exc
        return sorted(out)

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            raise self._error(exc, f"delete of {key}") from exc


Store = FolderStore | S3Store


# ---------------------------------------------------------------------------------------------------------
# Snapshots
# ---------------------------------------------------------------------------------------------------------

def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def blob_key(sha: str) -> str:
    return f"blobs/{sha[:2]}/{sha}"


def database_facts(path: Path) -> dict[str, Any]:
    """integrity_check and row counts per table of a database file (read only)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        integrity = "; ".join(row[0] for row in db.execute("PRAGMA integrity_check").fetchall())
        tables = [row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        counts = {t: db.execute(f'SELECT count(*) FROM "{t.replace(chr(34), chr(34) * 2)}"').fetchone()[0]
                  for t in tables}
    finally:
        db.close()
    return {"integrity": integrity, "tables": counts}


def files_in(directory: Path) -> list[tuple[str, Path]]:
    """(relative name, path) of the files under ``directory``; the files adapter's temp files are skipped."""
    if not directory.is_dir():
        return []
    out = []
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            out.append((str(path.relative_to(directory)), path))
    return out


def _new_id(store: Store, now: dt.datetime) -> str:
    base = now.strftime("%Y%m%dT%H%M%SZ")
    taken = {key.split("/")[1] for key, _ in store.list("snapshots/")}
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def snapshot_database(db_path: Path, dest: Path) -> None:
    """Copy a live SQLite database with the online backup API, in one step (one read transaction: a
    consistent point in time while writers go on in WAL mode)."""
    if not db_path.is_file():
        raise BackupError(f"no SQLite database at {db_path}")
    src = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        src.execute("PRAGMA busy_timeout=30000")
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)  # pages=-1: everything in one step
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite backup of {db_path} failed: {exc}") from exc
    finally:
        src.close()


def run_backup(db_path: Path, store: Store, *, progress: Progress | None = None,
               now: dt.datetime | None = None) -> dict[str, Any]:
    """Snapshot the database and its files directory into ``store``; return the manifest."""
    started = time.monotonic()
    now = now or dt.datetime.now(dt.UTC)
    db_path = Path(db_path)
    files_dir = db_path.parent / "files"
    report = progress or (lambda stage, done, total: None)
    with tempfile.TemporaryDirectory(prefix="parsectl-backup-") as tmp:
        copy = Path(tmp) / "parse.db"
        report("snapshot", 0, 1)
        snapshot_database(db_path, copy)
        report("snapshot", 1, 1)
        facts = database_facts(copy)
        if facts["integrity"] != "ok":
            raise BackupError(f"the snapshot of {db_path} fails integrity_check: {facts['integrity'][:500]}")
        backup_id = _new_id(store, now)
        files = files_in(files_dir)
        entries, new_files, new_bytes, total_bytes = [], 0, 0, 0
        for n, (name, path) in enumerate(files, 1):
            try:
                size = path.stat().st_size
                sha = _sha256_file(path)
            except FileNotFoundError:
                continue  # deleted since the listing
            key = blob_key(sha)
            if not store.exists(key):
                store.put_file(key, path)
                new_files += 1
                new_bytes += size
            entries.append({"name": name, "size": size, "sha256": sha})
            total_bytes += size
            report("files", n, len(files))
        db_key = f"snapshots/{backup_id}/parse.db"
        report("upload", 0, 1)
        store.put_file(db_key, copy)
        report("upload", 1, 1)
        manifest = {
            "format": FORMAT, "id": backup_id, "created": now.isoformat(), "created_unix": now.timestamp(),
            "source": {"database": str(db_path.resolve()), "files_dir": str(files_dir.resolve()),
                       "host": socket.gethostname()},
            "database": {"key": db_key, "size": copy.stat().st_size, "sha256": _sha256_file(copy), **facts},
            "files": entries, "files_total_size": total_bytes, "new_files": new_files, "new_bytes": new_bytes,
            "duration_seconds": round(time.monotonic() - started, 6),
        }
        store.put_bytes(f"snapshots/{backup_id}/manifest.json", json.dumps(manifest, indent=1).encode())
    return manifest


def manifests(store: Store) -> list[dict[str, Any]]:
    out = []
    for key, _ in store.list("snapshots/"):
        if key.endswith("/manifest.json"):
            try:
                manifest = json.loads(store.get_bytes(key))
            except (ValueError, BackupError):
                continue
            if manifest.get("format") == FORMAT:
                out.append(manifest)
    return sorted(out, key=lambda m: (m["created_unix"], m["id"]))


def as_record(manifest: dict[str, Any]) -> BackupRecord:
    started = dt.datetime.fromtimestamp(manifest["created_unix"], dt.UTC)
    total = manifest["database"]["size"] + manifest["files_total_size"]
    new = manifest["database"]["size"] + manifest["new_bytes"]
    duration = float(manifest.get("duration_seconds", 0))
    return BackupRecord(
        id=manifest["id"], date=started.strftime("%Y-%m-%d %H:%M:%S UTC"), started=started,
        num_files=len(manifest["files"]) + 1, size_gb=total / 1073741824,
        incremental_files=manifest["new_files"] + 1, incremental_size_gb=new / 1073741824,
        duration=f"{duration:.3f}s", duration_seconds=duration)


def show(store: Store) -> list[BackupRecord]:
    return [as_record(m) for m in manifests(store)]


def delete(store: Store, *, older_than: str | None = None, backup_ids: tuple[str, ...] | list[str] = (),
           keep_at_least: int = 1, dry_run: bool = False, now: dt.datetime | None = None) -> DeletePlan:
    plan = plan_delete(show(store), older_than=older_than, backup_ids=list(backup_ids),
                       keep_at_least=keep_at_least, now=now)
    plan.age_flag = None
    if not dry_run:
        for record in plan.delete:
            store.delete(f"snapshots/{record.id}/manifest.json")  # first: from here on it is incomplete
            store.delete(f"snapshots/{record.id}/parse.db")
    return plan


def gc(store: Store, *, grace_seconds: int = GC_GRACE_SECONDS, dry_run: bool = False) -> dict[str, Any]:
    """Remove blobs no snapshot needs and unfinished snapshots, both older than ``grace_seconds``."""
    now = time.time()
    kept = manifests(store)
    needed = {blob_key(f["sha256"]) for m in kept for f in m["files"]}
    complete = {m["id"] for m in kept}
    garbage = [key for key, mtime in store.list("blobs/") if key not in needed and now - mtime > grace_seconds]
    garbage += [key for key, mtime in store.list("snapshots/")
                if key.split("/")[1] not in complete and now - mtime > grace_seconds]
    if not dry_run:
        for key in garbage:
            store.delete(key)
    return {"deleted": garbage, "snapshots": len(kept), "blobs_needed": len(needed), "dry_run": dry_run}


# ---------------------------------------------------------------------------------------------------------
# Restore
# ---------------------------------------------------------------------------------------------------------

def processes_using(path: Path) -> list[int]:
    """PIDs that have ``path`` (or its -wal/-shm) open (Linux /proc)."""
    targets = {str(path.resolve()), str(path.resolve()) + "-wal", str(path.resolve()) + "-shm"}
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in targets:
                        pids.append(int(proc.name))
                        break
    return sorted(set(pids) - {os.getpid()})


def restore(store: Store, backup_id: str, target_db: Path, *, yes: bool = False,
            progress: Progress | None = None) -> dict[str, Any]:
    """Restore snapshot ``backup_id`` to ``target_db`` and ``<its dir>/files``.

    Refuses while any process has the target database open; refuses a non-empty target unless ``yes``
    (the old database and files are then moved to ``<dir>/pre-restore-<time>/``, not deleted)."""
    report = progress or (lambda stage, done, total: None)
    found = [m for m in manifests(store) if m["id"] == backup_id]
    if not found:
        raise BackupError(f"no complete backup {backup_id!r} in {store.describe()} (see `parsectl backup show`)")
    manifest = found[0]
    target_db = Path(target_db).absolute()
    target_dir = target_db.parent
    files_dir = target_dir / "files"
    if target_db.exists():
        users = processes_using(target_db)
        if users:
            raise BackupError(f"{target_db} is in use by process(es) {', '.join(map(str, users))} (a running "
                              "`parsectl serve`?); stop it before restoring")
    occupied = (target_db.exists() and target_db.stat().st_size > 0) or any(files_in(files_dir))
    moved_to = None
    if occupied and not yes:
        raise BackupError(f"{target_db} (or {files_dir}) already holds data; give --yes to restore over it "
                          "(the current data is moved aside, not deleted)")
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".restore-", dir=target_dir) as tmp:
        staged_db = Path(tmp) / "parse.db"
        report("download", 0, 1)
        store.get_file(manifest["database"]["key"], staged_db)
        report("download", 1, 1)
        if _sha256_file(staged_db) != manifest["database"]["sha256"]:
            raise BackupError(f"the database of backup {backup_id} does not match its checksum")
        facts = database_facts(staged_db)
        if facts["integrity"] != "ok":
            raise BackupError(f"the database of backup {backup_id} fails integrity_check: {facts['integrity']}")
        staged_files = Path(tmp) / "files"
        staged_files.mkdir()
        for n, entry in enumerate(manifest["files"], 1):
            dest = staged_files / entry["name"]
            if Path(entry["name"]).is_absolute() or ".." in Path(entry["name"]).parts:
                raise BackupError(f"backup {backup_id} names a file outside the files directory: {entry['name']}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            store.get_file(blob_key(entry["sha256"]), dest)
            if _sha256_file(dest) != entry["sha256"]:
                raise BackupError(f"file {entry['name']} of backup {backup_id} does not match its checksum")
            report("files", n, len(manifest["files"]))
        if occupied or target_db.exists() or files_dir.exists():
            moved_to = target_dir / f"pre-restore-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}"
            moved_to.mkdir()
            for suffix in ("", "-wal", "-shm", "-journal"):
                old = Path(str(target_db) + suffix)
                if old.exists():
                    os.replace(old, moved_to / old.name)
            if files_dir.exists():
                os.replace(files_dir, moved_to / "files")
        os.replace(staged_files, files_dir)
        os.replace(staged_db, target_db)
    return {"id": backup_id, "database": str(target_db), "files_dir": str(files_dir),
            "files": len(manifest["files"]), "tables": facts["tables"], "integrity": facts["integrity"],
            "moved_aside": str(moved_to) if moved_to else None}


# ---------------------------------------------------------------------------------------------------------
# Freshness
# ---------------------------------------------------------------------------------------------------------

@dataclass
class Freshness:
    name: str
    newest: dt.datetime | None
    age_seconds: float | None
    ok: bool
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"node": self.name, "newest": self.newest.isoformat() if self.newest else None,
                "age_seconds": self.age_seconds, "ok": self.ok, "message": self.message}


def freshness(name: str, newest_unix: float | None, max_age_seconds: int, *, now: float | None = None) -> Freshness:
    from parsectl.backup.durations import humanize

    now = time.time() if now is None else now
    if newest_unix is None:
        return Freshness(name, None, None, False, f"{name}: no backup at all")
    age = now - newest_unix
    newest = dt.datetime.fromtimestamp(newest_unix, dt.UTC)
    if age > max_age_seconds:
        return Freshness(name, newest, age, False,
                         f"{name}: newest backup is {humanize(age)} old (limit {humanize(max_age_seconds)})")
    return Freshness(name, newest, age, True, f"{name}: newest backup is {humanize(age)} old")

