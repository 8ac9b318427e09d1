"""``parsectl backup``: strata backups of MongoRocks nodes, and SQLite backups of the embedded store."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import inspect
import json
import os
import socket
import sys
import time
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer

from parsectl.backup import sqlite as sq
from parsectl.backup import strata as st
from parsectl.backup.durations import DurationError, humanize, parse_human

EXIT_OK = 0
EXIT_FAILED = 1        # strata (or the SQLite backup) failed; `check`: a backup is too old or missing
EXIT_USAGE = 2
EXIT_UNKNOWN = 3       # `check` could not tell
EXIT_REFUSED = 4       # a guard refused: retention, mongod running, target not empty, no confirmation
EXIT_UNREACHABLE = 69  # SSH
EXIT_LOCKED = 75       # another backup/delete/gc of the replica is running

EPILOG = """\
Examples (MongoRocks nodes, strata must be installed on the node):

  parsectl backup run --bucket my-backups --prefix prod --replset mydata             # on this node
  parsectl backup run --host ops@db2.internal --sudo --bucket my-backups --replset mydata
  parsectl backup show --host ops@db2.internal --sudo --bucket my-backups --replica-id mydata-db2
  parsectl backup last --replica-id mydata-db2 --bucket my-backups --output json
  parsectl backup delete --older-than 30d --keep-at-least 3 --replica-id mydata-db2 --bucket my-backups --dry-run
  parsectl backup restore --backup-id 41 --replica-id mydata-db2 --target-path /data/restore --bucket my-backups
  parsectl backup schedule --hosts ops@db2,ops@db3 --sudo --every 2h --retention 30d --bucket my-backups \\
      --replset mydata
  parsectl backup check --hosts ops@db2,ops@db3 --sudo --max-age 26h --bucket my-backups --replset mydata

Examples (the embedded SQLite store, while `parsectl serve` runs):

  parsectl backup run --database sqlite:///srv/parse/parse.db --to /mnt/backups/parse
  parsectl backup run --database sqlite:///srv/parse/parse.db --bucket my-backups --prefix parse
  parsectl backup show --database sqlite:///srv/parse/parse.db --to /mnt/backups/parse
  parsectl backup restore --database sqlite:///srv/parse-restored/parse.db --to /mnt/backups/parse \\
      --backup-id 20240501T120000Z

Storage credentials come from the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or MINIO_*) or
--profile; they are handed to strata in its environment, never on a command line. The mongod password
comes from $PARSECTL_MONGOD_PASSWORD or --mongod-password-file.

Exit codes: 0 done, 1 failed (check: too old or missing), 2 bad options, 3 check could not tell,
4 refused by a guard or not confirmed, 69 SSH failed, 75 another run holds the replica's lock.
"""

app = typer.Typer(help="Backups that are boring: strata for MongoRocks nodes, SQLite online backups for the "
                       "embedded store.", no_args_is_help=True, epilog=EPILOG)


class Fail(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


# --- options shared by the verbs ----------------------------------------------------------------------------

def _option(default: Any, *names: str, **kwargs: Any) -> Any:
    """A field of SharedOptions that is also a command-line option (the typer.Option rides in its metadata)."""
    return dataclasses.field(default=default, metadata={"option": typer.Option(default, *names, **kwargs)})


@dataclasses.dataclass(frozen=True)
class SharedOptions:
    """What every verb takes: the SQLite store or strata's storage, the node and how to reach it, the output.

    Declared once, here; :func:`shared_options` makes the fields a verb's options."""

    database: str | None = _option(None, "--database", metavar="sqlite:///PATH",
                                   help="Back up the embedded SQLite store instead of a MongoRocks node")
    to: Path | None = _option(None, "--to", help="SQLite backups: a folder to keep them in (or use --bucket for S3)")
    storage: str = _option("s3", "--storage", help="strata storage: s3, minio (S3-compatible endpoint) or local")
    bucket: str | None = _option(None, "--bucket", help="S3/MinIO bucket")
    region: str | None = _option(None, "--region",
                                 help="S3 region (strata: us-east-1 default; goamz's 13 regions only)")
    prefix: str | None = _option(None, "--prefix", help="Key prefix in the bucket (strata --bucket-prefix)")
    acl: str | None = _option(None, "--acl", help="S3 ACL for strata (private, bucket-owner-full-control, ...)")
    endpoint: str | None = _option(None, "--endpoint",
                                   help="minio: HOST:PORT or http(s)://HOST:PORT; SQLite: S3 endpoint URL")
    mpoint: str | None = _option(None, "--mpoint", help="local storage: mount point (absolute)")
    profile: str | None = _option(None, "--profile", help="AWS profile for the credentials (static keys for strata)")
    port: int = _option(27017, "--port", help="mongod port on the node")
    mongod_user: str | None = _option(None, "--mongod-user", help="mongod user with getCmdLineOpts+setParameter")
    mongod_password_file: Path | None = _option(
        None, "--mongod-password-file", help="File holding the mongod password [or env PARSECTL_MONGOD_PASSWORD]")
    replica_id: str | None = _option(None, "--replica-id", "-r",
                                     help="strata replica ID (default <replset>-<short hostname>)")
    replset: str | None = _option(None, "--replset",
                                  help="Replica set name for the default replica ID (default: ask mongod)")
    host: str | None = _option(None, "--host", metavar="USER@HOST[:PORT]",
                               help="Run on this node over SSH (default: here)")
    ssh_key: Path | None = _option(None, "--ssh-key", help="SSH private key")
    known_hosts: Path | None = _option(None, "--known-hosts", help="known_hosts file (default ~/.ssh/known_hosts)")
    accept_new_host_keys: bool = _option(False, "--accept-new-host-keys",
                                         help="Learn keys of hosts not yet in known_hosts")
    jump: str | None = _option(None, "--jump", metavar="USER@HOST[:PORT]", help="SSH jump host")
    sudo: bool = _option(False, "--sudo", help="Run strata as root on the node (sudo -n)")
    strata_path: str = _option("strata", "--strata", help="Path of the strata binary on the node")
    lock_dir: str = _option(st.DEFAULT_LOCK_DIR, "--lock-dir", help="Where the per-replica lock files live")
    output: str = _option("text", "--output", "-o", help="text or json")


