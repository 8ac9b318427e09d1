"""``parsectl provision-node`` and ``parsectl replset``: thin shells over parsectl.provision."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer

from parsectl.provision import engine, inventory, playbook
from parsectl.provision import replset as rs
from parsectl.provision.inventory import Host, InventoryError
from parsectl.provision.playbook import PlaybookError
from parsectl.provision.steps import StepError, new_keyfile
from parsectl.ssh import SSHError

EXIT_OK, EXIT_FAILED, EXIT_PENDING = 0, 1, 2

EPILOG = """\
Examples:

  # Plan (no changes made): what would happen on three new hosts, with every file diff. Exit 2: changes pending
  parsectl provision-node ops@db1 ops@db2 ops@db3 --replset rs0 --sudo --keyfile rs0.keyfile

  # Apply: install PSMDB 8.0 (WiredTiger), initiate rs0 on db1, create the admin user parsectl-admin (password
  # from $MONGO_ADMIN_PASSWORD), add db2 and db3 through the primary
  parsectl provision-node --inventory hosts.yml --replset rs0 --mongo-password-env MONGO_ADMIN_PASSWORD --yes

  # The seed's MongoRocks set-up (PSMDB 3.4, rocksdb), on old distributions only
  parsectl provision-node --inventory old.yml --replset rs0 --playbook mongorocks --yes

  # Add a node to an existing set through its primary (reached through an SSH tunnel)
  parsectl provision-node ops@db4 --replset rs0 --join ops@db1 --keyfile rs0.keyfile \\
      --mongo-password-env MONGO_ADMIN_PASSWORD --yes

  # Your own playbook, with a variable changed, as JSON for tools
  parsectl provision-node ops@db1 --replset rs0 --playbook ./my.yml --var psmdb_version=7.0 --output json

Exit codes: 0 nothing to do (or all applied), 2 changes pending (plan mode), 1 a host failed.
Logs: one file per host in --log-dir (default ./parsectl-logs).
"""

REPLSET_EPILOG = """\
Examples:

  export MONGO_ADMIN_PASSWORD=...                           # the admin user provision-node created
  parsectl replset status --via ops@db1 --mongo-password-env MONGO_ADMIN_PASSWORD
  parsectl replset status --inventory hosts.yml --output json
  parsectl replset try ops@db4 --via ops@db1                # add db4 as priority 0, non-voting while it syncs
  parsectl replset promote ops@db4 --inventory hosts.yml    # raise its priority so it is elected primary
  parsectl replset revert --inventory hosts.yml             # restore the saved priorities

