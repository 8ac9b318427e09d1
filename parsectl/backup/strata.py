"""rocks-strata, wrapped: command lines, environment, output parsing, retention and error handling.

strata (github facebookgo/rocks-strata, archived) takes hot incremental backups of a MongoRocks node to S3,
an S3-compatible store (MinIO) or a mounted directory. It must run on the mongod host. Facts this module
relies on (see docs/backup.md):

* the storage driver is chosen by ``REMOTE_STORAGE`` (``minio``, ``local``; anything else is S3);
  credentials come from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` or ``MINIO_ENDPOINT``,
  ``MINIO_ACCESS_KEY_ID``, ``MINIO_SECRET_ACCESS_KEY``, ``MINIO_SECURE``; we pass them in the environment,
  never on a command line;
* global (driver) flags come before the subcommand: S3 ``--region --bucket --bucket-prefix --bucket-acl``,
  MinIO ``--region --bucket --bucket-prefix``, local ``--mpoint``; replica flags ``--max-background-copies
  --port --username --password``;
* subcommands: ``backup [-r]``, ``restore -r -i [-t]``, ``delete -r (-d ID | -a GO_DURATION)``, ``gc -r``,
  ``show backups -r [-s]``, ``show last-backup-time -r``, ``show replica-ids``;
* logs go to stderr with a ``2006/01/02 15:04:05`` prefix; tables to stdout; errors exit 1, panics exit 2
  with ``panic: ...`` and a goroutine trace.

strata's own ``--password`` is the one secret it can only take on its command line; see
:attr:`Invocation.display` (masked in everything we print) and docs/backup.md.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import socket
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from parsectl.backup.durations import DurationError, parse_go_duration, parse_human, to_go_duration

# ---------------------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------------------

STORAGE_KINDS = ("s3", "minio", "local")
S3_ACLS = ("private", "public-read", "public-read-write", "authenticated-read", "bucket-owner-read",
           "bucket-owner-full-control")
# goamz (AdRoll, 2017) aws.Regions: strata's S3 driver fails on any other region
GOAMZ_REGIONS = ("ap-northeast-1", "ap-northeast-2", "ap-southeast-1", "ap-southeast-2", "ap-south-1",
                 "eu-central-1", "eu-west-1", "us-east-1", "us-west-1", "us-west-2", "us-gov-west-1",
                 "sa-east-1", "cn-north-1")
WRITE_VERBS = ("backup", "delete", "gc", "restore")
EXIT_LOCKED = 75  # flock -E: another write operation on this replica ID holds the lock
DEFAULT_LOCK_DIR = "/run/lock"


class StrataError(RuntimeError):
    """strata failed, or could not be run; ``message`` is one clear line, ``strata_line`` strata's own."""

    def __init__(self, message: str, *, exit_code: int | None = None, strata_line: str | None = None,
                 stderr: str = "", stdout: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.strata_line = strata_line
        self.stderr = stderr
        self.stdout = stdout


class OptionsError(ValueError):
    """Options that cannot make a valid strata command line."""


@dataclass
class Storage:
    kind: str = "s3"
    bucket: str | None = None
    region: str = "us-east-1"
    prefix: str | None = None
    acl: str | None = None          # s3 only
    endpoint: str | None = None     # minio: host:port (or a URL; the scheme sets MINIO_SECURE)
    secure: bool | None = None      # minio: MINIO_SECURE (default true, or from the endpoint's scheme)
    mpoint: str | None = None       # local: the mount point (absolute)

    def validate(self) -> None:
        if self.kind not in STORAGE_KINDS:
            raise OptionsError(f"storage {self.kind!r}: choose s3, minio or local")
        if self.kind in ("s3", "minio") and not self.bucket:
            raise OptionsError(f"--bucket is required for {self.kind} storage")
        if self.kind == "s3":
            if self.region not in GOAMZ_REGIONS:
                raise OptionsError(
                    f"region {self.region!r} is unknown to strata's S3 library (goamz knows only "
                    f"{', '.join(GOAMZ_REGIONS)}); for a newer region use --storage minio "
                    f"--endpoint s3.{self.region}.amazonaws.com")
            if self.acl is not None and self.acl not in S3_ACLS:
                raise OptionsError(f"--acl {self.acl!r}: choose one of {', '.join(S3_ACLS)}")
            if self.endpoint:
                raise OptionsError("strata's S3 driver has no endpoint option: use --storage minio for an "
                                   "S3-compatible endpoint")
        if self.kind == "minio":
            if not self.endpoint:
                raise OptionsError("--endpoint HOST:PORT is required for minio storage")
            if self.acl:
                raise OptionsError("strata's MinIO driver has no ACL option (--acl is for s3 storage)")
        if self.kind == "local":
            if not self.mpoint:
                raise OptionsError("--mpoint is required for local storage (strata's default '~/sbackup' is "
                                   "not expanded and would become a directory literally named '~')")
            if not self.mpoint.startswith("/"):
                raise OptionsError(f"--mpoint {self.mpoint!r} must be an absolute path")
        if self.prefix is not None and self.prefix.startswith("/"):
            raise OptionsError("--prefix must not start with '/' (strata adds the '/' itself)")

    def minio_endpoint(self) -> tuple[str, bool]:
        endpoint = self.endpoint or ""
        secure = True if self.secure is None else self.secure
        if endpoint.startswith("http://"):
            endpoint, secure = endpoint[len("http://"):], False if self.secure is None else self.secure
        elif endpoint.startswith("https://"):
            endpoint = endpoint[len("https://"):]
        return endpoint.rstrip("/"), secure

    def describe(self) -> str:
        if self.kind == "local":
            return f"local:{self.mpoint}"
        where = f"{self.bucket}/{self.prefix}" if self.prefix else str(self.bucket)
        if self.kind == "minio":
            return f"minio:{self.minio_endpoint()[0]}/{where}"
        return f"s3://{where} ({self.region})"


@dataclass
class Mongod:
    port: int = 27017
    username: str | None = None
    password: str | None = None


@dataclass
class Credentials:
    access_key: str | None = None
    secret_key: str | None = None
    source: str = ""

    @classmethod
    def resolve(cls, kind: str, *, profile: str | None = None,
                environ: dict[str, str] | None = None) -> Credentials:
        """From a boto3/AWS profile, else the environment (``MINIO_*`` first for minio, then ``AWS_*``).
        strata's S3 library takes static keys only: a profile that yields a session token is refused."""
        env = os.environ if environ is None else environ
        if kind == "local":
            return cls(source="none needed")
        if profile:
            try:
                import boto3

                creds = boto3.Session(profile_name=profile).get_credentials()
            except Exception as exc:
                raise OptionsError(f"AWS profile {profile!r}: {exc}") from exc
            if creds is None:
                raise OptionsError(f"AWS profile {profile!r} has no credentials")
            frozen = creds.get_frozen_credentials()
            if frozen.token:
                raise OptionsError(f"AWS profile {profile!r} gives temporary credentials (a session token); "
                                   "strata's S3 library takes static access keys only")
            return cls(frozen.access_key, frozen.secret_key, f"profile {profile}")
        if kind == "minio" and env.get("MINIO_ACCESS_KEY_ID") and env.get("MINIO_SECRET_ACCESS_KEY"):
            return cls(env["MINIO_ACCESS_KEY_ID"], env["MINIO_SECRET_ACCESS_KEY"], "MINIO_* environment")
        if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
            return cls(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], "AWS_* environment")
        return cls(source="missing")

    @property
    def complete(self) -> bool:
        return bool(self.access_key and self.secret_key)


