"""Migration benchmark (issue #4, Performance): `parsectl migrate` from a generated hosted-Parse export into
SQLite, PostgreSQL and MongoDB (the SecantusDB test server), side by side with the raw bulk-insert rate of the
same database on the same machine.

Run from the repository root (so `tests.support` is importable):

    .venv/bin/python -m bench.migrate                                  # 100k and 1M objects, sqlite + postgres + mongodb
    .venv/bin/python -m bench.migrate --sizes 100000 --targets postgres
    .venv/bin/python -m bench.migrate --quick                          # 10k objects only
    .venv/bin/python -m bench.migrate --max-run-seconds 600            # skip a run projected to take longer

For each size, the export is generated once with `tests/support/export_gen.generate_export(dest, objects=N)`
into a cache dir under /tmp (reused by later runs). For each target and size:

* migrate: the real CLI as a subprocess, `.venv/bin/parsectl migrate --from EXPORT --to URI --output json`
  (fresh destination, fresh --state-dir). Wall time runs from spawn to exit; objects/s = objects copied (the
  JSON report's per-class `copied`, summed) / wall time. Peak RSS is the process's VmHWM (/proc/PID/status,
  polled every 50 ms) plus the VmHWM of its children (the export reader process), summed: an upper bound. ru_maxrss from wait4() is kept in the JSON but is not the migrate's own peak: Linux
  counts the forked child's pre-exec image, i.e. this (large, after a raw run) process. Per-class times come from polling
  the migration's checkpoint file in --state-dir (rewritten after every batch; the JSON report has per-class
  counts but no per-class times), so they are approximate to a batch and a 50 ms poll.
* raw: the same number of rows, shaped like the export's `Post` rows as parsectl stores them (the same
  columns and types, random-looking 10-character objectIds as primary key), written from Python:
  PostgreSQL `COPY ... FROM STDIN` through psycopg 3 in one transaction; SQLite `executemany` INSERT in one
  transaction (WAL, synchronous=NORMAL, like parsectl's SQLite store); MongoDB `insert_many` batches of 1000
  (unordered, like parsectl's adapter) through pymongo.
* one-process loader (`bench/naive_load.py`, on by default, `--no-naive` to leave it out): the same export into
  the same (empty) tables by the least a Python loader must do: parse each line, make its row with parsectl's
  row maker, insert (SQLite executemany, PostgreSQL COPY), in one process, with no plan, checks, relations or
  checkpoints. Its rate ÷ raw shows how much of the gap to the raw rate is Python's parsing and converting.
* ratio = migrate objects/s / raw rows/s. Issue #4's target: >= 0.5, and a peak RSS that does not grow with
  the export's size.

PostgreSQL is a private cluster with PostgreSQL's durable defaults (`tests.support.pg.pg_cluster(durable=True)`:
fsync, synchronous commits and full-page writes on, as in production), MongoDB the SecantusDB test
server (`tests.support.mongo.mongo_server()`, or PARSECTL_TEST_MONGODB_URI). Everything is on 127.0.0.1.
Results go to bench/results/migrate-latest.json and .md (the table is also printed). This is a benchmark,
not a test: a failing or slow migration is reported, not worked around.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tests.support import REPO_ROOT, SetupError

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUTPUT = BENCH_DIR / "results" / "migrate-latest.json"
DEFAULT_CACHE = Path("/tmp/parsectl-bench-migrate")
TARGETS = ("sqlite", "postgres", "mongodb")
EXPORT_SEED = 1
POLL_S = 0.05
VENV_BIN = Path(sys.executable).parent
PARSECTL = VENV_BIN / "parsectl"
PY_SPY = Path(shutil.which("py-spy") or VENV_BIN / "py-spy")

# --------------------------------------------------------------------------------------------------
# the export cache
# --------------------------------------------------------------------------------------------------


def cached_export(cache: Path, objects: int) -> tuple[Path, dict]:
    """The export folder for `objects` (generated once, reused) and its facts (counts per class file)."""
    from tests.support.export_gen import generate_export

    folder = cache / f"export-{objects}-seed{EXPORT_SEED}"
    marker = cache / f"export-{objects}-seed{EXPORT_SEED}.facts.json"
    if marker.is_file() and folder.is_dir():
        facts = json.loads(marker.read_text())
        facts["reused"] = True
        return folder, facts
    shutil.rmtree(folder, ignore_errors=True)  # a partial one from an interrupted run
    cache.mkdir(parents=True, exist_ok=True)
    print(f"generating an export of {objects} objects into {folder} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    got = generate_export(folder, objects=objects, seed=EXPORT_SEED)
    facts = {
        "objects": objects,
        "seed": EXPORT_SEED,
        "counts": got.counts,
        "relations": got.relations,
        "total": got.total,
        "seconds": round(time.monotonic() - started, 1),
    }
    marker.write_text(json.dumps(facts))
    facts["reused"] = False
    return folder, facts


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------------------
# running `parsectl migrate` and watching it
# --------------------------------------------------------------------------------------------------


def _proc_status(pid: int) -> dict[str, int]:
    """VmHWM / VmRSS in kB from /proc/PID/status ({} once the process is gone)."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmHWM:", "VmRSS:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    return out


