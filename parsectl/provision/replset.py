"""Replica-set operations as MongoDB's admin commands (shapes as in MongoDB's manual; shared/reference §3).

The command documents are built by pure functions (``initiate_command``, ``reconfig_command``,
``config_with_member``, ``config_with_priorities``) and sent through ``Admin``, a thin wrapper over a pymongo
client connected (usually through an SSH tunnel) to one member with ``directConnection``.

- initiate: ``{replSetInitiate: {_id, protocolVersion: 1, members: [{_id: 0, host}]}}`` on the first node;
- add: ``{replSetGetConfig: 1}`` -> copy ``.config``, append ``{_id: max+1, host, ...}``, ``version += 1`` ->
  ``{replSetReconfig: cfg, force: false, maxTimeMS}`` on the primary; one voting member per reconfig (4.4+);
- wait: poll ``{replSetGetStatus: 1}`` until the member is SECONDARY (or ARBITER);
- oplog window: first and last ``local.oplog.rs`` entries by ``$natural``; size from ``collStats``;
- admin user (keyFile auth turns authorization on): right after the initiate, through the same tunnel while the
  localhost exception applies, ``{createUser: USER, pwd, roles: [{role: "root", db: "admin"}]}`` on ``admin``;
  once a user exists the exception is closed and every later command logs in as that user (SCRAM).

Under the localhost exception an unauthenticated connection may only run ``hello``/``ping``, ``createUser`` on
``admin``, and the cluster actions ``replSetConfigure`` (replSetInitiate/replSetReconfig) and
``replSetGetStatus`` (MongoDB's ``AuthorizationSession::getDefaultPrivileges``): not ``replSetGetConfig``. So the
initiate step decides with ``hello`` whether the set exists.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

STATES = {0: "STARTUP", 1: "PRIMARY", 2: "SECONDARY", 3: "RECOVERING", 5: "STARTUP2", 6: "UNKNOWN",
          7: "ARBITER", 8: "DOWN", 9: "ROLLBACK", 10: "REMOVED"}
# Errors that mean "the primary changed under us": re-run to continue.
STEPPED_DOWN_CODES = {10107: "NotWritablePrimary", 189: "PrimarySteppedDown", 11602: "InterruptedDueToReplStateChange",
                      13435: "NotPrimaryNoSecondaryOk", 91: "ShutdownInProgress"}
NOT_YET_INITIALIZED = 94
ALREADY_INITIALIZED = 23
UNAUTHORIZED = 13
AUTHENTICATION_FAILED = 18
USER_EXISTS = {51003, 11000}  # "User ... already exists" (4.x+: Location51003; older: DuplicateKey)
# One user for every parsectl step: replSetReconfig (clusterAdmin), oplog reads on local and listDatabases
# (status), and user administration. root holds all of them; see docs/provision.md for narrower roles.
ADMIN_ROLES: tuple[dict[str, str], ...] = ({"role": "root", "db": "admin"},)
DEFAULT_ADMIN_USER = "parsectl-admin"
MEMBER_FIELDS = ("priority", "votes", "hidden", "arbiterOnly")


class ReplSetError(RuntimeError):
    pass


class SteppedDown(ReplSetError):
    pass


class AuthError(ReplSetError):
    """Unauthorized (13) or AuthenticationFailed (18)."""


# ---------------------------------------------------------------------------------------------------------
# Pure: command documents


def initiate_command(name: str, member_host: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    member = {"_id": 0, "host": member_host, **(fields or {})}
    return {"replSetInitiate": {"_id": name, "protocolVersion": 1, "members": [member]}}


def create_user_command(user: str, password: str,
                        roles: tuple[dict[str, str], ...] = ADMIN_ROLES) -> dict[str, Any]:
    """``{createUser, pwd, roles}`` on ``admin`` (the server hashes the password: SCRAM-SHA-1/256 credentials)."""
    return {"createUser": user, "pwd": password, "roles": [dict(r) for r in roles]}


def redacted(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy safe to keep or log: passwords replaced."""
    out = copy.deepcopy(doc)
    for key in ("pwd", "password"):
        if key in out:
            out[key] = "<redacted>"
    return out


