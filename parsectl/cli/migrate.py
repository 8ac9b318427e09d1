"""``parsectl migrate`` and ``parsectl migrate verify``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

EPILOG = """\
Examples:

  parsectl migrate --from export.zip --to postgres://parse:pw@db:5432/parse --dry-run

  parsectl migrate --from export.zip --to mongodb://db:27017/parse --files --files-from ./files

  parsectl migrate --from export.zip --to sqlite:///parse.db --files \
      --files-url-rewrite http://files.parsetfss.com/=https://files-mirror.example.com/

  parsectl migrate --from export.zip --to postgres://parse:pw@db:5432/parse --files --files-from ./files \
      --nested-files-url https://api.example.com/parse/files/APP_ID/

  parsectl migrate --from https://old.example.com/parse --app-id APP --master-key KEY --to sqlite:///parse.db

  parsectl migrate --from mongodb://old:27017/parse --to postgres://... --mode merge --yes

  parsectl migrate verify --from export.zip --to postgres://parse:pw@db:5432/parse

Interrupted? Run the same command again: it continues where it stopped.
"""

EXIT_FAILED = 1
SAMPLE_LINES = 20  # files listed one by one in a text report
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69

app = typer.Typer(help="Move a Parse app's data into a self-hosted database with nothing lost.",
                  invoke_without_command=True, no_args_is_help=True, epilog=EPILOG)

FROM_HELP = ("A Parse.com export (.zip or folder), a live Parse Server URL (https://host/parse), or a "
             "database URI (mongodb://, postgres://, sqlite:///)")


NESTED_FILES_HELP = (
    "Give an export's Files inside objects and arrays the URL PREFIX + name, where the new server serves them "
    "(they keep their hosted-Parse URL otherwise, as parse-server stores them), e.g. "
    "https://api.example.com/parse/files/APP_ID/")


@contextlib.contextmanager
def _failures(output: str, source: str, interrupted: str) -> Iterator[None]:
    """Every failure inside as a message and an exit code (:func:`_failure`), never a traceback."""
    try:
        yield
    except KeyboardInterrupt:
        _fail(interrupted, 130)
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:  # noqa: BLE001 - that is the point
        _failure(exc, output, source=source)


def _failure(exc: Exception, output: str, *, source: str) -> None:
    """A migration or verify that failed: what happened and what to do, with an exit code (1: it failed on
    the data or the destination refused; 2: bad options; 69: a source or destination could not be reached);
    with --output json also a JSON line on stdout."""
    import sqlite3
    import zipfile

    from parsectl.migrate.engine import MigrationError
    from parsectl.migrate.sources.database import DatabaseSourceError
    from parsectl.migrate.sources.rest import RestSourceError

    code, message = EXIT_FAILED, str(exc) or type(exc).__name__
    if isinstance(exc, zipfile.BadZipFile):
        message = f"{source} is not a readable zip file ({exc}); unpack it, or give the export's folder"
    elif isinstance(exc, UnicodeDecodeError):
        message = f"the export holds a file that is not UTF-8 JSON ({exc})"
    elif type(exc).__module__.startswith("ijson") or type(exc).__name__ == "JSONDecodeError":
        message = f"the export holds a file that is not valid JSON ({exc}); is it complete?"
    elif isinstance(exc, DatabaseSourceError | RestSourceError | ConnectionError):
        code = EXIT_UNAVAILABLE
    elif isinstance(exc, sqlite3.DatabaseError):
        message = f"SQLite: {exc} (is the destination writable, is the disk full?)"
    elif isinstance(exc, ValueError):
        code = EXIT_USAGE
    elif isinstance(exc, OSError):
        code = EXIT_UNAVAILABLE if isinstance(exc, TimeoutError) else EXIT_FAILED
        message = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    elif not isinstance(exc, MigrationError):
        message = f"{type(exc).__name__}: {message}"
    if output == "json":
        typer.echo(json.dumps({"ok": False, "error": message, "exitCode": code}))
    _fail(message, code)


def _fail(message: str, code: int = EXIT_USAGE) -> None:
    typer.echo(f"parsectl migrate: {message}", err=True)
    raise typer.Exit(code)


_SERVER_URLS = ("http://", "https://")  # --from a live Parse Server
_DATABASE_URIS = ("mongodb://", "mongodb+srv://", "postgres://", "postgresql://", "sqlite:")  # --from a database


def open_source(spec: str, *, app_id: str | None, master_key: str | None, schema_file: Path | None,
                files_from: Path | None, rewrite: str | None, include_sessions: bool,
                validate: bool = True, fix: bool = False, parallel: bool | None = False,
                check_size: bool = True, tmp_dir: Path | None = None, nested_files_url: str | None = None) -> Any:
    """The Source for ``--from`` (an export's temporary files in ``tmp_dir``, else the system's folder)."""
    if nested_files_url and spec.startswith(_SERVER_URLS + _DATABASE_URIS):
        _fail("--nested-files-url is for a hosted-Parse export (a live server's or database's nested Files "
              "already carry the URLs their server gave them)")
    if nested_files_url:
        if not nested_files_url.startswith(_SERVER_URLS):
            _fail("--nested-files-url takes the URL the new server serves files under, e.g. "
                  "https://api.example.com/parse/files/APP_ID/")
        nested_files_url = nested_files_url if nested_files_url.endswith("/") else nested_files_url + "/"
    if files_from is not None and not files_from.is_dir():
        _fail(f"--files-from {files_from}: no such folder")
    if schema_file is not None and not schema_file.is_file():
        _fail(f"--schema {schema_file}: no such file")
    if spec.startswith(_SERVER_URLS):
        if not app_id or not master_key:
            _fail("a Parse Server source needs --app-id and --master-key")
        from parsectl.migrate.sources.rest import RestSource

        return RestSource(spec, app_id, master_key, include_sessions=include_sessions)
    if spec.startswith(_DATABASE_URIS):
        from parsectl.migrate.sources.database import DatabaseSource

        return DatabaseSource(spec, include_sessions=include_sessions)
    path = Path(spec)
    if not path.exists():
        _fail(f"{spec} does not exist (expected an export .zip or folder, a server URL or a database URI)")
    url_rewrite = None
    if rewrite:
        old, sep, new = rewrite.partition("=")
        if not sep:
            _fail("--files-url-rewrite takes OLD_PREFIX=NEW_PREFIX")
        url_rewrite = (old, new)
    from parsectl.migrate.sources.export import ExportSource

    return ExportSource(path, schema_file=schema_file, files_from=files_from, url_rewrite=url_rewrite,
                        validate=validate, fix=fix, parallel=parallel, check_size=check_size, tmp_dir=tmp_dir,
                        include_sessions=include_sessions, nested_files_url=nested_files_url)


class _Bars:
    """Progress as rich bars on a terminal, as occasional lines otherwise."""

    def __init__(self, quiet: bool) -> None:
        from parsectl.migrate.engine import Progress

        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.base = Progress

    def __enter__(self) -> Any:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        if self.tty and not self.quiet:
            self.progress = Progress(TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), console=Console(stderr=True), transient=False)
            self.progress.start()
        bars = self

        class Reporter(self.base):
            def start_class(self, class_name: str, total: int | None) -> None:
                bars.counts[class_name] = 0
                if bars.progress is not None:
                    bars.tasks[class_name] = bars.progress.add_task(class_name, total=total)
                elif not bars.quiet:
                    typer.echo(f"{class_name}: copying{f' {total} objects' if total is not None else ''}", err=True)

            def advance(self, class_name: str, count: int) -> None:
                bars.counts[class_name] += count
                if bars.progress is not None:
                    bars.progress.advance(bars.tasks[class_name], count)

            def end_class(self, class_name: str) -> None:
                if bars.progress is None and not bars.quiet:
                    typer.echo(f"{class_name}: done ({bars.counts[class_name]} read)", err=True)

            def note(self, message: str) -> None:
                if not bars.quiet:
                    typer.echo(message, err=True)

        return Reporter()

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def _print_report(data: dict[str, Any], output: str) -> None:
    if output == "json":
        typer.echo(json.dumps(data, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=("Plan (dry run)" if data.get("dryRun") else "Migration") + f": {data['source']} -> "
                  f"{data['destination']}")
    for column in ("class", "source", "copied", "already there", "skipped", "relations"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, c in data["classes"].items():
        rels = ", ".join(f"{k}={v}" for k, v in c["relations"].items())
        table.add_row(name, str(c["sourceCount"] if c["sourceCount"] is not None else "?"), str(c["copied"]),
                      str(c["alreadyThere"]), str(c["skipped"]), rels)
    console.print(table)
    if data.get("resumed"):
        console.print("resumed: an interrupted run of this migration was continued from its checkpoint (the "
                      "counts include what it had copied)")
    for name, notes in data.get("schemaNotes", {}).items():
        for field_name, note in notes.items():
            console.print(f"  schema {name}.{field_name}: {note}")
    for problem in data["problems"]:
        fixed = f" [green]fixed:[/] {problem['fix']}" if problem.get("fix") else ""
        where = problem["className"] + "".join(f" {problem[k]}" for k in ("objectId", "field") if problem.get(k))
        console.print(f"[yellow]problem[/] {problem['kind']} in {where}: {problem['message']}{fixed}",
                      highlight=False)
    for warning in data["warnings"]:
        console.print(f"[yellow]warning[/] {warning}")
    applied = data.get("suggestedClpsApplied")
    for name, clp in data.get("suggestedClassLevelPermissions", {}).items():
        console.print(f"{'CLPs set (--secure-clps)' if applied else 'suggested CLPs'} for {name}"
                      f"{'' if applied else ' (apply with --secure-clps)'}: {json.dumps(clp)}", highlight=False)
    files = data["files"]
    if files["copied"] or files["missing"]:
        console.print(f"files: {files['copied']} copied to {files['location']}, {len(files['missing'])} could not "
                      "be fetched", highlight=False)
        for name in files["missing"][:SAMPLE_LINES]:
            console.print(f"  missing file: {name}")


@app.callback()
def migrate(
    ctx: typer.Context,
    from_: str = typer.Option(None, "--from", help=FROM_HELP),
    to: str = typer.Option(None, "--to", help="Destination databaseURI (sqlite:///, postgres://, mongodb://)"),
    app_id: str = typer.Option(None, "--app-id", help="Application id of a Parse Server source"),
    master_key: str = typer.Option(None, "--master-key", help="Master key of a Parse Server source"),
    schema_file: Path = typer.Option(None, "--schema", help="A /schemas dump stating field types for an export"),
    files: bool = typer.Option(False, "--files", help="Copy the bytes of every referenced file"),
    files_from: Path = typer.Option(None, "--files-from", help="Folder holding the export's files by name"),
    files_url_rewrite: str = typer.Option(None, "--files-url-rewrite", help="OLD_PREFIX=NEW_PREFIX for file URLs"),
    nested_files_url: str = typer.Option(None, "--nested-files-url", metavar="PREFIX", help=NESTED_FILES_HELP),
    files_adapter: str = typer.Option(None, "--files-adapter",
                                      help='Destination files adapter as JSON, e.g. {"module":"s3","options":{...}}'),
    data_dir: Path = typer.Option(Path("parsectl-data"), "--data-dir",
                                  help="Without --files-adapter, the files of a PostgreSQL destination go to "
                                       "DATA_DIR/files, where `parsectl serve --data-dir` serves them (SQLite: "
                                       "beside the database file; MongoDB: GridFS)"),
    mode: str = typer.Option(None, "--mode", help="fresh (empty the destination's classes first) or merge"),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before deleting (with --mode fresh)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan and every problem; write nothing "
                                                          "(exit 1 if a problem would stop the migration)"),
    on_problem: str = typer.Option(
        "fail", "--on-problem",
        help="fail; skip the objects with problems; or fix what can be repaired (dangling pointers unset, "
             "duplicate usernames/emails/role names renamed, invalid field names renamed, values of a conflicting "
             "type moved to a new field) and skip the rest. Every fix is listed in the report"),
    secure_clps: bool = typer.Option(False, "--secure-clps",
                                     help="Apply restrictive CLPs to _User/_Session/_Installation if the source had none"),
    include_sessions: bool = typer.Option(False, "--include-sessions",
                                          help="Also copy _Session (a database's sessions, an export's _Session.json)"),
    classes: str = typer.Option(None, "--classes", help="Comma-separated classes to copy (default: all)"),
    follow: bool = typer.Option(False, "--follow",
                                help="After the copy, keep applying the live source's changes until Ctrl-C or "
                                     "SIGTERM, then remove what the source deleted (copy, sync, finalise)"),
    batch_size: int = typer.Option(2000, "--batch-size", min=1, max=100_000),
    state_dir: Path = typer.Option(Path(".parsectl-migrate"), "--state-dir",
                                   help="Where checkpoints and the plan's temporary files are kept"),
    output: str = typer.Option("text", "--output", help="text or json"),
) -> None:
    """Copy a Parse app's data (ids, timestamps, passwords, ACLs, roles, relations, files) into a database
    in parse-server's format. Resumable: run the same command again after an interruption."""
    if ctx.invoked_subcommand:
        return
    if not from_ or not (to or dry_run):
        _fail("both --from and --to are needed (a --dry-run may leave out --to; see --help)")
    if mode not in (None, "fresh", "merge"):
        _fail("--mode must be fresh or merge")
    if on_problem not in ("fail", "skip", "fix"):
        _fail("--on-problem must be fail, skip or fix")
    if output not in ("text", "json"):
        _fail("--output must be text or json")
    from parsectl.migrate.engine import BlockedByProblems, Migration, Options

    adapter_spec = _files_adapter(files_adapter, to, data_dir) if to else None
    # a dry run converts every object while planning, to list every problem; a real run converts each
    # object once, as it copies it, and reports the few that cannot be stored as skipped
    # an export's plan index and spool files (about a quarter of its size) go in the state folder, on disk:
    # the system's temporary folder is a RAM-backed tmpfs on many systems
    source = open_source(from_, app_id=app_id, master_key=master_key, schema_file=schema_file,
                         files_from=files_from, rewrite=files_url_rewrite, include_sessions=include_sessions,
                         nested_files_url=nested_files_url, validate=dry_run, fix=on_problem == "fix", parallel=None,
                         check_size=to is None or to.startswith("mongodb"), tmp_dir=state_dir)
    options = Options(mode=mode, dry_run=dry_run, batch_size=batch_size, on_problem=on_problem, files=files,
                      files_adapter=adapter_spec, secure_clps=secure_clps, state_dir=state_dir,
                      classes=[c.strip() for c in classes.split(",")] if classes else None)

    def confirm(question: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            return False
        return typer.confirm(question, default=False)

    if follow and dry_run:
        _fail("--follow and --dry-run do not go together")

    async def run(migration: Migration) -> Any:
        if follow:
            import signal

            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            migration.follow = stop
        return await migration.run()

    migration: Migration | None = None
    with _failures(output, from_, "interrupted; run the same command again to continue where it stopped"):
        try:
            with _state_folder(state_dir), _Bars(quiet=output == "json") as progress:
                # a dry run does not open the destination: without --to, an in-memory one stands in for it
                migration = Migration(source, to or "sqlite::memory:", options, progress, confirm)
                if not to:
                    migration.report.destination = "(none: a dry run without --to)"
                report = asyncio.run(run(migration))
        except BlockedByProblems as exc:
            assert migration is not None
            _print_report(migration.report.to_json(), output)  # the plan and its problems
            _fail(str(exc), EXIT_FAILED)
    _print_report(report.to_json(), output)
    if dry_run and report.blocking:  # the plan's answer, for scripts: this migration would stop
        _fail(f"{report.blocking} problem(s) would stop this migration under --on-problem {on_problem} (listed "
              "above); --on-problem skip leaves the offending objects out, --on-problem fix repairs what it can",
              EXIT_FAILED)


@contextlib.contextmanager
def _state_folder(folder: Path) -> Iterator[None]:
    """The folder of a run's checkpoints and temporary files (an export's plan index: on disk, where the
    system's temporary folder is often a RAM-backed tmpfs), made for it, and removed after it if it made
    it and nothing is left in it (a dry run, a finished migration)."""
    made = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _fail(f"cannot create --state-dir {folder}: {exc.strerror}")
    try:
        yield
    finally:
        if made:
            with contextlib.suppress(OSError):
                folder.rmdir()


def _files_adapter(spec: str | None, to: str, data_dir: Path) -> Any:
    """--files-adapter, or the adapter `parsectl serve --data-dir DATA_DIR` would use on ``to``."""
    from parsectl.files.factory import default_files_adapter

    given = _json_option("--files-adapter", spec)
    return given if given is not None else default_files_adapter(to, data_dir.resolve())


def _json_option(name: str, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        _fail(f"{name} must be JSON")


@app.command("verify", epilog=EPILOG)
def verify_cmd(
    from_: str = typer.Option(..., "--from", help=FROM_HELP),
    to: str = typer.Option(..., "--to", help="Destination databaseURI"),
    app_id: str = typer.Option(None, "--app-id"),
    master_key: str = typer.Option(None, "--master-key"),
    schema_file: Path = typer.Option(None, "--schema"),
    files: bool = typer.Option(False, "--files", help="Also check that every referenced file exists and holds the "
                                                      "source's bytes (where the source can give them)"),
    files_from: Path = typer.Option(None, "--files-from", help="As the migration's: the export's files by name"),
    files_url_rewrite: str = typer.Option(None, "--files-url-rewrite", help="As the migration's: OLD_PREFIX=NEW_PREFIX"),
    files_adapter: str = typer.Option(None, "--files-adapter", help="Destination files adapter as JSON"),
    data_dir: Path = typer.Option(Path("parsectl-data"), "--data-dir",
                                  help="As the migration's: where a PostgreSQL destination's files are"),
    classes: str = typer.Option(None, "--classes", help="Comma-separated classes to check (default: all)"),
    include_sessions: bool = typer.Option(False, "--include-sessions"),
    nested_files_url: str = typer.Option(None, "--nested-files-url", metavar="PREFIX",
                                         help="As the migration's (its nested File URLs are compared)"),
    on_problem: str = typer.Option(
        "fail", "--on-problem",
        help="fail: every source record must be in the destination; skip: records that cannot be stored "
             "(what `migrate --on-problem skip` leaves out) are listed, not a mismatch; fix: also compare with "
             "the repairs `migrate --on-problem fix` made to an export (renames, moved values, unset dangling "
             "pointers)"),
    state_dir: Path = typer.Option(Path(".parsectl-migrate"), "--state-dir",
                                   help="Where the plan's temporary files are kept"),
    output: str = typer.Option("text", "--output", help="text or json"),
) -> None:
    """Compare source and destination: counts, a checksum per object, relations, files. Exit 1 on a mismatch."""
    from parsectl.migrate.verify import verify

    if on_problem not in ("fail", "skip", "fix"):
        _fail("verify's --on-problem is fail, skip or fix (as the migration's)")
    source = open_source(from_, app_id=app_id, master_key=master_key, schema_file=schema_file,
                         files_from=files_from, rewrite=files_url_rewrite, include_sessions=include_sessions, fix=on_problem == "fix", tmp_dir=state_dir,
                         nested_files_url=nested_files_url)
    with _failures(output, from_, "interrupted"), _state_folder(state_dir):
        report = asyncio.run(verify(source, to, files=files, classes=[c.strip() for c in classes.split(",")]
                                    if classes else None,
                                    files_adapter=_files_adapter(files_adapter, to, data_dir),
                                    on_problem=on_problem))
    data = report.to_json()
    if output == "json":
        typer.echo(json.dumps(data, indent=2))
    else:
        for name, c in data["classes"].items():
            status = "ok" if c["ok"] else "MISMATCH"
            typer.echo(f"{status:8} {name}: source {c['sourceCount']}, destination {c['destinationCount']}, "
                       f"missing {c['missing']}, different {c['different']}"
                       + (f", not stored {c['notStored']}" if c["notStored"] else ""))
            for item in c["notStoredSample"]:
                typer.echo(f"           {'left out' if c['leftOutAccepted'] else 'not stored'} "
                           f"{item['objectId'] or '(no objectId)'}: {item['reason']}")
            for oid in c["missingSample"]:
                typer.echo(f"           missing {oid}")
            for diff in c["differentSample"]:
                typer.echo(f"           {diff['objectId']} differs: {json.dumps(diff['fields'])}")
            for field_name, r in c["relations"].items():
                if r["missing"] or r["extra"]:
                    typer.echo(f"           relation {field_name}: {r['missing']} missing, {r['extra']} extra")
        if files:
            found = data["files"]
            typer.echo(f"files: {found['checked']} checked, {len(found['missing'])} missing, {found['compared']} "
                       f"compared with the source's bytes, {len(found['different'])} different")
            for name in found["missing"][:SAMPLE_LINES]:
                typer.echo(f"           missing file {name}")
            for name in found["different"][:SAMPLE_LINES]:
                typer.echo(f"           different file {name}")
        typer.echo("verify: everything matches" if report.ok else "verify: MISMATCHES found")
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)
