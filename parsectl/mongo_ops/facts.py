"""Host facts for mongod.conf: RAM and cores from this machine (/proc) or over SSH (paramiko, known_hosts
checked strictly), and the oplog write rate measured from a running server (pymongo).

The parsing functions are pure and tested on their own; the functions that touch a host are thin.
RAM is MemTotal from /proc/meminfo, the figure mongod itself sizes its caches from, lowered to a cgroup
memory limit when one is set (MongoDB counts a container's limit as its RAM, hostInfo.system.memLimitMB).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parsectl.uri import redact

REMOTE_COMMAND = ("cat /proc/meminfo; echo @@; (nproc 2>/dev/null || getconf _NPROCESSORS_ONLN); echo @@; "
                  "(cat /sys/fs/cgroup/memory.max 2>/dev/null || "
                  "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || true)")
_NO_LIMIT = 1 << 60  # cgroup v1 reports "no limit" as a huge number


class FactsError(RuntimeError):
    """Host facts could not be read; the message says why and what to do."""


@dataclass
class HostFacts:
    ram_gb: float
    cores: int
    source: str
    notes: list[str] = field(default_factory=list)


def parse_meminfo(text: str) -> float:
    """MemTotal in GB (GiB, as mongod counts)."""
    m = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    if not m:
        raise FactsError("no MemTotal line in /proc/meminfo")
    return int(m.group(1)) / (1024 * 1024)


def parse_cgroup_limit(text: str) -> float | None:
    """A cgroup memory limit in GB, or None when there is none."""
    value = text.strip()
    if not value or value == "max" or not value.isdigit():
        return None
    limit = int(value)
    if limit <= 0 or limit >= _NO_LIMIT:
        return None
    return limit / (1024 ** 3)


def _combine(meminfo: str, cores_text: str, cgroup: str, source: str) -> HostFacts:
    ram = parse_meminfo(meminfo)
    notes: list[str] = []
    limit = parse_cgroup_limit(cgroup)
    if limit is not None and limit < ram:
        notes.append(f"cgroup memory limit {limit:.2f} GB is below MemTotal {ram:.2f} GB; using the limit")
        ram = limit
    try:
        cores = int(cores_text.strip().splitlines()[0])
    except (ValueError, IndexError) as exc:
        raise FactsError(f"could not read the core count from {source}: {cores_text.strip()!r}") from exc
    return HostFacts(round(ram, 2), cores, source, notes)


def parse_remote_output(output: str, source: str) -> HostFacts:
    parts = output.split("@@\n")
    if len(parts) < 2:
        raise FactsError(f"unexpected output from {source}: {output[:200]!r}")
    return _combine(parts[0], parts[1], parts[2] if len(parts) > 2 else "", source)


def local_facts(root: str = "/") -> HostFacts:
    base = Path(root)
    try:
        meminfo = (base / "proc/meminfo").read_text()
    except OSError as exc:
        raise FactsError(f"cannot read {base / 'proc/meminfo'}: {exc.strerror}; give --ram and --cores") from exc
    cgroup = ""
    for candidate in ("sys/fs/cgroup/memory.max", "sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            cgroup = (base / candidate).read_text()
            break
        except OSError:
            continue
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return _combine(meminfo, str(cores), cgroup, "this machine")


def parse_target(target: str) -> tuple[str | None, str, int]:
    """``user@host[:port]`` (``[v6addr]:port`` for IPv6) as (user, host, port)."""
    m = re.fullmatch(r"(?:(?P<user>[^@\s]+)@)?(?:\[(?P<v6>[0-9A-Fa-f:.%]+)\]|(?P<host>[^:@\s\[\]]+))"
                     r"(?::(?P<port>\d{1,5}))?", target.strip())
    if not m:
        raise FactsError(f"cannot read SSH target {target!r}: use user@host or user@host:port")
    port = int(m.group("port") or 22)
    if not 1 <= port <= 65535:
        raise FactsError(f"SSH port {port} is outside 1-65535")
    return m.group("user"), m.group("v6") or m.group("host"), port


def remote_facts(target: str, *, key_filename: str | None = None, known_hosts: str | None = None,
                 timeout: float = 10.0) -> HostFacts:
    """RAM and cores of ``user@host[:port]`` over SSH (parsectl.ssh). Unknown host keys are refused."""
    from parsectl.ssh import SSHError, Target, connect

    user, host, port = parse_target(target)
    ssh_target = Target(host, port=port, user=user, key_file=key_filename, known_hosts=known_hosts,
                        timeout=timeout, retries=0)
    try:
        with connect(ssh_target) as session:
            result = session.run(REMOTE_COMMAND, check=False, timeout=timeout)
    except SSHError as exc:
        raise FactsError(str(exc)) from exc
    if result.exit_code != 0 and not result.stdout:
        raise FactsError(f"reading facts on {host} failed: {result.stderr[:200]}")
    return parse_remote_output(result.stdout, f"{user + '@' if user else ''}{host}:{port}")


def rate_from_oplog(first_ts: int, last_ts: int, size_bytes: int) -> float:
    """MB per hour: the oplog's data size over the time its entries span (as rs.printReplicationInfo())."""
    span = last_ts - first_ts
    if span < 60:
        raise FactsError(f"the oplog spans only {span} s; measure again once it holds at least a few minutes "
                         "of writes, or give --write-rate")
    return round(size_bytes / (1024 * 1024) / (span / 3600), 2)


def measure_write_rate(uri: str, *, client: Any = None, timeout_ms: int = 5000) -> float:
    """The write rate in MB/h of a running replica-set member, from local.oplog.rs."""
    own = client is None
    if own:
        from pymongo import MongoClient

        options: dict[str, Any] = {"directConnection": True}
        if "serverselectiontimeoutms" not in uri.lower():  # the URI's own setting wins
            options["serverSelectionTimeoutMS"] = timeout_ms
        client = MongoClient(uri, **options)
    try:
        local = client["local"]
        first = local["oplog.rs"].find_one({}, sort=[("$natural", 1)], projection={"ts": 1})
        last = local["oplog.rs"].find_one({}, sort=[("$natural", -1)], projection={"ts": 1})
        if not first or not last:
            raise FactsError("the server has no oplog (local.oplog.rs): is it a replica-set member?")
        stats = local.command("collStats", "oplog.rs")
        return rate_from_oplog(first["ts"].time, last["ts"].time, int(stats["size"]))
    except FactsError:
        raise
    except Exception as exc:  # pymongo's errors: unreachable, auth, not a replica set
        raise FactsError(f"cannot measure the oplog at {redact(uri)}: {exc}") from exc
    finally:
        if own:
            client.close()