Verb = Callable[..., None]


def shared_options(*, omit: tuple[str, ...] = (), **override: Any) -> Callable[[Verb], Verb]:
    """Give a verb the shared options, declared once in SharedOptions.

    In the signature Typer sees, the verb's ``opts: SharedOptions`` parameter becomes one option per field, in
    its place (the verb's own options keep their order around them); the verb is called with them gathered into
    one SharedOptions, --output already checked. ``omit``: fields that are not options of this verb (they keep
    their defaults); ``field=typer.Option(...)``: declare that option differently for this verb."""
    fields = [f for f in dataclasses.fields(SharedOptions) if f.name not in omit]
    if unknown := set(override) - {f.name for f in fields}:
        raise TypeError(f"shared_options: no shared option {', '.join(sorted(unknown))}")
    types = typing.get_type_hints(SharedOptions)
    shared = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=types[f.name],
                                default=override.get(f.name, f.metadata["option"])) for f in fields]

    def decorate(verb: Verb) -> Verb:
        params: list[inspect.Parameter] = []
        for param in inspect.signature(verb, eval_str=True).parameters.values():
            params += shared if param.name == "opts" else [param.replace(kind=inspect.Parameter.KEYWORD_ONLY)]

        @functools.wraps(verb)
        def command(**kwargs: Any) -> None:
            opts = SharedOptions(**{f.name: kwargs.pop(f.name) for f in fields})
            _run(lambda: _check_output(opts.output))
            verb(**kwargs, opts=opts)

        command.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
        command.__annotations__ = {param.name: param.annotation for param in params}
        return command
    return decorate


YES = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation")
DRY_RUN = typer.Option(False, "--dry-run", help="Say what would be done; change nothing")


def _emit(output: str, doc: Any, text: str | None = None) -> None:
    if output == "json":
        typer.echo(json.dumps(doc, indent=1, default=str))
    elif text is not None:
        typer.echo(text)


def _err(message: str) -> None:
    typer.echo(message, err=True)


@contextlib.contextmanager
def _status(message: str, output: str) -> Iterator[None]:
    """A spinner on stderr while something long runs (only on a terminal, never in JSON mode)."""
    if output != "text" or not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(message):
        yield


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise Fail(f"{question} Not confirmed: give --yes to run this without a terminal", EXIT_REFUSED)
    if not typer.confirm(question, default=False):
        raise Fail("not confirmed; nothing done", EXIT_REFUSED)


def _check_output(output: str) -> None:
    if output not in ("text", "json"):
        raise Fail(f"--output {output!r}: choose text or json", EXIT_USAGE)