@dataclass
class StrataConfig:
    storage: Storage = field(default_factory=Storage)
    mongod: Mongod = field(default_factory=Mongod)
    credentials: Credentials = field(default_factory=Credentials)
    binary: str = "strata"
    max_background_copies: int | None = None
    lock_dir: str | None = DEFAULT_LOCK_DIR   # None: no flock around write verbs
    tz: str | None = "UTC"                      # TZ for strata, so dates in its tables are unambiguous


@dataclass
class Invocation:
    """One strata run: ``argv`` (no storage secrets) and the environment it needs on top of the host's."""

    verb: str
    argv: list[str]
    env: dict[str, str]
    replica_id: str | None = None
    lock: str | None = None  # lock file for write verbs (wrapped in ``flock -n -E 75``)

    SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "MINIO_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "MINIO_ACCESS_KEY_ID")

    def command(self) -> list[str]:
        """argv as run: with the per-replica lock for write verbs."""
        if self.lock:
            return ["flock", "-n", "-E", str(EXIT_LOCKED), self.lock, *self.argv]
        return list(self.argv)

    def display(self) -> str:
        """The command line for humans and logs: ``--password`` masked."""
        return shlex.join(mask_argv(self.argv))

    def shell_script(self) -> str:
        """A POSIX sh script that exports the environment and runs the command: fed on stdin over SSH
        (``sh -s``), so neither the secrets nor the environment appear on any command line."""
        lines = ["set -e"]
        for key, value in sorted(self.env.items()):
            lines.append(f"export {key}={shlex.quote(value)}")
        if self.lock:
            lines.append(f"mkdir -p {shlex.quote(os.path.dirname(self.lock))} 2>/dev/null || true")
        lines.append("exec " + shlex.join(self.command()))
        return "\n".join(lines) + "\n"