try/promote/revert keep the previous priorities in ~/.local/state/parsectl/replset-NAME.json (--state-dir).
"""

replset_app = typer.Typer(help="Replica-set operations over SSH: status, try, promote, revert.",
                          no_args_is_help=True, epilog=REPLSET_EPILOG)


def _fail(message: str, code: int = EXIT_FAILED) -> None:
    typer.echo(f"parsectl: {message}", err=True)
    raise typer.Exit(code)


def _ssh_overrides(user: str | None, ssh_key: str | None, sudo: bool | None, jump: str | None,
                   known_hosts: str | None, accept_new: bool, timeout: float | None, retries: int | None,
                   ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (("user", user), ("key_file", ssh_key), ("sudo", sudo), ("jump", jump),
                       ("known_hosts", known_hosts), ("timeout", timeout), ("retries", retries)):
        if value is not None:
            out[key] = value
    if accept_new:
        out["accept_new_host_keys"] = True
    return out


def _resolve_hosts(names: list[str], inv: inventory.Inventory | None, overrides: dict[str, Any],
                   mongod_port: int | None) -> list[Host]:
    extra = {"mongod_port": mongod_port} if mongod_port else {}
    if inv is None:
        return [inventory.host_from_entry({"host": n, **extra}, {}, overrides, n) for n in names]
    if not names:
        return inv.hosts
    picked = []
    for n in names:
        match = [h for h in inv.hosts if n in (h.name, h.target.host, h.target.label, h.member_host)]
        if not match:
            picked.append(inventory.host_from_entry({"host": n, **extra}, {}, overrides, n))
        else:
            picked.append(match[0])
    return picked


def _load_inventory(path: str | None, overrides: dict[str, Any]) -> inventory.Inventory | None:
    return inventory.load(path, overrides) if path else None


def _print_reports(reports: list[engine.HostReport], apply: bool) -> None:
    from rich.console import Console
    from rich.syntax import Syntax

    console = Console(no_color=bool(os.environ.get("NO_COLOR")), highlight=False, soft_wrap=True)
    for report in reports:
        console.rule(f"[bold]{report.name}[/bold]")
        for note in report.notes:
            console.print(f"  [dim]{note}[/dim]")
        if not report.changes and not report.error:
            console.print("  [green]nothing to do[/green]")
        for change in report.changes:
            mark = "[green]✓ applied[/green]" if change.applied else "[yellow]+ pending[/yellow]"
            console.print(f"  {mark}  [cyan]{change.step}[/cyan]: {change.description}")
            if change.diff and not change.applied:
                console.print(Syntax(change.diff.rstrip("\n"), "diff", theme="ansi_dark", background_color="default"))
        for warning in report.warnings:
            console.print(f"  [yellow]warning:[/yellow] {warning}")
        if report.error:
            console.print(f"  [red]FAILED[/red] at {report.failed_step}: {report.error}")
        if report.log_path:
            console.print(f"  [dim]log: {report.log_path}[/dim]")
    failed = [r.name for r in reports if r.error]
    pending = sum(1 for r in reports for c in r.changes if not c.applied)
    applied = sum(1 for r in reports for c in r.changes if c.applied)
    summary = (f"{len(reports)} host(s): {applied} change(s) applied" if apply else
               f"{len(reports)} host(s): {pending} change(s) pending (run again with --yes to apply)")
    if failed:
        summary += f"; FAILED: {', '.join(failed)}"
    console.print(summary)


def _keyfile(path: str | None, replset: str, apply: bool, join: bool) -> tuple[bytes, str | None]:
    if path:
        try:
            data = Path(path).expanduser().read_bytes()
        except OSError as exc:
            raise StepError(f"cannot read --keyfile {path}: {exc.strerror}") from exc
        if not 6 <= len(data.strip()) <= 1024:
            raise StepError(f"--keyfile {path}: a keyFile holds 6-1024 base64 characters")
        return data, None
    default = Path(f"{replset}.keyfile")
    if default.exists():
        return default.read_bytes(), None
    if join:
        raise StepError("--join needs the set's keyFile: give --keyfile FILE (the file the members already use)")
    data = new_keyfile()
    if apply:
        fd = os.open(default, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return data, f"generated a new keyFile and saved it to {default} (keep it: every member needs the same one)"
    return data, f"would generate a new keyFile and save it to {default}"


def _password(env_name: str | None) -> str | None:
    """The MongoDB password from the environment variable ``env_name`` (never from the command line)."""
    if not env_name:
        return None
    value = os.environ.get(env_name)
    if value is None:
        raise StepError(f"--mongo-password-env {env_name}: the environment variable {env_name} is not set")
    if not value:
        raise StepError(f"--mongo-password-env {env_name}: the environment variable {env_name} is empty")
    return value


def provision_node(
    hosts: list[str] = typer.Argument(None, help="Hosts as USER@HOST:PORT, or names from --inventory."),
    replset: str = typer.Option(None, "--replset", help="Replica set name (or 'replset' in the inventory)."),
    join: str = typer.Option(None, "--join", help="Add the hosts to an existing set through this primary "
                             "(USER@HOST:PORT or an inventory name)."),
    playbook_name: str = typer.Option(None, "--playbook", help="Bundled playbook name (wiredtiger, mongorocks) "
                                      "or a YAML file. Default: wiredtiger."),
    inventory_file: str = typer.Option(None, "--inventory", help="Inventory YAML (hosts, SSH, roles)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Apply. Without it only the plan is shown."),
    output: str = typer.Option("text", "--output", help="text or json"),
    user: str = typer.Option(None, "--user", help="SSH user for hosts without user@."),
    ssh_key: str = typer.Option(None, "--ssh-key", help="Private key file (default: ssh-agent and ~/.ssh keys)."),
    sudo: bool = typer.Option(None, "--sudo/--no-sudo", help="Use sudo -n for privileged commands."),
    jump: str = typer.Option(None, "--jump", help="Jump host USER@HOST:PORT (as ssh -J)."),
    known_hosts: str = typer.Option(None, "--known-hosts", help="known_hosts file (default ~/.ssh/known_hosts)."),
    accept_new_host_keys: bool = typer.Option(False, "--accept-new-host-keys",
                                              help="Learn the keys of hosts not yet in known_hosts. A changed key "
                                              "is always refused."),
    timeout: float = typer.Option(None, "--timeout", help="SSH connect/command timeout in seconds (10)."),
    retries: int = typer.Option(None, "--retries", help="Extra connection attempts after network errors (2)."),
    mongod_port: int = typer.Option(None, "--mongod-port", help="mongod port on the hosts (27017)."),
    keyfile: str = typer.Option(None, "--keyfile", help="The replica set's keyFile (default ./NAME.keyfile, "
                                "generated on the first apply)."),
    move_existing_data: bool = typer.Option(False, "--move-existing-data",
                                            help="Move another engine's files out of dbPath (kept, never deleted)."),
    var: list[str] = typer.Option(None, "--var", help="Playbook variable name=value (YAML value); repeatable."),
    log_dir: str = typer.Option("parsectl-logs", "--log-dir", envvar="PARSECTL_LOG_DIR",
                                help="One log file per host here."),
    node_only: bool = typer.Option(False, "--node-only", help="Skip the replica-set steps (e.g. before replset "
                                   "try)."),
    mongo_user: str = typer.Option(rs.DEFAULT_ADMIN_USER, "--mongo-user",
                                   help="MongoDB admin user (role root in admin): created right after replSetInitiate "
                                   "through the localhost exception, then used for every replica-set command."),
    mongo_password_env: str = typer.Option(None, "--mongo-password-env", metavar="NAME",
                                           help="Environment variable holding that user's password (required with "
                                           "--yes and a replica-set step). Never given on the command line."),
) -> None:
    """Provision Percona Server for MongoDB nodes over SSH and join them to a replica set: plan, then --yes."""
    if output not in ("text", "json"):
        _fail("--output must be text or json", 2)
    try:
        overrides = _ssh_overrides(user, ssh_key, sudo, jump, known_hosts, accept_new_host_keys, timeout, retries)
        inv = _load_inventory(inventory_file, overrides)
        if not hosts and inv is None:
            _fail("give one or more hosts, or --inventory FILE", 2)
        targets = _resolve_hosts(hosts or [], inv, overrides, mongod_port)
        name = replset or (inv.replset if inv else None)
        if not name:
            _fail("--replset NAME is required (or 'replset:' in the inventory)", 2)
        extra_vars = dict(inv.vars) if inv else {}
        for item in var or []:
            key, value = playbook.parse_var(item)
            extra_vars[key] = value
        book = playbook.load(playbook_name or (inv.playbook if inv and inv.playbook else "wiredtiger"), extra_vars)
        if node_only:
            book.steps = book.node_steps
        join_host = _resolve_hosts([join], inv, overrides, mongod_port)[0] if join else None
        password = _password(mongo_password_env)
        if yes and book.replset_steps and password is None:
            raise StepError("--yes with a replica-set step needs --mongo-password-env NAME: the environment variable "
                            f"holding the password of the MongoDB admin user {mongo_user!r} (--mongo-user). The keyFile "
                            "turns access control on; parsectl creates that user right after replSetInitiate, or "
                            "logs in as it when the set already has users")
        key, key_note = _keyfile(keyfile, name, yes, join is not None)
    except (InventoryError, PlaybookError, StepError, SSHError) as exc:
        _fail(str(exc), 2)
        return
    opts = engine.Options(replset=name, apply=yes, join=join_host, move_existing_data=move_existing_data,
                          keyfile=key, log_dir=Path(log_dir), mongo_user=mongo_user, mongo_password=password,
                          mongo_password_env=mongo_password_env, extra_vars=extra_vars,
                          progress=(lambda h, line: typer.echo(f"[{h}] {line}", err=True)) if yes and
                          output == "text" else (lambda h, line: None))
    reports = engine.provision(targets, book, opts)
    if key_note:
        for r in reports:
            r.notes.insert(0, key_note)
            break
    if output == "json":
        typer.echo(json.dumps({"replset": name, "playbook": book.name, "applied": yes,
                               "hosts": [r.as_dict() for r in reports]}, indent=2, default=str))
    else:
        _print_reports(reports, yes)
    if any(r.error for r in reports):
        raise typer.Exit(EXIT_FAILED)
    if not yes and any(r.pending for r in reports):
        raise typer.Exit(EXIT_PENDING)
    raise typer.Exit(EXIT_OK)


# ---------------------------------------------------------------------------------------------------------
# replset


class _Ctx:
    def __init__(self, via: str | None, inventory_file: str | None, overrides: dict[str, Any],
                 mongod_port: int | None, mongo_user: str | None, mongo_password_env: str | None) -> None:
        self.inv = _load_inventory(inventory_file, overrides)
        self.overrides, self.mongod_port = overrides, mongod_port
        if via:
            self.via = _resolve_hosts([via], self.inv, overrides, mongod_port)[0]
        elif self.inv:
            self.via = self.inv.hosts[0]
        else:
            raise InventoryError("give --via HOST (a member reachable over SSH) or --inventory FILE")
        self.opts = engine.Options(replset=self.inv.replset if self.inv and self.inv.replset else "",
                                   log_dir=Path(os.environ.get("PARSECTL_LOG_DIR", "parsectl-logs")),
                                   mongo_user=mongo_user or rs.DEFAULT_ADMIN_USER,
                                   mongo_password=_password(mongo_password_env),
                                   mongo_password_env=mongo_password_env)

    def host_for(self, member_host: str) -> Host:
        """The SSH host of a replica-set member: from the inventory, or the member's hostname with --via's SSH
        options."""
        if self.inv:
            for h in self.inv.hosts:
                if h.member_host.lower() == member_host.lower():
                    return h
        if self.via.member_host.lower() == member_host.lower():
            return self.via
        hostname, _, port = member_host.rpartition(":")
        t = self.via.target
        entry = {"host": hostname.strip("[]"), "port": t.port, "user": t.user, "mongod_port": int(port or 27017)}
        return inventory.host_from_entry(entry, {}, {**self.overrides, "key_file": t.key_file,
                                                     "known_hosts": t.known_hosts, "sudo": t.sudo}, member_host)

    def primary(self) -> Host:
        with engine._Mongo(self.via, self.opts) as admin:
            hello = admin.hello()
        if hello.get("isWritablePrimary") or hello.get("ismaster"):
            return self.via
        if not hello.get("primary"):
            raise rs.ReplSetError(f"{self.via.name} sees no primary ({hello.get('setName') or 'no set'})")
        return self.host_for(hello["primary"])


_VIA = typer.Option(None, "--via", help="A member to reach the set through (USER@HOST:PORT or inventory name).")
_INV = typer.Option(None, "--inventory", help="Inventory YAML (maps members to SSH hosts).")


def _common(via, inventory_file, user, ssh_key, sudo, known_hosts, accept_new, mongod_port, mongo_user,
            mongo_password_env) -> _Ctx:
    overrides = _ssh_overrides(user, ssh_key, sudo, None, known_hosts, accept_new, None, None)
    return _Ctx(via, inventory_file, overrides, mongod_port, mongo_user, mongo_password_env)


def _guard(fn):  # type: ignore[no-untyped-def]
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (InventoryError, SSHError, rs.ReplSetError, StepError) as exc:
            _fail(str(exc))
    return wrapper


_USER = typer.Option(None, "--user", help="SSH user.")
_KEY = typer.Option(None, "--ssh-key", help="SSH private key file.")
_SUDO = typer.Option(None, "--sudo/--no-sudo")
_KNOWN = typer.Option(None, "--known-hosts", help="known_hosts file.")
_ACCEPT = typer.Option(False, "--accept-new-host-keys", help="Learn unknown host keys (changed keys are refused).")
_PORT = typer.Option(None, "--mongod-port", help="mongod port (27017).")
_MUSER = typer.Option(rs.DEFAULT_ADMIN_USER, "--mongo-user", help="MongoDB user (authSource admin).")
_MPASS = typer.Option(None, "--mongo-password-env", metavar="NAME",
                      help="Environment variable holding --mongo-user's password (needed once the set has users).")
_STATE = typer.Option(None, "--state-dir", help="Where try/promote keep the previous priorities.")


@replset_app.command("status")
@_guard
def status(via: str = _VIA, inventory_file: str = _INV, output: str = typer.Option("text", "--output"),
           user: str = _USER, ssh_key: str = _KEY, sudo: bool = _SUDO, known_hosts: str = _KNOWN,
           accept_new_host_keys: bool = _ACCEPT, mongod_port: int = _PORT, mongo_user: str = _MUSER,
           mongo_password_env: str = _MPASS) -> None:
    """Members, states, priorities, replication lag and the oplog window."""
    ctx = _common(via, inventory_file, user, ssh_key, sudo, known_hosts, accept_new_host_keys, mongod_port,
                  mongo_user, mongo_password_env)
    with engine._Mongo(ctx.via, ctx.opts) as admin:
        summary = rs.status_summary(admin)
    if output == "json":
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"replica set {summary['set']}")
    for col in ("member", "state", "priority", "votes", "hidden", "lag", "sync source"):
        table.add_column(col)
    for m in summary["members"]:
        lag = "" if m["lag_seconds"] is None else f"{m['lag_seconds']:.0f} s"
        table.add_row(m["name"], m["state"], f"{m['priority']:g}", str(m["votes"]), "yes" if m["hidden"] else "",
                      lag, m["sync_source"])
    console = Console(no_color=bool(os.environ.get("NO_COLOR")))
    console.print(table)
    window = summary["oplog_window_hours"]
    console.print(f"oplog window: {window:.2f} h" if window is not None else "oplog window: unknown")
    if summary["warning"]:
        console.print(f"[yellow]warning:[/yellow] {summary['warning']}")


@replset_app.command("try")
@_guard
def try_member(host: str = typer.Argument(..., help="The new member (USER@HOST:PORT or inventory name); its "
                                          "mongod must run with the set's name (provision-node --node-only)."),
               via: str = _VIA, inventory_file: str = _INV, user: str = _USER, ssh_key: str = _KEY,
               sudo: bool = _SUDO, known_hosts: str = _KNOWN, accept_new_host_keys: bool = _ACCEPT,
               mongod_port: int = _PORT, mongo_user: str = _MUSER, mongo_password_env: str = _MPASS,
               sync_timeout: float = typer.Option(86400, "--sync-timeout"),
               poll: float = typer.Option(2, "--poll", help="Seconds between replSetGetStatus polls.")) -> None:
    """Add a node as priority 0 and non-voting while it syncs; it gets its vote (still priority 0) once SECONDARY."""
    ctx = _common(via, inventory_file, user, ssh_key, sudo, known_hosts, accept_new_host_keys, mongod_port,
                  mongo_user, mongo_password_env)
    new = _resolve_hosts([host], ctx.inv, ctx.overrides, mongod_port)[0]
    primary = ctx.primary()

    def say(line: str) -> None:
        typer.echo(line, err=True)

    with engine._Mongo(primary, ctx.opts) as admin:
        rs.ensure_member(admin, new.member_host, {"priority": 0, "votes": 0}, say)
        rs.wait_for_sync(admin, new.member_host, timeout=sync_timeout, poll=poll, progress=say)
        rs.ensure_member(admin, new.member_host, {"priority": 0, "votes": 1}, say)
    typer.echo(f"{new.member_host} is a voting, priority-0 member; `parsectl replset promote {host}` makes it primary")


@replset_app.command("promote")
@_guard
def promote(host: str = typer.Argument(..., help="The member to elect (USER@HOST:PORT or inventory name)."),
            via: str = _VIA, inventory_file: str = _INV, user: str = _USER, ssh_key: str = _KEY,
            sudo: bool = _SUDO, known_hosts: str = _KNOWN, accept_new_host_keys: bool = _ACCEPT,
            mongod_port: int = _PORT, mongo_user: str = _MUSER, mongo_password_env: str = _MPASS,
            state_dir: str = _STATE, timeout: float = typer.Option(120, "--timeout")) -> None:
    """Give a member the highest priority so it is elected primary; `replset revert` undoes it."""
    ctx = _common(via, inventory_file, user, ssh_key, sudo, known_hosts, accept_new_host_keys, mongod_port,
                  mongo_user, mongo_password_env)
    target = _resolve_hosts([host], ctx.inv, ctx.overrides, mongod_port)[0]
    primary = ctx.primary()
    with engine._Mongo(primary, ctx.opts) as admin:
        rs.require_primary(admin)
        config = admin.get_config() or {}
        path = rs.state_path(config.get("_id", "set"), state_dir)
        rs.save_priorities(config, path, primary.member_host)
        changes = rs.promote_changes(config, target.member_host)
        admin.command(rs.reconfig_command(rs.config_with_priorities(config, changes)))
        typer.echo(f"priority of {target.member_host} raised to {changes[target.member_host]['priority']:g}; "
                   f"previous priorities saved in {path}", err=True)
        rs.wait_for_primary(admin, target.member_host, timeout)
    typer.echo(f"{target.member_host} is primary")


@replset_app.command("revert")
@_guard
def revert(via: str = _VIA, inventory_file: str = _INV, user: str = _USER, ssh_key: str = _KEY,
           sudo: bool = _SUDO, known_hosts: str = _KNOWN, accept_new_host_keys: bool = _ACCEPT,
           mongod_port: int = _PORT, mongo_user: str = _MUSER, mongo_password_env: str = _MPASS,
           state_dir: str = _STATE, timeout: float = typer.Option(120, "--timeout")) -> None:
    """Restore the priorities and votes saved by `replset promote`."""
    ctx = _common(via, inventory_file, user, ssh_key, sudo, known_hosts, accept_new_host_keys, mongod_port,
                  mongo_user, mongo_password_env)
    primary = ctx.primary()
    with engine._Mongo(primary, ctx.opts) as admin:
        rs.require_primary(admin)
        config = admin.get_config() or {}
        path = rs.state_path(config.get("_id", "set"), state_dir)
        if not path.exists():
            raise rs.ReplSetError(f"nothing to revert: {path} does not exist (replset promote saves it)")
        saved = json.loads(path.read_text(encoding="utf-8"))
        changes = rs.revert_changes(config, saved)
        if changes:
            admin.command(rs.reconfig_command(rs.config_with_priorities(config, changes)))
        original = saved.get("primary")
        if original and original.lower() != primary.member_host.lower():
            # Priorities alone do not move the primary back when they are equal: step the current one down.
            rs.step_down(admin)
            try:
                rs.wait_for_primary(admin, original, timeout)
            except rs.ReplSetError:
                typer.echo(f"warning: {original} was not re-elected; the primary is "
                           f"{rs.current_primary(admin) or 'unknown'}", err=True)
    path.unlink()
    typer.echo("priorities restored" if changes else "priorities were already as saved")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0)
