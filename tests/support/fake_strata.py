"""A stand-in for the rocks-strata ``strata`` binary, for tests (strata needs a MongoRocks mongod).

It accepts strata's real command line (``strata/cmd/mongo/lreplica_drivers/strata/main.go`` and
``strata/driver.go`` at rocks-strata HEAD): the driver chosen by ``REMOTE_STORAGE`` (s3 default, minio,
local) with that driver's global flags *before* the subcommand, the replica flags, and the subcommands
``backup``, ``restore``, ``delete``, ``gc``, ``show backups|last-backup-time|replica-ids`` with their flags.
It prints strata's formats (go-flags errors, ``log.Println`` lines on stderr, the tabwriter tables on
stdout, ``panic:`` + goroutine trace with exit 2) and keeps its "backups" in the chosen storage with
strata's key layout (``<rid>/<file>_<csum>_<size>``, ``metadata/<rid>/<id>_<unixnano>.json``,
``stats/...``, ``file_metadata/...``): a local directory, or S3 through boto3 (moto in tests).

What it cannot do is talk to mongod: ``backup`` "checkpoints" the files under ``<dbpath>/db`` of the
directory named in its control file, after checking ``--port`` (and ``--username``/``--password``)
against the control file's mongod settings.

Control: ``$FAKE_STRATA_HOME/control.json`` (all keys optional)::

    {"dbpath": "/tmp/x/mongo", "mongod_port": 27017, "mongod_auth": {"username": "u", "password": "p"},
     "s3_endpoint": "http://127.0.0.1:PORT",          # where "AWS" is (goamz would go to amazonaws.com)
     "fail": {"backup": "message"}, "panic": {"delete": "message"},   # per subcommand
     "silent": ["backup"],                            # exit 0 without the "finished" log line
     "sleep": {"backup": 2.0}, "clock_offset": -86400 # seconds added to "now" for new backups
    }

Every call is appended to ``$FAKE_STRATA_HOME/calls.jsonl``: argv, the strata-relevant environment,
and the command lines of this process and its parent (so tests can check that no secret is on either).

:func:`install` writes a ``strata`` launcher script into a directory.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

ENV_NAMES = ("REMOTE_STORAGE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MINIO_ENDPOINT",
             "MINIO_ACCESS_KEY_ID", "MINIO_SECRET_ACCESS_KEY", "MINIO_SECURE", "TZ")
GOAMZ_REGIONS = ("ap-northeast-1", "ap-northeast-2", "ap-southeast-1", "ap-southeast-2", "ap-south-1",
                 "eu-central-1", "eu-west-1", "us-east-1", "us-west-1", "us-west-2", "us-gov-west-1",
                 "sa-east-1", "cn-north-1")


def install(directory: str | os.PathLike[str], *, python: str | None = None,
            control: dict[str, Any] | None = None) -> Path:
    """Write ``<directory>/strata`` (a launcher for this module, with FAKE_STRATA_HOME = directory baked in,
    so it works from any environment, e.g. over SSH) and ``control.json``; return the launcher's path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    launcher = directory / "strata"
    launcher.write_text(
        "#!/bin/sh\n"
        f"FAKE_STRATA_HOME={shlex.quote(str(directory))}; export FAKE_STRATA_HOME\n"
        f"exec {shlex.quote(python or sys.executable)} {shlex.quote(str(Path(__file__).resolve()))} \"$@\"\n")
    launcher.chmod(0o755)
    write_control(directory, control or {})
    return launcher


def write_control(directory: str | os.PathLike[str], control: dict[str, Any]) -> None:
    (Path(directory) / "control.json").write_text(json.dumps(control))


def read_calls(directory: str | os.PathLike[str]) -> list[dict[str, Any]]:
    path = Path(directory) / "calls.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------------------
# Go-ish output
# ---------------------------------------------------------------------------------------------------------

class Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def log(message: str) -> None:
    sys.stderr.write(time.strftime("%Y/%m/%d %H:%M:%S ") + message + "\n")
    sys.stderr.flush()


def go_panic(message: str, where: str = "(*Driver)") -> None:
    sys.stderr.write(
        f"panic: {message}\n\ngoroutine 1 [running]:\n"
        f"github.com/facebookgo/rocks-strata/strata.{where}.Execute(0xc4200a2000, 0xc42000e2a0, 0x0, 0x0, 0x0, 0x0)\n"
        "\t/go/src/github.com/facebookgo/rocks-strata/strata/driver.go:301 +0x1a5\n"
        "github.com/jessevdk/go-flags.(*Parser).ParseArgs(0xc4200a6000, 0xc42000c0a0, 0x4, 0x4, 0x0, 0x0, 0x0)\n"
        "\t/go/src/github.com/jessevdk/go-flags/parser.go:316 +0x8d0\n"
        "main.main()\n\t/go/src/github.com/facebookgo/rocks-strata/strata/cmd/mongo/lreplica_drivers/strata/"
        "main.go:30 +0x1f3\n")
    sys.stderr.flush()
    raise Exit(2)


def flags_error(message: str) -> None:
    sys.stderr.write(message + "\n")
    raise Exit(1)


def go_date(unix_nano: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(unix_nano / 1e9))


def go_duration(seconds: float) -> str:
    """time.Duration.String() for a non-negative duration."""
    ns = int(round(seconds * 1e9))
    if ns == 0:
        return "0s"
    if ns < 1000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return _trim(f"{ns / 1000:.3f}") + "µs"
    if ns < 1_000_000_000:
        return _trim(f"{ns / 1e6:.6f}") + "ms"
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    secs = _trim(f"{rest / 1e9:.9f}") + "s"
    out = (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "")
    return out + secs


def _trim(number: str) -> str:
    return number.rstrip("0").rstrip(".") if "." in number else number


_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """time.ParseDuration: units ns, us, µs, ms, s, m, h; no days."""
    orig, s = text, text
    sign = 1.0
    if s[:1] in "+-":
        sign, s = (-1.0 if s[0] == "-" else 1.0), s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f'time: invalid duration "{orig}"')
    total = 0.0
    while s:
        m = re.match(r"(\d*\.?\d*)", s)
        number = m.group(1) if m else ""
        if number in ("", "."):
            raise ValueError(f'time: invalid duration "{orig}"')
        s = s[len(number):]
        u = re.match(r"([^\d.]*)", s)
        unit = u.group(1) if u else ""
        if not unit:
            raise ValueError(f'time: missing unit in duration "{orig}"')
        if unit not in _GO_UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{orig}"')
        s = s[len(unit):]
        total += float(number) * _GO_UNITS[unit]
    return sign * total


def tabwrite(rows: list[list[str]]) -> str:
    """Go text/tabwriter, minwidth 0, padding 3, ' ' fill, every cell tab-terminated."""
    widths = [max(len(row[i]) for row in rows) + 3 for i in range(len(rows[0]))]
    return "".join("".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + "\n" for row in rows)


# ---------------------------------------------------------------------------------------------------------
# go-flags-like parsing
# ---------------------------------------------------------------------------------------------------------

