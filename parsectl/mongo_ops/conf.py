"""mongod.conf for Parse workloads: generate (with the rule behind every value) and check.

Pure: inputs in, a config document, reasons and findings out. No files, no network, no clock.
The provisioning code reuses ``generate`` and ``check``; the CLI (parsectl.cli.mongod_conf) is a thin shell.

Sources for the rules (see docs/mongod-conf.md for the table):
- MongoDB manual: configuration file options, the option-mapping changelog (journal.enabled removed in
  6.1, MMAPv1 options removed in 4.2, SSL options renamed to TLS in 4.2), WiredTiger memory use, the
  replica-set oplog page (default 5% of free disk, 990 MB .. 50 GB).
- Percona Server for MongoDB docs: Percona Memory Engine (inMemorySizeGB default), the RocksDB timeline
  (supported 3.0-3.4, deprecated 3.6, removed 4.0).
- mongo-rocks ``rocks_global_options.cpp`` / ``rocks_engine.cpp``: storage.rocksdb.* options and defaults.
- Parse guide, MongoRocks chapter: the setParameter values for rocksdb and failIndexKeyTooLong=false.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

SERVERS = ("psmdb", "mongodb")
ENGINES = ("rocksdb", "wiredTiger", "inMemory")
PROFILES = ("parse-default", "write-heavy", "read-heavy")
SERVER_NAMES = {"psmdb": "Percona Server for MongoDB", "mongodb": "MongoDB Community"}

# Release series each flavour ships. MongoDB: the major releases, plus 8.2+ minor releases, which MongoDB
# offers for self-managed deployments from 8.2 on (earlier rapid releases were Atlas-only).
# PSMDB follows the major releases only.
_MAJOR_SERIES = ["3.0", "3.2", "3.4", "3.6", "4.0", "4.2", "4.4", "5.0", "6.0", "7.0", "8.0"]
RELEASE_SERIES: dict[str, list[str]] = {
    "psmdb": list(_MAJOR_SERIES),
    "mongodb": [*_MAJOR_SERIES, "8.2"],
}

DEFAULT_DB_PATH = "/var/lib/mongodb"
DEFAULT_LOG_PATH = "/var/log/mongodb/mongod.log"
MIN_OPLOG_MB = 990
MAX_OPLOG_MB = 1024 * 1024 * 1024  # 1 PB, the option's documented maximum

# The rules cited in --explain, by id. Keep in step with docs/mongod-conf.md.
RULES: dict[str, str] = {
    "wt-cache-3.0": "MongoDB 3.0 manual: WiredTiger cache default = max(50% of RAM, 1 GB), whole GB",
    "wt-cache-3.2": "MongoDB 3.2 manual: WiredTiger cache default = max(60% of RAM - 1 GB, 1 GB), whole GB",
    "wt-cache": "MongoDB manual (3.4+), WiredTiger memory use: default = max(50% of (RAM - 1 GB), 256 MB); "
                "do not set it above the default",
    "inmemory-size": "Percona Memory Engine docs: inMemorySizeGB default = 50% of RAM - 1 GB, not less than 256 MB",
    "rocks-cache": "mongo-rocks rocks_engine.cpp: cacheSizeGB default = 30% of (RAM - 1 GB), whole GB, min 1; "
                   "range 1-10000",
    "rocks-compression": "mongo-rocks rocks_global_options.cpp: compression none|snappy|zlib|lz4|lz4hc, default snappy",
    "rocks-maxwrite": "mongo-rocks: maxWriteMBPerSec 1-1024, default 1024; lowering it reduces read-latency spikes "
                      "during compaction",
    "rocks-versions": "PSMDB release notes: MongoRocks in PSMDB 3.0 (not production-ready), 3.2-3.4 supported, "
                      "3.6 deprecated, 4.0 removed",
    "engine": "Engine matrix: wiredTiger from 3.0 (default from 3.2); inMemory in PSMDB 3.2.8+ and MongoDB "
              "Enterprise, not Community; rocksdb in PSMDB 3.0-3.6 only",
    "yield": "Parse guide (MongoRocks): internalQueryExecYieldPeriodMS=1000, internalQueryExecYieldIterations=100000; "
             "RocksDB locks per document, so frequent yielding to writers is unnecessary",
    "fiktl": "Parse guide: failIndexKeyTooLong=false (hosted Parse indexed values over the 1024-byte key limit); "
             "MongoDB: deprecated in 4.2, removed in 4.4",
    "journal": "MongoDB manual: journaling; cannot be disabled on WiredTiger replica-set members (4.0+); "
               "storage.journal.enabled removed in 6.1 (always on)",
    "journal-inmemory": "Percona Memory Engine / MongoDB in-memory engine: no on-disk journal (data is not persisted)",
    "oplog-size": "MongoDB replica-set oplog: the oplog must hold the wanted window of writes; "
                  "990 MB is the smallest size (replSetResizeOplog minimum)",
    "oplog-default": "MongoDB replica-set oplog: default 5% of free disk (in-memory: 5% of RAM), "
                     "at least 990 MB, at most 50 GB",
    "dbpath": "strata/Parse guide: set dbPath explicitly and absolute (backup tools read it via getCmdLineOpts)",
    "bind": "MongoDB 3.6+ binds to localhost by default; replica-set members must also listen on a private IP",
    "tls": "MongoDB 4.2 renamed net.ssl.* to net.tls.* (ssl names are deprecated aliases); "
           "earlier versions only know net.ssl.*",
    "auth": "MongoDB security checklist: enable access control; keyFile gives internal authentication "
            "between members and implies authorization",
    "log": "MongoDB packages: log to /var/log/mongodb/mongod.log, append across restarts",
    "fork": "Packaged systemd units run mongod in the foreground (processManagement.fork: false)",
    "replset": "Parse guide: run a replica set of at least three members in separate zones",
    "port": "MongoDB default port 27017",
}


class ConfError(ValueError):
    """Impossible inputs. The message names the nearest valid choice."""


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> Version:
        m = re.fullmatch(r"\s*v?(\d+)\.(\d+)(?:\.(\d+|x))?(?:[-.][0-9A-Za-z.]+)?\s*", str(text))
        if not m:
            raise ConfError(f"unknown version {text!r}: give a release series such as 3.4, 4.2 or 8.0")
        return cls(int(m.group(1)), int(m.group(2)))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    def at_least(self, text: str) -> bool:
        return self >= Version.parse(text)


def _nearest_series(server: str, version: Version) -> str:
    series = [Version.parse(s) for s in RELEASE_SERIES[server]]
    lower = [s for s in series if s <= version]
    return str(lower[-1] if lower else series[0])


def parse_version(server: str, text: str) -> Version:
    """A release series the flavour ships, or ConfError naming the nearest one."""
    if server not in SERVERS:
        raise ConfError(f"unknown server {server!r}: choose psmdb or mongodb")
    version = Version.parse(text)
    if str(version) not in RELEASE_SERIES[server]:
        known = ", ".join(RELEASE_SERIES[server])
        raise ConfError(f"{SERVER_NAMES[server]} has no {version} release series for self-managed servers "
                        f"(known: {known}); nearest: --version {_nearest_series(server, version)}")
    return version


@dataclass
class Inputs:
    server: str = "psmdb"
    version: str = "8.0"
    engine: str = "wiredTiger"
    ram_gb: float = 0.0
    cores: int = 0
    profile: str = "parse-default"
    db_path: str = DEFAULT_DB_PATH
    log_path: str = DEFAULT_LOG_PATH
    repl_set: str | None = "rs0"
    bind_ip: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    port: int = 27017
    tls_cert_key_file: str | None = None
    tls_ca_file: str | None = None
    key_file: str | None = None
    oplog_window_hours: float | None = None
    write_rate_mb_per_hour: float | None = None
    write_rate_source: str = "--write-rate"


@dataclass
class Setting:
    path: str          # dotted YAML path
    value: Any
    reason: str        # why this value, with the arithmetic
    rule: str          # the documented rule (RULES id)
    written: bool = True  # False: deliberately left out of the file (the reason says why)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "value": self.value, "reason": self.reason, "rule": self.rule,
                "source": RULES.get(self.rule, self.rule), "written": self.written}


@dataclass
class Generated:
    inputs: Inputs
    version: Version
    document: dict[str, Any]
    settings: list[Setting]
    warnings: list[str]

    def yaml_body(self) -> str:
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        return yaml.dump(self.document, Dumper=dumper, sort_keys=False, default_flow_style=False, width=1000)

    def as_dict(self) -> dict[str, Any]:
        return {"server": self.inputs.server, "version": str(self.version), "engine": self.inputs.engine,
                "profile": self.inputs.profile, "ram_gb": self.inputs.ram_gb, "cores": self.inputs.cores,
                "document": self.document, "settings": [s.as_dict() for s in self.settings],
                "warnings": list(self.warnings)}


# ---------------------------------------------------------------------------------------------------------
# The version/engine matrix


def check_matrix(server: str, version: Version, engine: str) -> list[str]:
    """Warnings for a possible combination; ConfError (with the nearest valid choice) for an impossible one."""
    if engine not in ENGINES:
        lowered = {e.lower(): e for e in ENGINES}
        hint = f"; did you mean {lowered[engine.lower()]}?" if engine.lower() in lowered else ""
        raise ConfError(f"unknown storage engine {engine!r}: choose rocksdb, wiredTiger or inMemory{hint}")
    warnings: list[str] = []
    if engine == "rocksdb":
        if server != "psmdb":
            raise ConfError("rocksdb (MongoRocks) ships only in Percona Server for MongoDB 3.0-3.6, not in "
                            "MongoDB Community; nearest valid choice: --server psmdb --version 3.4 --engine rocksdb, "
                            "or keep --server mongodb with --engine wiredTiger")
        if version >= Version(4, 0):
            raise ConfError(f"rocksdb was removed in Percona Server for MongoDB 4.0 (you asked for {version}); "
                            "nearest valid choice: --version 3.6 --engine rocksdb (deprecated) or 3.4 (supported), "
                            f"or --version {version} --engine wiredTiger")
        if version == Version(3, 0):
            warnings.append("PSMDB 3.0's MongoRocks was not yet production-ready (3.0.x release notes); "
                            "prefer --version 3.4")
        if version == Version(3, 6):
            warnings.append("rocksdb is deprecated in PSMDB 3.6: the feature compatibility version stays at 3.4 "
                            "(no retryable writes, no causal consistency) and mongod refuses rocksdb unless it "
                            "is explicitly enabled (see the 3.6 MongoRocks page); prefer 3.4, or wiredTiger")
    if engine == "inMemory":
        if server != "psmdb":
            raise ConfError("the inMemory engine is in MongoDB Enterprise and Percona Server for MongoDB, not in "
                            "MongoDB Community; nearest valid choice: --server psmdb --engine inMemory")
        if version < Version(3, 2):
            raise ConfError("Percona Memory Engine (inMemory) arrived in PSMDB 3.2.8; nearest valid choice: "
                            "--version 3.2 --engine inMemory")
        warnings.append("inMemory keeps no data on disk: every member that restarts loses its data and must "
                        "resync; run it only in a replica set with on-disk members")
    return warnings


# ---------------------------------------------------------------------------------------------------------
# Sizing rules (each returns the value and the arithmetic as text)


def _floor2(x: float) -> float:
    return math.floor(x * 100 + 1e-9) / 100


def _fmt(x: float) -> str:
    return f"{x:g}"


def wiredtiger_cache_gb(ram_gb: float, version: Version) -> tuple[float | int, str, str]:
    if version < Version(3, 2):
        value = max(int(math.floor(0.5 * ram_gb + 1e-9)), 1)
        return value, f"max(50% x {_fmt(ram_gb)} GB, 1 GB) = {value} GB (whole GB before 3.4)", "wt-cache-3.0"
    if version < Version(3, 4):
        value = max(int(math.floor(0.6 * ram_gb - 1 + 1e-9)), 1)
        return value, f"max(60% x {_fmt(ram_gb)} GB - 1 GB, 1 GB) = {value} GB (whole GB before 3.4)", "wt-cache-3.2"
    value = max(_floor2(0.5 * (ram_gb - 1)), 0.25)
    return value, f"max(50% x ({_fmt(ram_gb)} GB - 1 GB), 0.25 GB) = {_fmt(value)} GB", "wt-cache"


def inmemory_size_gb(ram_gb: float) -> tuple[float, str, str]:
    value = max(_floor2(0.5 * ram_gb - 1), 0.25)
    return value, f"max(50% x {_fmt(ram_gb)} GB - 1 GB, 0.25 GB) = {_fmt(value)} GB", "inmemory-size"


def rocksdb_cache_gb(ram_gb: float) -> tuple[int, str, str]:
    value = max(int(math.floor(0.3 * (ram_gb - 1) + 1e-9)), 1)
    return value, f"max(floor(30% x ({_fmt(ram_gb)} GB - 1 GB)), 1) = {value} GB", "rocks-cache"


def oplog_size_mb(window_hours: float, rate_mb_per_hour: float) -> tuple[int, str]:
    needed = window_hours * rate_mb_per_hour
    value = min(max(int(math.ceil(needed - 1e-9)), MIN_OPLOG_MB), MAX_OPLOG_MB)
    text = f"{_fmt(window_hours)} h x {_fmt(rate_mb_per_hour)} MB/h = {_fmt(round(needed, 2))} MB"
    if value == MIN_OPLOG_MB and needed < MIN_OPLOG_MB:
        text += f", raised to the {MIN_OPLOG_MB} MB minimum"
    elif value != needed:
        text += f", rounded up to {value} MB"
    return value, text


# ---------------------------------------------------------------------------------------------------------
# Generation


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    node = doc
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _validate_inputs(inp: Inputs) -> Version:
    if inp.server not in SERVERS:
        raise ConfError(f"unknown server {inp.server!r}: choose psmdb or mongodb")
    version = parse_version(inp.server, inp.version)
    if inp.profile not in PROFILES:
        raise ConfError(f"unknown profile {inp.profile!r}: choose {', '.join(PROFILES)}")
    if not isinstance(inp.ram_gb, int | float) or not math.isfinite(inp.ram_gb) or inp.ram_gb <= 0:
        raise ConfError(f"impossible RAM {inp.ram_gb!r} GB: give the host's memory, e.g. --ram 64GB")
    if inp.ram_gb < 0.5:
        raise ConfError(f"{_fmt(inp.ram_gb)} GB of RAM is too little for mongod; give at least 0.5 GB")
    if inp.ram_gb > 1024 * 1024:
        raise ConfError(f"impossible RAM {_fmt(inp.ram_gb)} GB (more than 1 PB); give it in GB, e.g. --ram 64GB")
    if not isinstance(inp.cores, int) or inp.cores < 1 or inp.cores > 100000:
        raise ConfError(f"impossible core count {inp.cores!r}: give at least 1, e.g. --cores 8")
    for label, path in (("--db-path", inp.db_path), ("--log-path", inp.log_path),
                        ("--key-file", inp.key_file), ("--tls-cert", inp.tls_cert_key_file),
                        ("--tls-ca", inp.tls_ca_file)):
        if path is not None and not str(path).startswith("/"):
            raise ConfError(f"{label} must be an absolute path (got {path!r})")
    if inp.tls_ca_file and not inp.tls_cert_key_file:
        raise ConfError("--tls-ca needs --tls-cert (the server's certificate and key PEM file)")
    if not 1 <= inp.port <= 65535:
        raise ConfError(f"port {inp.port} is outside 1-65535")
    if inp.repl_set is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", inp.repl_set):
        raise ConfError(f"replica set name {inp.repl_set!r}: use letters, digits, '_', '.', '-'")
    if not inp.bind_ip:
        raise ConfError("give at least one bind address (e.g. --bind-ip 127.0.0.1)")
    for addr in inp.bind_ip:
        if not re.fullmatch(r"[A-Za-z0-9_.:%/-]+", addr):
            raise ConfError(f"bind address {addr!r} is not an IP address, host name or socket path")
    if inp.oplog_window_hours is not None and not (0 < inp.oplog_window_hours <= 24 * 3650):
        raise ConfError(f"oplog window {inp.oplog_window_hours!r} h: give a positive duration, e.g. 72h")
    if inp.write_rate_mb_per_hour is not None and not (0 < inp.write_rate_mb_per_hour < 1e12):
        raise ConfError(f"write rate {inp.write_rate_mb_per_hour!r} MB/h: give a positive rate, e.g. 500MB/h")
    return version


def generate(inp: Inputs) -> Generated:
    """The mongod.conf document for these inputs, with a reason for every value."""
    version = _validate_inputs(inp)
    warnings = check_matrix(inp.server, version, inp.engine)
    doc: dict[str, Any] = {}
    settings: list[Setting] = []

    def put(path: str, value: Any, reason: str, rule: str) -> None:
        _set(doc, path, value)
        settings.append(Setting(path, value, reason, rule))

    def omit(path: str, reason: str, rule: str) -> None:
        settings.append(Setting(path, None, reason, rule, written=False))

    ram = float(inp.ram_gb)
    # storage
    put("storage.dbPath", inp.db_path, "explicit absolute data directory", "dbpath")
    if inp.engine == "inMemory":
        omit("storage.journal.enabled", "the in-memory engine keeps no on-disk journal", "journal-inmemory")
    elif version >= Version(6, 1):
        omit("storage.journal.enabled", f"journaling is always on from 6.1 and the key was removed (this is "
             f"{version})", "journal")
    else:
        put("storage.journal.enabled", True,
            f"journaling on (crash recovery); the key exists until 6.1 and this is {version}", "journal")
    put("storage.engine", inp.engine, f"--engine {inp.engine}, available in {SERVER_NAMES[inp.server]} {version}",
        "rocks-versions" if inp.engine == "rocksdb" else "engine")
    if inp.engine == "rocksdb":
        value, text, rule = rocksdb_cache_gb(ram)
        put("storage.rocksdb.cacheSizeGB", value, text, rule)
        put("storage.rocksdb.compression", "snappy",
            "snappy: the engine's default, cheap on CPU (MongoRocks already spends more CPU than MMAPv1 on "
            "compression, per the Parse guide)", "rocks-compression")
        if inp.profile == "read-heavy":
            put("storage.rocksdb.maxWriteMBPerSec", 256,
                "read-heavy profile: throttle compaction writes to 256 MB/s (parsectl's starting point, a quarter "
                "of the maximum) to smooth read latency", "rocks-maxwrite")
        else:
            put("storage.rocksdb.maxWriteMBPerSec", 1024,
                f"{inp.profile} profile: the default and maximum, so compaction keeps up with writes",
                "rocks-maxwrite")
    elif inp.engine == "wiredTiger":
        value, text, rule = wiredtiger_cache_gb(ram, version)
        put("storage.wiredTiger.engineConfig.cacheSizeGB", value,
            f"{text}; written out so the size stays right under a container limit; every profile keeps the "
            "default because MongoDB advises against exceeding it", rule)
    else:
        value, text, rule = inmemory_size_gb(ram)
        put("storage.inMemory.engineConfig.inMemorySizeGB", value, text, rule)
        if version < Version(6, 1):
            warnings.append("the inMemory engine ignores journaling; no storage.journal key was written")
    # systemLog
    put("systemLog.destination", "file", "log to a file, rotated by logrotate", "log")
    put("systemLog.path", inp.log_path, "the packages' log location", "log")
    put("systemLog.logAppend", True, "keep the log across restarts", "log")
    # net
    put("net.port", inp.port, "the port the replica set and Parse Server connect to", "port")
    bind = ",".join(inp.bind_ip)
    put("net.bindIp", bind, "listen on these addresses only (localhost plus any private IPs you gave)", "bind")
    if inp.repl_set and all(a in ("127.0.0.1", "localhost", "::1") for a in inp.bind_ip):
        warnings.append("bindIp has only loopback addresses: other replica-set members cannot reach this one; "
                        "add the host's private IP with --bind-ip")
    if inp.tls_cert_key_file:
        if version >= Version(4, 2):
            put("net.tls.mode", "requireTLS", f"TLS only; {version} uses the net.tls names", "tls")
            put("net.tls.certificateKeyFile", inp.tls_cert_key_file, "server certificate and key (PEM)", "tls")
            if inp.tls_ca_file:
                put("net.tls.CAFile", inp.tls_ca_file, "CA that signed client and member certificates", "tls")
        else:
            put("net.ssl.mode", "requireSSL", f"TLS only; {version} predates the net.tls names (4.2)", "tls")
            put("net.ssl.PEMKeyFile", inp.tls_cert_key_file, "server certificate and key (PEM)", "tls")
            if inp.tls_ca_file:
                put("net.ssl.CAFile", inp.tls_ca_file, "CA that signed client and member certificates", "tls")
    # replication
    if inp.repl_set:
        put("replication.replSetName", inp.repl_set, "replica set (Parse guide: three members or more)", "replset")
        if inp.oplog_window_hours is not None and inp.write_rate_mb_per_hour is not None:
            value, text = oplog_size_mb(inp.oplog_window_hours, inp.write_rate_mb_per_hour)
            put("replication.oplogSizeMB", value,
                f"{text} (window {_fmt(inp.oplog_window_hours)} h, rate from {inp.write_rate_source})", "oplog-size")
            if inp.engine == "inMemory":
                size_gb = inmemory_size_gb(ram)[0]
                if value > size_gb * 1024:
                    warnings.append(f"the oplog ({value} MB) lives in memory and exceeds inMemorySizeGB "
                                    f"({_fmt(size_gb)} GB); shorten the window or add RAM")
        else:
            omit("replication.oplogSizeMB", "no window and write rate given: mongod's default applies (5% of "
                 f"{'RAM' if inp.engine == 'inMemory' else 'free disk'}, 990 MB .. 50 GB)", "oplog-default")
        if inp.oplog_window_hours is not None and inp.write_rate_mb_per_hour is None:
            warnings.append(f"--oplog-window {_fmt(inp.oplog_window_hours)}h needs a write rate (--write-rate MB/h "
                            "or --measure-from mongodb://...); oplogSizeMB was left to mongod's default "
                            "(5% of free disk, 990 MB .. 50 GB), which may hold less than that window")
        elif inp.write_rate_mb_per_hour is not None and inp.oplog_window_hours is None:
            warnings.append("--write-rate without --oplog-window: oplogSizeMB was left to mongod's default")
    elif inp.oplog_window_hours is not None:
        warnings.append("--oplog-window ignored: there is no oplog without a replica set (--repl-set)")
    # security
    if inp.key_file:
        put("security.keyFile", inp.key_file, "internal authentication between members (mode 400, owned by the "
            "mongod user, 6-1024 base64 characters)", "auth")
    put("security.authorization", "enabled", "access control on (create the first user via the localhost "
        "exception)", "auth")
    if inp.repl_set and not inp.key_file:
        warnings.append("a replica set with authorization needs internal authentication: add --key-file "
                        "(or x.509 member certificates)")
    # processManagement
    put("processManagement.fork", False, "runs under systemd in the foreground", "fork")
    # setParameter
    if inp.engine == "rocksdb":
        put("setParameter.internalQueryExecYieldPeriodMS", 1000,
            "the seed's value (3.x default 10 ms)", "yield")
        put("setParameter.internalQueryExecYieldIterations", 100000,
            "the seed's value (3.x default 128)", "yield")
    else:
        omit("setParameter.internalQueryExecYieldPeriodMS", "the seed's yield values are MongoRocks tuning; "
             f"{inp.engine} keeps the server defaults", "yield")
    if version < Version(4, 4):
        note = " (deprecated in 4.2: no effect once featureCompatibilityVersion is 4.2)" \
            if version >= Version(4, 2) else ""
        put("setParameter.failIndexKeyTooLong", False,
            f"Parse requirement: accept index keys over 1024 bytes; {version} still has the parameter{note}", "fiktl")
    else:
        omit("setParameter.failIndexKeyTooLong", f"removed in 4.4 (this is {version}); index keys have no "
             "1024-byte limit any more", "fiktl")
    if inp.engine == "rocksdb" and inp.cores < 4:
        warnings.append(f"{inp.cores} core(s): MongoRocks spends noticeably more CPU than MMAPv1 on compression "
                        "(Parse guide); plan for 4 or more")
    if inp.engine != "rocksdb" and inp.cores < 2:
        warnings.append("1 core: WiredTiger is multithreaded and the production notes plan for at least 2 cores")
    return Generated(inp, version, doc, settings, warnings)


# ---------------------------------------------------------------------------------------------------------
# Checking existing files


@dataclass
class Finding:
    severity: str      # "error" (mongod refuses it or it breaks Parse), "warning" (works, but wrong), "note"
    path: str          # dotted path, or "" for the whole file
    line: int | None
    message: str
    fix: str

    def as_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "path": self.path, "line": self.line, "message": self.message,
                "fix": self.fix}


@dataclass(frozen=True)
class _Key:
    kind: str                      # "section", "open" (children unchecked), "str", "bool", "int", "num", "enum"
    since: str | None = None       # first version that accepts it
    until: str | None = None       # first version that rejects it
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    note: str = ""


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_S = _Key("section")
_O = _Key("open")
SCHEMA: dict[str, _Key] = {
    "storage": _S,
    "storage.dbPath": _Key("str"),
    "storage.journal": _Key("section", until="6.1"),
    "storage.journal.enabled": _Key("bool", until="6.1", note="journaling is always on from 6.1"),
    "storage.journal.commitIntervalMs": _Key("int", low=1, high=500),
    "storage.engine": _Key("enum", choices=("wiredTiger", "inMemory", "rocksdb", "mmapv1", "PerconaFT")),
    "storage.directoryPerDB": _Key("bool"),
    "storage.syncPeriodSecs": _Key("num", low=0),
    "storage.indexBuildRetry": _Key("bool", until="4.4"),
    "storage.repairPath": _Key("str", until="4.2"),
    "storage.oplogMinRetentionHours": _Key("num", since="4.4", low=0),
    "storage.mmapv1": _Key("open", until="4.2", note="MMAPv1 was removed in 4.2"),
    "storage.rocksdb": _Key("section", until="4.0", note="rocksdb was removed in PSMDB 4.0"),
    "storage.rocksdb.cacheSizeGB": _Key("int", until="4.0", low=1, high=10000),
    "storage.rocksdb.compression": _Key("enum", until="4.0", choices=("none", "snappy", "zlib", "lz4", "lz4hc")),
    "storage.rocksdb.maxWriteMBPerSec": _Key("int", until="4.0", low=1, high=1024),
    "storage.rocksdb.configString": _Key("str", until="4.0"),
    "storage.rocksdb.crashSafeCounters": _Key("bool", until="4.0"),
    "storage.rocksdb.counters": _Key("bool", until="4.0"),
    "storage.rocksdb.singleDeleteIndex": _Key("bool", until="4.0"),
    "storage.wiredTiger": _S,
    "storage.wiredTiger.engineConfig": _S,
    "storage.wiredTiger.engineConfig.cacheSizeGB": _Key("num", low=0.25, high=10000),
    "storage.wiredTiger.engineConfig.cacheSizePct": _Key("num", since="8.2", low=0.25, high=80),
    "storage.wiredTiger.engineConfig.journalCompressor": _Key("enum", choices=("none", "snappy", "zlib", "zstd")),
    "storage.wiredTiger.engineConfig.directoryForIndexes": _Key("bool"),
    "storage.wiredTiger.engineConfig.maxCacheOverflowFileSizeGB": _Key("num", since="4.0", until="4.4"),
    "storage.wiredTiger.engineConfig.zstdCompressionLevel": _Key("int", since="5.0", low=1, high=22),
    "storage.wiredTiger.engineConfig.configString": _Key("str"),
    "storage.wiredTiger.collectionConfig": _S,
    "storage.wiredTiger.collectionConfig.blockCompressor": _Key("enum", choices=("none", "snappy", "zlib", "zstd")),
    "storage.wiredTiger.indexConfig": _S,
    "storage.wiredTiger.indexConfig.prefixCompression": _Key("bool"),
    "storage.inMemory": _Key("section", since="3.2"),
    "storage.inMemory.engineConfig": _Key("section", since="3.2"),
    "storage.inMemory.engineConfig.inMemorySizeGB": _Key("num", since="3.2", low=0.25, high=10000),
    "storage.inMemory.engineConfig.statisticsLogDelaySecs": _Key("int", since="3.2", low=0),
    "systemLog": _S,
    "systemLog.destination": _Key("enum", choices=("file", "syslog")),
    "systemLog.path": _Key("str"),
    "systemLog.logAppend": _Key("bool"),
    "systemLog.logRotate": _Key("enum", choices=("rename", "reopen")),
    "systemLog.verbosity": _Key("int", low=0, high=5),
    "systemLog.quiet": _Key("bool"),
    "systemLog.traceAllExceptions": _Key("bool"),
    "systemLog.syslogFacility": _Key("str"),
    "systemLog.timeStampFormat": _Key("enum", choices=("iso8601-utc", "iso8601-local", "ctime")),
    "systemLog.component": _O,
    "net": _S,
    "net.port": _Key("int", low=0, high=65535),
    "net.bindIp": _Key("str"),
    "net.bindIpAll": _Key("bool", since="3.6"),
    "net.maxIncomingConnections": _Key("int", low=1),
    "net.wireObjectCheck": _Key("bool"),
    "net.ipv6": _Key("bool"),
    "net.unixDomainSocket": _O,
    "net.compression": _O,
    "net.serviceExecutor": _Key("str", since="3.6", until="5.0"),
    "net.http": _Key("open", until="3.6", note="the HTTP interface was removed in 3.6"),
    "net.ssl": _Key("open", note="deprecated from 4.2: use net.tls"),
    "net.tls": _Key("section", since="4.2"),
    "net.tls.mode": _Key("enum", since="4.2", choices=("disabled", "allowTLS", "preferTLS", "requireTLS")),
    "net.tls.certificateKeyFile": _Key("str", since="4.2"),
    "net.tls.certificateKeyFilePassword": _Key("str", since="4.2"),
    "net.tls.certificateSelector": _Key("str", since="4.2"),
    "net.tls.clusterFile": _Key("str", since="4.2"),
    "net.tls.clusterPassword": _Key("str", since="4.2"),
    "net.tls.CAFile": _Key("str", since="4.2"),
    "net.tls.clusterCAFile": _Key("str", since="4.2"),
    "net.tls.CRLFile": _Key("str", since="4.2"),
    "net.tls.allowConnectionsWithoutCertificates": _Key("bool", since="4.2"),
    "net.tls.allowInvalidCertificates": _Key("bool", since="4.2"),
    "net.tls.allowInvalidHostnames": _Key("bool", since="4.2"),
    "net.tls.disabledProtocols": _Key("str", since="4.2"),
    "net.tls.FIPSMode": _Key("bool", since="4.2"),
    "net.tls.logVersions": _Key("str", since="4.2"),
    "replication": _S,
    "replication.replSetName": _Key("str"),
    "replication.oplogSizeMB": _Key("int", low=MIN_OPLOG_MB, high=MAX_OPLOG_MB),
    "replication.enableMajorityReadConcern": _Key("bool", since="3.2"),
    "replication.secondaryIndexPrefetch": _Key("enum", until="4.2", choices=("none", "_id_only", "all")),
    "security": _S,
    "security.keyFile": _Key("str"),
    "security.authorization": _Key("enum", choices=("enabled", "disabled")),
    "security.clusterAuthMode": _Key("enum", choices=("keyFile", "sendKeyFile", "sendX509", "x509")),
    "security.transitionToAuth": _Key("bool", since="3.4"),
    "security.javascriptEnabled": _Key("bool"),
    "security.redactClientLogData": _Key("bool"),
    "security.clusterIpSourceAllowlist": _O,
    "security.clusterIpSourceWhitelist": _O,
    "security.enableEncryption": _Key("bool"),
    "security.encryptionKeyFile": _Key("str"),
    "security.encryptionCipherMode": _Key("str"),
    "security.vault": _O,
    "security.kmip": _O,
    "security.sasl": _O,
    "security.ldap": _O,
    "processManagement": _S,
    "processManagement.fork": _Key("bool"),
    "processManagement.pidFilePath": _Key("str"),
    "processManagement.timeZoneInfo": _Key("str", since="3.6"),
    "operationProfiling": _S,
    "operationProfiling.mode": _Key("enum", choices=("off", "slowOp", "all")),
    "operationProfiling.slowOpThresholdMs": _Key("int", low=0),
    "operationProfiling.slowOpSampleRate": _Key("num", since="3.6", low=0, high=1),
    "operationProfiling.filter": _Key("str", since="4.4"),
    "setParameter": _O,
    "sharding": _O,
    "auditLog": _O,
    "cloud": _O,
    "snmp": _O,
}

_LEAVES: dict[str, list[str]] = {}
for _path in SCHEMA:
    _LEAVES.setdefault(_path.rsplit(".", 1)[-1].lower(), []).append(_path)

_INI_LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(?P<value>.*?)\s*$")
_SSL_TO_TLS = {"mode": "mode", "PEMKeyFile": "certificateKeyFile", "PEMKeyPassword": "certificateKeyFilePassword",
               "clusterFile": "clusterFile", "clusterPassword": "clusterPassword", "CAFile": "CAFile",
               "clusterCAFile": "clusterCAFile", "CRLFile": "CRLFile",
               "allowConnectionsWithoutCertificates": "allowConnectionsWithoutCertificates",
               "allowInvalidCertificates": "allowInvalidCertificates",
               "allowInvalidHostnames": "allowInvalidHostnames", "disabledProtocols": "disabledProtocols",
               "FIPSMode": "FIPSMode", "certificateSelector": "certificateSelector"}
_SSL_MODES = {"disabled": "disabled", "allowSSL": "allowTLS", "preferSSL": "preferTLS", "requireSSL": "requireTLS"}


def _ini_fix(key: str, value: str) -> str:
    if key == "setParameter" and "=" in value:
        name, _, val = value.partition("=")
        return f"one setParameter map for all parameters:\nsetParameter:\n  {name.strip()}: {_yaml_scalar(val.strip())}"
    return f"{key}: {_yaml_scalar(value)}  (under its YAML section; see the mongod option mapping)"


def _yaml_scalar(text: str) -> str:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, bool):
        return "true" if value else "false"
    return text


class _Located:
    """Line numbers per dotted path, and duplicate keys, from PyYAML's node graph."""

    def __init__(self) -> None:
        self.lines: dict[str, int] = {}
        self.duplicates: list[tuple[str, int]] = []

    def walk(self, node: yaml.Node, prefix: str = "") -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            path = f"{prefix}.{key}" if prefix else key
            line = key_node.start_mark.line + 1
            if key in seen:
                self.duplicates.append((path, line))
            seen.add(key)
            self.lines.setdefault(path, line)
            self.walk(value_node, path)


