"""``parsectl mongod-conf`` and ``parsectl mongod-conf check``: thin shells over parsectl.mongo_ops."""

from __future__ import annotations

import difflib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import typer

from parsectl.mongo_ops import conf
from parsectl.mongo_ops.conf import ConfError

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2

EPILOG = """\
Examples:

  parsectl mongod-conf --server psmdb --version 3.4 --engine rocksdb --ram 64GB --cores 8 \\
      --oplog-window 72h --write-rate 500MB/h --bind-ip 127.0.0.1 --bind-ip 10.0.0.5 --key-file /etc/mongodb/keyfile

  parsectl mongod-conf --server psmdb --version 8.0 --ram 32GB --cores 4 --out /etc/mongod.conf --force

  parsectl mongod-conf --server mongodb --version 4.2 --ram 16GB --cores 4 --explain

  parsectl mongod-conf --from-host admin@db1.internal --version 7.0 --measure-from mongodb://db1:27017 \\
      --oplog-window 48h --explain --output json

  parsectl mongod-conf check /etc/mongod.conf --version 3.4 --diff --ram 64GB

Without --ram/--cores or --from-host, this machine's RAM and cores are used.
Exit codes: 0 ok, 1 check found problems, 2 bad input.
"""

CHECK_EPILOG = """\
Examples:

  parsectl mongod-conf check /etc/mongod.conf --version 3.4

  parsectl mongod-conf check mongod.conf --version 8.0 --output json

  parsectl mongod-conf check mongod.conf --version 3.4 --server psmdb --diff --ram 64GB --cores 8

Checks YAML syntax, 'key = value' INI lines inside YAML, unknown or misplaced keys, values out of range,
settings the version does not support, and the seed's requirements for Parse. Exit 1 when it finds an
error or a warning (notes do not count), 2 when the file cannot be read.
"""

app = typer.Typer(help="Generate a tuned, explained mongod.conf for Parse workloads, or check one.",
                  invoke_without_command=True, epilog=EPILOG)


def _fail(message: str, code: int = EXIT_USAGE) -> None:
    typer.echo(f"parsectl mongod-conf: {message}", err=True)
    raise typer.Exit(code)


def _warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