def _children(pid: int) -> list[int]:
    """The child processes of PID (the migration's export reader), from /proc."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as fh:
                out.extend(int(c) for c in fh.read().split())
    return out


def _read_state(state_dir: Path) -> dict | None:
    for path in state_dir.glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            return json.loads(path.read_bytes())
    return None


class StateWatcher:
    """Per-class timing from the migration's checkpoint file (rewritten atomically after every batch)."""

    def __init__(self, state_dir: Path, t0: float) -> None:
        self.state_dir = state_dir
        self.t0 = t0
        self.first_state: float | None = None
        self.classes: dict[str, dict[str, Any]] = {}  # name -> first_seen, done, copied
        self.relations: dict[str, float] = {}  # "Class.field" -> seen (done) time

    def poll(self, now: float) -> None:
        data = _read_state(self.state_dir)
        if data is None:
            return
        t = now - self.t0
        if self.first_state is None:
            self.first_state = t
        for name, k in data.get("classes", {}).items():
            entry = self.classes.setdefault(name, {"first_seen": t, "done": None, "copied": 0})
            entry["copied"] = k.get("copied", 0)
            if k.get("done") and entry["done"] is None:
                entry["done"] = t
        for key in data.get("relations", {}):
            self.relations.setdefault(key, t)

    def summary(self, report_classes: dict[str, Any]) -> dict[str, Any]:
        """Per-class seconds: from the previous class's end (or this class's first checkpoint) to this one's."""
        order = sorted(
            self.classes, key=lambda n: (self.classes[n]["done"] is None, self.classes[n]["done"] or 0)
        )
        out: dict[str, Any] = {}
        prev_done: float | None = None
        for name in order:
            entry = self.classes[name]
            start = entry["first_seen"] if prev_done is None else min(prev_done, entry["first_seen"])
            copied = (report_classes.get(name) or {}).get("copied", entry["copied"])
            seconds = (entry["done"] - start) if entry["done"] is not None else None
            measurable = seconds is not None and seconds >= 4 * POLL_S  # shorter: within the poll's noise
            out[name] = {
                "copied": copied,
                "seconds": _r(seconds, 3),
                "objects_per_s": _r(copied / seconds) if measurable and copied else None,
            }
            if entry["done"] is not None:
                prev_done = entry["done"]
        classes_end = prev_done
        rel_end = max(self.relations.values()) if self.relations else None
        return {
            "classes": out,
            "first_checkpoint_s": _r(self.first_state, 3),
            "classes_done_s": _r(classes_end, 3),
            "relations_done_s": _r(rel_end, 3),
        }