def _flatten(doc: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in doc.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        out.append((path, value))
        if isinstance(value, dict) and not (path in SCHEMA and SCHEMA[path].kind == "open"):
            out.extend(_flatten(value, path))
    return out


def _get(doc: dict[str, Any], path: str, default: Any = None) -> Any:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _type_ok(spec: _Key, value: Any) -> bool:
    if spec.kind in ("section", "open"):
        return isinstance(value, dict)
    if spec.kind == "str":
        return isinstance(value, str)
    if spec.kind == "bool":
        return isinstance(value, bool)
    if spec.kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if spec.kind == "num":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if spec.kind == "enum":
        return value in spec.choices
    return True


def check(text: str, version: str | None = None, *, server: str | None = None) -> list[Finding]:
    """Problems in a mongod.conf: YAML syntax, INI lines inside YAML, unknown or misplaced keys, values out of
    range, settings the version does not support, and the seed's requirements for Parse. Each with a fix."""
    findings: list[Finding] = []
    ver: Version | None = Version.parse(version) if version else None

    def add(severity: str, path: str, line: int | None, message: str, fix: str) -> None:
        findings.append(Finding(severity, path, line, message, fix))

    # 1. Lines in the pre-2.6 INI format ("key = value"). mongod reads a file as YAML when it has any YAML
    # mapping, and then rejects the INI lines; a YAML file with them does not parse.
    lines = text.splitlines()
    ini_lines: list[int] = []
    yaml_lines = 0
    for index, raw in enumerate(lines):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _INI_LINE.match(raw)
        if m and ":" not in m.group("key") and not re.match(r"^\s*-", raw):
            ini_lines.append(index)
        elif re.match(r"^\s*[^#\s][^:]*:(\s|$)", raw):
            yaml_lines += 1
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            add("error", "", index + 1, "a tab in the indentation: YAML allows spaces only",
                "indent with spaces")
    ini_params: set[str] = set()
    if ini_lines and yaml_lines:
        for index in ini_lines:
            m = _INI_LINE.match(lines[index])
            assert m is not None
            if m.group("key") == "setParameter":
                ini_params.add(m.group("value").partition("=")[0].strip())
            add("error", m.group("key"), index + 1,
                f"INI line inside a YAML file: {lines[index].strip()!r} (the old 'key = value' format cannot be "
                "mixed with YAML; mongod fails to parse the file)",
                f"write it as YAML: {_ini_fix(m.group('key'), m.group('value'))}")
    elif ini_lines:
        add("error", "", ini_lines[0] + 1,
            "the whole file is in the pre-2.6 INI format ('key = value'); parsectl checks YAML configs",
            "convert it to YAML (MongoDB manual: configuration file settings and command-line options mapping), "
            "or generate one with parsectl mongod-conf")
        return findings

    body = "\n".join("" if i in ini_lines else raw for i, raw in enumerate(lines))
    located = _Located()
    try:
        node = yaml.compose(body, Loader=_LOADER)
        doc = yaml.load(body, Loader=_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        add("error", "", mark.line + 1 if mark else None, f"not valid YAML: {problem}",
            "fix the syntax (two-space indentation, 'key: value', no tabs)")
        return findings
    if node is not None:
        located.walk(node)
    if doc is None:
        add("error", "", None, "the file is empty", "generate one with parsectl mongod-conf")
        return findings
    if not isinstance(doc, dict):
        add("error", "", 1, "the top level must be a mapping of sections (storage:, net:, ...)",
            "start from parsectl mongod-conf's output")
        return findings
    for path, line in located.duplicates:
        add("error", path, line, f"duplicate key {path}: one value silently replaces the other",
            "keep one of them")

    def line_of(path: str) -> int | None:
        return located.lines.get(path)

    # 2. Unknown, misplaced and unsupported keys, wrong types, out-of-range values
    engine = _get(doc, "storage.engine")
    for path, value in _flatten(doc):
        spec = SCHEMA.get(path)
        parent = path.rsplit(".", 1)[0] if "." in path else ""
        if parent and parent in SCHEMA and SCHEMA[parent].kind == "open":
            continue
        if spec is None:
            leaf = path.rsplit(".", 1)[-1]
            homes = sorted((p for p in _LEAVES.get(leaf.lower(), []) if p != path),
                           key=lambda p: str(engine).lower() not in p.lower())
            if homes:
                add("error", path, line_of(path), f"misplaced key {path}: {leaf} belongs under "
                    f"{homes[0].rsplit('.', 1)[0] or 'the top level'}",
                    f"move it to {homes[0]}")
            else:
                add("error", path, line_of(path), f"unknown key {path}: mongod refuses unrecognized options",
                    "remove it or fix its spelling (MongoDB manual: configuration file options)")
            continue
        if ver is not None:
            if spec.until and ver >= Version.parse(spec.until):
                add("error", path, line_of(path), f"{path} is not accepted from {spec.until} on "
                    f"(this is {ver}){': ' + spec.note if spec.note else ''}",
                    _removed_fix(path))
                continue
            if spec.since and ver < Version.parse(spec.since):
                add("error", path, line_of(path), f"{path} arrived in {spec.since}; {ver} does not know it",
                    _since_fix(path))
                continue
        if not _type_ok(spec, value):
            if spec.kind == "enum":
                add("error", path, line_of(path), f"{path}: {value!r} is not one of {', '.join(map(str, spec.choices))}",
                    f"use one of {', '.join(map(str, spec.choices))}")
            else:
                add("error", path, line_of(path), f"{path}: expected {_KIND_NAMES[spec.kind]}, got {value!r}",
                    f"write {_KIND_NAMES[spec.kind]}")
            continue
        if spec.kind in ("int", "num") and (
                (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high)):
            severity = "warning" if path == "replication.oplogSizeMB" else "error"
            add(severity, path, line_of(path), f"{path}: {value} is outside {spec.low:g}..{spec.high:g}"
                if spec.high is not None else f"{path}: {value} is below {spec.low:g}",
                f"use a value in {spec.low:g}..{spec.high:g}" if spec.high is not None else f"use at least {spec.low:g}")

    # 3. Cross-key and version rules
    if ver is not None:
        if _get(doc, "net.ssl") is not None and ver >= Version(4, 2):
            ssl = _get(doc, "net.ssl") or {}
            tls = {(_SSL_TO_TLS.get(k, k)): (_SSL_MODES.get(v, v) if k == "mode" else v) for k, v in ssl.items()}
            add("warning", "net.ssl", line_of("net.ssl"), f"net.ssl.* is deprecated from 4.2 (this is {ver}): "
                "the options were renamed to net.tls.*",
                "rename: net.tls: " + yaml.safe_dump(tls, default_flow_style=True, width=1000).strip())
        if isinstance(engine, str):
            if engine == "rocksdb" and ver >= Version(4, 0):
                add("error", "storage.engine", line_of("storage.engine"),
                    f"storage.engine rocksdb: removed in Percona Server for MongoDB 4.0 (this is {ver})",
                    "use wiredTiger (switch by initial sync of a new member), or run PSMDB 3.4/3.6")
            if engine == "inMemory" and ver < Version(3, 2):
                add("error", "storage.engine", line_of("storage.engine"),
                    f"storage.engine inMemory arrived in PSMDB 3.2 (this is {ver})", "use PSMDB 3.2 or later")
            if engine == "mmapv1" and ver >= Version(4, 2):
                add("error", "storage.engine", line_of("storage.engine"), "MMAPv1 was removed in 4.2",
                    "use wiredTiger")
            if engine == "PerconaFT" and ver >= Version(3, 2):
                add("error", "storage.engine", line_of("storage.engine"), "PerconaFT was removed after PSMDB 3.0",
                    "use wiredTiger or rocksdb")
        if engine == "rocksdb" and ver == Version(3, 6):
            add("note", "storage.engine", line_of("storage.engine"), "rocksdb is deprecated in PSMDB 3.6",
                "stay on 3.4 or move to wiredTiger")
        if server == "mongodb" and engine in ("rocksdb", "inMemory"):
            add("error", "storage.engine", line_of("storage.engine"),
                f"MongoDB Community has no {engine} engine", "use Percona Server for MongoDB, or wiredTiger")
        cache = _get(doc, "storage.wiredTiger.engineConfig.cacheSizeGB")
        if isinstance(cache, float) and not cache.is_integer() and ver < Version(3, 4):
            add("error", "storage.wiredTiger.engineConfig.cacheSizeGB",
                line_of("storage.wiredTiger.engineConfig.cacheSizeGB"),
                f"cacheSizeGB {cache}: before 3.4 the WiredTiger cache is set in whole GB",
                f"use {max(int(cache), 1)}")
        for comp_path in ("storage.wiredTiger.collectionConfig.blockCompressor",
                          "storage.wiredTiger.engineConfig.journalCompressor"):
            if _get(doc, comp_path) == "zstd" and ver < Version(4, 2):
                add("error", comp_path, line_of(comp_path), f"zstd compression arrived in 4.2 (this is {ver})",
                    "use snappy or zlib")
        if _get(doc, "storage.journal.enabled") is False and ver >= Version(4, 0) and engine != "inMemory" \
                and _get(doc, "replication.replSetName"):
            add("error", "storage.journal.enabled", line_of("storage.journal.enabled"),
                "journaling cannot be disabled on a WiredTiger replica-set member (4.0+)", "set it to true")
    if _get(doc, "storage.journal.enabled") is False and not any(f.path == "storage.journal.enabled"
                                                                 for f in findings):
        add("warning", "storage.journal.enabled", line_of("storage.journal.enabled"),
            "journaling is off: a crash can lose acknowledged writes", "set storage.journal.enabled: true")
    if isinstance(engine, str) and engine != "rocksdb" and isinstance(_get(doc, "storage.rocksdb"), dict):
        add("warning", "storage.rocksdb", line_of("storage.rocksdb"),
            f"storage.rocksdb settings are ignored with storage.engine {engine}",
            "remove them, or set storage.engine: rocksdb")
    if isinstance(engine, str) and engine != "wiredTiger" and isinstance(_get(doc, "storage.wiredTiger"), dict):
        add("warning", "storage.wiredTiger", line_of("storage.wiredTiger"),
            f"storage.wiredTiger settings are ignored with storage.engine {engine}",
            f"remove them{', or use storage.inMemory.engineConfig' if engine == 'inMemory' else ''}")
    if isinstance(_get(doc, "storage.rocksdb"), dict) and engine is None:
        add("error", "storage.engine", None, "storage.rocksdb settings without storage.engine: rocksdb "
            "(the default engine is wiredTiger, or mmapv1 before 3.2)", "add storage.engine: rocksdb")
    db_path = _get(doc, "storage.dbPath")
    if db_path is None:
        add("warning", "storage.dbPath", None, "no storage.dbPath: backup tools (strata) read it from "
            "getCmdLineOpts and need it set explicitly", f"add storage.dbPath: {DEFAULT_DB_PATH}")
    elif isinstance(db_path, str) and not db_path.startswith("/"):
        add("error", "storage.dbPath", line_of("storage.dbPath"), f"storage.dbPath {db_path!r} is relative",
            "use an absolute path")
    if _get(doc, "net.bindIp") is not None and _get(doc, "net.bindIpAll") is True:
        add("error", "net.bindIpAll", line_of("net.bindIpAll"), "net.bindIp and net.bindIpAll are exclusive",
            "keep one")
    if _get(doc, "net.tls") is not None and _get(doc, "net.ssl") is not None:
        add("error", "net.ssl", line_of("net.ssl"), "net.ssl and net.tls are both set", "keep net.tls only")

    # 4. setParameter: a YAML map, parameters the version still has, and the seed's requirements for Parse
    params = _get(doc, "setParameter")
    if params is not None and not isinstance(params, dict):
        add("error", "setParameter", line_of("setParameter"), "setParameter must be a YAML map of name: value",
            "setParameter:\n  internalQueryExecYieldPeriodMS: 1000")
        params = None
    params = params or {}
    for name, value in params.items():
        path = f"setParameter.{name}"
        if isinstance(value, dict | list):
            add("error", path, line_of(path), f"{path}: a parameter takes a scalar value", "write name: value")
        if str(name).startswith("rocksdb") and engine != "rocksdb":
            add("error", path, line_of(path), f"{name} exists only with storage.engine rocksdb", "remove it")
    fiktl = params.get("failIndexKeyTooLong")
    if "failIndexKeyTooLong" in params and ver is not None and ver >= Version(4, 4):
        add("error", "setParameter.failIndexKeyTooLong", line_of("setParameter.failIndexKeyTooLong"),
            f"failIndexKeyTooLong was removed in 4.4 (this is {ver}); mongod rejects unknown parameters at startup",
            "remove it: from 4.2 (featureCompatibilityVersion 4.2) index keys have no 1024-byte limit")
    elif ver is not None and ver < Version(4, 4) and fiktl is not False and "failIndexKeyTooLong" not in ini_params:
        add("warning", "setParameter.failIndexKeyTooLong", line_of("setParameter.failIndexKeyTooLong"),
            f"Parse needs failIndexKeyTooLong: false on {ver} (the seed's requirement: Parse data has index "
            "keys over 1024 bytes)", "setParameter:\n  failIndexKeyTooLong: false")
    if fiktl is not None and not isinstance(fiktl, bool):
        add("error", "setParameter.failIndexKeyTooLong", line_of("setParameter.failIndexKeyTooLong"),
            f"failIndexKeyTooLong: {fiktl!r} is not a boolean", "write false")
    if engine == "rocksdb":
        for name, want in (("internalQueryExecYieldPeriodMS", 1000), ("internalQueryExecYieldIterations", 100000)):
            got = params.get(name)
            if got != want and name not in ini_params:
                add("warning", f"setParameter.{name}", line_of(f"setParameter.{name}"),
                    f"{name} is {got!r}; the seed's value for rocksdb is {want}",
                    f"setParameter:\n  {name}: {want}")
    if not _get(doc, "replication.replSetName"):
        add("note", "replication.replSetName", None, "no replica set: Parse's guide runs three members or more",
            "add replication.replSetName")
    findings.sort(key=lambda f: (f.line is None, f.line or 0, f.path))
    return findings


_KIND_NAMES = {"section": "a section (mapping)", "open": "a section (mapping)", "str": "a string",
               "bool": "true or false", "int": "a whole number", "num": "a number", "enum": "one of the choices"}


def _removed_fix(path: str) -> str:
    if path.startswith("storage.journal"):
        return "remove storage.journal: journaling is always on from 6.1"
    if path.startswith("storage.rocksdb"):
        return "use storage.engine wiredTiger (PSMDB 4.0+ has no rocksdb)"
    if path.startswith("storage.mmapv1"):
        return "remove the mmapv1 section (use wiredTiger)"
    if path == "net.http":
        return "remove net.http (the HTTP status interface is gone)"
    return "remove it"


def _since_fix(path: str) -> str:
    if path.startswith("net.tls"):
        leaf = path.rsplit(".", 1)[-1]
        old = {v: k for k, v in _SSL_TO_TLS.items()}.get(leaf, leaf)
        return f"before 4.2 use net.ssl.{old}" + (" (modes allowSSL/preferSSL/requireSSL)" if leaf == "mode" else "")
    if path == "net.bindIpAll":
        return "use net.bindIp: 0.0.0.0 (listen on all interfaces) or list the addresses"
    return "remove it, or upgrade"


# ---------------------------------------------------------------------------------------------------------
# Input parsing shared by the CLI and the provisioner

_SIZE_UNITS = {"": 1.0, "g": 1.0, "gb": 1.0, "gib": 1.0, "m": 1 / 1024, "mb": 1 / 1024, "mib": 1 / 1024,
               "t": 1024.0, "tb": 1024.0, "tib": 1024.0}


def parse_ram_gb(text: str) -> float:
    """'64GB', '64G', '64', '512MB', '1.5TiB' -> GB (1024-based, as mongod counts)."""
    m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ConfError(f"cannot read RAM {text!r}: give it like 64GB, 512MB or 1TB")
    value = float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    if value <= 0:
        raise ConfError(f"impossible RAM {text!r}: a host has more than 0 GB")
    return value


def parse_duration_hours(text: str) -> float:
    """'72h', '3d', '90m', '1w', '72' (hours) -> hours."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(h|hours?|d|days?|m|min|minutes?|w|weeks?|)\s*", str(text).lower())
    if not m:
        raise ConfError(f"cannot read duration {text!r}: give it like 72h, 3d or 90m")
    value = float(m.group(1))
    unit = m.group(2)[:1] if m.group(2) not in ("min", "minute", "minutes") else "m"
    hours = value * {"": 1, "h": 1, "d": 24, "m": 1 / 60, "w": 168}[unit]
    if hours <= 0:
        raise ConfError(f"duration {text!r} must be positive")
    return hours


def parse_rate_mb_per_hour(text: str) -> float:
    """'500', '500MB/h', '2GB/h', '1.5MB/s', '300KB/s' -> MB per hour."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:(kb|mb|gb|k|m|g)?\s*(?:/\s*(h|hr|hour|s|sec|second|m|min|minute|d|day))?)?\s*",
                     str(text).lower())
    if not m:
        raise ConfError(f"cannot read write rate {text!r}: give it like 500MB/h, 2GB/h or 1.5MB/s")
    size = {"kb": 1 / 1024, "k": 1 / 1024, "mb": 1, "m": 1, "gb": 1024, "g": 1024, None: 1}[m.group(2)]
    per = {"h": 1, "hr": 1, "hour": 1, "s": 3600, "sec": 3600, "second": 3600, "m": 60, "min": 60, "minute": 60,
           "d": 1 / 24, "day": 1 / 24, None: 1}[m.group(3)]
    rate = float(m.group(1)) * size * per
    if rate <= 0:
        raise ConfError(f"write rate {text!r} must be positive")
    return rate


def inputs_from_text(text: str, **overrides: Any) -> Inputs:
    """Generation inputs read from an existing mongod.conf (for ``check --diff``); keyword overrides win.
    INI lines are skipped; an unreadable file gives the defaults."""
    body = "\n".join(line for line in text.splitlines() if not _INI_LINE.match(line) or ":" in line.split("=")[0])
    try:
        doc = yaml.safe_load(body)
    except yaml.YAMLError:
        doc = None
    doc = doc if isinstance(doc, dict) else {}
    inp = Inputs()
    engine = _get(doc, "storage.engine")
    if engine in ENGINES:
        inp.engine = engine
    if inp.engine in ("rocksdb", "inMemory"):
        inp.server = "psmdb"
    for attr, path in (("db_path", "storage.dbPath"), ("log_path", "systemLog.path"),
                       ("key_file", "security.keyFile")):
        value = _get(doc, path)
        if isinstance(value, str):
            setattr(inp, attr, value)
    repl = _get(doc, "replication.replSetName")
    inp.repl_set = repl if isinstance(repl, str) else None
    bind = _get(doc, "net.bindIp")
    if isinstance(bind, str) and bind.strip():
        inp.bind_ip = [b.strip() for b in bind.split(",") if b.strip()]
    port = _get(doc, "net.port")
    if isinstance(port, int) and not isinstance(port, bool):
        inp.port = port
    for section, cert_key in (("net.tls", "certificateKeyFile"), ("net.ssl", "PEMKeyFile")):
        cert = _get(doc, f"{section}.{cert_key}")
        if isinstance(cert, str):
            inp.tls_cert_key_file = cert
            ca = _get(doc, f"{section}.CAFile")
            inp.tls_ca_file = ca if isinstance(ca, str) else None
    oplog = _get(doc, "replication.oplogSizeMB")
    if isinstance(oplog, int) and not isinstance(oplog, bool) and oplog > 0:
        # keep the file's oplog size: the window and rate behind it are not in the file
        inp.oplog_window_hours, inp.write_rate_mb_per_hour = 1.0, float(oplog)
        inp.write_rate_source = "the checked file's oplogSizeMB"
    for key, value in overrides.items():
        if value is not None:
            setattr(inp, key, value)
    return inp