# long name -> (short, takes a value, required, default, kind)
S3_FLAGS = {
    "region": ("R", True, False, "us-east-1", "str"), "bucket": ("b", True, True, None, "str"),
    "bucket-prefix": ("p", True, False, "", "str"), "bucket-acl": ("a", True, False, "private", "str"),
}
MINIO_FLAGS = {
    "region": ("R", True, False, "us-east-1", "str"), "bucket": ("b", True, True, None, "str"),
    "bucket-prefix": ("p", True, False, "", "str"),
}
LOCAL_FLAGS = {"mpoint": ("m", True, False, "~/sbackup", "str")}
REPLICA_FLAGS = {
    "max-background-copies": (None, True, False, "16", "int"), "port": (None, True, False, "27017", "int"),
    "username": (None, True, False, "", "str"), "password": (None, True, False, "", "str"),
}
COMMANDS: dict[str, dict[str, tuple[str | None, bool, bool, str | None, str]]] = {
    "backup": {"replica-id": ("r", True, False, "", "str")},
    "restore": {"replica-id": ("r", True, True, None, "str"), "backup-id": ("i", True, True, None, "str"),
                "target-path": ("t", True, False, "", "str")},
    "delete": {"replica-id": ("r", True, True, None, "str"), "delete-backup-id": ("d", True, False, "", "str"),
               "age": ("a", True, False, "", "str")},
    "gc": {"replica-id": ("r", True, True, None, "str")},
    "show backups": {"replica-id": ("r", True, True, None, "str"), "show-size": ("s", False, False, None, "bool")},
    "show last-backup-time": {"replica-id": ("r", True, True, None, "str")},
    "show replica-ids": {},
}


def _take(args: list[str], i: int, spec: dict[str, tuple[str | None, bool, bool, str | None, str]],
          values: dict[str, Any]) -> int:
    arg = args[i]
    by_short = {v[0]: k for k, v in spec.items() if v[0]}
    if arg.startswith("--"):
        name, eq, value = arg[2:].partition("=")
        if name not in spec:
            flags_error(f"unknown flag `{name}'")
    else:
        short, rest = arg[1:2], arg[2:]
        if short not in by_short:
            flags_error(f"unknown flag `{short}'")
        name = by_short[short]
        eq = "=" if rest else ""
        value = rest[1:] if rest.startswith("=") else rest
    _short, takes_value, _req, _default, kind = spec[name]
    if not takes_value:
        values[name] = True
        return i + 1
    if not eq:
        if i + 1 >= len(args):
            flags_error(f"expected argument for flag `{_label(name, spec)}'")
        value = args[i + 1]
        i += 1
    if kind == "int" and not re.fullmatch(r"[+-]?\d+", value):
        flags_error(f"invalid argument for flag `{_label(name, spec)}' (expected int): "
                    f"strconv.ParseInt: parsing \"{value}\": invalid syntax")
    values[name] = int(value) if kind == "int" else value
    return i + 1


def _label(name: str, spec: dict[str, tuple[str | None, bool, bool, str | None, str]]) -> str:
    short = spec[name][0]
    return f"-{short}, --{name}" if short else f"--{name}"


