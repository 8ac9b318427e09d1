"""Inventory files: the hosts to provision and how to reach them.

```yaml
replset: rs0                 # optional; --replset wins
playbook: wiredtiger         # optional; --playbook wins
defaults:                    # applied to every host (each host may override)
  user: ops
  key_file: ~/.ssh/id_ed25519
  sudo: true
  known_hosts: ~/.ssh/known_hosts
  jump: ops@bastion.example:22
  mongod_port: 27017
hosts:
  - host: db1.internal       # SSH address
    role: data               # data | arbiter | backup (hidden, priority 0)
  - host: db2.internal
    priority: 2
  - host: db3.internal
    port: 2222
    role: backup
    member_host: 10.0.0.7:27017   # what the other members use (default host:mongod_port)
vars: {}                     # playbook variables for every host (hosts may have their own ``vars``)
```
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from parsectl.ssh import SSHError, Target, parse_target

ROLES = ("data", "arbiter", "backup")
HOST_KEYS = {"host", "name", "port", "user", "key_file", "password_env", "sudo", "jump", "known_hosts",
             "timeout", "retries", "role", "priority", "votes", "member_host", "mongod_port", "vars",
             "bind_ip"}


class InventoryError(ValueError):
    pass


@dataclass
class Host:
    name: str
    target: Target
    role: str = "data"
    priority: float | None = None
    votes: int | None = None
    mongod_port: int = 27017
    member_host: str = ""
    bind_ip: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.member_host:
            host = f"[{self.target.host}]" if ":" in self.target.host else self.target.host
            self.member_host = f"{host}:{self.mongod_port}"

    def member_fields(self) -> dict[str, Any]:
        """The replica-set member document fields this host's role asks for (without _id and host)."""
        doc: dict[str, Any] = {}
        if self.role == "arbiter":
            doc["arbiterOnly"] = True
        elif self.role == "backup":
            doc["priority"] = 0
            doc["hidden"] = True
        if self.priority is not None and self.role != "arbiter":
            doc["priority"] = self.priority
        if self.votes is not None:
            doc["votes"] = self.votes
        if doc.get("hidden") and doc.get("priority", 0) != 0:
            raise InventoryError(f"{self.name}: a hidden backup member must have priority 0")
        return doc


def _target(entry: dict[str, Any], defaults: dict[str, Any], overrides: dict[str, Any], where: str) -> Target:
    merged = {**defaults, **{k: v for k, v in entry.items() if v is not None}, **overrides}
    jump = merged.get("jump")
    jump_target = None
    if jump:
        try:
            jump_target = parse_target(str(jump), key_file=merged.get("key_file"),
                                       known_hosts=merged.get("known_hosts"),
                                       accept_new_host_keys=bool(merged.get("accept_new_host_keys", False)),
                                       timeout=float(merged.get("timeout", 10)))
        except SSHError as exc:
            raise InventoryError(f"{where}: jump: {exc}") from exc
    password = None
    if merged.get("password_env"):
        import os

        password = os.environ.get(str(merged["password_env"]))
        if password is None:
            raise InventoryError(f"{where}: environment variable {merged['password_env']} is not set")
    try:
        target = parse_target(str(merged["host"]))
    except SSHError as exc:
        raise InventoryError(f"{where}: {exc}") from exc
    return Target(target.host, port=int(merged.get("port") or target.port), user=merged.get("user") or target.user,
                  key_file=merged.get("key_file"), password=password, sudo=bool(merged.get("sudo", False)),
                  jump=jump_target, known_hosts=merged.get("known_hosts"),
                  accept_new_host_keys=bool(merged.get("accept_new_host_keys", False)),
                  timeout=float(merged.get("timeout", 10)), retries=int(merged.get("retries", 2)))


def host_from_entry(entry: dict[str, Any], defaults: dict[str, Any], overrides: dict[str, Any],
                    where: str) -> Host:
    unknown = set(entry) - HOST_KEYS
    if unknown:
        hints = [f"{u} (did you mean {difflib.get_close_matches(u, HOST_KEYS, n=1)[0]}?)"
                 if difflib.get_close_matches(u, HOST_KEYS, n=1) else u for u in sorted(unknown)]
        raise InventoryError(f"{where}: unknown keys {', '.join(hints)}")
    if "host" not in entry:
        raise InventoryError(f"{where}: every host needs 'host'")
    merged = {**defaults, **entry}
    role = str(merged.get("role", "data"))
    if role not in ROLES:
        raise InventoryError(f"{where}: role must be one of {', '.join(ROLES)}, not {role!r}")
    target = _target(entry, {k: v for k, v in defaults.items() if k not in ("role", "vars")}, overrides, where)
    votes = merged.get("votes")
    if votes is not None and votes not in (0, 1):
        raise InventoryError(f"{where}: votes must be 0 or 1")
    priority = merged.get("priority")
    if priority is not None and not (isinstance(priority, int | float) and 0 <= priority <= 1000):
        raise InventoryError(f"{where}: priority must be a number from 0 to 1000")
    if votes == 0 and priority not in (None, 0):
        raise InventoryError(f"{where}: a non-voting member (votes 0) must have priority 0")
    bind_ip = merged.get("bind_ip") or []
    name = entry.get("name") or (target.host if target.port == 22 else f"{target.host}:{target.port}")
    return Host(name=str(name),
                target=target, role=role, priority=priority, votes=votes,
                mongod_port=int(merged.get("mongod_port", 27017)), member_host=str(entry.get("member_host") or ""),
                bind_ip=[str(b) for b in (bind_ip if isinstance(bind_ip, list) else [bind_ip])],
                vars={**(defaults.get("vars") or {}), **(entry.get("vars") or {})})


@dataclass
class Inventory:
    hosts: list[Host]
    replset: str | None = None
    playbook: str | None = None
    vars: dict[str, Any] = field(default_factory=dict)


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> Inventory:
    path = Path(path).expanduser()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InventoryError(f"cannot read inventory {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise InventoryError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("hosts"), list) or not data["hosts"]:
        raise InventoryError(f"{path}: needs a 'hosts' list")
    unknown = set(data) - {"hosts", "defaults", "replset", "playbook", "vars"}
    if unknown:
        raise InventoryError(f"{path}: unknown top-level keys {sorted(unknown)}")
    defaults = data.get("defaults") or {}
    bad_defaults = set(defaults) - HOST_KEYS - {"accept_new_host_keys"}
    if bad_defaults:
        raise InventoryError(f"{path}: unknown keys in defaults: {sorted(bad_defaults)}")
    hosts = []
    for i, entry in enumerate(data["hosts"]):
        if isinstance(entry, str):
            entry = {"host": entry}
        if not isinstance(entry, dict):
            raise InventoryError(f"{path}: hosts[{i}] must be a mapping or a string")
        hosts.append(host_from_entry(entry, defaults, overrides or {}, f"{path}: hosts[{i}]"))
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise InventoryError(f"{path}: host names repeat: {names}")
    return Inventory(hosts, data.get("replset"), data.get("playbook"), data.get("vars") or {})
