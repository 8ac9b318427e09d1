"""Pure parts of provision: playbook validation, inventory, replica-set command documents and advice."""

from __future__ import annotations

import pytest

from parsectl.provision import inventory, playbook
from parsectl.provision import replset as rs


def test_bundled_playbooks_validate() -> None:
    wt = playbook.load("wiredtiger")
    rocks = playbook.load("mongorocks")
    assert wt.vars["engine"] == "wiredTiger" and wt.vars["psmdb_version"] == "8.0"
    assert rocks.vars["engine"] == "rocksdb" and rocks.vars["psmdb_version"] == "3.4"
    assert rocks.vars["packages"] == ["percona-server-mongodb-34"]
    for book in (wt, rocks):
        names = [s.name for s in book.steps]
        assert names[0] == "gather_facts" and names[1] == "data_dir" and names[-1] == "replset_member"


@pytest.mark.parametrize("text, message", [
    ("steps:\n  - gather_facts: {}\n  - pakages: {names: [a]}\n", "unknown step 'pakages'; did you mean packages?"),
    ("steps:\n  - gather_facts: {}\n  - packages: {names: [a], nme: 1}\n", "unknown field 'nme'"),
    ("steps:\n  - gather_facts: {}\n  - packages: {}\n", "missing required field 'names'"),
    ("steps:\n  - gather_facts: {}\n  - wait_for_port: {port: 'x'}\n", "port must be an integer"),
    ("steps:\n  - gather_facts: {}\n  - packages: {names: '${nope}'}\n", "${nope} is not defined"),
    ("steps:\n  - packages: {names: [a]}\n", "step 1 must be gather_facts"),
    ("steps:\n  - gather_facts: {}\n  - replset_member: {}\n  - packages: {names: [a]}\n",
     "node steps must come before the replica-set steps"),
    ("stepz: []\n", "unknown top-level keys"),
    ("steps: [\n", "not valid YAML"),
])
def test_playbook_validation_rejects(text: str, message: str) -> None:
    with pytest.raises(playbook.PlaybookError) as exc:
        playbook.parse(text, "t.yml")
    assert message in str(exc.value)


def test_playbook_reports_every_problem_at_once() -> None:
    with pytest.raises(playbook.PlaybookError) as exc:
        playbook.parse("steps:\n  - gather_facts: {}\n  - pakages: {}\n  - service: {nam: x}\n", "t.yml")
    text = str(exc.value)
    assert "pakages" in text and "nam" in text and "missing required field 'name'" in text


def test_substitution_keeps_types_and_var_parsing() -> None:
    assert playbook.substitute("${x}", {"x": [1, 2]}) == [1, 2]
    assert playbook.substitute("a-${x}", {"x": 3}) == "a-3"
    assert playbook.parse_var("supported={debian: [bookworm]}") == ("supported", {"debian": ["bookworm"]})
    with pytest.raises(playbook.PlaybookError):
        playbook.parse_var("novalue")


def test_inventory(tmp_path) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text("replset: rs0\ndefaults: {user: ops, sudo: true, jump: 'ops@bastion:2222'}\nhosts:\n"
                    "  - host: db1\n  - {host: db2, priority: 2}\n  - {host: db3, port: 2200, role: backup}\n"
                    "  - {host: db4, role: arbiter}\n")
    inv = inventory.load(path)
    assert [h.name for h in inv.hosts] == ["db1", "db2", "db3:2200", "db4"]
    assert inv.hosts[0].target.jump.port == 2222 and inv.hosts[0].target.sudo
    assert inv.hosts[1].member_fields() == {"priority": 2}
    assert inv.hosts[2].member_fields() == {"priority": 0, "hidden": True}
    assert inv.hosts[3].member_fields() == {"arbiterOnly": True}
    path.write_text("hosts:\n  - {host: db1, rol: data}\n")
    with pytest.raises(inventory.InventoryError, match="did you mean role"):
        inventory.load(path)
    path.write_text("hosts:\n  - {host: db1, votes: 0, priority: 1}\n")
    with pytest.raises(inventory.InventoryError, match="priority 0"):
        inventory.load(path)


CONFIG = {"_id": "rs0", "version": 3, "term": 2, "protocolVersion": 1,
          "members": [{"_id": 0, "host": "a:27017", "priority": 1, "votes": 1},
                      {"_id": 2, "host": "b:27017", "priority": 1, "votes": 1}],
          "settings": {"chainingAllowed": True}}


def test_initiate_command_documented_shape() -> None:
    assert rs.initiate_command("rs0", "a:27017") == {
        "replSetInitiate": {"_id": "rs0", "protocolVersion": 1, "members": [{"_id": 0, "host": "a:27017"}]}}


def test_add_member_reconfig() -> None:
    new = rs.config_with_member(CONFIG, "c:27017", {"priority": 0, "hidden": True})
    assert new["version"] == 4 and CONFIG["version"] == 3  # a copy
    assert new["members"][-1] == {"_id": 3, "host": "c:27017", "priority": 0, "hidden": True}
    cmd = rs.reconfig_command(new)
    assert list(cmd) == ["replSetReconfig", "force", "maxTimeMS"] and cmd["force"] is False
    assert "term" not in cmd["replSetReconfig"]  # server-managed
    assert rs.voting_members_added(CONFIG, new) == 1


def test_member_count_warning() -> None:
    assert rs.member_count_warning(CONFIG) is not None
    three = rs.config_with_member(CONFIG, "c:27017", {})
    assert rs.member_count_warning(three) is None
    psa = rs.config_with_member(CONFIG, "c:27017", {"arbiterOnly": True})
    assert rs.member_count_warning(psa) is None


