"""provision-node and replset end to end: three real OpenSSH servers, each confined to its own Debian tree
(tests/support/sshd.py), a local apt repository with stand-in Percona packages, and a stand-in mongod
answering the replica-set commands with MongoDB's documented replies (tests/support/fake_mongod.py).

Nothing here touches the test machine's sshd, packages or kernel settings: every step runs inside the hosts'
trees, /proc/sys is read-only there and /sys is absent.
"""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

import paramiko
import pytest
import yaml
from bson import json_util
from typer.testing import CliRunner

from parsectl.cli.main import app
from parsectl.ssh import SSHError, Target, connect
from tests.support import sshd

pytestmark = pytest.mark.slow

_missing = sshd.missing_requirements()
if _missing:
    sshd.install_tools()
    _missing = sshd.missing_requirements()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if _missing:
        pytest.skip(f"provisioning tests: {_missing}")
    base = sshd.base_rootfs()
    work = sshd.make_workdir()
    key = paramiko.RSAKey.generate(2048)
    key_file = work / "id_rsa"
    key.write_private_key_file(str(key_file))
    repo = sshd.AptRepo(work / "repo")
    hosts = [sshd.TestHost(f"db{i}", work, base, f"ssh-rsa {key.get_base64()}", mongod_port=sshd.free_port())
             for i in (1, 2, 3)]
    try:
        for h in hosts:
            h.start()
        known = work / "known_hosts"
        known.write_text("".join(h.known_hosts_line() for h in hosts))
        yield {"work": work, "key": key_file, "known": known, "repo": repo, "hosts": hosts, "base": base}
    finally:
        for h in hosts:
            h.stop()
        repo.close()
        shutil.rmtree(work, ignore_errors=True)


def inventory(lab, hosts=None, **extra) -> Path:
    entries = [{"host": "127.0.0.1", "port": h.port, "name": h.name, "mongod_port": h.mongod_port}
               for h in (hosts or lab["hosts"])]
    data = {"replset": "rs0", "defaults": {"user": "ops", "sudo": True, "key_file": str(lab["key"]),
                                           "known_hosts": str(lab["known"]), "timeout": 10, "retries": 0},
            "hosts": entries, "vars": {"repo_url": lab["repo"].url, "repo_trusted": True}}
    data.update(extra)
    path = lab["work"] / f"inventory-{len(entries)}-{abs(hash(json.dumps(extra, sort_keys=True)))}.yml"
    path.write_text(yaml.safe_dump(data))
    return path


# The admin user's password reaches parsectl only through this environment variable (--mongo-password-env).
PW_ENV = "PARSECTL_E2E_MONGO_PASSWORD"
PASSWORD = "e2e-" + secrets.token_urlsafe(12)
PW = ("--mongo-password-env", PW_ENV)


def cli(lab, *args: str, password: str = PASSWORD):
    runner = CliRunner()
    return runner.invoke(app, list(args), env={"PARSECTL_LOG_DIR": str(lab["work"] / "logs"), PW_ENV: password},
                         catch_exceptions=False)


def ssh(lab, host, user="ops"):
    return connect(Target("127.0.0.1", port=host.port, user=user, key_file=str(lab["key"]),
                          known_hosts=str(lab["known"]), sudo=True, retries=0))


def commands_received(lab, host) -> list[dict]:
    with ssh(lab, host) as s:
        data = s.get("/var/log/mongodb/fake-commands.jsonl", sudo=True) or b""
    return [json_util.loads(line) for line in data.decode().splitlines() if line.strip()]


# --- MongoDB's documented command formats (manual: replSetInitiate, replSetReconfig, replica set configuration)

MEMBER_FIELDS = {"_id": int, "host": str, "arbiterOnly": bool, "buildIndexes": bool, "hidden": bool,
                 "priority": (int, float), "tags": dict, "secondaryDelaySecs": int, "votes": int}
CONFIG_FIELDS = {"_id": str, "version": int, "term": int, "protocolVersion": int, "writeConcernMajorityJournalDefault": bool,
                 "configsvr": bool, "members": list, "settings": dict}


