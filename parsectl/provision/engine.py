"""Plan/apply: per host, connect, gather facts, run every node step (plan: record only; apply: record and make
each change), in parallel across hosts; then the replica-set phase, one host at a time through the primary.

One host's failure stops that host only; the report says which step failed and why.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parsectl.provision import replset as rs
from parsectl.provision.inventory import Host
from parsectl.provision.playbook import Playbook, PlaybookError, resolve_fields
from parsectl.provision.steps import STEPS, Change, HostRun, StepError
from parsectl.ssh import Session, SSHError, Target, connect


@dataclass
class HostReport:
    name: str
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    failed_step: str | None = None
    log_path: str | None = None

    @property
    def pending(self) -> bool:
        return any(not c.applied for c in self.changes)

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.name, "ok": self.error is None, "error": self.error, "failed_step": self.failed_step,
                "changes": [c.as_dict() for c in self.changes], "warnings": self.warnings, "notes": self.notes,
                "log": self.log_path}


@dataclass
class Options:
    replset: str
    apply: bool = False
    join: Host | None = None
    move_existing_data: bool = False
    keyfile: bytes | None = None
    log_dir: Path = Path("parsectl-logs")
    mongo_user: str = rs.DEFAULT_ADMIN_USER
    mongo_password: str | None = None  # never logged or shown
    mongo_password_env: str | None = None  # its source, for messages
    extra_vars: dict[str, Any] = field(default_factory=dict)
    progress: Callable[[str, str], None] = lambda host, line: None


def _open_session(host: Host, log_dir: Path) -> tuple[Session, str]:
    log_path = str(log_dir / f"{host.name.replace('/', '_').replace(':', '_')}.log")
    return connect(host.target, log_path=log_path), log_path


def _preflight(session: Session, target: Target) -> None:
    if session.is_root:
        return
    if not target.sudo:
        raise StepError(f"{target.label}: provisioning needs root; log in as root or set sudo: true (--sudo)")
    session.run("true", sudo=True)  # raises SSHError(kind="no-sudo") when sudo asks for a password


def _host_vars(host: Host, playbook: Playbook, opts: Options) -> dict[str, Any]:
    variables = dict(playbook.vars)
    variables.update(host.vars)
    variables.update(opts.extra_vars)
    variables.update(host=host.target.host, member_host=host.member_host, mongod_port=host.mongod_port,
                     replset=opts.replset, role=host.role)
    return variables


def run_node(host: Host, playbook: Playbook, opts: Options) -> tuple[HostReport, HostRun | None]:
    report = HostReport(host.name)
    run: HostRun | None = None
    session: Session | None = None
    current = "connect"
    try:
        session, report.log_path = _open_session(host, opts.log_dir)
        _preflight(session, host.target)
        run = HostRun(host, session, _host_vars(host, playbook, opts), opts.apply,
                      playbook_dir=playbook.path.parent if playbook.path else None, keyfile=opts.keyfile,
                      move_existing_data=opts.move_existing_data,
                      progress=lambda line: opts.progress(host.name, line))
        for step in playbook.node_steps:
            current = step.label
            fields = resolve_fields(step, run.vars)
            STEPS[step.name](run, fields)
    except (SSHError, StepError, PlaybookError, rs.ReplSetError) as exc:
        report.error = str(exc)
        report.failed_step = current
    except Exception as exc:  # noqa: BLE001 - one host's surprise must not take the others down
        report.error = f"{type(exc).__name__}: {exc}"
        report.failed_step = current
    finally:
        if run is not None:
            report.changes, report.warnings, report.notes = run.changes, run.warnings, run.notes
        if session is not None:
            session.log(f"node steps done: {len(report.changes)} change(s), error: {report.error}")
            session.close()
    return report, run


class _Mongo:
    """Admin connections to a host's mongod through one SSH tunnel.

    ``with _Mongo(host, opts) as admin`` logs in with ``--mongo-user``/``--mongo-password-env`` when a password is
    given (``auth=False``: never). ``connect(auth)`` opens another client on the same tunnel; all are closed on
    exit. Connections through the tunnel come from the host's localhost, so the localhost exception applies to
    the unauthenticated ones while the deployment has no users.
    """

    def __init__(self, host: Host, opts: Options, session: Session | None = None, auth: bool = True) -> None:
        self.host, self.opts, self.auth = host, opts, auth
        self.session = session
        self._own = session is None
        self._tunnel: Any = None
        self._clients: list[rs.Admin] = []

    def __enter__(self) -> rs.Admin:
        if self.session is None:
            self.session, _ = _open_session(self.host, self.opts.log_dir)
        try:
            self._tunnel = self.session.tunnel("127.0.0.1", self.host.mongod_port)
            self.port = self._tunnel.__enter__()
            self.admin = self.connect(self.auth)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self.admin

    def connect(self, auth: bool = True) -> rs.Admin:
        login = auth and self.opts.mongo_password is not None
        admin = rs.Admin.connect(self.port, label=f"{self.host.name} (mongod {self.host.member_host})",
                                 username=self.opts.mongo_user if login else None,
                                 password=self.opts.mongo_password if login else None)
        self._clients.append(admin)
        return admin

    def __exit__(self, *exc: object) -> None:
        for client in self._clients:
            client.close()
        self._clients = []
        if self._tunnel is not None:
            self._tunnel.__exit__(None, None, None)
            self._tunnel = None
        if self._own and self.session is not None:
            self.session.close()
            self.session = None


def run_replset(hosts: list[Host], runs: dict[str, HostRun], reports: dict[str, HostReport], playbook: Playbook,
                opts: Options) -> None:
    """Initiate on the first host (unless --join), then add the others one at a time through the primary."""
    if not playbook.replset_steps:
        return
    step = playbook.replset_steps[0]
    primary_host = opts.join or hosts[0]
    for index, host in enumerate(hosts):
        report = reports[host.name]
        if report.error:
            continue
        run = runs[host.name]
        fields = resolve_fields(step, run.vars)
        progress = (lambda name: lambda line: opts.progress(name, line))(host.name)
        try:
            member = host.member_fields()
            if opts.join is None and index == 0:
                _initiate(host, member, run, report, opts, progress)
            else:
                if opts.join is None and reports[primary_host.name].error:
                    raise StepError(f"the first host {primary_host.name} failed, so the set is not initiated (or its "
                                    "admin user not confirmed); fix it and re-run")
                _add(primary_host, host, member, fields, run, report, opts, progress)
        except (SSHError, StepError, rs.ReplSetError, PlaybookError) as exc:
            report.error, report.failed_step = str(exc), step.label
    # the set as a whole
    ok = [h for h in hosts if not reports[h.name].error]
    if ok and opts.apply:
        try:
            with _Mongo(primary_host, opts) as admin:
                config = admin.get_config()
            warning = rs.member_count_warning(config) if config else None
            if warning:
                reports[ok[-1].name].warnings.append(warning)
        except (SSHError, rs.ReplSetError) as exc:
            reports[ok[-1].name].warnings.append(f"could not read the final replica-set config: {exc}")


def _mongod_up(run: HostRun) -> bool:
    return run.apply or not any(c.step in ("packages", "service") for c in run.changes)


def _user_change(host: Host, opts: Options) -> Change:
    return Change("replset_user", f"create user {opts.mongo_user!r} (roles: "
                  f"{', '.join(r['role'] for r in rs.ADMIN_ROLES)}) in admin on {host.member_host} through the "
                  "localhost exception (createUser; password from "
                  f"{('$' + opts.mongo_password_env) if opts.mongo_password_env else '--mongo-password-env'})")


def _initiate(host: Host, member: dict[str, Any], run: HostRun, report: HostReport, opts: Options,
              progress: Callable[[str], None]) -> None:
    """Initiate the set on the first host, then make sure the admin user exists (keyFile auth turns authorization
    on; the localhost exception allows exactly these two bootstrap steps, through the tunnel, before any user
    exists)."""
    if not _mongod_up(run):
        report.changes.append(Change("replset_member", f"initiate replica set {opts.replset} with {host.member_host} "
                                     "(replSetInitiate)"))
        report.changes.append(_user_change(host, opts))
        return
    mongo = _Mongo(host, opts, auth=False)
    with mongo as mongo_admin:
        if rs.initiated_set(mongo_admin) is not None:
            rs.ensure_initiated(mongo_admin, opts.replset, host.member_host, member, progress)
        else:
            change = Change("replset_member", f"initiate replica set {opts.replset} with {host.member_host} "
                            "(replSetInitiate)", diff=None)
            report.changes.append(change)
            if not opts.apply:
                report.changes.append(_user_change(host, opts))
                return
            rs.ensure_initiated(mongo_admin, opts.replset, host.member_host, member, progress)
            change.applied = True
        action, _ = rs.ensure_admin_user(mongo_admin, lambda: mongo.connect(auth=True), opts.mongo_user,
                                         opts.mongo_password, progress, apply=opts.apply,
                                         password_source=_password_source(opts))
        if action in ("created", "pending"):
            change = _user_change(host, opts)
            change.applied = action == "created"
            report.changes.append(change)


def _password_source(opts: Options) -> str:
    return f"${opts.mongo_password_env}" if opts.mongo_password_env else "--mongo-password-env"


def _add(primary: Host, host: Host, member: dict[str, Any], fields: dict[str, Any], run: HostRun,
         report: HostReport, opts: Options, progress: Callable[[str], None]) -> None:
    if not _mongod_up(run):
        report.changes.append(Change("replset_member", f"add {host.member_host} {member or ''} to {opts.replset} "
                                     f"through {primary.member_host} (replSetReconfig)".replace("  ", " ")))
        return
    try:
        mongo = _Mongo(primary, opts, auth=False)
        noauth = mongo.__enter__()
    except SSHError as exc:
        raise StepError(f"cannot reach the primary {primary.name} to add {host.member_host}: {exc}") from exc
    try:
        pending = Change("replset_member", f"add {host.member_host} {member or ''} to {opts.replset} through "
                         f"{primary.member_host} (replSetReconfig)".replace("  ", " "))
        if rs.initiated_set(noauth) is None:
            if not opts.apply and opts.join is None:
                report.changes.append(pending)
                return
            raise StepError(f"{primary.name} has no replica-set config yet; initiate it (provision it first)")
        admin = mongo.connect(auth=True)
        if not opts.apply and (opts.mongo_password is None or not _can_log_in(admin)) \
                and rs.localhost_exception_open(noauth):
            report.changes.append(pending)  # the first host's plan creates the user; its config is unreadable now
            return
        config = admin.get_config()
        if config is None:
            raise StepError(f"{primary.name} has no replica-set config yet; initiate it (provision it first)")
        if config.get("_id") != opts.replset:
            raise StepError(f"{primary.name} runs replica set {config.get('_id')!r}, not {opts.replset!r}")
        action, new = rs.plan_member(admin, host.member_host, member)
        if action == "present":
            progress(f"{host.member_host} is already a member of {opts.replset}")
            return
        assert new is not None
        window, size = admin.oplog()
        sync_hours, warning = rs.oplog_advice(window, size, admin.data_bytes(),
                                              float(fields.get("assumed_sync_rate_mb_s", 50)))
        if warning:
            report.warnings.append(warning)
        description = (f"{'add' if action == 'add' else 'update'} {host.member_host} {member or ''} in "
                       f"{opts.replset} through {primary.member_host} (replSetReconfig to version {new['version']}"
                       f"; estimated initial sync {sync_hours * 60:.1f} min)").replace("  ", " ")
        change = Change("replset_member", description, diff=None)
        report.changes.append(change)
        if not opts.apply:
            return
        rs.ensure_member(admin, host.member_host, member, progress)
        change.applied = True
        if fields.get("wait_sync", True) and action == "add":
            rs.wait_for_sync(admin, host.member_host, timeout=float(fields.get("sync_timeout", 3600)),
                             poll=float(fields.get("wait_poll_seconds", 2)), progress=progress)
    finally:
        mongo.__exit__(None, None, None)


def _can_log_in(admin: rs.Admin) -> bool:
    try:
        rs.check_login(admin)
    except rs.AuthError:
        return False
    return True


def provision(hosts: list[Host], playbook: Playbook, opts: Options) -> list[HostReport]:
    opts.log_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, tuple[HostReport, HostRun | None]] = {}
    with ThreadPoolExecutor(max_workers=min(8, len(hosts))) as pool:
        futures = {h.name: pool.submit(run_node, h, playbook, opts) for h in hosts}
        for name, future in futures.items():
            results[name] = future.result()
    reports = {name: r for name, (r, _) in results.items()}
    runs = {name: run for name, (_, run) in results.items() if run is not None}
    run_replset(hosts, runs, reports, playbook, opts)
    return [reports[h.name] for h in hosts]