def test_oplog_advice() -> None:
    hours, warning = rs.oplog_advice(48, 990, 10 * 1024 ** 3, 50)
    assert warning is None and hours < 1
    hours, warning = rs.oplog_advice(2, 990, 1024 ** 4, 50)  # 1 TB at 50 MB/s: ~5.8 h > window
    assert warning and "Resize the oplog" in warning and hours == pytest.approx(5.83, abs=0.01)


def test_promote_and_revert_changes(tmp_path) -> None:
    changes = rs.promote_changes(CONFIG, "b:27017")
    assert changes == {"b:27017": {"priority": 2.0, "votes": 1}}
    path = tmp_path / "s.json"
    assert rs.save_priorities(CONFIG, path, "a:27017") and not rs.save_priorities(CONFIG, path)
    import json

    saved = json.loads(path.read_text())
    promoted = rs.config_with_priorities(CONFIG, changes)
    assert rs.revert_changes(promoted, saved) == {"b:27017": {"priority": 1}}
    with pytest.raises(rs.ReplSetError):
        rs.promote_changes(CONFIG, "zz:1")


def test_create_user_command_and_redaction() -> None:
    doc = rs.create_user_command("parsectl-admin", "s3cret")
    assert doc == {"createUser": "parsectl-admin", "pwd": "s3cret", "roles": [{"role": "root", "db": "admin"}]}
    assert rs.redacted(doc)["pwd"] == "<redacted>" and doc["pwd"] == "s3cret"


# --- the stand-in mongod's access control, driven by the real replset functions (no SSH: loopback directly)


@pytest.fixture
def secured_mongod(tmp_path):
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    key = tmp_path / "keyfile"
    key.write_text("c2VjcmV0LWtleWZpbGUtZm9yLXRlc3Rz\n")
    key.chmod(0o400)
    (tmp_path / "db").mkdir()
    conf = tmp_path / "mongod.conf"
    conf.write_text(f"net: {{port: {port}, bindIp: 127.0.0.1}}\nstorage: {{dbPath: {tmp_path / 'db'}}}\n"
                    f"replication: {{replSetName: rs0}}\nsystemLog: {{path: {tmp_path / 'mongod.log'}}}\n"
                    f"security: {{keyFile: {key}}}\n")
    script = Path(__file__).resolve().parents[1] / "support" / "fake_mongod.py"
    proc = subprocess.Popen([sys.executable, str(script), "--config", str(conf)])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port, tmp_path
    finally:
        proc.terminate()
        proc.wait(5)


def test_admin_user_bootstrap_and_login(secured_mongod) -> None:
    port, work = secured_mongod
    clients: list[rs.Admin] = []

    def connect(password: str | None = None) -> rs.Admin:
        admin = rs.Admin.connect(port, label="m", username="parsectl-admin" if password else None, password=password,
                                 timeout_ms=3000)
        clients.append(admin)
        return admin

    lines: list[str] = []
    try:
        noauth = connect()
        # under the localhost exception: no replSetGetConfig, but initiate and createUser
        with pytest.raises(rs.AuthError, match="replSetGetConfig requires authentication"):
            noauth.get_config()
        assert rs.initiated_set(noauth) is None
        assert rs.ensure_initiated(noauth, "rs0", f"127.0.0.1:{port}", {}, lines.append)
        assert rs.ensure_admin_user(noauth, lambda: connect("pw-1"), "parsectl-admin", None, lines.append,
                                    apply=False) == ("pending", None)
        action, admin = rs.ensure_admin_user(noauth, lambda: connect("pw-1"), "parsectl-admin", "pw-1", lines.append,
                                             apply=True)
        assert action == "created" and admin is not None and admin.get_config()["_id"] == "rs0"
        # the exception is closed now, for every connection
        assert not rs.localhost_exception_open(noauth)
        with pytest.raises(rs.AuthError, match="requires authentication"):
            connect().get_status()
        # idempotent: the re-run logs in
        assert rs.ensure_admin_user(noauth, lambda: connect("pw-1"), "parsectl-admin", "pw-1", lines.append,
                                    apply=True)[0] == "exists"
        assert rs.ensure_admin_user(noauth, lambda: connect("pw-1"), "parsectl-admin", "pw-1", lines.append,
                                    apply=False)[0] == "exists"
        # a wrong password: clear errors, in plan and apply
        with pytest.raises(rs.AuthError, match="localhost exception is closed .* logging in as 'parsectl-admin' failed"):
            rs.ensure_admin_user(noauth, lambda: connect("wrong"), "parsectl-admin", "wrong", lines.append,
                                 apply=True, password_source="$PW")
        with pytest.raises(rs.AuthError, match="authentication as 'parsectl-admin' .* failed"):
            rs.ensure_admin_user(noauth, lambda: connect("wrong"), "parsectl-admin", "wrong", lines.append,
                                 apply=False)
        with pytest.raises(rs.AuthError, match="already has users"):
            rs.ensure_admin_user(noauth, lambda: connect(None), "parsectl-admin", None, lines.append, apply=False)
    finally:
        for client in clients:
            client.close()
    assert "created user 'parsectl-admin' (roles: root) in admin through the localhost exception" in lines
    # neither parsectl's record nor the server's logs hold the password
    assert all("pw-1" not in str(doc) for client in clients for _, doc in client.sent)
    for name in ("fake-commands.jsonl", "mongod.log"):
        assert "pw-1" not in (work / name).read_text()
    assert "pw-1" not in (work / "db" / "parsectl-fake-state.json").read_text()