def parse(args: list[str], driver_flags: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    spec = {**driver_flags, **REPLICA_FLAGS}
    gvalues: dict[str, Any] = {}
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        if args[i] in ("-h", "--help"):
            sys.stdout.write("Usage:\n  strata [OPTIONS] <backup | delete | gc | restore | show>\n")
            raise Exit(1)
        i = _take(args, i, spec, gvalues)
    commands = "backup, delete, gc, restore or show"
    if i >= len(args):
        flags_error(f"Please specify one command of: {commands}")
    command = args[i]
    if command not in ("backup", "delete", "gc", "restore", "show"):
        flags_error(f"Unknown command `{command}'. Please specify one command of: {commands}")
    i += 1
    if command == "show":
        if i >= len(args) or args[i].startswith("-"):
            flags_error("Please specify one command of: backups, last-backup-time or replica-ids")
        if args[i] not in ("backups", "last-backup-time", "replica-ids"):
            flags_error(f"Unknown command `{args[i]}'. Please specify one command of: backups, "
                        "last-backup-time or replica-ids")
        command = f"show {args[i]}"
        i += 1
    cspec = COMMANDS[command]
    cvalues: dict[str, Any] = {}
    while i < len(args):
        if not args[i].startswith("-"):
            i += 1  # go-flags passes extra positional args to Execute; strata ignores them
            continue
        i = _take(args, i, cspec, cvalues)
    for name, (_s, _t, required, default, _kind) in spec.items():
        if required and name not in gvalues:
            flags_error(f"the required flag `{_label(name, spec)}' was not specified")
        if name not in gvalues and default is not None:
            gvalues[name] = int(default) if _kind == "int" else default
    for name, (_s, _t, required, default, _kind) in cspec.items():
        if required and name not in cvalues:
            flags_error(f"the required flag `{_label(name, cspec)}' was not specified")
        cvalues.setdefault(name, default if default is not None else (False if _kind == "bool" else ""))
    return command, gvalues, cvalues


# ---------------------------------------------------------------------------------------------------------
# Storage with strata's key layout
# ---------------------------------------------------------------------------------------------------------

class LocalStore:
    def __init__(self, root: str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def get(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / key).unlink()

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file())


class S3Store:
    def __init__(self, endpoint: str, access: str, secret: str, bucket: str, prefix: str, region: str) -> None:
        import boto3

        self.client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access,
                                   aws_secret_access_key=secret, region_name=region)
        self.bucket = bucket
        self.prefix = prefix
        try:  # strata LISTs, and on failure PutBucket(ACL)
            self.client.list_objects_v2(Bucket=bucket, MaxKeys=1)
        except Exception:
            extra = {"CreateBucketConfiguration": {"LocationConstraint": region}} if region != "us-east-1" else {}
            self.client.create_bucket(Bucket=bucket, **extra)

    def _key(self, key: str) -> str:
        return self.prefix + "/" + key  # strata: prefix + "/" + path, even with an empty prefix

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str) -> list[str]:
        out: list[str] = []
        strip = len(self.prefix) + 1
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                           Prefix=self._key(prefix)):
            out += [obj["Key"][strip:] for obj in page.get("Contents", [])]
        return sorted(out)


# ---------------------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------------------