def find_member(config: dict[str, Any], member_host: str) -> dict[str, Any] | None:
    for member in config.get("members", []):
        if str(member.get("host", "")).lower() == member_host.lower():
            return member
    return None


def config_with_member(config: dict[str, Any], member_host: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with the member appended (``_id`` max+1) or its fields updated; version + 1."""
    new = copy.deepcopy(config)
    existing = find_member(new, member_host)
    if existing is None:
        next_id = max((int(m["_id"]) for m in new.get("members", [])), default=-1) + 1
        new.setdefault("members", []).append({"_id": next_id, "host": member_host, **fields})
    else:
        existing.update(fields)
    new["version"] = int(new.get("version", 0)) + 1
    return new


def config_with_priorities(config: dict[str, Any], changes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    new = copy.deepcopy(config)
    for host, fields in changes.items():
        member = find_member(new, host)
        if member is None:
            raise ReplSetError(f"{host} is not a member of replica set {config.get('_id')}")
        member.update(fields)
    new["version"] = int(new.get("version", 0)) + 1
    return new


def reconfig_command(config: dict[str, Any], max_time_ms: int = 60000) -> dict[str, Any]:
    clean = {k: v for k, v in config.items() if k not in ("term",)}  # term is server-managed (4.4+)
    return {"replSetReconfig": clean, "force": False, "maxTimeMS": max_time_ms}


def fields_differ(member: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    defaults = {"priority": 1, "votes": 1, "hidden": False, "arbiterOnly": False}
    return {k: v for k, v in fields.items() if member.get(k, defaults.get(k)) != v}


def voting_members_added(old: dict[str, Any], new: dict[str, Any]) -> int:
    old_voters = {m["host"] for m in old.get("members", []) if m.get("votes", 1)}
    return len([m for m in new.get("members", []) if m.get("votes", 1) and m["host"] not in old_voters])


def member_count_warning(config: dict[str, Any]) -> str | None:
    members = config.get("members", [])
    arbiters = sum(1 for m in members if m.get("arbiterOnly"))
    data = len(members) - arbiters
    if data >= 3 or (data >= 2 and arbiters >= 1):
        return None
    return (f"replica set {config.get('_id')} has {data} data-bearing member(s) and {arbiters} arbiter(s): "
            "it cannot keep a majority through the loss of one member; run at least three data-bearing members "
            "(or two and an arbiter), each in a separate zone")


def oplog_advice(window_hours: float | None, oplog_size_mb: float | None, data_bytes: int,
                 sync_rate_mb_s: float) -> tuple[float, str | None]:
    """(estimated initial-sync hours, warning or None). Warn when the sync would take more than half the window."""
    sync_hours = data_bytes / (1024 * 1024) / max(sync_rate_mb_s, 0.001) / 3600
    if window_hours is None or oplog_size_mb is None:
        return sync_hours, None
    if sync_hours * 2 <= window_hours:
        return sync_hours, None
    suggested = max(990, math.ceil(oplog_size_mb * (sync_hours * 2) / max(window_hours, 1e-6)))
    return sync_hours, (f"the oplog window is {window_hours:.1f} h but the initial sync is estimated at "
                        f"{sync_hours:.1f} h ({data_bytes / 1024 ** 3:.1f} GB at {sync_rate_mb_s:g} MB/s): a sync "
                        "that outlasts the window fails. Resize the oplog first, to about "
                        f"{suggested} MB (replSetResizeOplog on each member, WiredTiger 3.6+), or lower the write load")


# ---------------------------------------------------------------------------------------------------------
# Effects: talking to a member


class Admin:
    """Commands to one member. ``send(doc, db)`` may be replaced (tests record the documents)."""

    def __init__(self, client: Any, label: str = "", username: str | None = None) -> None:
        self.client = client
        self.label = label
        self.username = username
        self.sent: list[tuple[str, dict[str, Any]]] = []  # passwords redacted

    @classmethod
    def connect(cls, port: int, *, host: str = "127.0.0.1", label: str = "", username: str | None = None,
                password: str | None = None, timeout_ms: int = 10000) -> Admin:
        from pymongo import MongoClient

        options: dict[str, Any] = {"directConnection": True, "serverSelectionTimeoutMS": timeout_ms,
                                   "connectTimeoutMS": timeout_ms}
        if username and password is not None:
            options.update(username=username, password=password, authSource="admin")
        else:
            username = None
        return cls(MongoClient(host, port, **options), label or f"{host}:{port}", username)

    def close(self) -> None:
        self.client.close()

    def command(self, doc: dict[str, Any], db: str = "admin") -> dict[str, Any]:
        from pymongo.errors import AutoReconnect, OperationFailure, PyMongoError

        self.sent.append((db, redacted(doc)))
        try:
            return dict(self.client[db].command(doc))
        except OperationFailure as exc:
            code = exc.code or 0
            if code == AUTHENTICATION_FAILED:
                raise AuthError(f"{self.label}: authentication as {self.username!r} (authSource admin) failed: wrong "
                                "password, or no such user") from exc
            if code == UNAUTHORIZED:
                if self.username:
                    raise AuthError(f"{self.label}: user {self.username!r} is not authorized for {next(iter(doc))}; "
                                    "it needs the root role (or clusterAdmin)") from exc
                raise AuthError(f"{self.label}: {next(iter(doc))} requires authentication (access control is on): "
                                "give --mongo-user and --mongo-password-env NAME") from exc
            if code in STEPPED_DOWN_CODES:
                raise SteppedDown(f"{self.label}: {STEPPED_DOWN_CODES[code]} ({code}) during {next(iter(doc))}: "
                                  "the primary stepped down mid-operation. Nothing was half-applied; re-run the "
                                  "same command to continue") from exc
            raise ReplSetError(f"{self.label}: {next(iter(doc))} failed: {exc.details.get('errmsg', exc) if exc.details else exc} "
                               f"(code {code})") from exc
        except AutoReconnect as exc:
            raise SteppedDown(f"{self.label}: the primary stepped down or went away during {next(iter(doc))} "
                              f"({exc}). A reconfig applies whole or not at all; re-run the same command to "
                              "continue") from exc
        except PyMongoError as exc:
            raise ReplSetError(f"{self.label}: {next(iter(doc))} failed: {exc}") from exc

    # --- reads
    def hello(self) -> dict[str, Any]:
        try:
            return self.command({"hello": 1})
        except ReplSetError:
            return self.command({"isMaster": 1})

    def get_config(self) -> dict[str, Any] | None:
        from pymongo.errors import OperationFailure

        try:
            return self.command({"replSetGetConfig": 1})["config"]
        except ReplSetError as exc:
            cause = exc.__cause__
            if isinstance(cause, OperationFailure) and cause.code in (NOT_YET_INITIALIZED, 76):
                return None
            raise

    def get_status(self) -> dict[str, Any] | None:
        from pymongo.errors import OperationFailure

        try:
            return self.command({"replSetGetStatus": 1})
        except ReplSetError as exc:
            cause = exc.__cause__
            if isinstance(cause, OperationFailure) and cause.code in (NOT_YET_INITIALIZED, 76):
                return None
            raise

    def oplog(self) -> tuple[float | None, float | None]:
        """(window hours, configured size MB) or (None, None) without an oplog."""
        try:
            first = self.command({"find": "oplog.rs", "sort": {"$natural": 1}, "limit": 1,
                                  "projection": {"ts": 1}}, db="local")["cursor"]["firstBatch"]
            last = self.command({"find": "oplog.rs", "sort": {"$natural": -1}, "limit": 1,
                                 "projection": {"ts": 1}}, db="local")["cursor"]["firstBatch"]
            stats = self.command({"collStats": "oplog.rs"}, db="local")
        except ReplSetError:
            return None, None
        if not first or not last:
            return None, None
        window = (last[0]["ts"].time - first[0]["ts"].time) / 3600
        size = stats.get("maxSize") or stats.get("storageSize") or stats.get("size")
        return window, (float(size) / (1024 * 1024) if size else None)

    def data_bytes(self) -> int:
        try:
            return int(self.command({"listDatabases": 1, "nameOnly": False}).get("totalSize", 0))
        except ReplSetError:
            return 0


def require_primary(admin: Admin) -> dict[str, Any]:
    hello = admin.hello()
    if not (hello.get("isWritablePrimary") or hello.get("ismaster")):
        primary = hello.get("primary")
        raise SteppedDown(f"{admin.label} is not the primary" + (f" (the primary is {primary})" if primary else "")
                          + ": run this through the current primary (--join PRIMARY / --via HOST)")
    return hello


def initiated_set(admin: Admin) -> str | None:
    """The set name from ``hello`` (allowed without authentication), or None before replSetInitiate."""
    return admin.hello().get("setName")


def ensure_initiated(admin: Admin, name: str, member_host: str, fields: dict[str, Any],
                     log: Callable[[str], None], wait_seconds: float = 60) -> bool:
    """Initiate unless ``hello`` shows a set; works unauthenticated under the localhost exception."""
    hello = admin.hello()
    set_name = hello.get("setName")
    if set_name is not None:
        if set_name != name:
            raise ReplSetError(f"{admin.label} already belongs to replica set {set_name!r}, not {name!r}")
        me = hello.get("me")
        if me is not None and str(me).lower() != member_host.lower():
            raise ReplSetError(f"{admin.label} is a member of {name} as {me}, not {member_host}; check member_host")
        log(f"replica set {name} already initiated")
        return False
    try:
        admin.command(initiate_command(name, member_host, fields))
    except ReplSetError as exc:
        cause = exc.__cause__
        if not (getattr(cause, "code", None) == ALREADY_INITIALIZED):
            raise
    log(f"replSetInitiate {name} with {member_host}")
    wait_for_writable_primary(admin, wait_seconds, "after replSetInitiate")
    return True


def wait_for_writable_primary(admin: Admin, wait_seconds: float, why: str) -> None:
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        hello = admin.hello()
        if hello.get("isWritablePrimary") or hello.get("ismaster"):
            return
        time.sleep(0.5)
    raise ReplSetError(f"{admin.label} did not become primary within {wait_seconds:g} s {why}")


def _code(exc: BaseException) -> int | None:
    return getattr(exc.__cause__, "code", None)


def localhost_exception_open(noauth: Admin) -> bool:
    """True while the deployment has no users and this (localhost) connection may bootstrap it: an
    unauthenticated ``replSetGetStatus`` passes the authorization check only then (it may still fail with
    NotYetInitialized, which is past the check)."""
    try:
        noauth.command({"replSetGetStatus": 1})
    except AuthError:
        return False
    except ReplSetError:
        return True
    return True


def check_login(admin: Admin) -> None:
    """Log in (pymongo authenticates each connection) and confirm the server sees the user."""
    status = admin.command({"connectionStatus": 1})
    users = [u.get("user") for u in (status.get("authInfo") or {}).get("authenticatedUsers", [])]
    if admin.username not in users:
        raise AuthError(f"{admin.label}: logged in, but the server does not list {admin.username!r} as authenticated")


def ensure_admin_user(noauth: Admin, login: Callable[[], Admin], user: str, password: str | None,
                      log: Callable[[str], None], *, apply: bool, password_source: str = "--mongo-password-env",
                      ) -> tuple[str, Admin | None]:
    """The admin user every later step logs in as. Returns (action, an authenticated Admin or None):

    - ``created``: createUser through the localhost exception (the deployment had no users);
    - ``exists``: the exception is closed (users exist) and logging in with the given credentials works;
    - ``pending`` (plan only): the exception is open, so apply would create the user.

    Raises AuthError when the exception is closed and the credentials do not work.
    """
    if not apply:
        if password is not None:
            admin = login()
            try:
                check_login(admin)
                return "exists", admin
            except AuthError:
                if not localhost_exception_open(noauth):
                    raise
            return "pending", None
        if localhost_exception_open(noauth):
            return "pending", None
        raise AuthError(f"{noauth.label}: the deployment already has users, so the plan needs their credentials: "
                        "give --mongo-user and --mongo-password-env NAME")
    if password is None:
        raise AuthError(f"{noauth.label}: access control is on: give {password_source} NAME (the environment "
                        f"variable holding the password of {user!r}, created now if the deployment has no users)")
    action = "created"
    try:
        noauth.command(create_user_command(user, password))
        log(f"created user {user!r} (roles: {', '.join(r['role'] for r in ADMIN_ROLES)}) in admin through the "
            "localhost exception")
    except AuthError:
        action = "exists"  # the localhost exception is closed: users exist
    except ReplSetError as exc:
        if _code(exc) not in USER_EXISTS:
            raise
        action = "exists"
    admin = login()
    try:
        check_login(admin)
    except AuthError as exc:
        if action == "created":
            raise
        raise AuthError(f"{noauth.label}: the localhost exception is closed (the deployment already has users) and "
                        f"logging in as {user!r} failed: check --mongo-user and the password in {password_source}, "
                        f"or create {user!r} with the root (or clusterAdmin) role. ({exc})") from exc
    if action == "exists":
        log(f"logged in as {user!r} (the deployment already has users)")
    return action, admin


def plan_member(admin: Admin, member_host: str, fields: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """('present'|'update'|'add', the new config or None)."""
    config = admin.get_config()
    if config is None:
        raise ReplSetError(f"{admin.label} is not part of an initiated replica set (replSetGetConfig: "
                           "NotYetInitialized); initiate it first or --join the right primary")
    member = find_member(config, member_host)
    if member is not None:
        diff = fields_differ(member, fields)
        if not diff:
            return "present", None
        return "update", config_with_member(config, member_host, diff)
    return "add", config_with_member(config, member_host, fields)


def ensure_member(admin: Admin, member_host: str, fields: dict[str, Any], log: Callable[[str], None]) -> bool:
    require_primary(admin)
    action, new = plan_member(admin, member_host, fields)
    if action == "present":
        log(f"{member_host} is already a member with the wanted settings")
        return False
    assert new is not None
    old = admin.get_config() or {}
    if voting_members_added(old, new) > 1:
        raise ReplSetError("a reconfig may add at most one voting member (MongoDB 4.4+); add them one at a time")
    admin.command(reconfig_command(new))
    log(f"replSetReconfig version {new['version']}: {action} {member_host} {fields or ''}".rstrip())
    return True


@dataclass
class MemberState:
    name: str
    state: int
    state_str: str
    lag_seconds: float | None


def member_states(status: dict[str, Any]) -> list[MemberState]:
    members = status.get("members", [])
    primary_optime = next((m.get("optimeDate") for m in members if m.get("state") == 1), None)
    out = []
    for m in members:
        lag = None
        if isinstance(primary_optime, datetime) and isinstance(m.get("optimeDate"), datetime) \
                and m.get("state") != 7:
            lag = max(0.0, (primary_optime - m["optimeDate"]).total_seconds())
        out.append(MemberState(m.get("name", "?"), int(m.get("state", 6)),
                               m.get("stateStr") or STATES.get(int(m.get("state", 6)), "?"), lag))
    return out


def wait_for_sync(admin: Admin, member_host: str, *, timeout: float, poll: float,
                  progress: Callable[[str], None]) -> MemberState:
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        status = admin.get_status() or {}
        mine = next((m for m in member_states(status) if m.name.lower() == member_host.lower()), None)
        if mine is not None:
            line = f"{member_host}: {mine.state_str}" + (f", lag {mine.lag_seconds:.0f} s"
                                                         if mine.lag_seconds is not None else "")
            if line != last:
                progress(line)
                last = line
            if mine.state in (2, 7) and (mine.lag_seconds is None or mine.lag_seconds < 60):
                return mine
            if mine.state in (9, 10):
                raise ReplSetError(f"{member_host} is {mine.state_str}; check its log")
        if time.monotonic() > deadline:
            raise ReplSetError(f"{member_host} did not finish its initial sync within {timeout:g} s (last state: "
                               f"{last or 'not in replSetGetStatus'}); re-run to keep waiting")
        time.sleep(poll)


def status_summary(admin: Admin) -> dict[str, Any]:
    status = admin.get_status()
    if status is None:
        raise ReplSetError(f"{admin.label} is not part of an initiated replica set")
    config = admin.get_config() or {}
    by_host = {m["host"]: m for m in config.get("members", [])}
    window, size = admin.oplog()
    rows = []
    for m, state in zip(status.get("members", []), member_states(status), strict=False):
        cfg = by_host.get(m.get("name"), {})
        rows.append({"name": state.name, "state": state.state_str, "health": m.get("health"),
                     "priority": cfg.get("priority", 1), "votes": cfg.get("votes", 1),
                     "hidden": bool(cfg.get("hidden", False)), "arbiter": bool(cfg.get("arbiterOnly", False)),
                     "lag_seconds": state.lag_seconds,
                     "sync_source": m.get("syncSourceHost") or m.get("syncingTo") or ""})
    return {"set": status.get("set"), "members": rows, "oplog_window_hours": window, "oplog_size_mb": size,
            "warning": member_count_warning(config) if config else None}


# ---------------------------------------------------------------------------------------------------------
# try / promote / revert


def state_path(set_name: str, directory: str | Path | None = None) -> Path:
    base = Path(directory) if directory else Path.home() / ".local" / "state" / "parsectl"
    return base / f"replset-{set_name}.json"


def save_priorities(config: dict[str, Any], path: Path, primary: str | None = None) -> bool:
    """Remember every member's priority and votes, unless a saved copy exists (revert restores the oldest)."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = {"set": config.get("_id"), "version": config.get("version"), "primary": primary,
             "members": {m["host"]: {"priority": m.get("priority", 1), "votes": m.get("votes", 1)}
                         for m in config.get("members", [])}}
    path.write_text(json.dumps(saved, indent=2) + "\n", encoding="utf-8")
    return True