def py_spy_summary(raw_path: Path, top: int = 12) -> dict[str, Any]:
    """Top frames (self and inclusive) from a `py-spy record -f raw` file (collapsed stacks + counts)."""
    self_counts: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw_path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]  # by function, not by line
        self_counts[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n
    pct = (lambda n: round(100 * n / total, 1)) if total else (lambda n: 0)
    return {
        "samples": total,
        "self": [{"frame": f, "pct": pct(n)} for f, n in self_counts.most_common(top)],
        "inclusive": [
            {"frame": f, "pct": pct(n)}
            for f, n in incl.most_common(top * 3)
            if "parsectl/" in f or "psycopg" in f or "pymongo" in f or "sqlite" in f
        ][:top],
    }


def run_migrate(
    export: Path,
    uri: str,
    workdir: Path,
    label: str,
    *,
    timeout: float,
    profile: tuple[float, float] | None,
    profile_dir: Path,
) -> dict[str, Any]:
    state_dir = workdir / f"state-{label}"
    shutil.rmtree(state_dir, ignore_errors=True)
    out_path, err_path = workdir / f"{label}.stdout.json", workdir / f"{label}.stderr.txt"
    cmd = [
        str(PARSECTL),
        "migrate",
        "--from",
        str(export),
        "--to",
        uri,
        "--output",
        "json",
        "--state-dir",
        str(state_dir),
    ]
    result: dict[str, Any] = {"command": " ".join(cmd).replace(uri, _redact(uri))}
    hwm = rss_max = 0
    child_hwm: dict[int, int] = {}
    rss_trace: list[tuple[float, int]] = []  # (s, MB) about every second
    spy: subprocess.Popen | None = None
    spy_path = profile_dir / f"{label}.py-spy.txt"
    if profile:
        profile_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            spy_path.unlink()
    ru = None
    status = None
    timed_out = False
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=workdir, start_new_session=True
        )
        watcher = StateWatcher(state_dir, t0)
        next_trace = 0.0
        while True:
            now = time.monotonic()
            st = _proc_status(proc.pid)
            hwm = max(hwm, st.get("VmHWM", 0))
            rss_max = max(rss_max, st.get("VmRSS", 0))
            for child in _children(proc.pid):
                child_hwm[child] = max(child_hwm.get(child, 0), _proc_status(child).get("VmHWM", 0))
            if now - t0 >= next_trace and st:
                rss_trace.append((round(now - t0, 1), round(st.get("VmRSS", 0) / 1024)))
                next_trace += 1.0
            watcher.poll(now)
            if profile and spy is None and now - t0 >= profile[0]:
                spy = subprocess.Popen(
                    [
                        str(PY_SPY),
                        "record",
                        "-p",
                        str(proc.pid),
                        "-d",
                        str(int(profile[1])),
                        "-f",
                        "raw",
                        "-o",
                        str(spy_path),
                        "--nonblocking",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            pid, wstatus, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                end = time.monotonic()
                proc.returncode = status = os.waitstatus_to_exitcode(wstatus)
                ru = usage
                break
            if now - t0 > timeout:
                timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(POLL_S)
        watcher.poll(time.monotonic())
    wall = end - t0
    if spy is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            spy.wait(30)
        if spy.poll() is None:
            spy.kill()
            spy.wait()
    report: dict[str, Any] | None = None
    with contextlib.suppress(ValueError, OSError):
        report = json.loads(out_path.read_text())
    result.update(
        exit_code=status,
        timed_out=timed_out,
        wall_s=_r(wall, 3),
        # the migrate process plus its export reader process(es): the sum of their peaks (an upper bound)
        peak_rss_mb=_r((hwm + sum(child_hwm.values())) / 1024, 1),
        peak_rss_main_mb=_r(hwm / 1024, 1),
        peak_rss_children_mb=[_r(v / 1024, 1) for v in child_hwm.values()],
        ru_maxrss_mb=_r(ru.ru_maxrss / 1024, 1) if ru else None,
        cpu_s=_r(ru.ru_utime + ru.ru_stime, 2) if ru else None,
        rss_trace_mb=_thin(rss_trace, 60),
    )
    if report is None or status != 0:
        result["error"] = (
            err_path.read_text(errors="replace")[-3000:] or out_path.read_text(errors="replace")[-3000:]
        )
    if report is not None:
        classes = report.get("classes", {})
        copied = sum(c.get("copied", 0) for c in classes.values())
        result.update(
            objects=copied,
            objects_per_s=_r(copied / wall) if wall else None,
            report_seconds=report.get("seconds"),
            relation_rows=sum(sum(c.get("relations", {}).values()) for c in classes.values()),
            already_there=sum(c.get("alreadyThere", 0) for c in classes.values()),
            skipped=sum(c.get("skipped", 0) for c in classes.values()),
            problems=len(report.get("problems", [])),
            warnings=report.get("warnings", []),
        )
        result["timeline"] = watcher.summary(classes)
    if spy_path.is_file():
        result["py_spy"] = {"window_s": list(profile or ()), "raw": str(spy_path), **py_spy_summary(spy_path)}
    return result


def _thin(points: list, limit: int) -> list:
    if len(points) <= limit:
        return points
    step = len(points) / limit
    return [points[int(i * step)] for i in range(limit)] + [points[-1]]


# --------------------------------------------------------------------------------------------------
# raw rows (shaped like the export's Post rows as parsectl stores them)
# --------------------------------------------------------------------------------------------------

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_EPOCH = _dt.datetime(2014, 3, 1, tzinfo=_dt.UTC)


def raw_ids(n: int) -> list[str]:
    """n distinct random-looking 10-character ids (a bijection of i on 59 bits, in base 62)."""
    out = []
    mult, mask = 0x5DEECE66D1B3A6F, (1 << 59) - 1
    for i in range(n):
        v = (i * mult + 0x2545F491) & mask
        chars = []
        for _ in range(10):
            v, r = divmod(v, 62)
            chars.append(_B62[r])
        out.append("".join(chars))
    return out


RAW_COLUMNS = (
    "objectId",
    "createdAt",
    "updatedAt",
    "_rperm",
    "_wperm",
    "title",
    "body",
    "author",
    "published",
    "views",
    "rating",
    "tags",
    "image",
    "location",
    "extra",
)
_ACLS = (
    (["*"], ["*"]),
    None,
    (["*", "role:Administrators", "OWNER"], ["role:Administrators", "OWNER"]),
    ([], []),
    (None, None),
)
_IMAGE = "tfss-1e2feb89-414c-343c-1027-c4d1c386bbc4-photo0.jpg"


def _extra(i: int, owner: str) -> dict[str, Any]:
    """Every 10th row carries nested values like the export's `Everything` objects (a tenth of the export)."""
    when = {"__type": "Date", "iso": _iso(_EPOCH + _dt.timedelta(minutes=i))}
    cover = {"__type": "File", "name": _IMAGE, "url": "http://files.parsetfss.com/k/" + _IMAGE}
    return {
        "object": {
            "when": when,
            "nested": {"depth": 2, "list": [1, "two", {"three": 3.0}]},
            "cover": cover,
            "owner": {"__type": "Pointer", "className": "_User", "objectId": owner},
        },
        "array": [1, "mixed", True, None, {"k": "v"}, when],
        "posts": [f"Post${owner}"] * 3,
        "area": [[10.5 + i % 7, 20.25], [11.5, 20.25], [11.5, 21.25], [10.5, 21.25]],
        "gallery": [_IMAGE, _IMAGE],
        "bytes": "c29tZSBieXRlcyBoZXJlIQ==",
        "string": f'text {i} ü é "quoted"',
    }


def raw_rows(ids: list[str], kind: str) -> Iterator[tuple]:
    """Rows for `kind` (postgres, sqlite): the same values the migration writes for a Post, same widths."""
    n_users = len(ids)
    for i, oid in enumerate(ids):
        created = _EPOCH + _dt.timedelta(seconds=i * 37, milliseconds=i % 1000)
        updated = created + _dt.timedelta(seconds=(i * 7919) % 10**6)
        owner = ids[(i * 31) % n_users]
        acl = _ACLS[i % 5] or ([owner], [owner])
        rperm = [owner if p == "OWNER" else p for p in acl[0]] if acl[0] is not None else None
        wperm = [owner if p == "OWNER" else p for p in acl[1]] if acl[1] is not None else None
        tags = ["a", "b", "c", "d", "e"][: i % 4]
        lat, lng = (i % 180) - 90 + 0.123456789, (i % 360) - 180 + 0.987654321
        image = _IMAGE if i % 7 == 0 else None
        extra = json.dumps(_extra(i, owner)) if i % 10 == 0 else None
        if kind == "postgres":
            yield (
                oid,
                created,
                updated,
                rperm,
                wperm,
                f"Post {i}",
                "Lorem ipsum " * (1 + i % 5),
                owner,
                i % 3 != 0,
                float(i % 10_000),
                round((i % 5000) / 1000, 3),
                json.dumps(tags),
                image,
                f"({lng},{lat})" if i % 5 == 0 else None,
                extra,
            )
        else:
            yield (
                oid,
                _iso(created),
                _iso(updated),
                json.dumps(rperm) if rperm is not None else None,
                json.dumps(wperm) if wperm is not None else None,
                f"Post {i}",
                "Lorem ipsum " * (1 + i % 5),
                owner,
                int(i % 3 != 0),
                i % 10_000,
                round((i % 5000) / 1000, 3),
                json.dumps(tags),
                image,
                json.dumps({"__type": "GeoPoint", "latitude": lat, "longitude": lng}) if i % 5 == 0 else None,
                extra,
            )


def raw_docs(ids: list[str]) -> Iterator[dict]:
    """Documents shaped like parse-server's MongoDB format for a Post."""
    for i, row in enumerate(raw_rows(ids, "postgres")):
        (
            oid,
            created,
            updated,
            rperm,
            wperm,
            title,
            body,
            owner,
            published,
            views,
            rating,
            tags,
            image,
            loc,
            extra,
        ) = row
        doc: dict[str, Any] = {
            "_id": oid,
            "_created_at": created,
            "_updated_at": updated,
            "title": title,
            "body": body,
            "_p_author": f"_User${owner}",
            "published": published,
            "views": views,
            "rating": rating,
            "tags": json.loads(tags),
        }
        if rperm is not None:
            doc["_rperm"], doc["_wperm"] = rperm, wperm
            doc["_acl"] = {p: {"r": True, **({"w": True} if p in wperm else {})} for p in rperm}
        if image:
            doc["image"] = image
        if loc:
            doc["location"] = [(i % 360) - 180 + 0.987654321, (i % 180) - 90 + 0.123456789]
        if extra:
            doc["extra"] = json.loads(extra)
        yield doc


def _iso(dt: _dt.datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def raw_postgres(dsn: str, ids: list[str]) -> dict[str, Any]:
    import psycopg

    cols = ", ".join(f'"{c}"' for c in RAW_COLUMNS)
    with psycopg.connect(dsn) as conn:
        conn.execute('DROP TABLE IF EXISTS "RawPost"')
        conn.execute(
            'CREATE TABLE "RawPost" ("objectId" text PRIMARY KEY, "createdAt" timestamptz, '
            '"updatedAt" timestamptz, "_rperm" text[], "_wperm" text[], "title" text, "body" text, '
            '"author" text, "published" boolean, "views" double precision, "rating" double precision, '
            '"tags" jsonb, "image" text, "location" point, "extra" jsonb)'
        )
        conn.commit()
        rows = list(raw_rows(ids, "postgres"))  # built before the clock starts: the rate is the database's
        started = time.monotonic()
        with conn.cursor() as cur, cur.copy(f'COPY "RawPost" ({cols}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        seconds = time.monotonic() - started
        started = time.monotonic()
        conn.execute('ANALYZE "RawPost"')
        conn.commit()
        analyze = time.monotonic() - started
        width = conn.execute(
            'SELECT avg(pg_column_size(t.*)) FROM (SELECT * FROM "RawPost" LIMIT 20000) t'
        ).fetchone()[0]
        count = conn.execute('SELECT count(*) FROM "RawPost"').fetchone()[0]
    return {
        "method": "psycopg 3 COPY FROM STDIN (write_row), one transaction, PK on objectId, rows prebuilt",
        "rows": count,
        "seconds": _r(seconds, 3),
        "rows_per_s": _r(count / seconds),
        "analyze_s": _r(analyze, 3),
        "avg_row_bytes": _r(float(width), 1),
    }


def sqlite_connect(path: Path) -> sqlite3.Connection:
    """As parsectl opens a SQLite store (WAL, synchronous=NORMAL), with the page cache its migration
    gives a load (without it, the raw rate at 1M rows is about a quarter lower)."""
    from parsectl.migrate.writers import LOAD_CACHE_KIB

    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA cache_size=-{LOAD_CACHE_KIB}")
    return db


def raw_sqlite(path: Path, ids: list[str]) -> dict[str, Any]:
    with contextlib.suppress(FileNotFoundError):
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink()
    db = sqlite_connect(path)
    try:
        cols = ", ".join(f'"{c}"' for c in RAW_COLUMNS)
        db.execute(
            'CREATE TABLE "RawPost" ("objectId" TEXT PRIMARY KEY, "createdAt" TEXT, "updatedAt" TEXT, '
            '"_rperm" TEXT, "_wperm" TEXT, "title" TEXT, "body" TEXT, "author" TEXT, "published" INTEGER, '
            '"views" NUMERIC, "rating" NUMERIC, "tags" TEXT, "image" TEXT, "location" TEXT, "extra" TEXT)'
        )
        rows = list(raw_rows(ids, "sqlite"))
        started = time.monotonic()
        db.execute("BEGIN")
        db.executemany(f'INSERT INTO "RawPost" ({cols}) VALUES ({", ".join("?" * len(RAW_COLUMNS))})', rows)
        db.execute("COMMIT")
        seconds = time.monotonic() - started
        count = db.execute('SELECT count(*) FROM "RawPost"').fetchone()[0]
        width = sqlite_row_width(db, "RawPost")
    finally:
        db.close()
    return {
        "method": "sqlite3 executemany INSERT, one transaction (WAL, synchronous=NORMAL, the migration's 32 MB "
        "page cache), PK on objectId, rows prebuilt",
        "rows": count,
        "seconds": _r(seconds, 3),
        "rows_per_s": _r(count / seconds),
        "avg_row_bytes": width,
    }


def sqlite_row_width(db: sqlite3.Connection, table: str, sample: int = 20000) -> float | None:
    """Average payload bytes per row: the sum of length(quote(col)) over the columns (a sample of rows)."""
    cols = [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]
    if not cols:
        return None
    expr = " + ".join(f'coalesce(length(CAST("{c}" AS BLOB)), 0)' for c in cols)
    value = db.execute(f'SELECT avg({expr}) FROM (SELECT * FROM "{table}" LIMIT {sample})').fetchone()[0]
    return _r(value, 1) if value is not None else None


def raw_mongodb(uri: str, ids: list[str], batch: int = 1000) -> dict[str, Any]:
    import bson
    from pymongo import MongoClient

    client: MongoClient = MongoClient(uri, serverSelectionTimeoutMS=10_000)
    try:
        db = client.get_default_database()
        coll = db["RawPost"]
        coll.drop()
        docs = list(raw_docs(ids))
        started = time.monotonic()
        for k in range(0, len(docs), batch):
            coll.insert_many(docs[k : k + batch], ordered=False)
        seconds = time.monotonic() - started
        count = coll.count_documents({})
        sample = list(coll.find({}, limit=2000))
        width = sum(len(bson.encode(d)) for d in sample) / len(sample) if sample else None
    finally:
        client.close()
    return {
        "method": f"pymongo insert_many, batches of {batch}, ordered=False, documents prebuilt",
        "rows": count,
        "seconds": _r(seconds, 3),
        "rows_per_s": _r(count / seconds),
        "avg_row_bytes": _r(width, 1),
    }


# --------------------------------------------------------------------------------------------------
# destinations
# --------------------------------------------------------------------------------------------------


def _redact(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password:
        return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))
    return uri


def _with_db(uri: str, name: str) -> str:
    return urlunsplit(urlsplit(uri)._replace(path="/" + name))


def migrated_width_sqlite(path: Path, counts: dict[str, int]) -> float | None:
    db = sqlite3.connect(path)
    try:
        return _weighted({c: sqlite_row_width(db, c) for c in counts}, counts)
    finally:
        db.close()


def migrated_width_postgres(dsn: str, counts: dict[str, int]) -> tuple[float | None, dict[str, int]]:
    import psycopg

    widths, rows = {}, {}
    with psycopg.connect(dsn) as conn:
        for c in counts:
            widths[c] = float(
                conn.execute(
                    f'SELECT avg(pg_column_size(t.*)) FROM (SELECT * FROM "{c}" LIMIT 20000) t'
                ).fetchone()[0]
                or 0
            )
            rows[c] = conn.execute(f'SELECT count(*) FROM "{c}"').fetchone()[0]
        analyzed = conn.execute(
            "SELECT count(*) FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL "
            "OR last_autoanalyze IS NOT NULL"
        ).fetchone()[0]
    return _weighted(widths, counts), {"rows": rows, "tables_analyzed": analyzed}


def migrated_width_mongodb(uri: str, counts: dict[str, int]) -> tuple[float | None, dict[str, int]]:
    import bson
    from pymongo import MongoClient

    client: MongoClient = MongoClient(uri, serverSelectionTimeoutMS=10_000)
    widths, rows = {}, {}
    try:
        db = client.get_default_database()
        for c in counts:
            sample = list(db[c].find({}, limit=2000))
            widths[c] = sum(len(bson.encode(d)) for d in sample) / len(sample) if sample else None
            rows[c] = db[c].count_documents({})
    finally:
        client.close()
    return _weighted(widths, counts), {"rows": rows}


def _weighted(widths: dict[str, float | None], counts: dict[str, int]) -> float | None:
    pairs = [(w, counts[c]) for c, w in widths.items() if w is not None]
    total = sum(n for _, n in pairs)
    return _r(sum(w * n for w, n in pairs) / total, 1) if total else None


@contextlib.contextmanager
def target_env(name: str) -> Iterator[dict[str, Any]]:
    """Start what a target needs (one PostgreSQL cluster / one SecantusDB server for all sizes)."""
    if name == "postgres":
        from tests.support.pg import pg_cluster

        with pg_cluster(durable=True) as cluster:
            yield {
                "cluster": cluster,
                "server": f"PostgreSQL (private cluster, durable defaults: fsync on) {_pg_version(cluster)}",
            }
    elif name == "mongodb":
        from tests.support.mongo import ENV_URI, mongo_server

        with mongo_server() as server:
            label = f"external {ENV_URI}" if server.proc is None else "SecantusDB test server (secantusd-py)"
            yield {"mongo": server, "server": label}
    else:
        yield {"server": f"SQLite {sqlite3.sqlite_version} (embedded)"}


def _pg_version(cluster: Any) -> str:
    with contextlib.suppress(Exception):
        return cluster.psql("SHOW server_version").strip()
    return ""


def bench_one(
    target: str, env: dict[str, Any], export: Path, facts: dict, workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    n = facts["objects"]
    label = f"{target}-{n}"
    counts = facts["counts"]
    res: dict[str, Any] = {"target": target, "size": n, "export_objects": facts["total"]}
    sqlite_path = raw_path = None
    if target == "sqlite":
        sqlite_path = workdir / f"migrate-{n}.db"
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(str(sqlite_path) + suffix).unlink()
        uri = f"sqlite:///{sqlite_path}"
    elif target == "postgres":
        cluster = env["cluster"]
        db = f"migrate_{n}"
        cluster.psql(f"DROP DATABASE IF EXISTS {db}", database="postgres")
        cluster.psql(f"CREATE DATABASE {db}", database="postgres")
        uri = _with_db(cluster.uri, db)
    else:
        uri = env["mongo"].database_uri(f"migrate_{n}_{env['mongo'].run_id}")
    profile = (args.profile_at, args.profile) if args.profile else None
    print(f"[{target} {n}] parsectl migrate ...", file=sys.stderr, flush=True)
    res["migrate"] = mig = run_migrate(
        export,
        uri,
        workdir,
        label,
        timeout=args.timeout,
        profile=profile,
        profile_dir=args.cache_dir / "profiles",
    )
    print(
        f"[{target} {n}] migrate: exit {mig['exit_code']}, {mig['wall_s']} s, {mig.get('objects_per_s')} obj/s, "
        f"peak RSS {mig['peak_rss_mb']} MB",
        file=sys.stderr,
        flush=True,
    )
    if mig.get("exit_code") == 0:
        try:
            if target == "sqlite":
                mig["avg_row_bytes"] = migrated_width_sqlite(sqlite_path, counts)
                mig["db_bytes"] = sum(p.stat().st_size for p in workdir.glob(f"migrate-{n}.db*"))
            elif target == "postgres":
                mig["avg_row_bytes"], mig["destination"] = migrated_width_postgres(_libpq(uri), counts)
            else:
                mig["avg_row_bytes"], mig["destination"] = migrated_width_mongodb(uri, counts)
        except Exception as exc:  # noqa: BLE001 - reported, the benchmark goes on
            mig["inspect_error"] = repr(exc)
        if args.naive and target in ("sqlite", "postgres"):
            print(f"[{target} {n}] one-process loader ...", file=sys.stderr, flush=True)
            res["naive"] = naive_one(target, env, export, uri, sqlite_path, workdir, n)
            print(f"[{target} {n}] one-process loader: {res['naive'].get('rows_per_s')} rows/s",
                  file=sys.stderr, flush=True)
    # raw: the same number of rows as the export has objects
    ids = raw_ids(facts["total"])
    print(f"[{target} {n}] raw insert of {len(ids)} rows ...", file=sys.stderr, flush=True)
    try:
        if target == "sqlite":
            raw_path = workdir / f"raw-{n}.db"
            res["raw"] = raw_sqlite(raw_path, ids)
        elif target == "postgres":
            cluster = env["cluster"]
            db = f"raw_{n}"
            cluster.psql(f"DROP DATABASE IF EXISTS {db}", database="postgres")
            cluster.psql(f"CREATE DATABASE {db}", database="postgres")
            res["raw"] = raw_postgres(_libpq(_with_db(cluster.uri, db)), ids)
        else:
            res["raw"] = raw_mongodb(env["mongo"].database_uri(f"raw_{n}_{env['mongo'].run_id}"), ids)
    except Exception as exc:  # noqa: BLE001 - reported
        res["raw"] = {"error": repr(exc)}
    if mig.get("exit_code") != 0 and mig.get("error"):
        last = [ln for ln in mig["error"].strip().splitlines() if ln.strip()][-1:]
        res["failure"] = last[0].strip() if last else ""
    raw_rate = res["raw"].get("rows_per_s")
    print(f"[{target} {n}] raw: {raw_rate} rows/s", file=sys.stderr, flush=True)
    if raw_rate and mig.get("objects_per_s"):
        res["ratio"] = round(mig["objects_per_s"] / raw_rate, 3)
    if raw_rate and res.get("naive", {}).get("rows_per_s"):
        res["naive"]["ratio"] = round(res["naive"]["rows_per_s"] / raw_rate, 3)
    # free the space (the 1M databases are large)
    if not args.keep:
        for p in [*workdir.glob(f"migrate-{n}.db*"), *workdir.glob(f"raw-{n}.db*"), *workdir.glob(f"naive-{n}.db*")]:
            with contextlib.suppress(OSError):
                p.unlink()
        if target == "postgres":
            for db in (f"migrate_{n}", f"raw_{n}", f"naive_{n}"):
                with contextlib.suppress(Exception):
                    env["cluster"].psql(f"DROP DATABASE IF EXISTS {db}", database="postgres")
        if target == "mongodb":
            from pymongo import MongoClient

            with contextlib.suppress(Exception):
                client: MongoClient = MongoClient(env["mongo"].uri, serverSelectionTimeoutMS=5000)
                for name in client.list_database_names():
                    if name.endswith(f"_{n}_{env['mongo'].run_id}"):
                        client.drop_database(name)
                client.close()
    return res


def naive_one(target: str, env: dict[str, Any], export: Path, uri: str, sqlite_path: Path | None, workdir: Path,
              n: int) -> dict[str, Any]:
    """The one-process loader (bench.naive_load) into a copy of the migrated database's empty tables."""
    from bench.naive_load import naive_postgres, naive_sqlite

    try:
        if target == "sqlite":
            assert sqlite_path is not None
            return naive_sqlite(export, sqlite_path, workdir / f"naive-{n}.db", sqlite_connect)
        cluster = env["cluster"]
        cluster.psql(f"DROP DATABASE IF EXISTS naive_{n}", database="postgres")
        cluster.psql(f"CREATE DATABASE naive_{n} TEMPLATE migrate_{n}", database="postgres")
        return naive_postgres(export, uri, _libpq(_with_db(cluster.uri, f"naive_{n}")))
    except Exception as exc:  # noqa: BLE001 - reported, the benchmark goes on
        return {"error": repr(exc)}


def _libpq(uri: str) -> str:
    return "postgresql://" + uri.split("://", 1)[1]


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------


def bench_repeated(
    target: str, env: dict[str, Any], export: Path, facts: dict, workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """:func:`bench_one`, ``--repeat`` times when a run takes under ``REPEAT_UNDER_S`` (the rates of this
    shared machine move by ±20% from one run to the next): the run with the median ratio stands for them
    all, with every run's rates under ``repeats``."""
    runs = [bench_one(target, env, export, facts, workdir, args)]
    while len(runs) < args.repeat and runs[0].get("ratio") and runs[0]["migrate"]["wall_s"] < REPEAT_UNDER_S:
        runs.append(bench_one(target, env, export, facts, workdir, args))
    if len(runs) == 1:
        return runs[0]
    measured = sorted((r for r in runs if r.get("ratio")), key=lambda r: r["ratio"])
    middle = measured[len(measured) // 2] if measured else runs[0]
    middle["repeats"] = [
        {
            "objects_per_s": r.get("migrate", {}).get("objects_per_s"),
            "raw_rows_per_s": r.get("raw", {}).get("rows_per_s"),
            "ratio": r.get("ratio"),
            "naive_ratio": r.get("naive", {}).get("ratio"),
        }
        for r in runs
    ]
    return middle


REPEAT_UNDER_S = 60


def _r(v: float | None, digits: int = 0) -> float | None:
    if v is None:
        return None
    return round(v, digits) if digits else round(v)


def _n(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.1f}"
    return f"{int(v):,}"


def markdown(results: dict[str, Any]) -> str:
    runs = results["runs"]
    lines = [
        f"`parsectl migrate` from a generated hosted-Parse export vs the raw bulk-insert rate of the same database "
        f"({results['machine']['cpus']} CPUs, {results['when'][:10]}, commit {results['commit'][:10]}"
        f"{' + local changes' if results['dirty'] else ''}).",
        "",
        "| target | export objects | migrate wall s | migrate objects/s | raw rows/s | migrate ÷ raw | "
        "one-process loader rows/s (÷ raw) | peak RSS MB | relation rows | avg row bytes (migrated / raw) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in runs:
        mig, raw = r.get("migrate", {}), r.get("raw", {})
        if r.get("skipped"):
            lines.append(f"| {r['target']} | {_n(r['export_objects'])} | skipped: {r['skipped']} |||||||")
            continue
        if mig.get("exit_code") != 0:
            status = "timed out" if mig.get("timed_out") else f"FAILED (exit {mig.get('exit_code')})"
            lines.append(
                f"| {r['target']} | {_n(r['export_objects'])} | {status} after {mig.get('wall_s')} s | — | "
                f"{_n(raw.get('rows_per_s'))} | — | — | {_n(mig.get('peak_rss_mb'))} | — | — |"
            )
            continue
        ratio = r.get("ratio")
        ratio_cell = (
            f"**{ratio:.2f}**" if ratio is not None and ratio >= 0.5 else (f"{ratio:.2f}" if ratio else "—")
        )
        if r.get("repeats"):
            ratio_cell += " (runs: " + ", ".join(f"{x['ratio']:.2f}" for x in r["repeats"] if x["ratio"]) + ")"
        naive = r.get("naive") or {}
        naive_cell = (f"{_n(naive['rows_per_s'])} ({naive['ratio']:.2f})" if naive.get("ratio")
                      else "failed" if naive.get("error") else "—")
        lines.append(
            f"| {r['target']} | {_n(mig.get('objects'))} | {mig.get('wall_s'):.1f} | {_n(mig.get('objects_per_s'))} | "
            f"{_n(raw.get('rows_per_s'))} | {ratio_cell} | {naive_cell} | {_n(mig.get('peak_rss_mb'))} | "
            f"{_n(mig.get('relation_rows'))} | {_n(mig.get('avg_row_bytes'))} / {_n(raw.get('avg_row_bytes'))} |"
        )
    lines += ["", "Peak RSS of the migrate process by export size (target: flat):", ""]
    by_target: dict[str, list[dict]] = {}
    for r in runs:
        if r.get("migrate", {}).get("exit_code") == 0:
            by_target.setdefault(r["target"], []).append(r)
    for target, rs in by_target.items():
        rs = sorted(rs, key=lambda r: r["size"])
        parts = [f"{_n(r['size'])}: {_n(r['migrate']['peak_rss_mb'])} MB" for r in rs]
        growth = ""
        if len(rs) > 1 and rs[0]["migrate"]["peak_rss_mb"]:
            growth = f" (×{rs[-1]['migrate']['peak_rss_mb'] / rs[0]['migrate']['peak_rss_mb']:.2f})"
        lines.append(f"- {target}: " + ", ".join(parts) + growth)
    lines += [
        "",
        "Per class (approximate, from the checkpoint file; objects/s while that class was copied):",
        "",
        "| target | size | " + " | ".join(CLASS_ORDER) + " | relations s | setup s (to 1st checkpoint) | "
        "finish s (relations → exit) |",
        "|---|--:|" + "--:|" * (len(CLASS_ORDER) + 3),
    ]
    for r in runs:
        tl = r.get("migrate", {}).get("timeline")
        if not tl or r["migrate"].get("exit_code") != 0:
            continue
        cells = []
        for c in CLASS_ORDER:
            info = tl["classes"].get(c)
            cells.append(f"{_n(info['objects_per_s'])} ({_n(info['copied'])})" if info else "—")
        rel = (
            (tl["relations_done_s"] - tl["classes_done_s"])
            if tl["relations_done_s"] and tl["classes_done_s"]
            else None
        )
        end = tl["relations_done_s"] or tl["classes_done_s"]
        finish = r["migrate"]["wall_s"] - end if end else None
        lines.append(
            f"| {r['target']} | {_n(r['size'])} | "
            + " | ".join(cells)
            + f" | {_n(_r(rel, 1))} | {_n(tl['first_checkpoint_s'])} | {_n(_r(finish, 1))} |"
        )
    failures = [r for r in runs if r.get("failure")]
    if failures:
        lines += ["", "Failures:", ""]
    for r in failures:
        if r.get("failure"):
            lines.append(
                f"- {r['target']} {_n(r['size'])}: `parsectl migrate` failed: `{r['failure'][:300]}`"
            )
    lines += [
        "",
        "Raw: "
        + "; ".join(
            sorted({f"{r['target']}: {r['raw']['method']}" for r in runs if r.get("raw", {}).get("method")})
        )
        + ".",
    ]
    naive_methods = sorted({r["naive"]["method"] for r in runs if r.get("naive", {}).get("method")})
    if naive_methods:
        lines.append("One-process loader (bench/naive_load.py: the least work a Python loader does): "
                     + "; ".join(naive_methods) + ".")
    for r in runs:
        if r.get("naive", {}).get("error"):
            lines.append(f"One-process loader failed ({r['target']} {_n(r['size'])}): `{r['naive']['error'][:300]}`")
    for note in results.get("notes", []):
        lines.append(f"Note: {note}")
    return "\n".join(lines) + "\n"


CLASS_ORDER = ("_User", "_Role", "_Installation", "Comment", "Everything", "Post")


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.migrate", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="100000,1000000", help="export sizes (objects=N), comma-separated")
    p.add_argument("--targets", default=",".join(TARGETS), help="sqlite,postgres,mongodb")
    p.add_argument("--quick", action="store_true", help="10,000 objects only")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where generated exports are kept")
    p.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results (the .md goes next to it)"
    )
    p.add_argument("--timeout", type=float, default=3600, help="kill a migrate run after this many seconds")
    p.add_argument(
        "--max-run-seconds",
        type=float,
        default=0,
        help="skip a (target, size) whose migrate + raw time, projected linearly from the previous size "
        "on that target, exceeds this (0: never skip)",
    )
    p.add_argument(
        "--profile", type=float, default=0, help="py-spy record the migrate process for this many seconds"
    )
    p.add_argument("--profile-at", type=float, default=5, help="... starting this many seconds into the run")
    p.add_argument("--keep", action="store_true", help="keep the destination databases (and the work dir)")
    p.add_argument(
        "--naive",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the one-process loader (bench/naive_load.py: parse, convert, insert, nothing else) "
        "into the same tables, SQLite and PostgreSQL",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help=f"run each (target, size) this many times when one run takes under {REPEAT_UNDER_S} s, and "
        "report the run with the median ratio (every run's rates are listed)",
    )
    args = p.parse_args(argv)
    args.sizes = [10_000] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    bad = [t for t in args.targets if t not in TARGETS]
    if bad:
        p.error(f"unknown target {bad[0]!r} (choose from {', '.join(TARGETS)})")
    return args


def _git(*cmd: str) -> str:
    with contextlib.suppress(Exception):
        return subprocess.run(
            ["git", *cmd], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    return ""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not PARSECTL.is_file():
        print(f"{PARSECTL} not found (run with the project's venv python)", file=sys.stderr)
        return 2
    started = time.monotonic()
    exports = {n: cached_export(args.cache_dir, n) for n in sorted(set(args.sizes))}
    workdir = Path(tempfile.mkdtemp(prefix="parsectl-bench-migrate-", dir="/tmp"))
    results: dict[str, Any] = {
        "when": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--", "parsectl")),
        "argv": sys.argv[1:] if argv is None else argv,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "exports": {str(n): {**f, "path": str(p), "bytes": dir_bytes(p)} for n, (p, f) in exports.items()},
        "servers": {},
        "runs": [],
        "notes": [],
    }
    try:
        for target in args.targets:
            try:
                with target_env(target) as env:
                    results["servers"][target] = env["server"]
                    prev: dict | None = None
                    for n in sorted(set(args.sizes)):
                        export, facts = exports[n]
                        if args.max_run_seconds and prev and prev.get("migrate", {}).get("wall_s"):
                            spent = prev["migrate"]["wall_s"] + (prev.get("raw", {}).get("seconds") or 0)
                            projected = spent * facts["total"] / prev["export_objects"]
                            if projected > args.max_run_seconds:
                                why = (
                                    f"projected {projected:.0f} s from the {prev['size']:,} run "
                                    f"> --max-run-seconds {args.max_run_seconds:.0f}"
                                )
                                results["runs"].append(
                                    {
                                        "target": target,
                                        "size": n,
                                        "export_objects": facts["total"],
                                        "skipped": why,
                                    }
                                )
                                results["notes"].append(f"{target} {n:,}: skipped, {why}.")
                                print(f"[{target} {n}] skipped: {why}", file=sys.stderr, flush=True)
                                continue
                        prev = bench_repeated(target, env, export, facts, workdir, args)
                        results["runs"].append(prev)
                        _write(results, args.output)  # partial results survive an interrupted run
            except SetupError as exc:
                results["notes"].append(f"{target}: setup failed: {str(exc).splitlines()[0]}")
                print(f"[{target}] setup failed: {exc}", file=sys.stderr, flush=True)
    finally:
        results["total_seconds"] = round(time.monotonic() - started, 1)
        md = _write(results, args.output)
        if args.keep:
            print(f"work dir kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(md)
    failed = [
        r for r in results["runs"] if not r.get("skipped") and r.get("migrate", {}).get("exit_code") != 0
    ]
    return 1 if failed else 0


def _write(results: dict[str, Any], output: Path) -> str:
    output.parent.mkdir(parents=True, exist_ok=True)
    md = markdown(results)
    tmp = output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    os.replace(tmp, output)
    output.with_suffix(".md").write_text(md)
    return md


if __name__ == "__main__":
    sys.exit(main())