class Fake:
    def __init__(self, home: Path, control: dict[str, Any], store: Any, gvalues: dict[str, Any]) -> None:
        self.home, self.control, self.store, self.g = home, control, store, gvalues

    def metadata(self, rid: str) -> list[tuple[int, int, str]]:
        """(id, unixnano, key) sorted by time."""
        out = []
        for key in self.store.list(f"metadata/{rid}/"):
            m = re.fullmatch(rf"metadata/{re.escape(rid)}/(\d+)_(\d+)\.json", key)
            if m:
                out.append((int(m.group(1)), int(m.group(2)), key))
        return sorted(out, key=lambda t: t[1])

    def check_mongod(self) -> None:
        want = int(self.control.get("mongod_port", 27017))
        if int(self.g["port"]) != want:
            log(f"Could not connect to mongod on localhost:{self.g['port']}")
            flags_error("no reachable servers")
        auth = self.control.get("mongod_auth")
        if auth and (self.g["username"] != auth.get("username") or self.g["password"] != auth.get("password")):
            flags_error("server returned error on SASL authentication step: Authentication failed.")

    def backup(self, rid: str) -> None:
        if not rid:
            import socket

            rid = socket.gethostname()
        self.check_mongod()
        dbpath = self.control.get("dbpath")
        if not dbpath or not os.path.isabs(dbpath):
            flags_error(f"dbpath {dbpath!r} is not absolute")
        start = time.time()
        ids = [t[0] for t in self.metadata(rid)]
        backup_id = max(ids) + 1 if ids else 0
        log(f"Creating snapshot for {rid} with ID {backup_id}")
        files, ninc, sinc, size = [], 0, 0, 0
        existing = set(self.store.list(f"{rid}/"))
        db_dir = Path(dbpath) / "db"
        names = sorted(p.name for p in db_dir.iterdir() if p.is_file()) if db_dir.is_dir() else []
        for name in names:
            data = (db_dir / name).read_bytes()
            csum = hashlib.md5(data).hexdigest()
            key = f"{rid}/{name}_{csum}_{len(data)}"
            files.append({"name": name, "size": len(data), "checksum": csum})
            size += len(data)
            if key not in existing:
                self.store.put(key, data)
                self.store.put(f"file_metadata/{key}", json.dumps({"md5": csum}).encode())
                ninc += 1
                sinc += len(data)
                log(f"Finished saving {name}")
        log("Saving to remote storage")
        time.sleep(float(self.control.get("sleep", {}).get("backup", 0)))
        nano = int((time.time() + float(self.control.get("clock_offset", 0))) * 1e9)
        duration = time.time() - start
        self.store.put(f"stats/{rid}/{backup_id}_{nano}.json", json.dumps(
            {"num_files": len(files), "num_ifiles": ninc, "size_files": size, "size_ifiles": sinc,
             "duration": int(duration * 1e9)}).encode())
        log("Saved backup stats")
        self.store.put(f"metadata/{rid}/{backup_id}_{nano}.json", json.dumps(
            {"replica_id": rid, "id": str(backup_id), "path": str(dbpath), "files": files}).encode())
        if "backup" not in self.control.get("silent", []):
            log(f"Backup finished ({size / 1e6 / max(duration, 1e-6):f} MB/s)")

    def delete(self, rid: str, backup_id: str, age: str) -> None:
        if not backup_id and not age:
            flags_error("Please set either --age or --backup-id to use this command")
        if backup_id and age:
            flags_error("Please set only --age or --backup-id, not both")
        if backup_id:
            found = [t for t in self.metadata(rid) if str(t[0]) == backup_id]
            if not found:
                go_panic(f"Could not find snapshot with ID {backup_id} for replica {rid}", "(*DeleteCommand)")
            for _, _, key in found:
                self.store.delete(key)
            if "delete" not in self.control.get("silent", []):
                log("Delete finished.")
            return
        try:
            seconds = parse_go_duration(age)
        except ValueError as exc:
            go_panic(str(exc), "(*DeleteCommand)")
        cutoff = time.time() - seconds
        deleted = []
        for bid, nano, key in self.metadata(rid):
            if nano / 1e9 < cutoff:
                self.store.delete(key)
                deleted.append((str(bid), nano))
        cut = _dt.datetime.fromtimestamp(cutoff).astimezone()
        log(f"Finished deleting backups earlier than {cut.strftime('%Y-%m-%d %H:%M:%S.%f')} "
            f"{cut.strftime('%z')} {cut.strftime('%Z')}")
        log("These backup metadatas were deleted:")
        rows = [["ID", "date"]] + [[b, go_date(n)] for b, n in deleted]
        width = max(len(r[0]) for r in rows) + 3  # only the ID cell is tab-terminated
        sys.stdout.write("".join(r[0].ljust(width) + r[1] + "\n" for r in rows))

    def gc(self, rid: str) -> None:
        log("Starting to collect garbage for " + rid)
        needed, backups = set(), self.metadata(rid)
        for _, _, key in backups:
            for f in json.loads(self.store.get(key))["files"]:
                needed.add(f"{rid}/{f['name']}_{f['checksum']}_{f['size']}")
        log(f"{rid} has {len(backups)} backups that require {len(needed)} total files")
        files = self.store.list(f"{rid}/")
        log(f"Found {len(files)} files related to backups of {rid}")
        garbage = [f for f in files if f not in needed]
        log(f"Found {len(garbage)} files for deletion")
        for key in garbage:
            log("Deleting " + key)
            self.store.delete(key)
        fms = [k for k in self.store.list(f"file_metadata/{rid}/") if k[len("file_metadata/"):] not in needed]
        log(f"Found {len(fms)} file metadata files for deletion")
        for key in fms:
            self.store.delete(key)
        live = {f"{b}_{n}" for b, n, _ in backups}
        stale = [k for k in self.store.list(f"stats/{rid}/") if k.rsplit("/", 1)[1][:-5] not in live]
        log(f"Found {len(stale)} stats files for deletion")
        for key in stale:
            self.store.delete(key)
        if "gc" not in self.control.get("silent", []):
            log("Garbage collection finished.")

    def show_backups(self, rid: str, show_size: bool) -> None:
        rows = [["ID", "data", "num files", "size (GB)", "incremental files", "incremental size", "duration"]]
        for bid, nano, key in self.metadata(rid):
            try:
                st = json.loads(self.store.get(f"stats/{rid}/{bid}_{nano}.json"))
                nf, sf, nif, sif, dur = (str(st["num_files"]), f"{st['size_files'] / 1073741824:f}",
                                         str(st["num_ifiles"]), f"{st['size_ifiles'] / 1073741824:f}",
                                         go_duration(st["duration"] / 1e9))
            except Exception:
                nf = sf = nif = sif = dur = "?"
                if show_size:
                    files = json.loads(self.store.get(key))["files"]
                    nf, sf = str(len(files)), f"{sum(f['size'] for f in files) / 1073741824:f}"
            rows.append([str(bid), go_date(nano), nf, sf, nif, sif, dur])
        sys.stdout.write(tabwrite(rows))

    def last_backup_time(self, rid: str) -> None:
        backups = self.metadata(rid)
        if backups:
            sys.stdout.write(str(backups[-1][1] // 10**9))

    def replica_ids(self) -> None:
        print("Replicas with backups in remote storage:")
        for rid in sorted({k.split("/")[1] for k in self.store.list("metadata/") if k.count("/") >= 2}):
            print(rid)

    def restore(self, rid: str, backup_id: str, target: str) -> None:
        found = [t for t in self.metadata(rid) if str(t[0]) == backup_id]
        if not found:
            go_panic(f"Could not find snapshot with ID {backup_id} for replica {rid}", "(*RestoreCommand)")
        meta = json.loads(self.store.get(found[0][2]))
        target = target or meta["path"]
        old = os.umask(0)
        try:
            os.makedirs(os.path.join(target, "db"), mode=0o777, exist_ok=True)
            lock_fd = os.open(os.path.join(target, "mongod.lock"), os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                go_panic(f"Could not lock {target}/mongod.lock: resource temporarily unavailable "
                         "(is mongod running?)", "(*RestoreCommand)")
            start = time.time()
            log("Determining files to restore")
            wanted = {f["name"]: f for f in meta["files"]}
            db_dir = Path(target) / "db"
            for p in db_dir.iterdir():
                f = wanted.get(p.name)
                if not (f and p.suffix == ".sst" and hashlib.md5(p.read_bytes()).hexdigest() == f["checksum"]):
                    p.unlink()
            todo = [f for f in meta["files"] if not (db_dir / f["name"]).exists()]
            log(f"Keeping {len(meta['files']) - len(todo)} files in current database")
            size = 0
            for n, f in enumerate(todo, 1):
                data = self.store.get(f"{rid}/{f['name']}_{f['checksum']}_{f['size']}")
                if hashlib.md5(data).hexdigest() != f["checksum"]:
                    go_panic(f"checksum mismatch for {f['name']}", "(*RestoreCommand)")
                fd = os.open(db_dir / f["name"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                size += len(data)
                log(f"Finished restoring {f['name']}")
                log(f"{n} out of {len(todo)} files restored")
            os.close(lock_fd)
        finally:
            os.umask(old)
        if "restore" not in self.control.get("silent", []):
            log(f"Restore finished ({size / 1e6 / max(time.time() - start, 1e-6):f} MB/s)")


def _cmdline(pid: int | str) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def _driver(cls: Any, *args: Any) -> Any:
    """Driver() construction: strata panics when it fails."""
    try:
        return cls(*args)
    except Exit:
        raise
    except Exception as exc:
        go_panic(str(exc).splitlines()[0] if str(exc) else repr(exc))


def main(argv: list[str]) -> int:
    home = Path(os.environ.get("FAKE_STRATA_HOME") or Path(argv[0]).resolve().parent)
    try:
        control = json.loads((home / "control.json").read_text())
    except (OSError, ValueError):
        control = {}
    with open(home / "calls.jsonl", "a") as calls:
        calls.write(json.dumps({
            "argv": argv[1:], "env": {k: os.environ[k] for k in ENV_NAMES if k in os.environ},
            "cmdline": _cmdline("self"), "parent_cmdline": _cmdline(os.getppid()), "cwd": os.getcwd(),
            "host": __import__("socket").gethostname(),
            "time": time.time()}) + "\n")
    log("Starting strata driver")
    remote = os.environ.get("REMOTE_STORAGE", "").lower()
    driver_flags = {"minio": MINIO_FLAGS, "local": LOCAL_FLAGS}.get(remote, S3_FLAGS)
    if remote == "azureblob":
        go_panic("the fake strata has no Azure driver")
    try:
        command, g, c = parse(argv[1:], driver_flags)
        verb = command.split()[0]
        if verb in control.get("fail", {}):
            flags_error(control["fail"][verb])
        if verb in control.get("panic", {}):
            go_panic(control["panic"][verb], f"(*{verb.capitalize()}Command)")
        # Driver(): storage and credentials (a failure here panics in every command)
        if remote == "local":
            store: Any = LocalStore(g["mpoint"])  # strata does not expand "~"
        elif remote == "minio":
            endpoint, access = os.environ.get("MINIO_ENDPOINT", ""), os.environ.get("MINIO_ACCESS_KEY_ID", "")
            secret = os.environ.get("MINIO_SECRET_ACCESS_KEY", "")
            if not (endpoint and access and secret):
                go_panic("Environment variables MINIO_ENDPOINT, MINIO_ACCESS_KEY_ID and MINIO_SECRET_ACCESS_KEY "
                         "must be set")
            secure = os.environ.get("MINIO_SECURE", "true")
            if secure not in ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"):
                go_panic("Valid values for environment variable MINIO_SECURE are 1, t, T, TRUE, true, True, "
                         "0, f, F, FALSE, false, False")
            scheme = "https" if secure in ("1", "t", "T", "TRUE", "true", "True") else "http"
            store = _driver(S3Store, f"{scheme}://{endpoint}", access, secret, g["bucket"], g["bucket-prefix"],
                            g["region"])
        else:
            access, secret = os.environ.get("AWS_ACCESS_KEY_ID", ""), os.environ.get("AWS_SECRET_ACCESS_KEY", "")
            if not access or not secret:
                go_panic("Environment variables AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set")
            if g["region"] not in GOAMZ_REGIONS:
                go_panic("runtime error: invalid memory address or nil pointer dereference")
            endpoint = control.get("s3_endpoint")
            if not endpoint:
                go_panic("the fake strata has no S3 endpoint (control.json s3_endpoint)")
            store = _driver(S3Store, endpoint, access, secret, g["bucket"], g["bucket-prefix"], g["region"])
        fake = Fake(home, control, store, g)
        time.sleep(float(control.get("sleep", {}).get(verb, 0)) if verb != "backup" else 0)
        if command == "backup":
            fake.backup(c["replica-id"])
        elif command == "delete":
            fake.delete(c["replica-id"], c["delete-backup-id"], c["age"])
        elif command == "gc":
            fake.gc(c["replica-id"])
        elif command == "restore":
            fake.restore(c["replica-id"], c["backup-id"], c["target-path"])
        elif command == "show backups":
            fake.show_backups(c["replica-id"], bool(c["show-size"]))
        elif command == "show last-backup-time":
            fake.last_backup_time(c["replica-id"])
        elif command == "show replica-ids":
            fake.replica_ids()
    except Exit as exc:
        sys.stdout.flush()
        return exc.code
    sys.stdout.flush()
    log("Driver finished cleanly.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