def check_config_document(cfg: dict) -> None:
    assert set(cfg) <= set(CONFIG_FIELDS), set(cfg) - set(CONFIG_FIELDS)
    for key, kind in CONFIG_FIELDS.items():
        if key in cfg:
            assert isinstance(cfg[key], kind), (key, cfg[key])
    ids = [m["_id"] for m in cfg["members"]]
    assert len(set(ids)) == len(ids)
    for member in cfg["members"]:
        assert {"_id", "host"} <= set(member)
        assert set(member) <= set(MEMBER_FIELDS), member
        for key, kind in MEMBER_FIELDS.items():
            if key in member:
                assert isinstance(member[key], kind) and not (kind is int and isinstance(member[key], bool)), member
        assert ":" in member["host"]
        if member.get("hidden") or member.get("votes", 1) == 0:
            assert member.get("priority", 1) == 0


def check_replset_commands(received: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in received:
        doc = {k: v for k, v in entry["cmd"].items() if not k.startswith("$")}  # driver fields
        db = entry["db"]
        name = next(iter(doc))
        counts[name] = counts.get(name, 0) + 1
        if name == "replSetInitiate":
            # {replSetInitiate: <config document>} on admin
            assert db == "admin" and set(doc) <= {"replSetInitiate", "maxTimeMS"}
            cfg = doc["replSetInitiate"]
            check_config_document(cfg)
            assert cfg["protocolVersion"] == 1 and "version" not in cfg and "term" not in cfg
        elif name == "replSetReconfig":
            # {replSetReconfig: <new config>, force: false, maxTimeMS: <int>} on admin, version incremented
            assert db == "admin" and set(doc) <= {"replSetReconfig", "force", "maxTimeMS"}
            assert doc["force"] is False and isinstance(doc["maxTimeMS"], int)
            check_config_document(doc["replSetReconfig"])
            assert "term" not in doc["replSetReconfig"]
        elif name == "createUser":
            # {createUser: <name>, pwd: <cleartext>, roles: [{role, db}]} on admin (the fake logs pwd redacted)
            assert db == "admin" and set(doc) <= {"createUser", "pwd", "roles", "mechanisms", "writeConcern"}
            assert doc["pwd"] == "<redacted>" and isinstance(doc["createUser"], str)
            assert doc["roles"] and all(set(r) == {"role", "db"} for r in doc["roles"])
        elif name in ("replSetGetConfig", "replSetGetStatus"):
            assert db == "admin" and doc[name] == 1
        elif name == "find":
            assert db == "local" and doc["find"] == "oplog.rs" and doc["sort"] in ({"$natural": 1}, {"$natural": -1})
    return counts


# ---------------------------------------------------------------------------------------------------------


def _no_password_anywhere(lab, *texts: str) -> None:
    """The password is in no output, no parsectl log and none of the hosts' mongod logs or state."""
    for text in texts:
        assert PASSWORD not in text
    for log in (lab["work"] / "logs").glob("*"):
        assert PASSWORD not in log.read_text(errors="replace"), log
    for host in lab["hosts"]:
        with ssh(lab, host) as s:
            dump = s.run("cat /var/log/mongodb/* /var/lib/mongodb/parsectl-fake-state.json 2>/dev/null", sudo=True,
                         check=False).stdout
        assert dump and PASSWORD not in dump


def test_plan_apply_reapply_three_hosts(lab):
    inv = inventory(lab)
    # plan: exit 2, every step and file diff per host, nothing changed on the hosts
    plan = cli(lab, "provision-node", "--inventory", str(inv), "--playbook", "wiredtiger",
               "--keyfile", str(_keyfile(lab)), "--output", "json")
    assert plan.exit_code == 2, plan.output
    report = json.loads(plan.output)
    assert [h["host"] for h in report["hosts"]] == ["db1", "db2", "db3"]
    for host in report["hosts"]:
        assert host["ok"], host
        steps = {c["step"] for c in host["changes"]}
        assert {"os_tuning", "package_repository", "packages", "directories", "keyfile", "mongod_conf",
                "service", "replset_member"} <= steps
        conf_change = next(c for c in host["changes"] if c["step"] == "mongod_conf")
        assert "+  engine: wiredTiger" in conf_change["diff"] and "replSetName: rs0" in conf_change["diff"]
        assert not any(c["applied"] for c in host["changes"])
        key_change = next(c for c in host["changes"] if c["step"] == "keyfile")
        assert "content not shown" in key_change["diff"]
    # the first host initiates the set, then creates the admin user through the localhost exception
    db1_steps = [c["step"] for c in report["hosts"][0]["changes"]]
    assert db1_steps[-2:] == ["replset_member", "replset_user"]
    assert "create user 'parsectl-admin'" in report["hosts"][0]["changes"][-1]["description"]
    with ssh(lab, lab["hosts"][0]) as s:
        assert s.get("/etc/mongod.conf") is None  # plan changed nothing

    # apply without a password source: refused before anything runs
    nopw = cli(lab, "provision-node", "--inventory", str(inv), "--keyfile", str(_keyfile(lab)), "--yes")
    assert nopw.exit_code == 2 and "needs --mongo-password-env NAME" in nopw.output, nopw.output
    unset = cli(lab, "provision-node", "--inventory", str(inv), "--keyfile", str(_keyfile(lab)), "--yes",
                "--mongo-password-env", "PARSECTL_E2E_UNSET_VARIABLE")
    assert unset.exit_code == 2 and "PARSECTL_E2E_UNSET_VARIABLE is not set" in unset.output

    # apply: keyFile auth on three hosts; initiate, createUser (localhost exception), then add db2 and db3
    # logged in as that user (the stand-in mongod refuses replSetGetConfig/replSetReconfig without it)
    applied = cli(lab, "provision-node", "--inventory", str(inv), "--keyfile", str(_keyfile(lab)), *PW, "--yes")
    assert applied.exit_code == 0, applied.output
    assert "FAILED" not in applied.output
    assert "created user 'parsectl-admin' (roles: root) in admin through the localhost exception" in applied.output
    with ssh(lab, lab["hosts"][1]) as s:
        conf_text = s.get("/etc/mongod.conf", sudo=True).decode()
        assert "replSetName: rs0" in conf_text and "keyFile: /etc/mongodb/keyfile" in conf_text
        assert "authorization: enabled" in conf_text
        assert s.run("stat -c '%a %U' /etc/mongodb/keyfile", sudo=True).stdout.strip() == "400 mongodb"
        assert s.run("dpkg-query -W -f='${Status}' percona-server-mongodb").stdout == "install ok installed"
        assert s.run("/etc/init.d/mongod status", sudo=True, check=False).exit_code == 0
        assert s.get("/etc/sysctl.d/60-parsectl-mongodb.conf") is not None
        # the user reached the other members with the config (as replication of admin.system.users would)
        state = json_util.loads(s.get("/var/lib/mongodb/parsectl-fake-state.json", sudo=True).decode())
        assert list(state["users"]) == ["admin.parsectl-admin"]
        assert state["users"]["admin.parsectl-admin"]["roles"] == [{"role": "root", "db": "admin"}]
    counts = check_replset_commands(commands_received(lab, lab["hosts"][0]))
    assert counts["replSetInitiate"] == 1 and counts["createUser"] == 1 and counts["replSetReconfig"] == 2
    order = [next(iter(e["cmd"])) for e in commands_received(lab, lab["hosts"][0])]
    assert order.index("replSetInitiate") < order.index("createUser") < order.index("replSetReconfig")
    assert order.index("createUser") < order.index("saslStart")

    # re-apply: nothing to do (plan and apply), logging in as the existing user
    again = cli(lab, "provision-node", "--inventory", str(inv), "--keyfile", str(_keyfile(lab)), *PW,
                "--output", "json")
    assert again.exit_code == 0, again.output
    assert all(h["changes"] == [] for h in json.loads(again.output)["hosts"]), again.output
    again_apply = cli(lab, "provision-node", "--inventory", str(inv), "--keyfile", str(_keyfile(lab)), *PW, "--yes",
                      "--output", "json")
    assert again_apply.exit_code == 0 and all(h["changes"] == [] for h in json.loads(again_apply.output)["hosts"])
    assert check_replset_commands(commands_received(lab, lab["hosts"][0]))["createUser"] == 2  # the re-run's was refused: users exist

    # a wrong password: the localhost exception is closed, the login fails; clear error, exit 1, nothing changed
    wrong = cli(lab, "provision-node", "--inventory", str(inv), "--keyfile", str(_keyfile(lab)), *PW, "--yes",
                "--output", "json", password="not-the-password")
    assert wrong.exit_code == 1, wrong.output
    hosts = {h["host"]: h for h in json.loads(wrong.output)["hosts"]}
    assert "the localhost exception is closed" in hosts["db1"]["error"]
    assert "logging in as 'parsectl-admin' failed" in hosts["db1"]["error"]
    assert f"${PW_ENV}" in hosts["db1"]["error"] and "not-the-password" not in wrong.output
    assert "db1 failed" in hosts["db2"]["error"]
    assert all(not c["applied"] for h in hosts.values() for c in h["changes"])
    wrong_plan = cli(lab, "provision-node", "--inventory", str(inv), "--keyfile", str(_keyfile(lab)), *PW,
                     password="not-the-password")
    assert wrong_plan.exit_code == 1 and "authentication as 'parsectl-admin'" in wrong_plan.output

    # the replica set: status through SSH, and the commands the primary received match the documented formats
    status = cli(lab, "replset", "status", "--inventory", str(inv), *PW, "--output", "json")
    assert status.exit_code == 0, status.output
    summary = json.loads(status.output)
    assert summary["set"] == "rs0"
    assert sorted(m["state"] for m in summary["members"]) == ["PRIMARY", "SECONDARY", "SECONDARY"]
    assert summary["warning"] is None and summary["oplog_window_hours"] == pytest.approx(48, abs=0.1)
    unauth = cli(lab, "replset", "status", "--inventory", str(inv))
    assert unauth.exit_code == 1 and "requires authentication" in unauth.output, unauth.output
    bad = cli(lab, "replset", "status", "--inventory", str(inv), *PW, password="nope-nope")
    assert bad.exit_code == 1 and "authentication as 'parsectl-admin' (authSource admin) failed" in bad.output
    counts = check_replset_commands(commands_received(lab, lab["hosts"][0]))
    assert counts["replSetInitiate"] == 1 and counts["replSetReconfig"] == 2
    _no_password_anywhere(lab, plan.output, applied.output, again.output, again_apply.output, status.output)


def test_try_promote_revert(lab):
    inv = inventory(lab)
    status = json.loads(cli(lab, "replset", "status", "--inventory", str(inv), *PW, "--output", "json").output)
    if len(status["members"]) < 3:
        pytest.skip("needs the set from test_plan_apply_reapply_three_hosts")
    state = lab["work"] / "state"
    db3 = lab["hosts"][2]
    promoted = cli(lab, "replset", "promote", "db3", "--inventory", str(inv), *PW, "--state-dir", str(state),
                   "--timeout", "20")
    assert promoted.exit_code == 0, promoted.output
    summary = json.loads(cli(lab, "replset", "status", "--inventory", str(inv), *PW, "--output", "json").output)
    primary = next(m for m in summary["members"] if m["state"] == "PRIMARY")
    assert primary["name"] == f"127.0.0.1:{db3.mongod_port}" and primary["priority"] == 2
    reverted = cli(lab, "replset", "revert", "--inventory", str(inv), *PW, "--state-dir", str(state),
                   "--timeout", "20")
    assert reverted.exit_code == 0, reverted.output
    summary = json.loads(cli(lab, "replset", "status", "--inventory", str(inv), *PW, "--output", "json").output)
    assert [m["priority"] for m in summary["members"]] == [1, 1, 1]
    assert next(m for m in summary["members"] if m["state"] == "PRIMARY")["name"] == \
        f"127.0.0.1:{lab['hosts'][0].mongod_port}"
    assert not list(state.glob("*.json"))
    check_replset_commands(commands_received(lab, db3))


def _keyfile(lab) -> Path:
    path = lab["work"] / "rs0.keyfile"
    if not path.exists():
        from parsectl.provision.steps import new_keyfile

        path.write_bytes(new_keyfile())
    return path


@pytest.fixture
def fresh_host(lab):
    host = sshd.TestHost("fresh", lab["work"] / f"fresh-{sshd.free_port()}", lab["base"],
                         (lab["hosts"][0].upper / "root/.ssh/authorized_keys").read_text().strip(),
                         mongod_port=sshd.free_port())
    with open(lab["known"], "a") as fh:
        fh.write(host.known_hosts_line())
    try:
        yield host
    finally:
        host.stop()


def test_dbpath_with_other_engine_data_is_refused_then_moved(lab, fresh_host):
    fresh_host.write("/var/lib/mongodb/WiredTiger", b"WiredTiger\n")
    fresh_host.write("/var/lib/mongodb/collection-0-1.wt", b"data")
    fresh_host.start()
    inv = inventory(lab, [fresh_host], replset="rsrocks")
    args = ["provision-node", "--inventory", str(inv), "--replset", "rsrocks", "--playbook", "mongorocks",
            "--var", "supported={debian: [bookworm]}", "--keyfile", str(_keyfile(lab)), *PW, "--yes"]
    refused = cli(lab, *args)
    assert refused.exit_code == 1
    assert "holds wiredTiger data files" in refused.output and "--move-existing-data" in refused.output, \
        refused.output
    with ssh(lab, fresh_host) as s:
        assert s.get("/var/lib/mongodb/collection-0-1.wt", sudo=True) == b"data"  # untouched
        assert s.get("/etc/mongod.conf") is None  # stopped before the config step
    moved = cli(lab, *args, "--move-existing-data")
    assert moved.exit_code == 0, moved.output
    with ssh(lab, fresh_host) as s:
        aside = s.run("ls -d /var/lib/mongodb.parsectl-moved-*", sudo=True).stdout.split()
        assert len(aside) == 1
        assert s.get(f"{aside[0]}/collection-0-1.wt", sudo=True) == b"data"  # kept, never deleted
        assert s.run("test -e /var/lib/mongodb/db/CURRENT", sudo=True, check=False).exit_code == 0  # rocksdb now
        conf_text = s.get("/etc/mongod.conf").decode()
        assert "engine: rocksdb" in conf_text and "internalQueryExecYieldPeriodMS: 1000" in conf_text
    # one member: the member-count warning
    assert "data-bearing member" in moved.output


def test_wrong_and_changed_host_key_unreachable_and_no_sudo(lab):
    db1 = lab["hosts"][0]
    # a changed host key: refused with a clear message, whatever accept_new says
    bad_known = lab["work"] / "known_changed"
    other = paramiko.RSAKey.generate(2048)
    bad_known.write_text(f"[127.0.0.1]:{db1.port} ssh-rsa {other.get_base64()}\n")
    with pytest.raises(SSHError) as exc:
        connect(Target("127.0.0.1", port=db1.port, user="ops", key_file=str(lab["key"]), known_hosts=str(bad_known),
                       accept_new_host_keys=True, retries=0))
    assert exc.value.kind == "host-key-changed" and "HOST KEY CHANGED" in str(exc.value)
    # unknown host key: refused; learnt with accept_new_host_keys
    empty = lab["work"] / "known_empty"
    empty.write_text("")
    with pytest.raises(SSHError) as exc:
        connect(Target("127.0.0.1", port=db1.port, user="ops", key_file=str(lab["key"]), known_hosts=str(empty),
                       retries=0))
    assert exc.value.kind == "host-key-unknown"
    with connect(Target("127.0.0.1", port=db1.port, user="ops", key_file=str(lab["key"]), known_hosts=str(empty),
                        accept_new_host_keys=True, retries=0)) as s:
        assert s.run("echo hi").stdout == "hi\n"
    assert db1.host_key.get_base64() in empty.read_text()
    # through a jump host (as ssh -J), and the tunnel
    db2 = lab["hosts"][1]
    hop = Target("127.0.0.1", port=db1.port, user="ops", key_file=str(lab["key"]), known_hosts=str(lab["known"]))
    with connect(Target("127.0.0.1", port=db2.port, user="ops", key_file=str(lab["key"]),
                        known_hosts=str(lab["known"]), jump=hop, retries=0)) as s:
        assert s.run("hostname").stdout.strip() == "db2"
    # a wrong user key
    wrong = lab["work"] / "wrong_key"
    paramiko.RSAKey.generate(2048).write_private_key_file(str(wrong))
    with pytest.raises(SSHError) as exc:
        connect(Target("127.0.0.1", port=db1.port, user="ops", key_file=str(wrong), known_hosts=str(lab["known"]),
                       retries=0))
    assert exc.value.kind == "auth"
    # the CLI: changed key on one host stops that host only, with a clear message and exit 1
    inv = inventory(lab, lab["hosts"][:2], defaults={"user": "ops", "sudo": True, "key_file": str(lab["key"]),
                                                     "known_hosts": str(bad_known), "retries": 0})
    out = cli(lab, "provision-node", "--inventory", str(inv), "--keyfile", str(_keyfile(lab)), "--output", "json")
    assert out.exit_code == 1
    hosts = {h["host"]: h for h in json.loads(out.output)["hosts"]}
    assert "HOST KEY CHANGED" in hosts["db1"]["error"] and "not in known_hosts" in hosts["db2"]["error"]
    # unreachable
    port = sshd.free_port()
    unreachable = cli(lab, "provision-node", f"ops@127.0.0.1:{port}", "--replset", "rs0", "--known-hosts",
                      str(lab["known"]), "--ssh-key", str(lab["key"]), "--retries", "1", "--timeout", "2",
                      "--keyfile", str(_keyfile(lab)))
    assert unreachable.exit_code == 1 and "cannot reach" in unreachable.output
    # no sudo
    nosudo = cli(lab, "provision-node", f"nosudo@127.0.0.1:{db1.port}", "--replset", "rs0", "--sudo",
                 "--known-hosts", str(lab["known"]), "--ssh-key", str(lab["key"]), "--keyfile", str(_keyfile(lab)))
    assert nosudo.exit_code == 1 and "cannot use sudo without a password" in nosudo.output


def test_bad_playbook_rejected_before_anything_runs(lab, tmp_path):
    book = tmp_path / "bad.yml"
    book.write_text("name: bad\nsteps:\n  - gather_facts: {}\n  - pakages: {names: [x]}\n"
                    "  - service: {name: mongod, enable: true}\n")
    out = cli(lab, "provision-node", f"ops@127.0.0.1:{sshd.free_port()}", "--replset", "rs0", "--playbook",
              str(book), "--keyfile", str(_keyfile(lab)))
    assert out.exit_code == 2
    assert "unknown step 'pakages'; did you mean packages?" in out.output
    assert "unknown field 'enable'; did you mean enabled?" in out.output


def test_join_when_primary_steps_down_mid_reconfig_then_rerun(lab, fresh_host):
    """--join through the primary; the primary answers the reconfig with PrimarySteppedDown (189): the host
    stops with a clear message and exit 1, and a re-run finishes the join."""
    fresh_host.start()
    db1 = lab["hosts"][0]
    inv = inventory(lab, [*lab["hosts"], fresh_host])
    with ssh(lab, db1) as s:
        if s.get("/var/lib/mongodb/parsectl-fake-state.json", sudo=True) is None:
            pytest.skip("needs the set from test_plan_apply_reapply_three_hosts")
        s.put("/var/lib/mongodb/fail-next-reconfig", b"", owner="mongodb:mongodb", sudo=True)
    args = ["provision-node", "fresh", "--inventory", str(inv), "--join", "db1", "--keyfile", str(_keyfile(lab)),
            *PW, "--yes", "--output", "json"]
    failed = cli(lab, *args)
    assert failed.exit_code == 1
    report = json.loads(failed.output)["hosts"][0]
    assert "PrimarySteppedDown" in report["error"] and "re-run the same command" in report["error"]
    rerun = cli(lab, *args)
    assert rerun.exit_code == 0, rerun.output
    summary = json.loads(cli(lab, "replset", "status", "--inventory", str(inv), *PW, "--output", "json").output)
    assert f"127.0.0.1:{fresh_host.mongod_port}" in [m["name"] for m in summary["members"]]
    check_replset_commands(commands_received(lab, db1))


def test_unsupported_distribution_stops_the_host(lab):
    inv = inventory(lab, lab["hosts"][:1])
    out = cli(lab, "provision-node", "--inventory", str(inv), "--playbook", "mongorocks", "--keyfile",
              str(_keyfile(lab)), "--output", "json")
    assert out.exit_code == 1
    error = json.loads(out.output)["hosts"][0]["error"]
    assert "unsupported distribution debian 12 (bookworm)" in error and "stretch" in error
