"""``parsectl backup schedule``: a cron entry + a script (from ``templates/``) on each backup node.

Installed per replica ID (paths under ``root``, ``/`` in production)::

    /etc/cron.d/parsectl-backup-<rid>               the cron entry (runs as root)
    /usr/local/lib/parsectl/strata-backup-<rid>.sh  backup -> delete (guarded) -> gc, flock per replica ID
    /etc/parsectl/strata-<rid>.env                  storage driver, credentials, mongod password (0600)
    /var/log/parsectl/strata-backup-<rid>.log       the log the script appends to
    /run/lock/parsectl-strata-<rid>.lock            the lock `parsectl backup run|delete|gc` share

Every file is compared with what is there before anything is written, so running the same schedule
again changes nothing; ``--remove`` deletes the three installed files (the log stays).
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parsectl.backup.durations import humanize, parse_human, to_go_duration
from parsectl.backup.strata import DEFAULT_LOCK_DIR, StrataConfig, environment, global_flags

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
CRON_DIR = "/etc/cron.d"
SCRIPT_DIR = "/usr/local/lib/parsectl"
ENV_DIR = "/etc/parsectl"
LOG_DIR = "/var/log/parsectl"


class ScheduleError(ValueError):
    pass


def load_template(name: str) -> str:
    try:
        return (TEMPLATES_DIR / name).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ScheduleError(f"template {name} is missing from {TEMPLATES_DIR} (run parsectl from its checkout)") \
            from exc


def fill(template: str, values: dict[str, str]) -> str:
    """Replace ``@NAME@`` placeholders (not ``$``: the templates are shell); every one must be given."""
    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise ScheduleError(f"template placeholder @{key}@ has no value")
        return values[key]

    return re.sub(r"@([A-Z][A-Z0-9_]*)@", sub, template)


def cron_spec(every: str, seed: str) -> str:
    """``2h`` -> ``M */2 * * *`` (M spread by ``seed`` so nodes do not all start at once), ``30m`` ->
    ``*/30 * * * *``, ``1d`` -> ``M H * * *``. Intervals cron cannot express evenly are refused."""
    seconds = parse_human(every)
    spread = int(hashlib.sha256(seed.encode()).hexdigest(), 16)
    if seconds % 60:
        raise ScheduleError(f"--every {every}: cron runs at whole minutes")
    minutes = seconds // 60
    if minutes < 60:
        if 60 % minutes:
            raise ScheduleError(f"--every {every}: use a divisor of an hour (5m, 10m, 15m, 20m, 30m) or hours")
        offset = spread % minutes
        return f"{offset}-59/{minutes} * * * *" if offset else f"*/{minutes} * * * *"
    if minutes % 60:
        raise ScheduleError(f"--every {every}: use whole hours above one hour (e.g. 2h)")
    hours = minutes // 60
    minute = spread % 60
    if hours == 24:
        return f"{minute} {(spread // 60) % 24} * * *"
    if hours > 24 or 24 % hours:
        raise ScheduleError(f"--every {every}: use 1h, 2h, 3h, 4h, 6h, 8h, 12h or 1d")
    if hours == 1:
        return f"{minute} * * * *"
    start = (spread // 60) % hours
    return f"{minute} {start}-23/{hours} * * *" if start else f"{minute} */{hours} * * *"


def _file_name(replica_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", replica_id)  # cron ignores /etc/cron.d names with dots


@dataclass
class Paths:
    root: str
    key: str

    def _p(self, directory: str, name: str) -> str:
        return os.path.join(self.root, directory.lstrip("/"), name) if self.root not in ("", "/") \
            else os.path.join(directory, name)

    @property
    def cron(self) -> str:
        return self._p(CRON_DIR, f"parsectl-backup-{self.key}")

    @property
    def script(self) -> str:
        return self._p(SCRIPT_DIR, f"backup-{self.key}.sh")

    @property
    def env(self) -> str:
        return self._p(ENV_DIR, f"backup-{self.key}.env")

    @property
    def log(self) -> str:
        return self._p(LOG_DIR, f"backup-{self.key}.log")

    def lock(self, lock_dir: str, name: str | None = None) -> str:
        return self._p(lock_dir, f"parsectl-strata-{name or self.key}.lock")


@dataclass
class PlannedFile:
    path: str
    content: str
    mode: int


@dataclass
class Plan:
    name: str
    files: list[PlannedFile] = field(default_factory=list)
    paths: Paths | None = None


def _env_text(env: dict[str, str]) -> str:
    lines = ["# written by parsectl backup schedule; read by the backup script (mode 0600)"]
    lines += [f"{key}={shlex.quote(value)}" for key, value in sorted(env.items())]
    return "\n".join(lines) + "\n"


def strata_plan(config: StrataConfig, replica_id: str, *, every: str, retention: str, keep_at_least: int = 1,
                root: str = "/") -> Plan:
    """The files that schedule strata backups of ``replica_id`` (pure: nothing touched)."""
    if keep_at_least < 1:
        raise ScheduleError("--keep-at-least must be 1 or more")
    retention_s = parse_human(retention)
    spec = cron_spec(every, replica_id)
    paths = Paths(root, _file_name(replica_id))
    lock = paths.lock(config.lock_dir or DEFAULT_LOCK_DIR, replica_id)  # the lock `parsectl backup` takes too
    password = config.mongod.password
    config_no_pw = StrataConfig(storage=config.storage, mongod=type(config.mongod)(config.mongod.port,
                                config.mongod.username, None), credentials=config.credentials,
                                binary=config.binary, max_background_copies=config.max_background_copies,
                                lock_dir=config.lock_dir, tz=None)
    call = shlex.join([config.binary, *global_flags(config_no_pw)])
    env = {k: v for k, v in environment(config_no_pw).items() if k != "TZ"}
    if password:
        env["MONGOD_PASSWORD"] = password
    note = f"every {every}, retention {retention}"
    values = {
        "REPLICA_ID": replica_id, "REPLICA_ID_Q": shlex.quote(replica_id), "SCHEDULE_NOTE": note,
        "RETENTION": retention, "RETENTION_GO": to_go_duration(retention_s), "KEEP_AT_LEAST": str(keep_at_least),
        "ENV_FILE": shlex.quote(paths.env), "LOG_FILE": shlex.quote(paths.log), "LOCK_FILE": shlex.quote(lock),
        "RETENTION_SECONDS": str(retention_s), "STRATA_CALL": call,
        "CRON_SPEC": spec, "CRON_USER": "root", "SCRIPT": shlex.quote(paths.script),
    }
    return Plan(replica_id, [
        PlannedFile(paths.env, _env_text(env), 0o600),
        PlannedFile(paths.script, fill(load_template("strata-backup.sh.tmpl"), values), 0o755),
        PlannedFile(paths.cron, fill(load_template("strata-backup.cron.tmpl"), values), 0o644),
    ], paths)


def sqlite_plan(database: str, store_args: list[str], store_env: dict[str, str], *, every: str, retention: str,
                keep_at_least: int = 1, parsectl: str = "parsectl", root: str = "/",
                lock_dir: str = DEFAULT_LOCK_DIR) -> Plan:
    """The files that schedule SQLite backups (the host needs parsectl: ``parsectl`` is its path there)."""
    if keep_at_least < 1:
        raise ScheduleError("--keep-at-least must be 1 or more")
    parse_human(retention)
    key = "sqlite-" + hashlib.sha256(database.encode()).hexdigest()[:10]
    spec = cron_spec(every, key)
    paths = Paths(root, key)
    args = ["--database", database, *store_args]
    values = {
        "DATABASE": database, "SCHEDULE_NOTE": f"every {every}, retention {retention}", "RETENTION": retention,
        "RETENTION_Q": shlex.quote(retention), "KEEP_AT_LEAST": str(keep_at_least),
        "ENV_FILE": shlex.quote(paths.env), "LOG_FILE": shlex.quote(paths.log),
        "LOCK_FILE": shlex.quote(paths.lock(lock_dir)), "PARSECTL_CALL": shlex.quote(parsectl),
        "STORE_ARGS": shlex.join(args), "CRON_SPEC": spec, "CRON_USER": "root",
        "SCRIPT": shlex.quote(paths.script), "REPLICA_ID": f"SQLite {database}",
    }
    return Plan(key, [
        PlannedFile(paths.env, _env_text(store_env), 0o600),
        PlannedFile(paths.script, fill(load_template("sqlite-backup.sh.tmpl"), values), 0o755),
        PlannedFile(paths.cron, fill(load_template("strata-backup.cron.tmpl"), values), 0o644),
    ], paths)


# ---------------------------------------------------------------------------------------------------------
# Applying a plan through a session (parsectl.ssh.Session, or LocalSession for this machine)
# ---------------------------------------------------------------------------------------------------------

class LocalSession:
    """The parts of ``parsectl.ssh.Session`` that schedule uses, on this machine."""

    def run(self, cmd: str, *, sudo: bool = False, check: bool = True, input: str | bytes | None = None,
            timeout: float | None = None) -> Any:
        from parsectl.ssh import CommandError, Result

        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(["sh", "-c", cmd], input=data, capture_output=True, timeout=timeout)
        result = Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))
        if check and proc.returncode != 0:
            raise CommandError(f"local command failed with exit {proc.returncode}: {cmd[:200]}\n"
                               f"{result.stderr.strip()[-600:]}", result)
        return result

    def put(self, path: str, data: bytes | str, *, mode: int = 0o644, owner: str | None = None,
            sudo: bool = False) -> None:
        payload = data.encode() if isinstance(data, str) else data
        target = Path(path)
        tmp = target.with_name(f".{target.name}.parsectl.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.chmod(tmp, mode)
        os.replace(tmp, target)

    def get(self, path: str, *, sudo: bool = False) -> bytes | None:
        try:
            return Path(path).read_bytes()
        except FileNotFoundError:
            return None

    def close(self) -> None:
        pass


def _mode(session: Any, path: str, sudo: bool) -> int | None:
    result = session.run(f"stat -c %a {shlex.quote(path)}", sudo=sudo, check=False)
    return int(result.stdout.strip(), 8) if result.exit_code == 0 and result.stdout.strip() else None


def apply(session: Any, plan: Plan, *, sudo: bool = False, dry_run: bool = False) -> dict[str, str]:
    """Write what differs; return {path: created|updated|unchanged} (``would-`` prefixed for dry runs)."""
    status: dict[str, str] = {}
    dirs = sorted({os.path.dirname(f.path) for f in plan.files})
    if not dry_run:
        session.run("mkdir -p " + " ".join(shlex.quote(d) for d in dirs), sudo=sudo)
    for planned in plan.files:
        current = session.get(planned.path, sudo=sudo)
        wanted = planned.content.encode()
        if current == wanted and _mode(session, planned.path, sudo) == planned.mode:
            status[planned.path] = "unchanged"
            continue
        status[planned.path] = ("would-" if dry_run else "") + ("created" if current is None else "updated")
        if not dry_run:
            session.put(planned.path, wanted, mode=planned.mode, owner=None, sudo=sudo)
    return status


def _exists(session: Any, path: str, sudo: bool) -> bool:
    return session.run(f"test -e {shlex.quote(path)}", sudo=sudo, check=False).exit_code == 0


def remove(session: Any, plan: Plan, *, sudo: bool = False, dry_run: bool = False) -> dict[str, str]:
    status: dict[str, str] = {}
    for planned in reversed(plan.files):  # the cron entry first: nothing starts a half-removed script
        if _exists(session, planned.path, sudo):
            status[planned.path] = "would-remove" if dry_run else "removed"
            if not dry_run:
                session.run(f"rm -f {shlex.quote(planned.path)}", sudo=sudo)
        else:
            status[planned.path] = "absent"
    return status


# ---------------------------------------------------------------------------------------------------------
# Host facts: short hostname, and whether mongod there is the primary
# ---------------------------------------------------------------------------------------------------------

def remote_hostname(session: Any) -> str:
    result = session.run("hostname -s 2>/dev/null || hostname", check=False)
    return result.stdout.strip().split(".")[0]


@dataclass
class MemberState:
    reachable: bool
    primary: bool = False
    secondary: bool = False
    hidden: bool = False
    set_name: str | None = None
    how: str = ""
    error: str | None = None

    def warning(self, host: str, port: int) -> str | None:
        if not self.reachable:
            return (f"{host}: could not ask mongod on port {port} whether it is the primary ({self.error}); "
                    f"check by hand: mongo --port {port} --eval 'db.isMaster().ismaster'")
        if self.primary and self.set_name:
            return (f"{host} is the PRIMARY of {self.set_name}: back up from a secondary (ideally a hidden "
                    f"member) so backups do not load the primary (checked with {self.how})")
        if self.primary:
            return f"{host}: mongod on port {port} is not in a replica set (standalone; checked with {self.how})"
        return None


def _state(doc: dict[str, Any], how: str) -> MemberState:
    return MemberState(True, bool(doc.get("isWritablePrimary", doc.get("ismaster"))), bool(doc.get("secondary")),
                       bool(doc.get("hidden")), doc.get("setName"), how)


def member_state(session: Any, port: int, *, local: bool = False) -> MemberState:
    """Ask mongod ``hello`` (``isMaster`` on servers before 4.4) through an SSH tunnel with pymongo; if
    pymongo cannot talk to it (MongoRocks 3.x is older than pymongo 4 supports), with the mongo shell on
    the host."""
    errors = []
    try:
        import contextlib

        from pymongo import MongoClient

        tunnel = contextlib.nullcontext(port) if local else session.tunnel("127.0.0.1", port)
        with tunnel as local_port:
            client: MongoClient[dict[str, Any]] = MongoClient("127.0.0.1", int(local_port), directConnection=True,
                                                              serverSelectionTimeoutMS=3000, connectTimeoutMS=3000)
            try:
                try:
                    doc = client.admin.command("hello")
                    name = "hello"
                except Exception:
                    doc = client.admin.command("isMaster")
                    name = "isMaster"
            finally:
                client.close()
        return _state(doc, f"{name} through {'localhost' if local else 'an SSH tunnel'}")
    except Exception as exc:
        errors.append(f"pymongo: {str(exc).splitlines()[0][:160]}")
    script = (f"for s in mongosh mongo; do command -v $s >/dev/null && exec $s --quiet --port {int(port)} "
              "--eval 'JSON.stringify(db.isMaster())'; done; exit 127")
    result = session.run(script, check=False)
    if result.exit_code == 0:
        import json

        try:
            return _state(json.loads(result.stdout.strip().splitlines()[-1]), "the mongo shell on the host")
        except (ValueError, IndexError):
            errors.append(f"mongo shell printed {result.stdout.strip()[:120]!r}")
    else:
        errors.append("no mongo/mongosh shell on the host" if result.exit_code == 127
                      else f"mongo shell: {(result.stderr or result.stdout).strip()[:160]}")
    return MemberState(False, error="; ".join(errors))


def describe(plan: Plan, every: str, retention: str) -> str:
    return f"{plan.name}: every {every} ({humanize(parse_human(every))}), retention {retention}"