def _run(fn: Any) -> None:
    """Map exceptions to one message and an exit code."""
    from parsectl.backup.schedule import ScheduleError
    from parsectl.ssh import SSHError

    try:
        fn()
    except Fail as exc:
        _err(f"parsectl backup: {exc}")
        raise typer.Exit(exc.code) from None
    except st.StrataError as exc:
        _err(f"parsectl backup: {exc.message}")
        raise typer.Exit(EXIT_LOCKED if exc.exit_code == st.EXIT_LOCKED else EXIT_FAILED) from None
    except st.RetentionError as exc:
        _err(f"parsectl backup: refused: {exc}")
        raise typer.Exit(EXIT_REFUSED) from None
    except (st.OptionsError, DurationError, ScheduleError) as exc:
        _err(f"parsectl backup: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    except sq.BackupError as exc:
        _err(f"parsectl backup: {exc}")
        raise typer.Exit(EXIT_REFUSED if "refus" in str(exc) or "in use" in str(exc) or "--yes" in str(exc)
                         else EXIT_FAILED) from None
    except SSHError as exc:
        _err(f"parsectl backup: {exc}")
        raise typer.Exit(EXIT_UNREACHABLE if exc.kind in ("unreachable", "timeout", "auth", "host-key-unknown",
                                                          "host-key-changed") else EXIT_FAILED) from None


# --- building the node ---------------------------------------------------------------------------------------

def _password(password_file: Path | None) -> str | None:
    if password_file:
        try:
            return password_file.read_text().strip()
        except OSError as exc:
            raise Fail(f"cannot read --mongod-password-file {password_file}: {exc.strerror}", EXIT_USAGE) from exc
    return os.environ.get("PARSECTL_MONGOD_PASSWORD") or None


def strata_config(opts: SharedOptions) -> st.StrataConfig:
    kind = opts.storage.lower()
    store = st.Storage(kind=kind, bucket=opts.bucket, region=opts.region or "us-east-1", prefix=opts.prefix,
                       acl=opts.acl, endpoint=opts.endpoint, mpoint=opts.mpoint)
    store.validate()
    if opts.mongod_password_file and not opts.mongod_user:
        raise Fail("--mongod-password-file needs --mongod-user", EXIT_USAGE)
    password = _password(opts.mongod_password_file) if opts.mongod_user else None  # $PARSECTL_MONGOD_PASSWORD: with a user
    return st.StrataConfig(storage=store, mongod=st.Mongod(opts.port, opts.mongod_user, password),
                           credentials=st.Credentials.resolve(kind, profile=opts.profile), binary=opts.strata_path,
                           lock_dir=opts.lock_dir or None)


def _target(opts: SharedOptions) -> Any:
    from parsectl.ssh import parse_target

    return parse_target(opts.host, key_file=str(opts.ssh_key) if opts.ssh_key else None,
                        known_hosts=str(opts.known_hosts) if opts.known_hosts else None,
                        accept_new_host_keys=opts.accept_new_host_keys,
                        jump=parse_target(opts.jump) if opts.jump else None, sudo=opts.sudo)


@contextlib.contextmanager
def _session(opts: SharedOptions) -> Iterator[tuple[Any, str, bool]]:
    """(session, label, is_local) on --host. Local: a LocalSession on this machine."""
    from parsectl.backup.schedule import LocalSession

    if not opts.host:
        yield LocalSession(), "localhost", True
        return
    from parsectl.ssh import connect

    target = _target(opts)
    with connect(target) as session:
        yield session, target.host if target.port == 22 else f"{target.host}:{target.port}", False


def _replica_id(session: Any, is_local: bool, replica_id: str | None, replset: str | None, port: int) -> str:
    if replica_id:
        return st.check_replica_id(replica_id)
    from parsectl.backup.schedule import member_state, remote_hostname

    hostname = socket.gethostname() if is_local else remote_hostname(session)
    if not replset:
        state = member_state(session, port, local=is_local)
        replset = state.set_name
        if not replset:
            raise Fail("cannot tell the replica set name (mongod did not say: "
                       f"{state.error or 'not in a replica set'}); give --replset NAME or --replica-id ID",
                       EXIT_USAGE)
    return st.default_replica_id(replset, hostname)


@contextlib.contextmanager
def _strata_node(opts: SharedOptions) -> Iterator[st.StrataNode]:
    """strata on --host (or here) for --replica-id (or the default one); its config is ``node.config``."""
    config = strata_config(opts)
    with _session(opts) as (session, label, is_local):
        runner: st.Runner = st.LocalRunner() if is_local else st.SSHRunner(session, label, sudo=opts.sudo)
        rid = _replica_id(session, is_local, opts.replica_id, opts.replset, opts.port)
        yield st.StrataNode(config, runner, rid)


def _sqlite_store(opts: SharedOptions) -> sq.Store:
    if opts.to and opts.bucket:
        raise Fail("give --to (a folder) or --bucket (S3), not both", EXIT_USAGE)
    if opts.to:
        return sq.FolderStore(opts.to)
    if opts.bucket:
        return sq.S3Store(opts.bucket, opts.prefix or "", region=opts.region, endpoint=opts.endpoint,
                          profile=opts.profile)
    raise Fail("SQLite backups need --to FOLDER or --bucket BUCKET", EXIT_USAGE)


def _table(records: list[st.BackupRecord], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("ID", "started (UTC)", "age", "files", "GB", "new files", "new GB", "duration"):
        table.add_column(col, justify="right" if col not in ("ID", "started (UTC)") else "left", no_wrap=True)
    now = time.time()
    for r in records:
        started = r.started.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if r.started else r.date
        age = humanize(now - r.started.timestamp()) if r.started else "?"

        def q(v: Any, fmt: str = "{}") -> str:
            return "?" if v is None else fmt.format(v)

        table.add_row(r.id, started, age, q(r.num_files), q(r.size_gb, "{:.6f}"), q(r.incremental_files),
                      q(r.incremental_size_gb, "{:.6f}"), r.duration or "?")
    Console(width=None if sys.stdout.isatty() else 160).print(table)


def _progress(output: str) -> tuple[Any, Any]:
    """(progress callback, context) for SQLite backups/restores: a rich bar on a terminal."""
    if output != "text" or not sys.stderr.isatty():
        return None, contextlib.nullcontext()
    from rich.console import Console
    from rich.progress import Progress

    progress = Progress(console=Console(stderr=True), transient=True)
    tasks: dict[str, Any] = {}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=max(total, 1))
        progress.update(tasks[stage], completed=done, total=max(total, 1))

    return report, progress


# --- verbs ---------------------------------------------------------------------------------------------------

@app.command("run")
@shared_options()
def run_cmd(opts: SharedOptions) -> None:
    """Take a backup now: strata backup on a MongoRocks node, or a hot SQLite snapshot with --database."""
    def go() -> None:
        if opts.database:
            store = _sqlite_store(opts)
            report, ctx = _progress(opts.output)
            with ctx:
                manifest = sq.run_backup(sq.db_path_from_uri(opts.database), store, progress=report)
            rec = sq.as_record(manifest)
            _emit(opts.output, {"id": manifest["id"], "store": store.describe(), "manifest": manifest},
                  f"backup {manifest['id']} done: {store.describe()} ({rec.num_files} files, "
                  f"{manifest['new_files']} new; integrity ok; {sum(manifest['database']['tables'].values())} rows)")
            return
        with _strata_node(opts) as node:
            inv = st.backup_cmd(node.config, node.replica_id)
            with _status(f"strata backup of {node.replica_id} on {node.host} ...", opts.output):
                result = node.backup()
            finished = [x for x in st.log_lines(result.stderr) if x.startswith("Backup finished")]
            _emit(opts.output, {"host": node.host, "replica_id": node.replica_id, "command": inv.display(),
                                "result": finished[-1] if finished else None},
                  f"{node.host}: backup of {node.replica_id} done ({finished[-1] if finished else ''}) "
                  f"to {node.config.storage.describe()}")
    _run(go)


@app.command("show")
@shared_options()
def show_cmd(
    opts: SharedOptions,
    show_size: bool = typer.Option(False, "--show-size", help="strata: compute sizes missing from stats"),
) -> None:
    """List the backups (strata's `show backups`, parsed) as a table or JSON."""
    def go() -> None:
        if opts.database:
            store = _sqlite_store(opts)
            records, title = sq.show(store), f"SQLite backups in {store.describe()}"
            meta: dict[str, Any] = {"store": store.describe()}
        else:
            with _strata_node(opts) as node:
                records = node.show(show_size=show_size)
            storage = node.config.storage.describe()
            title = f"strata backups of {node.replica_id} in {storage}"
            meta = {"host": node.host, "replica_id": node.replica_id, "storage": storage}
        if opts.output == "json":
            _emit(opts.output, {**meta, "backups": [r.to_json() for r in records]})
        elif records:
            _table(records, title)
        else:
            typer.echo(f"no backups ({title})")
    _run(go)


@app.command("last")
@shared_options()
def last_cmd(opts: SharedOptions) -> None:
    """The age of the newest backup (exit 1 when there is none)."""
    def go() -> None:
        name, newest = _newest(opts)
        if newest is None:
            _emit(opts.output, {"node": name, "newest": None, "age_seconds": None}, f"{name}: no backups")
            raise typer.Exit(EXIT_FAILED)
        age = time.time() - newest
        when = dt.datetime.fromtimestamp(newest, dt.UTC)
        _emit(opts.output, {"node": name, "newest": when.isoformat(), "newest_unix": newest,
                            "age_seconds": round(age)},
              f"{name}: newest backup {when.strftime('%Y-%m-%d %H:%M:%S UTC')}, {humanize(age)} ago")
    _run(go)


def _newest(opts: SharedOptions) -> tuple[str, float | None]:
    if opts.database:
        store = _sqlite_store(opts)
        records = sq.show(store)
        return store.describe(), (records[-1].started.timestamp() if records and records[-1].started else None)
    with _strata_node(opts) as node:
        value = node.last_backup_time()
        return f"{node.host} {node.replica_id}", (float(value) if value is not None else None)


@app.command("delete")
@shared_options()
def delete_cmd(
    older_than: str = typer.Option(None, "--older-than", help="Delete backups older than this (30d, 12h, 720h)"),
    backup_id: list[str] = typer.Option([], "--backup-id", "-i", help="Delete this backup (repeatable)"),
    keep_at_least: int = typer.Option(1, "--keep-at-least", help="Never leave fewer backups than this (>= 1)"),
    gc: bool = typer.Option(True, "--gc/--no-gc", help="Run gc after deleting (default: yes)"),
    *, opts: SharedOptions, yes: bool = YES, dry_run: bool = DRY_RUN,
) -> None:
    """Delete old backups under a guard: never the newest, never below --keep-at-least; then gc."""
    def go() -> None:
        if (older_than is None) == (not backup_id):
            raise Fail("give --older-than DURATION or --backup-id ID", EXIT_USAGE)
        if older_than:
            parse_human(older_than)
        if opts.database:
            store = _sqlite_store(opts)
            plan = sq.delete(store, older_than=older_than, backup_ids=backup_id, keep_at_least=keep_at_least,
                             dry_run=True)
            _say_plan(plan, store.describe(), opts.output, dry_run)
            if dry_run or not plan.delete:
                return
            _confirm(f"Delete {len(plan.delete)} backup(s) from {store.describe()}?", yes)
            plan = sq.delete(store, older_than=older_than, backup_ids=backup_id, keep_at_least=keep_at_least)
            collected = sq.gc(store) if gc else None
            _emit(opts.output, {**plan.to_json(), "gc": collected},
                  f"deleted {', '.join(r.id for r in plan.delete)}"
                  + (f"; gc removed {len(collected['deleted'])} object(s)" if collected else ""))
            return
        with _strata_node(opts) as node:
            preview = node.delete(older_than=older_than, backup_ids=backup_id, keep_at_least=keep_at_least,
                                  dry_run=True)
            _say_plan(preview.plan, f"{node.replica_id} on {node.host}", opts.output, dry_run, preview.commands)
            if dry_run or not preview.plan.delete:
                return
            _confirm(f"Delete {len(preview.plan.delete)} backup(s) of {node.replica_id}?", yes)
            with _status(f"strata delete on {node.host} ...", opts.output):
                done = node.delete(older_than=older_than, backup_ids=backup_id, keep_at_least=keep_at_least)
                if gc:
                    node.gc()
            _emit(opts.output, {**done.to_json(), "gc": gc, "host": node.host, "replica_id": node.replica_id},
                  f"{node.host}: deleted {', '.join(done.deleted)} of {node.replica_id}" + ("; gc done" if gc else ""))
    _run(go)


def _say_plan(plan: st.DeletePlan, where: str, output: str, dry_run: bool, commands: list[str] | None = None) -> None:
    if output == "json":
        if dry_run or not plan.delete:
            _emit(output, {**plan.to_json(), "commands": commands or [], "dry_run": dry_run})
        return
    if not plan.delete:
        typer.echo(f"{where}: nothing to delete" + (f" (kept by --keep-at-least: {', '.join(r.id for r in plan.protected)})"
                                                    if plan.protected else ""))
        return
    typer.echo(f"{where}: {'would delete' if dry_run else 'deleting'} backup(s) {', '.join(r.id for r in plan.delete)}; "
               f"keeping {len(plan.keep)}" + (f" (protected by --keep-at-least: "
                                              f"{', '.join(r.id for r in plan.protected)})" if plan.protected else ""))
    if dry_run:
        for command in commands or []:
            typer.echo(f"  {command}")


@app.command("gc")
@shared_options()
def gc_cmd(opts: SharedOptions, yes: bool = YES, dry_run: bool = DRY_RUN) -> None:
    """Remove stored data that no remaining backup needs (after delete)."""
    def go() -> None:
        if opts.database:
            store = _sqlite_store(opts)
            if not dry_run:
                _confirm(f"Garbage-collect {store.describe()}?", yes)
            result = sq.gc(store, dry_run=dry_run)
            _emit(opts.output, result, f"{'would remove' if dry_run else 'removed'} {len(result['deleted'])} "
                                       f"object(s) no backup needs")
            return
        with _strata_node(opts) as node:
            inv = st.gc_cmd(node.config, node.replica_id)
            if dry_run:
                _emit(opts.output, {"command": inv.display(), "dry_run": True}, f"would run: {inv.display()}")
                return
            _confirm(f"Garbage-collect the storage of {node.replica_id}?", yes)
            with _status(f"strata gc on {node.host} ...", opts.output):
                result = node.gc()
            garbage = [x for x in st.log_lines(result.stderr) if x.startswith("Found ")]
            _emit(opts.output, {"host": node.host, "replica_id": node.replica_id, "log": garbage},
                  f"{node.host}: gc of {node.replica_id} done" + (f" ({'; '.join(garbage)})" if garbage else ""))
    _run(go)


@app.command("restore")
@shared_options(database=typer.Option(None, "--database", metavar="sqlite:///PATH",
                                      help="SQLite: the database file to restore into (its files/ beside it)"))
def restore_cmd(
    backup_id: str = typer.Option(..., "--backup-id", "-i", help="The backup to restore (see `show`)"),
    target_path: str = typer.Option(None, "--target-path",
                                    help="strata: the dbPath to restore into (files go to <path>/db)"),
    owner: str = typer.Option("mongodb:mongodb", "--owner", help="strata: chown the restored files to this"),
    *, opts: SharedOptions, yes: bool = YES, dry_run: bool = DRY_RUN,
) -> None:
    """Restore a backup (strata: mongod must be stopped; SQLite: live targets refused).

    strata: refuses while mongod runs on the target dbPath, fixes ownership and permissions afterwards and
    prints how to start mongod. SQLite: refuses a live target, and a non-empty one without --yes."""
    output = opts.output

    def go() -> None:
        if opts.database:
            store = _sqlite_store(opts)
            target = sq.db_path_from_uri(opts.database)
            if dry_run:
                found = [r for r in sq.show(store) if r.id == backup_id]
                if not found:
                    raise Fail(f"no backup {backup_id!r} in {store.describe()}")
                _emit(output, {"id": backup_id, "target": str(target), "dry_run": True},
                      f"would restore {backup_id} from {store.describe()} into {target} and {target.parent / 'files'}")
                return
            report, ctx = _progress(output)
            with ctx:
                result = sq.restore(store, backup_id, target, yes=yes, progress=report)
            _emit(output, result, f"restored {backup_id} into {result['database']} ({result['files']} files, "
                                  f"integrity ok)" + (f"; the previous data is in {result['moved_aside']}"
                                                      if result["moved_aside"] else "")
                  + f"\nStart it with: parsectl serve --database-uri sqlite:///{result['database']}")
            return
        if not target_path:
            raise Fail("give --target-path (the dbPath to restore into; strata writes <path>/db)", EXIT_USAGE)
        with _strata_node(opts) as node:
            inv = st.restore_cmd(node.config, node.replica_id, backup_id, target_path)
            running = node.mongod_running(target_path)
            if running:
                raise Fail(f"refusing to restore into {target_path} on {node.host}: {running}; stop mongod first",
                           EXIT_REFUSED)
            if dry_run:
                _emit(output, {"command": inv.display(), "dry_run": True}, f"would run: {inv.display()}")
                return
            _confirm(f"Restore backup {backup_id} of {node.replica_id} into {target_path} on {node.host} "
                     "(files in its db/ that are not in the backup are deleted)?", yes)
            with _status(f"strata restore on {node.host} ...", output):
                result = node.restore(backup_id, target_path, owner=owner or None)
            finished = [x for x in st.log_lines(result.stderr) if x.startswith("Restore finished")]
            notes = [line for line in result.stderr.splitlines() if "does not exist" in line]
            howto = st.start_instructions(target_path, opts.port, owner)
            _emit(output, {"host": node.host, "replica_id": node.replica_id, "backup_id": backup_id,
                           "target_path": target_path, "result": finished[-1] if finished else None,
                           "notes": notes, "start": howto},
                  f"{node.host}: restored backup {backup_id} of {node.replica_id} into {target_path}/db "
                  f"({finished[-1] if finished else ''})\n" + "".join(f"note: {n}\n" for n in notes) + howto)
    _run(go)


def _hosts(hosts: list[str]) -> list[tuple[str, str | None]]:
    """``--hosts a,b`` / repeated; ``HOST=REPLICA_ID`` names a host's replica ID."""
    out = []
    for item in hosts:
        for part in item.split(","):
            part = part.strip()
            if part:
                spec, _, rid = part.partition("=")
                out.append((spec, rid or None))
    return out


@app.command("schedule")
@shared_options(omit=("host",))
def schedule_cmd(
    hosts: list[str] = typer.Option([], "--hosts", help="Backup nodes (comma-separated or repeated; "
                                                        "USER@HOST[:PORT][=REPLICA_ID]); none: this machine"),
    every: str = typer.Option("2h", "--every", help="How often (5m..1h divisors, 1h..12h dividing a day, 1d)"),
    retention: str = typer.Option("30d", "--retention", help="Delete backups older than this (guarded)"),
    keep_at_least: int = typer.Option(1, "--keep-at-least", help="Never keep fewer backups than this"),
    remove: bool = typer.Option(False, "--remove", help="Uninstall the schedule"),
    root: str = typer.Option("/", "--root", help="Install under this directory instead of / (tests, chroots)"),
    parsectl_path: str = typer.Option("parsectl", "--parsectl", help="SQLite: parsectl's path on the host"),
    *, opts: SharedOptions, yes: bool = YES, dry_run: bool = DRY_RUN,
) -> None:
    """Install (or --remove) cron + script on each backup node; re-running changes nothing.

    The script runs backup, then (only if it succeeded) the guarded delete, then gc, one run per replica
    ID at a time (flock), and logs. Warns when a node is the primary."""
    from parsectl.backup import schedule as sch

    output = opts.output

    def go() -> None:
        sch.cron_spec(every, "check")  # bad --every / --retention: refuse before touching any node
        parse_human(retention)
        targets = _hosts(hosts) or [(None, opts.replica_id)]
        if opts.replica_id and len(targets) > 1:
            raise Fail("--replica-id names one node; for several use --hosts HOST=REPLICA_ID,...", EXIT_USAGE)
        if remove and not dry_run:
            _confirm(f"Remove the backup schedule from {len(targets)} node(s)?", yes)
        report: list[dict[str, Any]] = []
        failures = 0
        for spec, rid in targets:
            rid = rid or opts.replica_id
            node = dataclasses.replace(opts, host=spec, lock_dir=opts.lock_dir or st.DEFAULT_LOCK_DIR)
            entry: dict[str, Any] = {"host": spec or "localhost"}
            try:
                with _session(node) as (session, label, is_local):
                    entry["host"] = label
                    if node.database:
                        store_args, store_env = _sqlite_schedule_store(node)
                        plan = sch.sqlite_plan(node.database, store_args, store_env, every=every, retention=retention,
                                               keep_at_least=keep_at_least, parsectl=parsectl_path, root=root,
                                               lock_dir=node.lock_dir)
                    else:
                        config = strata_config(node)
                        if not remove:
                            state = sch.member_state(session, node.port, local=is_local)
                            warning = state.warning(label, node.port)
                            if warning:
                                entry["warning"] = warning
                                _err(f"warning: {warning}")
                            if not rid and not node.replset and state.set_name:
                                rid = st.default_replica_id(state.set_name,
                                                            socket.gethostname() if is_local
                                                            else sch.remote_hostname(session))
                        rid = rid or _replica_id(session, is_local, None, node.replset, node.port)
                        entry["replica_id"] = rid
                        plan = sch.strata_plan(config, rid, every=every, retention=retention,
                                               keep_at_least=keep_at_least, root=root)
                    use_sudo = node.sudo and not is_local
                    files = (sch.remove(session, plan, sudo=use_sudo, dry_run=dry_run) if remove
                             else sch.apply(session, plan, sudo=use_sudo, dry_run=dry_run))
                    entry["files"] = files
                    entry["changed"] = any(v not in ("unchanged", "absent") for v in files.values())
                    if plan.paths:
                        entry["log"] = plan.paths.log
            except (st.OptionsError, DurationError, sch.ScheduleError, Fail):
                raise
            except Exception as exc:  # one node failing does not stop the others
                failures += 1
                entry["error"] = str(exc)
                _err(f"parsectl backup: {entry['host']}: {exc}")
            report.append(entry)
        if output == "json":
            _emit(output, {"nodes": report, "every": every, "retention": retention, "remove": remove,
                           "dry_run": dry_run})
        else:
            for entry in report:
                if "error" in entry:
                    continue
                what = "unchanged" if not entry["changed"] else ("removed" if remove else "installed")
                typer.echo(f"{entry['host']}: {entry.get('replica_id', 'sqlite')}: "
                           f"{'(dry run) ' if dry_run else ''}{what}")
                for path, status in entry["files"].items():
                    typer.echo(f"  {status:<10} {path}")
        if failures:
            raise Fail(f"{failures} of {len(report)} node(s) failed", EXIT_FAILED)
    _run(go)


def _sqlite_schedule_store(opts: SharedOptions) -> tuple[list[str], dict[str, str]]:
    if opts.to:
        return ["--to", str(opts.to)], {}
    if not opts.bucket:
        raise Fail("SQLite backups need --to FOLDER or --bucket BUCKET", EXIT_USAGE)
    args = ["--bucket", opts.bucket] + (["--prefix", opts.prefix] if opts.prefix else []) \
        + (["--region", opts.region] if opts.region else []) + (["--endpoint", opts.endpoint] if opts.endpoint else [])
    creds = st.Credentials.resolve("s3", profile=opts.profile)
    env = {"AWS_ACCESS_KEY_ID": creds.access_key or "", "AWS_SECRET_ACCESS_KEY": creds.secret_key or ""} \
        if creds.complete else {}
    return args, env


@app.command("check")
@shared_options(omit=("host",))
def check_cmd(
    max_age: str = typer.Option("26h", "--max-age", help="Too old beyond this (e.g. 26h for a daily backup)"),
    hosts: list[str] = typer.Option([], "--hosts", help="Nodes to check (USER@HOST[:PORT][=REPLICA_ID]); none: here"),
    *, opts: SharedOptions,
) -> None:
    """For cron/monitoring: exit 1 if any node's newest backup is too old or missing.

    Exit 0 when every node's newest backup is younger than --max-age, 1 when one is older or missing,
    3 when a node could not be checked. The first line is a summary (OK/CRITICAL/UNKNOWN: ...)."""
    output = opts.output

    def go() -> None:
        limit = parse_human(max_age)
        results: list[dict[str, Any]] = []
        targets = _hosts(hosts) or [(None, opts.replica_id)]
        for spec, rid in targets:
            try:
                name, newest = _newest(dataclasses.replace(opts, host=spec, replica_id=rid or opts.replica_id))
                results.append({**sq.freshness(name, newest, limit).to_json(), "state": None})
            except (st.OptionsError, DurationError, Fail):
                raise
            except Exception as exc:
                message = getattr(exc, "message", None) or str(exc)
                results.append({"node": spec or "localhost", "ok": False, "unknown": True,
                                "message": f"{spec or 'localhost'}: cannot check: {message}"})
        for r in results:
            r["state"] = "UNKNOWN" if r.get("unknown") else ("OK" if r["ok"] else "CRITICAL")
        bad = [r for r in results if r["state"] == "CRITICAL"]
        unknown = [r for r in results if r["state"] == "UNKNOWN"]
        state = "CRITICAL" if bad else ("UNKNOWN" if unknown else "OK")
        summary = (f"{state}: " + "; ".join(r["message"] for r in (bad + unknown or results)))
        _emit(output, {"state": state, "max_age_seconds": limit, "nodes": results},
              summary + ("\n" + "\n".join(r["message"] for r in results) if len(results) > 1 else ""))
        if bad:
            raise typer.Exit(EXIT_FAILED)
        if unknown:
            raise typer.Exit(EXIT_UNKNOWN)
    _run(go)