def mask_argv(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append("***")
            hide_next = False
        elif arg.startswith("--password="):
            out.append("--password=***")
        elif arg == "--password":
            out.append(arg)
            hide_next = True
        else:
            out.append(arg)
    return out


# ---------------------------------------------------------------------------------------------------------
# Replica IDs
# ---------------------------------------------------------------------------------------------------------

_RID_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def short_hostname(name: str | None = None) -> str:
    return (name if name is not None else socket.gethostname()).strip().split(".")[0]


def default_replica_id(replset: str | None, hostname: str) -> str:
    """The seed's convention ``<replset>-<short hostname>`` (``mydata-db1``); the short hostname alone when
    there is no replica set name."""
    host = short_hostname(hostname)
    if not host:
        raise OptionsError("cannot tell the host name: give --replica-id")
    return f"{replset}-{host}" if replset else host


def check_replica_id(rid: str) -> str:
    if not rid or not _RID_OK.match(rid):
        raise OptionsError(f"replica ID {rid!r}: use letters, digits, '.', '_' and '-' (e.g. mydata-db1)")
    return rid


# ---------------------------------------------------------------------------------------------------------
# Command lines
# ---------------------------------------------------------------------------------------------------------

def global_flags(config: StrataConfig) -> list[str]:
    s = config.storage
    s.validate()
    flags: list[str] = []
    if s.kind == "s3":
        flags += [f"--bucket={s.bucket}", f"--region={s.region}"]
        if s.prefix:
            flags.append(f"--bucket-prefix={s.prefix}")
        if s.acl:
            flags.append(f"--bucket-acl={s.acl}")
    elif s.kind == "minio":
        flags += [f"--bucket={s.bucket}", f"--region={s.region}"]
        if s.prefix:
            flags.append(f"--bucket-prefix={s.prefix}")
    else:
        flags.append(f"--mpoint={s.mpoint}")
    m = config.mongod
    if config.max_background_copies is not None:
        flags.append(f"--max-background-copies={int(config.max_background_copies)}")
    if m.port != 27017:
        flags.append(f"--port={int(m.port)}")
    if m.username:
        flags.append(f"--username={m.username}")
        if m.password:
            flags.append(f"--password={m.password}")
    return flags


def environment(config: StrataConfig) -> dict[str, str]:
    s, c = config.storage, config.credentials
    env: dict[str, str] = {}
    if config.tz:
        env["TZ"] = config.tz
    if s.kind == "local":
        env["REMOTE_STORAGE"] = "local"
    elif s.kind == "minio":
        endpoint, secure = s.minio_endpoint()
        env.update(REMOTE_STORAGE="minio", MINIO_ENDPOINT=endpoint, MINIO_SECURE="true" if secure else "false")
        if c.complete:
            env.update(MINIO_ACCESS_KEY_ID=c.access_key or "", MINIO_SECRET_ACCESS_KEY=c.secret_key or "")
    else:
        env["REMOTE_STORAGE"] = "s3"  # any value but minio/local/azureblob selects S3; set it so an
        if c.complete:                # inherited REMOTE_STORAGE cannot switch the driver
            env.update(AWS_ACCESS_KEY_ID=c.access_key or "", AWS_SECRET_ACCESS_KEY=c.secret_key or "")
    return env


def lock_path(config: StrataConfig, replica_id: str) -> str | None:
    if not config.lock_dir:
        return None
    return os.path.join(config.lock_dir, f"parsectl-strata-{replica_id}.lock")


def _invocation(config: StrataConfig, verb: str, sub: list[str], replica_id: str | None) -> Invocation:
    if config.storage.kind != "local" and not config.credentials.complete:
        names = ("MINIO_ACCESS_KEY_ID and MINIO_SECRET_ACCESS_KEY (or AWS_*)" if config.storage.kind == "minio"
                 else "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        raise OptionsError(f"no storage credentials: set {names} in the environment or give --profile")
    argv = [config.binary, *global_flags(config), *sub]
    lock = lock_path(config, replica_id) if (verb in WRITE_VERBS and replica_id) else None
    return Invocation(verb=verb, argv=argv, env=environment(config), replica_id=replica_id, lock=lock)


def backup_cmd(config: StrataConfig, replica_id: str) -> Invocation:
    rid = check_replica_id(replica_id)
    return _invocation(config, "backup", ["backup", f"--replica-id={rid}"], rid)


def delete_id_cmd(config: StrataConfig, replica_id: str, backup_id: str) -> Invocation:
    rid = check_replica_id(replica_id)
    if not str(backup_id).isdigit():
        raise OptionsError(f"backup ID {backup_id!r}: strata's backup IDs are whole numbers (see `show`)")
    return _invocation(config, "delete", ["delete", f"--replica-id={rid}", f"--delete-backup-id={backup_id}"], rid)


def delete_age_cmd(config: StrataConfig, replica_id: str, age: str | int) -> Invocation:
    rid = check_replica_id(replica_id)
    return _invocation(config, "delete", ["delete", f"--replica-id={rid}", f"--age={to_go_duration(age)}"], rid)


def gc_cmd(config: StrataConfig, replica_id: str) -> Invocation:
    rid = check_replica_id(replica_id)
    return _invocation(config, "gc", ["gc", f"--replica-id={rid}"], rid)


def show_backups_cmd(config: StrataConfig, replica_id: str, *, show_size: bool = False) -> Invocation:
    rid = check_replica_id(replica_id)
    sub = ["show", "backups", f"--replica-id={rid}"] + (["--show-size"] if show_size else [])
    return _invocation(config, "show", sub, rid)


def last_backup_time_cmd(config: StrataConfig, replica_id: str) -> Invocation:
    rid = check_replica_id(replica_id)
    return _invocation(config, "last", ["show", "last-backup-time", f"--replica-id={rid}"], rid)


def replica_ids_cmd(config: StrataConfig) -> Invocation:
    return _invocation(config, "replica-ids", ["show", "replica-ids"], None)


def restore_cmd(config: StrataConfig, replica_id: str, backup_id: str, target_path: str | None) -> Invocation:
    rid = check_replica_id(replica_id)
    if not str(backup_id).isdigit():
        raise OptionsError(f"backup ID {backup_id!r}: strata's backup IDs are whole numbers (see `show`)")
    sub = ["restore", f"--replica-id={rid}", f"--backup-id={backup_id}"]
    if target_path:
        if not target_path.startswith("/"):
            raise OptionsError(f"--target-path {target_path!r} must be absolute")
        sub.append(f"--target-path={target_path}")
    return _invocation(config, "restore", sub, rid)


# ---------------------------------------------------------------------------------------------------------
# Running, and reading what strata said
# ---------------------------------------------------------------------------------------------------------

@dataclass
class Completed:
    exit_code: int
    stdout: str
    stderr: str


class Runner(Protocol):
    host: str

    def run(self, invocation: Invocation, *, timeout: float | None = None) -> Completed: ...

    def shell(self, script: str, *, timeout: float | None = None) -> Completed: ...


class LocalRunner:
    """Runs strata on this machine with the invocation's environment added to ours."""

    host = "localhost"

    def run(self, invocation: Invocation, *, timeout: float | None = None) -> Completed:
        import subprocess

        env = {**os.environ, **invocation.env}
        if invocation.lock:
            os.makedirs(os.path.dirname(invocation.lock), exist_ok=True)
        try:
            proc = subprocess.run(invocation.command(), env=env, capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except FileNotFoundError as exc:
            return Completed(127, "", f"{exc.filename}: not found")
        except subprocess.TimeoutExpired:
            return Completed(124, "", f"timed out after {timeout}s")
        return Completed(proc.returncode, proc.stdout, proc.stderr)

    def shell(self, script: str, *, timeout: float | None = None) -> Completed:
        import subprocess

        proc = subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True, timeout=timeout)
        return Completed(proc.returncode, proc.stdout, proc.stderr)


class SSHRunner:
    """Runs strata on a host through a ``parsectl.ssh`` session: the script (environment + command) goes
    on stdin of ``sh -s``, so no secret is on the remote command line either."""

    def __init__(self, session: Any, host: str, *, sudo: bool = False) -> None:
        self.session = session
        self.host = host
        self.sudo = sudo

    def run(self, invocation: Invocation, *, timeout: float | None = None) -> Completed:
        result = self.session.run("sh -s", sudo=self.sudo, check=False, input=invocation.shell_script(),
                                  timeout=timeout)
        return Completed(result.exit_code, _text(result.stdout), _text(result.stderr))

    def shell(self, script: str, *, timeout: float | None = None) -> Completed:
        result = self.session.run("sh -s", sudo=self.sudo, check=False, input=script, timeout=timeout)
        return Completed(result.exit_code, _text(result.stdout), _text(result.stderr))


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")


_LOG_PREFIX = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d(?:\.\d+)? ")
_DONE_MARKERS = {
    "backup": "Backup finished",
    "restore": "Restore finished",
    "gc": "Garbage collection finished",
}


def log_lines(stderr: str) -> list[str]:
    """strata's log messages without the timestamp prefix."""
    return [_LOG_PREFIX.sub("", line) for line in stderr.splitlines() if _LOG_PREFIX.match(line)]


def strata_line(stderr: str) -> str | None:
    """The line that says what went wrong: ``panic: ...`` if it panicked, else the last line that is not
    routine logging (go-flags' or the command's error), else the last log line."""
    lines = [line.rstrip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("panic: "):
            return line
    routine = ("Starting strata driver", "Driver finished cleanly.")
    plain = [line for line in lines if not _LOG_PREFIX.match(line) and not line.startswith(("\t", "goroutine "))]
    if plain:
        return plain[-1]
    logged = [line for line in log_lines(stderr) if line not in routine]
    return logged[-1] if logged else (lines[-1] if lines else None)


def check(invocation: Invocation, result: Completed, host: str = "localhost") -> Completed:
    """Raise StrataError unless strata exited 0 *and* said it finished (for verbs that say so)."""
    where = "" if host in ("localhost", "") else f" on {host}"
    verb = invocation.verb
    if result.exit_code == EXIT_LOCKED and invocation.lock:
        raise StrataError(f"another backup, delete or gc for replica {invocation.replica_id} is running{where} "
                          f"(lock {invocation.lock} is held); try again when it has finished",
                          exit_code=result.exit_code, stderr=result.stderr)
    if (result.exit_code in (126, 127) and "panic" not in result.stderr) or \
            result.stderr.startswith("flock: failed to execute"):  # flock exits 69 when exec fails
        raise StrataError(f"strata could not be started{where}: {invocation.argv[0]} "
                          f"{'is not executable' if result.exit_code == 126 else 'cannot be run'} "
                          f"({(result.stderr.strip().splitlines() or [''])[-1]}); give --strata PATH",
                          exit_code=result.exit_code, stderr=result.stderr)
    line = strata_line(result.stderr)
    if result.exit_code != 0:
        if line and line.startswith("panic: "):
            message = f"strata {verb} panicked{where} (exit {result.exit_code}): {line}"
        else:
            message = f"strata {verb} failed{where} (exit {result.exit_code}): {line or 'no message'}"
        raise StrataError(message, exit_code=result.exit_code, strata_line=line, stderr=result.stderr,
                          stdout=result.stdout)
    marker = _DONE_MARKERS.get(verb)
    if verb == "delete" and "--age=" not in " ".join(invocation.argv):
        marker = "Delete finished."
    logs = log_lines(result.stderr)
    if marker and not any(entry.startswith(marker) for entry in logs):
        raise StrataError(f"strata {verb}{where} exited 0 but never said {marker!r}; not reporting it as done "
                          f"(last line: {line or 'none'})", exit_code=0, strata_line=line, stderr=result.stderr,
                          stdout=result.stdout)
    return result


def run_checked(runner: Runner, invocation: Invocation, *, timeout: float | None = None) -> Completed:
    return check(invocation, runner.run(invocation, timeout=timeout), runner.host)


# ---------------------------------------------------------------------------------------------------------
# Parsing strata's output
# ---------------------------------------------------------------------------------------------------------

@dataclass
class BackupRecord:
    id: str
    date: str                       # as strata printed it
    started: dt.datetime | None     # timezone-aware, None when the zone could not be read
    num_files: int | None
    size_gb: float | None
    incremental_files: int | None
    incremental_size_gb: float | None
    duration: str | None            # Go duration as printed
    duration_seconds: float | None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["started"] = self.started.isoformat() if self.started else None
        out["started_unix"] = int(self.started.timestamp()) if self.started else None
        return out

    def sort_key(self) -> tuple[float, int]:
        return (self.started.timestamp() if self.started else float("-inf"),
                int(self.id) if self.id.isdigit() else -1)


class ParseFailure(ValueError):
    pass


SHOW_HEADER = ["ID", "data", "num files", "size (GB)", "incremental files", "incremental size", "duration"]

# Zone abbreviations Go prints for common zones (time.Format "MST"); for anything else the host's zone
# (or an explicit tz) decides.
_ZONES = {
    "UTC": 0, "GMT": 0, "Z": 0, "WET": 0, "WEST": 60, "BST": 60, "IST": 60, "CET": 60, "CEST": 120,
    "EET": 120, "EEST": 180, "MSK": 180, "JST": 540, "KST": 540, "HKT": 480, "AWST": 480, "AEST": 600,
    "AEDT": 660, "ACST": 570, "ACDT": 630, "NZST": 720, "NZDT": 780, "SAST": 120,
    "EST": -300, "EDT": -240, "CST": -360, "CDT": -300, "MST": -420, "MDT": -360, "PST": -480, "PDT": -420,
    "AKST": -540, "AKDT": -480, "HST": -600,
}
_NUMERIC_ZONE = re.compile(r"^([+-])(\d\d)(\d\d)?$")


def parse_strata_date(text: str, tz: dt.tzinfo | None = None) -> dt.datetime | None:
    """``2015-09-02 21:11:20 UTC`` (Go layout ``2006-01-02 15:04:05 MST``, host-local zone) -> aware time.

    Numeric zones (``+03``, ``-0330``) and the usual abbreviations are read directly; any other
    abbreviation is taken as ``tz`` (or this machine's local zone) if that zone uses it."""
    parts = text.strip().split()
    if len(parts) != 3:
        return None
    try:
        naive = dt.datetime.strptime(f"{parts[0]} {parts[1]}", "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    zone = parts[2]
    m = _NUMERIC_ZONE.match(zone)
    if m:
        minutes = int(m.group(2)) * 60 + int(m.group(3) or 0)
        return naive.replace(tzinfo=dt.timezone(dt.timedelta(minutes=minutes if m.group(1) == "+" else -minutes)))
    candidates: list[dt.tzinfo] = []
    if tz is not None:
        candidates.append(tz)
    local = dt.datetime.now().astimezone().tzinfo
    if local is not None:
        candidates.append(local)
    for candidate in candidates:
        for fold in (0, 1):
            aware = naive.replace(tzinfo=candidate, fold=fold)
            if aware.tzname() == zone:
                return aware
    if zone in _ZONES:
        return naive.replace(tzinfo=dt.timezone(dt.timedelta(minutes=_ZONES[zone])))
    return None


def _cells(line: str) -> list[str]:
    return re.split(r"\s{2,}|\t", line.strip())


def _qint(cell: str) -> int | None:
    return None if cell == "?" else int(cell)


def _qfloat(cell: str) -> float | None:
    return None if cell == "?" else float(cell)


def parse_show_backups(text: str, tz: dt.tzinfo | None = None) -> list[BackupRecord]:
    """Rows of ``strata show backups`` (tabwriter, padding 3, trailing spaces, ``?`` for unknown stats)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    header = _cells(lines[0])
    if header[:2] != ["ID", "data"] and header[:2] != ["ID", "date"]:
        raise ParseFailure(f"not a `strata show backups` table: first line {lines[0].strip()!r}")
    records: list[BackupRecord] = []
    for line in lines[1:]:
        cells = _cells(line)
        if len(cells) != len(SHOW_HEADER):
            raise ParseFailure(f"expected {len(SHOW_HEADER)} columns in {line.rstrip()!r}, found {len(cells)}")
        try:
            duration = None if cells[6] == "?" else cells[6]
            records.append(BackupRecord(
                id=cells[0], date=cells[1], started=parse_strata_date(cells[1], tz),
                num_files=_qint(cells[2]), size_gb=_qfloat(cells[3]), incremental_files=_qint(cells[4]),
                incremental_size_gb=_qfloat(cells[5]), duration=duration,
                duration_seconds=parse_go_duration(duration) if duration else None))
        except (ValueError, DurationError) as exc:
            raise ParseFailure(f"cannot read row {line.rstrip()!r}: {exc}") from exc
    return records


def parse_id_date_table(text: str, tz: dt.tzinfo | None = None) -> list[tuple[str, dt.datetime | None]]:
    """The ``ID   date`` table ``strata delete --age`` prints of what it deleted."""
    rows = []
    for line in text.splitlines():
        cells = _cells(line)
        if not line.strip() or cells[0] == "ID":
            continue
        if len(cells) >= 2 and cells[0].isdigit():
            rows.append((cells[0], parse_strata_date(cells[1], tz)))
    return rows


def parse_last_backup_time(text: str) -> int | None:
    """``show last-backup-time``: Unix seconds with no newline, or nothing when there is no backup."""
    value = text.strip()
    if not value:
        return None
    if not value.isdigit():
        raise ParseFailure(f"`strata show last-backup-time` printed {value[:80]!r}, not Unix seconds")
    return int(value)


def parse_replica_ids(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and lines[0].startswith("Replicas with backups"):
        lines = lines[1:]
    return lines


# ---------------------------------------------------------------------------------------------------------
# Retention guard
# ---------------------------------------------------------------------------------------------------------

class RetentionError(ValueError):
    """A delete the guard refuses (it would remove the newest backup or leave too few)."""


AGE_MARGIN_SECONDS = 600  # use strata's own `delete --age` only when no kept backup is this close to the cutoff


@dataclass
class DeletePlan:
    delete: list[BackupRecord]
    keep: list[BackupRecord]
    protected: list[BackupRecord]   # older than the cutoff, kept by --keep-at-least
    cutoff: dt.datetime | None
    age_flag: str | None            # the Go duration for `delete --age` when that is exactly the plan

    def to_json(self) -> dict[str, Any]:
        return {"delete": [r.id for r in self.delete], "keep": [r.id for r in self.keep],
                "protected": [r.id for r in self.protected],
                "cutoff": self.cutoff.isoformat() if self.cutoff else None, "age_flag": self.age_flag}


def plan_delete(backups: Iterable[BackupRecord], *, older_than: str | int | None = None,
                backup_ids: Sequence[str] = (), keep_at_least: int = 1,
                now: dt.datetime | None = None) -> DeletePlan:
    """Which backups to delete. Never the newest; never leave fewer than ``keep_at_least``.

    ``older_than`` (human duration or seconds): everything started before now-age, except the newest
    ``keep_at_least`` (those are reported as protected). ``backup_ids``: exactly those, or RetentionError."""
    if keep_at_least < 1:
        raise RetentionError("--keep-at-least must be 1 or more: the newest backup is never deleted")
    if (older_than is None) == (not backup_ids):
        raise RetentionError("give either --older-than or --backup-id")
    records = sorted(backups, key=BackupRecord.sort_key)
    newest_n = records[-keep_at_least:] if records else []
    newest_ids = {r.id for r in newest_n}
    if backup_ids:
        known = {r.id: r for r in records}
        missing = [b for b in backup_ids if b not in known]
        if missing:
            raise RetentionError(f"no backup with ID {', '.join(missing)} (see `parsectl backup show`)")
        if records and records[-1].id in backup_ids:
            raise RetentionError(f"backup {records[-1].id} is the newest backup; refusing to delete it")
        remaining = len(records) - len(set(backup_ids))
        if remaining < keep_at_least:
            raise RetentionError(f"deleting {', '.join(backup_ids)} would leave {remaining} backup(s), fewer than "
                                 f"--keep-at-least {keep_at_least}")
        chosen = [r for r in records if r.id in set(backup_ids)]
        return DeletePlan(chosen, [r for r in records if r.id not in set(backup_ids)], [], None, None)
    seconds = parse_human(older_than) if isinstance(older_than, str) else int(older_than or 0)
    now = now or dt.datetime.now(dt.UTC)
    cutoff = now - dt.timedelta(seconds=seconds)
    old = [r for r in records if r.started is not None and r.started < cutoff]
    delete = [r for r in old if r.id not in newest_ids]
    protected = [r for r in old if r.id in newest_ids]
    keep = [r for r in records if r not in delete]
    age_flag = None
    kept_dates = [r.started for r in keep if r.started is not None]
    if (delete and not protected and len(kept_dates) == len(keep)
            and all(d > cutoff + dt.timedelta(seconds=AGE_MARGIN_SECONDS) for d in kept_dates)):
        age_flag = to_go_duration(seconds)
    return DeletePlan(delete, keep, protected, cutoff, age_flag)


# ---------------------------------------------------------------------------------------------------------
# Restore safety
# ---------------------------------------------------------------------------------------------------------

def mongod_running_probe(target: str) -> str:
    """A sh snippet that exits 3 (and says why) if a mongod uses ``target`` as its dbPath: a live PID in
    ``mongod.lock``, a held lock on it, or a mongod process whose command line names the path."""
    q = shlex.quote(target.rstrip("/") or "/")
    lock = shlex.quote(target.rstrip("/") + "/mongod.lock")
    return (
        f"if [ -s {lock} ]; then pid=$(tr -dc 0-9 < {lock}); "
        f"if [ -n \"$pid\" ] && kill -0 \"$pid\" 2>/dev/null; then "
        f"echo \"mongod (pid $pid, from {target}/mongod.lock) is running on {target}\"; exit 3; fi; fi\n"
        f"if [ -e {lock} ] && command -v flock >/dev/null && ! flock -n {lock} true 2>/dev/null; then "
        f"echo \"{target}/mongod.lock is locked by a running process\"; exit 3; fi\n"
        f"T={q}\n"
        "for p in /proc/[0-9]*; do exe=$(cat $p/cmdline 2>/dev/null | tr '\\0' '\\n' | head -n 1); "
        "case \"${exe##*/}\" in mongod) ;; *) continue;; esac; cmd=$(cat $p/cmdline 2>/dev/null | tr '\\0' ' '); "
        "if printf ' %s ' \"$cmd\" | grep -qF -e \" $T \" -e \"=$T \" -e \" $T/ \" -e \"=$T/ \"; then "
        "echo \"mongod (pid ${p#/proc/}) was started on $T: $cmd\"; exit 3; fi; done\n"
        "exit 0\n"
    )


def fix_permissions_script(target: str, owner: str | None) -> str:
    """strata restores with umask 0 (0666/0777): tighten to 0750/0640 and chown to the mongod user."""
    q = shlex.quote(target)
    lines = [f"chmod -R u=rwX,g=rX,o= {q}"]
    if owner:
        user = owner.split(":")[0]
        lines.insert(0, f"if id {shlex.quote(user)} >/dev/null 2>&1; then chown -R {shlex.quote(owner)} {q}; "
                        f"else echo \"user {user} does not exist: ownership left as is\" >&2; fi")
    return "\n".join(lines) + "\n"


def start_instructions(target: str, port: int, owner: str | None) -> str:
    user = (owner or "mongodb").split(":")[0]
    return (f"Start mongod on the restored data (MongoRocks; the directory has only db/, so name the engine):\n"
            f"  sudo -u {user} mongod --dbpath={target} --storageEngine=rocksdb --port={port}\n"
            f"or set storage.dbPath: {target} and storage.engine: rocksdb in mongod.conf and start the service.")


# ---------------------------------------------------------------------------------------------------------
# One node: the verbs, as the CLI uses them
# ---------------------------------------------------------------------------------------------------------

@dataclass
class DeleteResult:
    plan: DeletePlan
    deleted: list[str]
    commands: list[str]
    dry_run: bool

    def to_json(self) -> dict[str, Any]:
        return {**self.plan.to_json(), "deleted": self.deleted, "commands": self.commands, "dry_run": self.dry_run}


class StrataNode:
    """strata on one node (this machine or a host over SSH) for one replica ID."""

    def __init__(self, config: StrataConfig, runner: Runner, replica_id: str) -> None:
        self.config = config
        self.runner = runner
        self.replica_id = check_replica_id(replica_id)

    @property
    def host(self) -> str:
        return self.runner.host

    def _run(self, invocation: Invocation, timeout: float | None = None) -> Completed:
        return run_checked(self.runner, invocation, timeout=timeout)

    def backup(self) -> Completed:
        return self._run(backup_cmd(self.config, self.replica_id))

    def show(self, *, show_size: bool = False) -> list[BackupRecord]:
        result = self._run(show_backups_cmd(self.config, self.replica_id, show_size=show_size))
        tz = dt.UTC if self.config.tz == "UTC" else None
        try:
            return sorted(parse_show_backups(result.stdout, tz), key=BackupRecord.sort_key)
        except ParseFailure as exc:
            raise StrataError(f"cannot read `strata show backups` output on {self.host}: {exc}",
                              stdout=result.stdout) from exc

    def last_backup_time(self) -> int | None:
        result = self._run(last_backup_time_cmd(self.config, self.replica_id))
        try:
            return parse_last_backup_time(result.stdout)
        except ParseFailure as exc:
            raise StrataError(str(exc), stdout=result.stdout) from exc

    def replica_ids(self) -> list[str]:
        return parse_replica_ids(self._run(replica_ids_cmd(self.config)).stdout)

    def delete(self, *, older_than: str | None = None, backup_ids: Sequence[str] = (), keep_at_least: int = 1,
               dry_run: bool = False, now: dt.datetime | None = None) -> DeleteResult:
        """Delete under the guard: `show` first, plan, then strata's `delete --age` when that is exactly the
        plan (and no kept backup is near the cutoff), else `delete --delete-backup-id` per backup."""
        plan = plan_delete(self.show(), older_than=older_than, backup_ids=backup_ids,
                           keep_at_least=keep_at_least, now=now)
        if plan.age_flag:
            invocations = [delete_age_cmd(self.config, self.replica_id, parse_human(plan.age_flag))]
        else:
            invocations = [delete_id_cmd(self.config, self.replica_id, r.id) for r in plan.delete]
        commands = [inv.display() for inv in invocations]
        deleted: list[str] = []
        if not dry_run:
            for inv in invocations:
                result = self._run(inv)
                if inv.argv[-1].startswith("--age="):
                    deleted += [bid for bid, _ in parse_id_date_table(result.stdout)]
                else:
                    deleted.append(inv.argv[-1].split("=", 1)[1])
            unexpected = sorted(set(deleted) - {r.id for r in plan.delete})
            if unexpected:
                raise StrataError(f"strata deleted backup(s) {', '.join(unexpected)} that the plan kept "
                                  f"(a backup crossed the cutoff meanwhile?)")
        return DeleteResult(plan, deleted, commands, dry_run)

    def gc(self) -> Completed:
        return self._run(gc_cmd(self.config, self.replica_id))

    def mongod_running(self, target: str) -> str | None:
        result = self.runner.shell(mongod_running_probe(target))
        if result.exit_code == 3:
            return result.stdout.strip() or f"mongod is running on {target}"
        if result.exit_code != 0:
            raise StrataError(f"could not check whether mongod runs on {target} ({self.host}): "
                              f"{(result.stderr or result.stdout).strip()}")
        return None

    def restore(self, backup_id: str, target: str, *, owner: str | None = "mongodb:mongodb") -> Completed:
        running = self.mongod_running(target)
        if running:
            raise StrataError(f"refusing to restore into {target} on {self.host}: {running}; stop mongod first")
        result = self._run(restore_cmd(self.config, self.replica_id, backup_id, target))
        fixed = self.runner.shell(fix_permissions_script(target, owner))
        if fixed.exit_code != 0:
            raise StrataError(f"restored, but fixing ownership/permissions of {target} failed: "
                              f"{(fixed.stderr or fixed.stdout).strip()}")
        if fixed.stderr.strip():
            result.stderr += fixed.stderr
        return result