def write_atomically(path: Path, text: str, *, force: bool) -> None:
    """Write via a temp file in the same directory, fsync, then rename: readers see the old file or the
    whole new one, never half of it. Without ``force`` an existing file is left alone (FileExistsError)."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"directory {directory} does not exist")
    if path.exists() and not force:
        raise FileExistsError(str(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the file appeared meanwhile: never overwrite without --force
            finally:
                os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _host_facts(ram: str | None, cores: int | None, from_host: str | None, known_hosts: Path | None,
                ssh_key: Path | None) -> tuple[float, int, str]:
    from parsectl.mongo_ops import facts

    ram_gb = conf.parse_ram_gb(ram) if ram is not None else None
    if ram_gb is not None and cores is not None:
        return ram_gb, cores, "--ram/--cores"
    try:
        if from_host:
            found = facts.remote_facts(from_host, known_hosts=str(known_hosts) if known_hosts else None,
                                       key_filename=str(ssh_key) if ssh_key else None)
        else:
            found = facts.local_facts()
    except facts.FactsError as exc:
        _fail(str(exc))
        raise  # unreachable
    for note in found.notes:
        _warn(note)
    if not from_host:
        _warn(f"sizing for this machine ({found.ram_gb:g} GB RAM, {found.cores} cores); "
              "give --ram and --cores (or --from-host) to size for another host")
    return (ram_gb if ram_gb is not None else found.ram_gb,
            cores if cores is not None else found.cores, found.source)


def _print_explain(generated: conf.Generated, source: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    inp = generated.inputs
    table = Table(title=f"mongod.conf for {conf.SERVER_NAMES[inp.server]} {generated.version}, {inp.engine}, "
                        f"{inp.profile} ({inp.ram_gb:g} GB RAM, {inp.cores} cores from {source})",
                  show_lines=False)
    table.add_column("setting", no_wrap=True)
    table.add_column("value")
    table.add_column("reason")
    table.add_column("rule")
    for s in generated.settings:
        value = "(not written)" if not s.written else json.dumps(s.value) if not isinstance(s.value, str) \
            else s.value
        table.add_row(s.path, value, s.reason, conf.RULES.get(s.rule, s.rule))
    console.print(table)


@app.callback(invoke_without_command=True)
def generate_cmd(
    ctx: typer.Context,
    server: str = typer.Option("psmdb", "--server", help="psmdb (Percona Server for MongoDB) or mongodb"),
    version: str = typer.Option("8.0", "--version", help="Release series, 3.0 .. 8.x (e.g. 3.4, 4.2, 8.0)"),
    engine: str = typer.Option("wiredTiger", "--engine", help="rocksdb (PSMDB 3.0-3.6), wiredTiger or inMemory"),
    ram: str | None = typer.Option(None, "--ram", help="Host RAM, e.g. 64GB (default: this machine's)"),
    cores: int | None = typer.Option(None, "--cores", help="Host CPU cores (default: this machine's)"),
    from_host: str | None = typer.Option(None, "--from-host", metavar="USER@HOST[:PORT]",
                                         help="Read RAM and cores over SSH (host key must be in known_hosts)"),
    known_hosts: Path | None = typer.Option(None, "--known-hosts", help="known_hosts file for --from-host"),
    ssh_key: Path | None = typer.Option(None, "--ssh-key", help="Private key for --from-host"),
    profile: str = typer.Option("parse-default", "--profile", help="parse-default, write-heavy or read-heavy"),
    db_path: str = typer.Option(conf.DEFAULT_DB_PATH, "--db-path", help="storage.dbPath (absolute)"),
    log_path: str = typer.Option(conf.DEFAULT_LOG_PATH, "--log-path", help="systemLog.path (absolute)"),
    repl_set: str = typer.Option("rs0", "--repl-set", help="replication.replSetName"),
    standalone: bool = typer.Option(False, "--standalone", help="No replica set (not for production Parse)"),
    bind_ip: list[str] = typer.Option(["127.0.0.1"], "--bind-ip",
                                      help="Listen address; repeat or comma-separate (add the private IP)"),
    port: int = typer.Option(27017, "--port", help="net.port"),
    tls_cert: str | None = typer.Option(None, "--tls-cert", help="Server certificate+key PEM (enables TLS)"),
    tls_ca: str | None = typer.Option(None, "--tls-ca", help="CA file for TLS"),
    key_file: str | None = typer.Option(None, "--key-file", help="security.keyFile for member authentication"),
    oplog_window: str | None = typer.Option(None, "--oplog-window", help="Oplog window to hold, e.g. 72h"),
    write_rate: str | None = typer.Option(None, "--write-rate", help="Oplog write rate, e.g. 500MB/h"),
    measure_from: str | None = typer.Option(None, "--measure-from", metavar="MONGODB_URI",
                                            help="Measure the write rate from a running member's oplog"),
    out: Path | None = typer.Option(None, "--out", help="Write the file atomically instead of printing it"),
    force: bool = typer.Option(False, "--force", help="Let --out replace an existing file"),
    explain: bool = typer.Option(False, "--explain", help="Show every setting with its reason and rule"),
    output: str = typer.Option("text", "--output", help="text or json"),
) -> None:
    """Generate a tuned mongod.conf (YAML) from the server, version, engine, host resources and profile."""
    if ctx.invoked_subcommand is not None:
        return
    if output not in ("text", "json"):
        _fail(f"--output {output!r}: choose text or json")
    try:
        window = conf.parse_duration_hours(oplog_window) if oplog_window else None
        rate = conf.parse_rate_mb_per_hour(write_rate) if write_rate else None
        if ram is not None:
            conf.parse_ram_gb(ram)
        if cores is not None and cores < 1:
            raise ConfError(f"impossible core count {cores}: give at least 1, e.g. --cores 8")
        # validate the choice before touching any host
        parsed_version = conf.parse_version(server, version)
        conf.check_matrix(server, parsed_version, engine)
    except ConfError as exc:
        _fail(str(exc))
        return
    rate_source = "--write-rate"
    if measure_from and rate is None:
        from parsectl.mongo_ops import facts

        try:
            rate = facts.measure_write_rate(measure_from)
        except facts.FactsError as exc:
            _fail(str(exc))
        rate_source = f"the oplog measured at {_redact(measure_from)} ({rate:g} MB/h)"
    ram_gb, n_cores, source = _host_facts(ram, cores, from_host, known_hosts, ssh_key)
    binds = [b.strip() for item in bind_ip for b in item.split(",") if b.strip()]
    inputs = conf.Inputs(server=server, version=version, engine=engine, ram_gb=ram_gb, cores=n_cores,
                         profile=profile, db_path=db_path, log_path=log_path,
                         repl_set=None if standalone else repl_set, bind_ip=binds, port=port,
                         tls_cert_key_file=tls_cert, tls_ca_file=tls_ca, key_file=key_file,
                         oplog_window_hours=window, write_rate_mb_per_hour=rate, write_rate_source=rate_source)
    try:
        generated = conf.generate(inputs)
    except ConfError as exc:
        _fail(str(exc))
        return
    from parsectl.mongo_ops.render import render

    text = render(generated)
    for warning in generated.warnings:
        _warn(warning)
    if out is not None:
        try:
            write_atomically(out, text, force=force)
        except FileExistsError:
            _fail(f"{out} exists; pass --force to replace it")
        except OSError as exc:
            _fail(f"cannot write {out}: {exc.strerror or exc}")
        typer.echo(f"wrote {out}", err=True)
    if output == "json":
        data: dict[str, Any] = generated.as_dict()
        data["config"] = text
        data["facts_source"] = source
        if out is not None:
            data["written"] = str(out)
        typer.echo(json.dumps(data, indent=2))
    elif explain:
        _print_explain(generated, source)
    elif out is None:
        sys.stdout.write(text)


def _redact(uri: str) -> str:
    from parsectl.uri import redact

    return redact(uri)


@app.command("check", epilog=CHECK_EPILOG)
def check_cmd(
    file: Path = typer.Argument(..., help="The mongod.conf to check"),
    version: str | None = typer.Option(None, "--version", help="The mongod release series it is for, e.g. 3.4"),
    server: str | None = typer.Option(None, "--server", help="psmdb or mongodb (enables flavour checks)"),
    diff: bool = typer.Option(False, "--diff", help="Show a unified diff against the generated file"),
    engine: str | None = typer.Option(None, "--engine", help="For --diff: engine (default: the file's)"),
    ram: str | None = typer.Option(None, "--ram", help="For --diff: host RAM (default: this machine's)"),
    cores: int | None = typer.Option(None, "--cores", help="For --diff: host cores (default: this machine's)"),
    profile: str = typer.Option("parse-default", "--profile", help="For --diff: the workload profile"),
    output: str = typer.Option("text", "--output", help="text or json"),
) -> None:
    """Validate an existing mongod.conf and suggest fixes."""
    if output not in ("text", "json"):
        _fail(f"--output {output!r}: choose text or json")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        _fail(f"{file} is not a text file")
        return
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror or exc}")
        return
    try:
        if version is not None:
            if server is not None:
                conf.parse_version(server, version)
            else:
                conf.Version.parse(version)
        if server is not None and server not in conf.SERVERS:
            raise ConfError(f"unknown server {server!r}: choose psmdb or mongodb")
        findings = conf.check(text, version, server=server)
    except ConfError as exc:
        _fail(str(exc))
        return
    diff_text = ""
    if diff:
        if version is None:
            _fail("--diff needs --version (the release series to generate for)")
        ram_gb, n_cores, _ = _host_facts(ram, cores, None, None, None)
        inputs = conf.inputs_from_text(text, version=version, server=server, engine=engine, ram_gb=ram_gb,
                                       cores=n_cores, profile=profile)
        try:
            generated = conf.generate(inputs)
        except ConfError as exc:
            _fail(f"cannot generate the comparison file: {exc}")
            return
        from parsectl.mongo_ops.render import render

        diff_text = "".join(difflib.unified_diff(text.splitlines(keepends=True),
                                                 render(generated).splitlines(keepends=True),
                                                 fromfile=str(file), tofile="generated"))
    problems = [f for f in findings if f.severity in ("error", "warning")]
    if output == "json":
        data: dict[str, Any] = {"file": str(file), "version": version, "ok": not problems,
                                "findings": [f.as_dict() for f in findings]}
        if diff:
            data["diff"] = diff_text
        typer.echo(json.dumps(data, indent=2))
    else:
        from rich.console import Console
        from rich.markup import escape

        console = Console()
        if version is None:
            console.print("note: no --version given, so version-specific checks were skipped")
        colours = {"error": "red", "warning": "yellow", "note": "cyan"}
        for f in findings:
            where = f"{file}:{f.line}" if f.line else str(file)
            console.print(f"[{colours[f.severity]}]{f.severity}[/] {escape(where)}: {escape(f.message)}")
            fix = f.fix.replace("\n", "\n        ")
            console.print(f"  fix: {escape(fix)}")
        if diff:
            sys.stdout.write(diff_text or "no differences from the generated file\n")
        summary = (f"{len([f for f in findings if f.severity == 'error'])} error(s), "
                   f"{len([f for f in findings if f.severity == 'warning'])} warning(s)")
        console.print(f"{file}: {'ok' if not problems else summary}")
    raise typer.Exit(EXIT_PROBLEMS if problems else EXIT_OK)
