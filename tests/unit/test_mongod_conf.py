"""parsectl mongod-conf: the generator's rules, golden files, check, host facts and the CLI.

Regenerate the golden files after a deliberate change with UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from typer.testing import CliRunner

from parsectl.cli import mongod_conf as cli_mod
from parsectl.cli.main import app
from parsectl.mongo_ops import conf, facts
from parsectl.mongo_ops.conf import ConfError, Inputs, Version, check, generate
from parsectl.mongo_ops.render import render

GOLDEN = Path(__file__).parent / "golden" / "mongod_conf"
runner = CliRunner()

# The seed's snippet (the Parse guide's MongoRocks configuration): YAML with INI setParameter lines.
SEED = """\
storage:
  dbPath: /var/lib/mongodb
  journal:
    enabled: true
  engine: rocksdb

# RockDB tuning parameters
# Yield if it's been at least this many milliseconds since we last yielded.
setParameter = internalQueryExecYieldPeriodMS=1000
# Yield after this many "should yield?" checks.
setParameter = internalQueryExecYieldIterations=100000
setParameter = failIndexKeyTooLong=false
"""

FULL = dict(ram_gb=64, cores=8, bind_ip=["127.0.0.1", "10.0.0.5"], key_file="/etc/mongodb/keyfile",
            tls_cert_key_file="/etc/ssl/mongod.pem", tls_ca_file="/etc/ssl/ca.pem",
            oplog_window_hours=72.0, write_rate_mb_per_hour=500.0)


def _gen(server: str, version: str, engine: str, **kw: object) -> conf.Generated:
    args = {**FULL, **kw}
    return generate(Inputs(server=server, version=version, engine=engine, **args))  # type: ignore[arg-type]


def _doc(g: conf.Generated) -> dict:
    return yaml.safe_load(render(g))


def _get(doc: dict, path: str, default: object = "<absent>") -> object:
    node: object = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


# ---------------------------------------------------------------------------------------------------------
# The three configurations of "How this will be checked", every value against its documented rule


def test_psmdb_34_rocksdb_64gb_8_cores_72h() -> None:
    g = _gen("psmdb", "3.4", "rocksdb")
    doc = _doc(g)
    assert doc["storage"] == {
        "dbPath": "/var/lib/mongodb",
        "journal": {"enabled": True},                    # journaling on; the key exists before 6.1
        "engine": "rocksdb",                             # PSMDB 3.0-3.6 only
        "rocksdb": {
            "cacheSizeGB": 18,                           # floor(30% x (64 - 1)) = floor(18.9), whole GB
            "compression": "snappy",                     # mongo-rocks default
            "maxWriteMBPerSec": 1024,                    # default and maximum (1-1024)
        },
    }
    assert doc["setParameter"] == {
        "internalQueryExecYieldPeriodMS": 1000,          # the Parse guide's value
        "internalQueryExecYieldIterations": 100000,      # the Parse guide's value
        "failIndexKeyTooLong": False,                    # Parse requirement; exists below 4.4
    }
    assert doc["replication"] == {"replSetName": "rs0", "oplogSizeMB": 36000}  # 72 h x 500 MB/h
    assert doc["net"] == {"port": 27017, "bindIp": "127.0.0.1,10.0.0.5",
                          "ssl": {"mode": "requireSSL", "PEMKeyFile": "/etc/ssl/mongod.pem",  # before 4.2: net.ssl
                                  "CAFile": "/etc/ssl/ca.pem"}}
    assert doc["security"] == {"keyFile": "/etc/mongodb/keyfile", "authorization": "enabled"}
    assert doc["processManagement"] == {"fork": False}
    assert doc["systemLog"] == {"destination": "file", "path": "/var/log/mongodb/mongod.log", "logAppend": True}
    assert [f for f in check(render(g), "3.4", server="psmdb") if f.severity != "note"] == []
    reasons = {s.path: s for s in g.settings}
    assert "30% x (64 GB - 1 GB)" in reasons["storage.rocksdb.cacheSizeGB"].reason
    assert "72 h x 500 MB/h = 36000 MB" in reasons["replication.oplogSizeMB"].reason


def test_psmdb_80_wiredtiger() -> None:
    g = _gen("psmdb", "8.0", "wiredTiger")
    doc = _doc(g)
    assert doc["storage"] == {
        "dbPath": "/var/lib/mongodb",                   # no journal key: removed in 6.1, always on
        "engine": "wiredTiger",
        "wiredTiger": {"engineConfig": {"cacheSizeGB": 31.5}},  # max(50% x (64 - 1), 0.25) = 31.5
    }
    assert "setParameter" not in doc                    # no rocksdb yield values; failIndexKeyTooLong gone in 4.4
    assert doc["net"]["tls"] == {"mode": "requireTLS", "certificateKeyFile": "/etc/ssl/mongod.pem",
                                 "CAFile": "/etc/ssl/ca.pem"}   # 4.2+: net.tls
    assert "ssl" not in doc["net"]
    assert doc["replication"] == {"replSetName": "rs0", "oplogSizeMB": 36000}
    omitted = {s.path: s.reason for s in g.settings if not s.written}
    assert "6.1" in omitted["storage.journal.enabled"]
    assert "4.4" in omitted["setParameter.failIndexKeyTooLong"]
    assert [f for f in check(render(g), "8.0", server="psmdb") if f.severity != "note"] == []


def test_mongodb_42_wiredtiger() -> None:
    g = _gen("mongodb", "4.2", "wiredTiger", ram_gb=16, cores=4)
    doc = _doc(g)
    assert doc["storage"]["journal"] == {"enabled": True}
    assert doc["storage"]["wiredTiger"]["engineConfig"]["cacheSizeGB"] == 7.5   # 50% x (16 - 1)
    assert doc["setParameter"] == {"failIndexKeyTooLong": False}               # still exists in 4.2
    assert doc["net"]["tls"]["mode"] == "requireTLS"                           # renamed in 4.2
    reason = {s.path: s.reason for s in g.settings}["setParameter.failIndexKeyTooLong"]
    assert "deprecated in 4.2" in reason
    assert [f for f in check(render(g), "4.2", server="mongodb") if f.severity != "note"] == []


# ---------------------------------------------------------------------------------------------------------
# Sizing rules


@pytest.mark.parametrize(("ram", "version", "expected"), [
    (64, "3.0", 32), (1, "3.0", 1), (10, "3.0", 5),                 # max(50% RAM, 1 GB), whole GB
    (64, "3.2", 37), (10, "3.2", 5), (2, "3.2", 1),                 # max(60% RAM - 1 GB, 1 GB), whole GB
    (64, "3.4", 31.5), (4, "4.4", 1.5), (1.25, "8.0", 0.25), (16, "7.0", 7.5),  # max(50% (RAM - 1), 0.25)
])
def test_wiredtiger_cache_rule(ram: float, version: str, expected: float) -> None:
    assert conf.wiredtiger_cache_gb(ram, Version.parse(version))[0] == expected


@pytest.mark.parametrize(("ram", "expected"), [(64, 31.0), (16, 7.0), (2, 0.25), (1, 0.25), (3, 0.5)])
def test_inmemory_rule(ram: float, expected: float) -> None:
    assert conf.inmemory_size_gb(ram)[0] == expected


@pytest.mark.parametrize(("ram", "expected"), [(64, 18), (8, 2), (2, 1), (1, 1), (512, 153)])
def test_rocksdb_cache_rule(ram: float, expected: int) -> None:
    assert conf.rocksdb_cache_gb(ram)[0] == expected


def test_oplog_rule() -> None:
    assert conf.oplog_size_mb(72, 500)[0] == 36000
    assert conf.oplog_size_mb(24, 10)[0] == 990          # raised to the minimum
    assert conf.oplog_size_mb(15, 100.02)[0] == 1501       # 1500.3 MB rounded up
    assert "minimum" in conf.oplog_size_mb(1, 1)[1]


def test_profiles_change_rocksdb_throttle_only() -> None:
    read = _doc(_gen("psmdb", "3.4", "rocksdb", profile="read-heavy"))
    write = _doc(_gen("psmdb", "3.4", "rocksdb", profile="write-heavy"))
    assert read["storage"]["rocksdb"]["maxWriteMBPerSec"] == 256
    assert write["storage"]["rocksdb"]["maxWriteMBPerSec"] == 1024
    wt = {p: _doc(_gen("psmdb", "7.0", "wiredTiger", profile=p))["storage"] for p in conf.PROFILES}
    assert len({json.dumps(v) for v in wt.values()}) == 1   # never above the WiredTiger default


def test_every_written_setting_has_a_reason_and_a_known_rule() -> None:
    for server, version, engine in [("psmdb", "3.4", "rocksdb"), ("psmdb", "8.0", "inMemory"),
                                    ("mongodb", "3.2", "wiredTiger")]:
        g = _gen(server, version, engine)
        flat = {s.path for s in g.settings if s.written}
        for s in g.settings:
            assert s.reason and s.rule in conf.RULES
        doc = _doc(g)

        def leaves(d: dict, prefix: str = "") -> list[str]:
            out = []
            for k, v in d.items():
                p = f"{prefix}.{k}" if prefix else k
                out.extend(leaves(v, p) if isinstance(v, dict) else [p])
            return out

        assert set(leaves(doc)) == flat


# ---------------------------------------------------------------------------------------------------------
# The version/engine matrix


@pytest.mark.parametrize(("server", "version", "engine", "needle"), [
    ("mongodb", "3.4", "rocksdb", "--server psmdb --version 3.4"),
    ("psmdb", "4.0", "rocksdb", "--version 3.6"),
    ("psmdb", "8.0", "rocksdb", "--engine wiredTiger"),
    ("mongodb", "8.0", "inMemory", "--server psmdb"),
    ("psmdb", "3.0", "inMemory", "--version 3.2"),
    ("psmdb", "9.9", "wiredTiger", "nearest: --version 8.0"),
    ("psmdb", "6.1", "wiredTiger", "nearest: --version 6.0"),
    ("mongodb", "2.6", "wiredTiger", "nearest: --version 3.0"),
    ("psmdb", "four", "wiredTiger", "release series"),
    ("psmdb", "8.0", "mmapv1", "rocksdb, wiredTiger or inMemory"),
    ("psmdb", "8.0", "wiredtiger", "did you mean wiredTiger"),
    ("oracle", "8.0", "wiredTiger", "psmdb or mongodb"),
])
def test_matrix_refusals_name_the_nearest_choice(server: str, version: str, engine: str, needle: str) -> None:
    with pytest.raises(ConfError, match=None) as info:
        generate(Inputs(server=server, version=version, engine=engine, ram_gb=8, cores=4))
    assert needle in str(info.value)


@pytest.mark.parametrize("kw", [dict(ram_gb=0), dict(ram_gb=-4), dict(ram_gb=float("nan")), dict(ram_gb=0.1),
                                dict(cores=0), dict(db_path="data"), dict(key_file="keyfile"),
                                dict(tls_ca_file="/ca.pem"), dict(port=0), dict(repl_set="a b"),
                                dict(bind_ip=[]), dict(profile="fast"), dict(oplog_window_hours=-1)])
def test_impossible_inputs(kw: dict) -> None:
    base = dict(server="psmdb", version="8.0", engine="wiredTiger", ram_gb=8, cores=4)
    with pytest.raises(ConfError):
        generate(Inputs(**{**base, **kw}))  # type: ignore[arg-type]


def test_version_parsing() -> None:
    assert Version.parse("3.4.24") == Version(3, 4)
    assert Version.parse("8.0.x") == Version(8, 0)
    assert Version.parse("v4.2") == Version(4, 2)
    assert conf.parse_version("mongodb", "8.2") == Version(8, 2)
    with pytest.raises(ConfError, match="nearest: --version 8.0"):
        conf.parse_version("psmdb", "8.2")


def test_input_parsers() -> None:
    assert conf.parse_ram_gb("64GB") == 64 and conf.parse_ram_gb("512MB") == 0.5 and conf.parse_ram_gb("1t") == 1024
    assert conf.parse_duration_hours("72h") == 72 and conf.parse_duration_hours("3d") == 72
    assert conf.parse_duration_hours("90m") == 1.5 and conf.parse_duration_hours("1w") == 168
    assert conf.parse_rate_mb_per_hour("500MB/h") == 500 and conf.parse_rate_mb_per_hour("2GB/h") == 2048
    assert conf.parse_rate_mb_per_hour("1MB/s") == 3600 and conf.parse_rate_mb_per_hour("500") == 500
    for bad, fn in [("0", conf.parse_ram_gb), ("lots", conf.parse_ram_gb), ("-1h", conf.parse_duration_hours),
                    ("0h", conf.parse_duration_hours), ("fast", conf.parse_rate_mb_per_hour)]:
        with pytest.raises(ConfError):
            fn(bad)


# ---------------------------------------------------------------------------------------------------------
# Golden files: one per engine and version family


GOLDEN_CASES = [
    ("psmdb", "3.0", "rocksdb"), ("psmdb", "3.2", "rocksdb"), ("psmdb", "3.4", "rocksdb"), ("psmdb", "3.6", "rocksdb"),
    ("mongodb", "3.0", "wiredTiger"), ("mongodb", "3.2", "wiredTiger"), ("psmdb", "3.4", "wiredTiger"),
    ("mongodb", "3.6", "wiredTiger"), ("mongodb", "4.0", "wiredTiger"), ("mongodb", "4.2", "wiredTiger"),
    ("mongodb", "4.4", "wiredTiger"), ("mongodb", "5.0", "wiredTiger"), ("psmdb", "6.0", "wiredTiger"),
    ("psmdb", "7.0", "wiredTiger"), ("psmdb", "8.0", "wiredTiger"), ("mongodb", "8.2", "wiredTiger"),
    ("psmdb", "3.2", "inMemory"), ("psmdb", "4.2", "inMemory"), ("psmdb", "6.0", "inMemory"),
    ("psmdb", "8.0", "inMemory"),
]


@pytest.mark.parametrize(("server", "version", "engine"), GOLDEN_CASES)
def test_golden(server: str, version: str, engine: str) -> None:
    text = render(_gen(server, version, engine))
    path = GOLDEN / f"{server}-{version}-{engine}.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.read_text() == text, f"{path.name} changed; rerun with UPDATE_GOLDEN=1 if intended"


# ---------------------------------------------------------------------------------------------------------
# Property: every generated file parses as YAML and passes check (a plain sweep of the grid)


def test_every_generated_file_parses_and_passes_check() -> None:
    count = 0
    for server in conf.SERVERS:
        for version in conf.RELEASE_SERIES[server]:
            for engine in conf.ENGINES:
                for profile in conf.PROFILES:
                    for ram in (0.5, 1.25, 64, 768):
                        for extra in ({}, FULL, dict(repl_set=None)):
                            args = {**extra, "ram_gb": ram, "cores": 8}
                            try:
                                g = generate(Inputs(server=server, version=version, engine=engine,
                                                    profile=profile, **args))  # type: ignore[arg-type]
                            except ConfError:
                                continue
                            text = render(g)
                            assert isinstance(yaml.safe_load(text), dict)
                            problems = [f for f in check(text, version, server=server) if f.severity != "note"]
                            assert problems == [], (server, version, engine, profile, ram, problems)
                            count += 1
    assert count > 700


# ---------------------------------------------------------------------------------------------------------
# check: each class of mistake


def _findings(text: str, version: str | None = None, **kw: object) -> list[conf.Finding]:
    return check(text, version, **kw)  # type: ignore[arg-type]


def test_check_seed_snippet() -> None:
    found = _findings(SEED, "3.4")
    ini = [f for f in found if "INI line" in f.message]
    assert [f.line for f in ini] == [9, 11, 12]
    assert all(f.severity == "error" for f in ini)
    assert "internalQueryExecYieldPeriodMS: 1000" in ini[0].fix
    assert "failIndexKeyTooLong: false" in ini[2].fix
    # the INI findings already cover the parameters: no second warning for the same ones
    assert not [f for f in found if f.path.startswith("setParameter.")]


def _has(found: list[conf.Finding], severity: str, needle: str) -> bool:
    return any(f.severity == severity and (needle in f.message or needle in f.path) for f in found)


BROKEN = [
    # (name, text, version, severity, needle)
    ("whole INI file", "dbpath = /var/lib/mongodb\nport = 27017\n", "3.4", "error", "INI format"),
    ("bad YAML", "storage:\n  dbPath: /x\n engine: rocksdb\n", "3.4", "error", "not valid YAML"),
    ("tab indent", "storage:\n\tdbPath: /x\n", "3.4", "error", "tab"),
    ("unknown key", "storage:\n  dbPath: /x\n  cacheSize: 4\n", "8.0", "error", "unknown key storage.cacheSize"),
    ("misplaced key", "storage:\n  dbPath: /x\n  replSetName: rs0\n", "8.0", "error", "misplaced key"),
    ("duplicate key", "storage:\n  dbPath: /x\n  dbPath: /y\n", "8.0", "error", "duplicate key"),
    ("top level not a map", "- storage\n", "8.0", "error", "top level"),
    ("empty", "", "8.0", "error", "empty"),
    ("rocksdb range", "storage:\n  dbPath: /x\n  engine: rocksdb\n  rocksdb:\n    maxWriteMBPerSec: 2048\n",
     "3.4", "error", "outside 1..1024"),
    ("rocksdb compression", "storage:\n  dbPath: /x\n  engine: rocksdb\n  rocksdb:\n    compression: gzip\n",
     "3.4", "error", "not one of"),
    ("wt cache range", "storage:\n  dbPath: /x\n  wiredTiger:\n    engineConfig:\n      cacheSizeGB: 0.1\n",
     "8.0", "error", "outside 0.25..10000"),
    ("port range", "storage:\n  dbPath: /x\nnet:\n  port: 70000\n", "8.0", "error", "outside 0..65535"),
    ("wrong type", "storage:\n  dbPath: /x\n  journal:\n    enabled: 'yes'\n", "4.0", "error", "expected true or false"),
    ("oplog too small", "storage:\n  dbPath: /x\nreplication:\n  oplogSizeMB: 100\n", "8.0", "warning", "oplogSizeMB"),
    ("journal key on 7.0", "storage:\n  dbPath: /x\n  journal:\n    enabled: true\n", "7.0", "error",
     "not accepted from 6.1"),
    ("failIndexKeyTooLong on 4.4", "storage:\n  dbPath: /x\nsetParameter:\n  failIndexKeyTooLong: false\n",
     "4.4", "error", "removed in 4.4"),
    ("rocksdb on 4.0", "storage:\n  dbPath: /x\n  engine: rocksdb\n", "4.0", "error", "removed in Percona"),
    ("rocksdb options on 4.0", "storage:\n  dbPath: /x\n  rocksdb:\n    cacheSizeGB: 4\n", "4.0", "error",
     "storage.rocksdb"),
    ("tls before 4.2", "storage:\n  dbPath: /x\nnet:\n  tls:\n    mode: requireTLS\n", "4.0", "error",
     "arrived in 4.2"),
    ("ssl from 4.2", "storage:\n  dbPath: /x\nnet:\n  ssl:\n    mode: requireSSL\n    PEMKeyFile: /p\n",
     "4.2", "warning", "renamed to net.tls"),
    ("bindIpAll before 3.6", "storage:\n  dbPath: /x\nnet:\n  bindIpAll: true\n", "3.4", "error", "arrived in 3.6"),
    ("zstd before 4.2", "storage:\n  dbPath: /x\n  wiredTiger:\n    collectionConfig:\n      blockCompressor: zstd\n",
     "4.0", "error", "zstd"),
    ("fractional cache before 3.4", "storage:\n  dbPath: /x\n  wiredTiger:\n    engineConfig:\n      cacheSizeGB: 1.5\n",
     "3.2", "error", "whole GB"),
    ("mmapv1 on 4.2", "storage:\n  dbPath: /x\n  engine: mmapv1\n", "4.2", "error", "MMAPv1"),
    ("inMemory on 3.0", "storage:\n  dbPath: /x\n  engine: inMemory\n", "3.0", "error", "3.2"),
    ("inMemory on MongoDB", "storage:\n  dbPath: /x\n  engine: inMemory\n", "8.0", "error", "Community"),
    ("journal off on WT replset", "storage:\n  dbPath: /x\n  journal:\n    enabled: false\nreplication:\n"
     "  replSetName: rs0\n", "4.0", "error", "cannot be disabled"),
    ("rocksdb without engine", "storage:\n  dbPath: /x\n  rocksdb:\n    cacheSizeGB: 4\n", "3.4", "error",
     "without storage.engine"),
    ("setParameter as list", "storage:\n  dbPath: /x\nsetParameter:\n  - failIndexKeyTooLong=false\n", "3.4",
     "error", "YAML map"),
    ("relative dbPath", "storage:\n  dbPath: data\n", "8.0", "error", "relative"),
    ("no dbPath", "net:\n  port: 27017\n", "8.0", "warning", "dbPath"),
    ("Parse: yield values for rocksdb", "storage:\n  dbPath: /x\n  engine: rocksdb\nsetParameter:\n"
     "  failIndexKeyTooLong: false\n", "3.4", "warning", "internalQueryExecYieldPeriodMS"),
    ("Parse: failIndexKeyTooLong missing", "storage:\n  dbPath: /x\n", "3.4", "warning", "failIndexKeyTooLong"),
    ("Parse: failIndexKeyTooLong true", "storage:\n  dbPath: /x\nsetParameter:\n  failIndexKeyTooLong: true\n",
     "4.0", "warning", "failIndexKeyTooLong"),
    ("rocksdb parameter on WT", "storage:\n  dbPath: /x\nsetParameter:\n  rocksdbBackup: /b\n", "8.0", "error",
     "rocksdbBackup"),
]


@pytest.mark.parametrize(("name", "text", "version", "severity", "needle"), BROKEN, ids=[b[0] for b in BROKEN])
def test_check_catches(name: str, text: str, version: str, severity: str, needle: str) -> None:
    found = _findings(text, version, server="mongodb" if "MongoDB" in name else None)
    assert _has(found, severity, needle), [f.as_dict() for f in found]
    assert all(f.fix for f in found)


def test_check_misplaced_key_points_at_its_home() -> None:
    found = _findings("storage:\n  dbPath: /x\n  engine: wiredTiger\n  cacheSizeGB: 4\n", "8.0")
    [f] = [f for f in found if "misplaced" in f.message]
    assert f.fix == "move it to storage.wiredTiger.engineConfig.cacheSizeGB" and f.line == 4


def test_check_ssl_rename_fix_maps_names() -> None:
    found = _findings("storage:\n  dbPath: /x\nnet:\n  ssl:\n    mode: requireSSL\n    PEMKeyFile: /p\n", "4.2")
    [f] = [f for f in found if f.path == "net.ssl"]
    assert "requireTLS" in f.fix and "certificateKeyFile: /p" in f.fix


def test_check_without_version_skips_version_rules() -> None:
    found = _findings("storage:\n  dbPath: /x\n  journal:\n    enabled: true\n")
    assert not [f for f in found if f.severity == "error"]


# ---------------------------------------------------------------------------------------------------------
# Host facts


MEMINFO = "MemTotal:       65849456 kB\nMemFree:         1000000 kB\n"


def test_facts_parsers() -> None:
    assert round(facts.parse_meminfo(MEMINFO), 2) == 62.8
    assert facts.parse_cgroup_limit("max\n") is None
    assert facts.parse_cgroup_limit("9223372036854771712\n") is None
    assert facts.parse_cgroup_limit(str(8 * 1024 ** 3)) == 8
    got = facts.parse_remote_output(f"{MEMINFO}@@\n8\n@@\n{4 * 1024 ** 3}\n", "db1:22")
    assert (got.ram_gb, got.cores) == (4, 8) and got.notes
    with pytest.raises(facts.FactsError):
        facts.parse_meminfo("nothing")
    with pytest.raises(facts.FactsError):
        facts.parse_remote_output("garbage", "db1")


def test_local_facts_from_a_proc_tree(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "meminfo").write_text(MEMINFO)
    found = facts.local_facts(str(tmp_path))
    assert found.ram_gb == 62.8 and found.cores >= 1
    with pytest.raises(facts.FactsError, match="--ram"):
        facts.local_facts(str(tmp_path / "missing"))


@pytest.mark.parametrize(("target", "expected"), [
    ("admin@db1", ("admin", "db1", 22)), ("admin@db1:2222", ("admin", "db1", 2222)), ("db1", (None, "db1", 22)),
    ("root@[::1]:2200", ("root", "::1", 2200)), ("u@10.0.0.5:22", ("u", "10.0.0.5", 22)),
])
def test_parse_target(target: str, expected: tuple) -> None:
    assert facts.parse_target(target) == expected


@pytest.mark.parametrize("target", ["", "a@b@c", "u@host:99999", "u@ho st"])
def test_parse_target_rejects(target: str) -> None:
    with pytest.raises(facts.FactsError):
        facts.parse_target(target)


def test_remote_facts_refuses_host_missing_from_known_hosts(tmp_path: Path) -> None:
    """Strict known_hosts: an in-process SSH server on loopback whose key is not listed is refused."""
    import socket
    import threading

    import paramiko

    host_key = paramiko.Ed25519Key.generate() if hasattr(paramiko.Ed25519Key, "generate") else None
    if host_key is None:
        host_key = paramiko.RSAKey.generate(1024)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        transport = paramiko.Transport(conn)
        transport.add_server_key(host_key)
        try:
            transport.start_server(server=paramiko.ServerInterface())
            transport.accept(2)
        except Exception:
            pass
        finally:
            transport.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    known = tmp_path / "known_hosts"
    known.write_text("")
    try:
        with pytest.raises(facts.FactsError, match="not in known_hosts"):
            facts.remote_facts(f"nobody@127.0.0.1:{port}", known_hosts=str(known), timeout=5)
    finally:
        listener.close()
        thread.join(5)


def test_remote_facts_over_ssh_with_a_known_host_key(tmp_path: Path) -> None:
    """The success path against an in-process SSH server on loopback: key listed in known_hosts, public-key
    auth, the facts command answered with a canned /proc output."""
    import socket
    import threading

    import paramiko

    host_key = paramiko.RSAKey.generate(1024)
    client_key = paramiko.RSAKey.generate(1024)
    key_file = tmp_path / "id_rsa"
    client_key.write_private_key_file(str(key_file))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_key.get_name()} {host_key.get_base64()}\n")
    commands: list[str] = []

    class Server(paramiko.ServerInterface):
        def get_allowed_auths(self, username: str) -> str:
            return "publickey"

        def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
            ok = username == "ops" and key.get_base64() == client_key.get_base64()
            return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

        def check_channel_request(self, kind: str, chanid: int) -> int:
            return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

        def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
            commands.append(command.decode())
            channel.sendall(f"{MEMINFO}@@\n16\n@@\nmax\n".encode())
            channel.send_exit_status(0)
            channel.shutdown_write()
            return True

    def serve() -> None:
        conn, _ = listener.accept()
        transport = paramiko.Transport(conn)
        transport.add_server_key(host_key)
        try:
            transport.start_server(server=Server())
            channel = transport.accept(5)
            if channel is not None:
                deadline = 50
                while not channel.closed and deadline:
                    threading.Event().wait(0.1)
                    deadline -= 1
        finally:
            transport.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        found = facts.remote_facts(f"ops@127.0.0.1:{port}", known_hosts=str(known), key_filename=str(key_file),
                                   timeout=5)
    finally:
        listener.close()
        thread.join(10)
    assert (found.ram_gb, found.cores, found.source) == (62.8, 16, f"ops@127.0.0.1:{port}")
    assert commands == [facts.REMOTE_COMMAND]


def test_rate_from_oplog() -> None:
    assert facts.rate_from_oplog(0, 7200, 1000 * 1024 * 1024) == 500
    with pytest.raises(facts.FactsError, match="spans only"):
        facts.rate_from_oplog(0, 10, 1)


def test_measure_write_rate_reads_the_oplog() -> None:
    entries = {1: {"ts": SimpleNamespace(time=1_000)}, -1: {"ts": SimpleNamespace(time=1_000 + 36_000)}}

    class Oplog:
        def find_one(self, _filter: dict, sort: list, projection: dict) -> dict:
            return entries[sort[0][1]]

    class Local:
        def __getitem__(self, name: str) -> Oplog:
            assert name == "oplog.rs"
            return Oplog()

        def command(self, name: str, coll: str) -> dict:
            assert (name, coll) == ("collStats", "oplog.rs")
            return {"size": 5000 * 1024 * 1024}

    client = {"local": Local()}
    assert facts.measure_write_rate("mongodb://x", client=client) == 500.0   # 5000 MB over 10 h


def test_measure_write_rate_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(facts.FactsError, match=r"cannot measure the oplog at mongodb://u:\*\*\*@127.0.0.1:9") as info:
        facts.measure_write_rate("mongodb://u:secret@127.0.0.1:9", timeout_ms=200)
    assert "secret" not in str(info.value)


# ---------------------------------------------------------------------------------------------------------
# CLI


ARGS_34 = ["mongod-conf", "--server", "psmdb", "--version", "3.4", "--engine", "rocksdb", "--ram", "64GB",
           "--cores", "8", "--oplog-window", "72h", "--write-rate", "500MB/h"]


def test_cli_prints_yaml() -> None:
    result = runner.invoke(app, ARGS_34)
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(result.stdout)
    assert doc["storage"]["rocksdb"]["cacheSizeGB"] == 18 and doc["replication"]["oplogSizeMB"] == 36000


def test_cli_out_is_atomic_and_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "mongod.conf"
    assert runner.invoke(app, [*ARGS_34, "--out", str(out)]).exit_code == 0
    first = out.read_text()
    assert yaml.safe_load(first)["storage"]["engine"] == "rocksdb"
    result = runner.invoke(app, ["mongod-conf", "--version", "8.0", "--ram", "8GB", "--cores", "2",
                                 "--out", str(out)])
    assert result.exit_code == 2 and "--force" in result.output
    assert out.read_text() == first
    assert runner.invoke(app, ["mongod-conf", "--version", "8.0", "--ram", "8GB", "--cores", "2",
                               "--out", str(out), "--force"]).exit_code == 0
    assert "wiredTiger" in out.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mongod.conf"]   # no temp files left


def test_write_failure_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "mongod.conf"
    out.write_text("old\n")

    def boom(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli_mod.os, "fsync", boom)
    result = runner.invoke(app, [*ARGS_34, "--out", str(out), "--force"])
    assert result.exit_code == 2 and "No space left" in result.output
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mongod.conf"]


@pytest.mark.parametrize(("args", "needle"), [
    (["--ram", "0", "--cores", "8"], "impossible RAM"),
    (["--ram", "0GB", "--cores", "8"], "impossible RAM"),
    (["--ram", "8GB", "--cores", "0"], "core count"),
    (["--ram", "8GB", "--cores", "8", "--version", "9.1"], "nearest: --version 8.0"),
    (["--ram", "8GB", "--cores", "8", "--server", "mongodb", "--engine", "rocksdb"], "psmdb"),
    (["--ram", "8GB", "--cores", "8", "--oplog-window", "soon"], "duration"),
    (["--ram", "8GB", "--cores", "8", "--db-path", "relative"], "absolute"),
    (["--ram", "8GB", "--cores", "8", "--output", "xml"], "text or json"),
])
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path: Path, args: list[str], needle: str) -> None:
    out = tmp_path / "mongod.conf"
    result = runner.invoke(app, ["mongod-conf", *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_cli_explain_json() -> None:
    result = runner.invoke(app, [*ARGS_34, "--explain", "--output", "json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    settings = {s["path"]: s for s in data["settings"]}
    assert settings["storage.rocksdb.cacheSizeGB"]["value"] == 18
    assert "mongo-rocks" in settings["storage.rocksdb.cacheSizeGB"]["source"]
    assert all(s["reason"] and s["source"] for s in data["settings"])
    assert yaml.safe_load(data["config"]) == data["document"]


def test_cli_explain_table_respects_no_color() -> None:
    result = runner.invoke(app, [*ARGS_34, "--explain"], env={"NO_COLOR": "1", "COLUMNS": "250"})
    assert result.exit_code == 0
    assert "storage.rocksdb.cacheSizeGB" in result.stdout and "30% x (64 GB - 1 GB)" in result.stdout
    assert "\x1b[" not in result.stdout


def test_cli_check(tmp_path: Path) -> None:
    seed = tmp_path / "seed.conf"
    seed.write_text(SEED)
    result = runner.invoke(app, ["mongod-conf", "check", str(seed), "--version", "3.4"])
    assert result.exit_code == 1 and "INI line" in result.stdout
    good = tmp_path / "good.conf"
    good.write_text(runner.invoke(app, ARGS_34).stdout)
    result = runner.invoke(app, ["mongod-conf", "check", str(good), "--version", "3.4"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["mongod-conf", "check", str(seed), "--version", "3.4", "--output", "json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["ok"] is False


def test_cli_check_diff(tmp_path: Path) -> None:
    seed = tmp_path / "seed.conf"
    seed.write_text(SEED)
    result = runner.invoke(app, ["mongod-conf", "check", str(seed), "--version", "3.4", "--diff",
                                 "--ram", "64GB", "--cores", "8"])
    assert result.exit_code == 1
    assert "-setParameter = internalQueryExecYieldPeriodMS=1000" in result.stdout
    assert "+  internalQueryExecYieldPeriodMS: 1000" in result.stdout
    assert "+    cacheSizeGB: 18" in result.stdout


@pytest.mark.parametrize("make", ["missing", "directory", "binary"])
def test_cli_check_unreadable_file_exits_2(tmp_path: Path, make: str) -> None:
    path = tmp_path / "mongod.conf"
    if make == "directory":
        path.mkdir()
    elif make == "binary":
        path.write_bytes(b"\xff\xfe\x00garbage")
    result = runner.invoke(app, ["mongod-conf", "check", str(path), "--version", "3.4"])
    assert result.exit_code == 2 and "mongod-conf:" in result.output


def test_cli_check_unknown_version_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "mongod.conf"
    path.write_text("storage:\n  dbPath: /x\n")
    assert runner.invoke(app, ["mongod-conf", "check", str(path), "--version", "next"]).exit_code == 2
    assert runner.invoke(app, ["mongod-conf", "check", str(path), "--version", "6.1",
                               "--server", "psmdb"]).exit_code == 2


def test_cli_help_has_examples() -> None:
    result = runner.invoke(app, ["mongod-conf", "--help"], env={"NO_COLOR": "1"})
    assert result.exit_code == 0 and "parsectl mongod-conf check" in result.stdout
    result = runner.invoke(app, ["mongod-conf", "check", "--help"], env={"NO_COLOR": "1"})
    assert result.exit_code == 0 and "--diff" in result.stdout


def test_cli_measure_from_unreachable_exits_2() -> None:
    result = runner.invoke(app, ["mongod-conf", "--ram", "8GB", "--cores", "2", "--oplog-window", "24h",
                                 "--measure-from", "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=200"])
    assert result.exit_code == 2 and "cannot measure" in result.output


def test_cli_from_host_unreachable_exits_2(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    out = tmp_path / "mongod.conf"
    result = runner.invoke(app, ["mongod-conf", "--from-host", "ops@127.0.0.1:1", "--known-hosts", str(known),
                                 "--out", str(out)])
    assert result.exit_code == 2 and "127.0.0.1:1" in result.output
    assert not out.exists()