def promote_changes(config: dict[str, Any], member_host: str) -> dict[str, dict[str, Any]]:
    member = find_member(config, member_host)
    if member is None:
        raise ReplSetError(f"{member_host} is not a member of {config.get('_id')}: add it with replset try first")
    if member.get("arbiterOnly") or member.get("hidden"):
        raise ReplSetError(f"{member_host} is an arbiter or hidden and cannot become primary")
    top = max((float(m.get("priority", 1)) for m in config["members"] if m is not member), default=1)
    return {member_host: {"priority": top + 1, "votes": 1}}


def revert_changes(config: dict[str, Any], saved: dict[str, Any]) -> dict[str, dict[str, Any]]:
    changes = {}
    for m in config.get("members", []):
        want = saved["members"].get(m["host"])
        if want is None:
            continue
        diff = fields_differ(m, want)
        if diff:
            changes[m["host"]] = diff
    return changes


def step_down(admin: Admin, seconds: int = 60, catch_up: int = 10) -> None:
    """``{replSetStepDown: seconds, secondaryCatchUpPeriodSecs: n}``; the server drops connections as it steps
    down, so a lost connection here is success."""
    with contextlib.suppress(SteppedDown):
        admin.command({"replSetStepDown": seconds, "secondaryCatchUpPeriodSecs": catch_up})


def current_primary(admin: Admin) -> str | None:
    status = admin.get_status() or {}
    return next((s.name for s in member_states(status) if s.state == 1), None)


def wait_for_primary(admin: Admin, member_host: str, timeout: float, poll: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = admin.get_status() or {}
        if any(s.name.lower() == member_host.lower() and s.state == 1 for s in member_states(status)):
            return
        time.sleep(poll)
    raise ReplSetError(f"{member_host} did not become primary within {timeout:g} s; check that it is caught up "
                       "(replset status) and run replset revert to restore the priorities")
