"""`parsectl backup schedule` over SSH on two loopback nodes (real sshd, own host names), with the
stand-in strata: install, re-run idempotently, the installed script's backup -> guarded delete -> gc, its
skip-on-failure and lock, the primary warning, and --remove."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from parsectl.ssh import Target, connect
from tests.support import fake_strata
from tests.support.backup_hosts import FakeMongod, loopback_hosts, missing
from tests.support.parsectl_proc import parsectl_command

pytestmark = pytest.mark.slow
DAY = 86400


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    reason = missing()
    assert reason is None, f"backup schedule tests: {reason}"
    work = tmp_path_factory.mktemp("backup-lab")
    (work / "mongo" / "db").mkdir(parents=True)
    (work / "mongo" / "db" / "000001.sst").write_bytes(b"s" * 1000)
    (work / "mongo" / "db" / "MANIFEST-000001").write_bytes(b"m" * 10)
    with loopback_hosts(work, ["db1", "db2"]) as (hosts, key, known), \
            FakeMongod(primary=True) as primary, FakeMongod(primary=False) as secondary:
        bin_dir = work / "strata-bin"
        control = {"dbpath": str(work / "mongo"), "mongod_port": primary.port,
                   "mongod_auth": {"username": "backup", "password": "pw-Secret-42"}}
        launcher = fake_strata.install(bin_dir, control=control)
        yield SimpleNamespace(work=work, hosts=hosts, key=key, known=known, primary=primary,
                              secondary=secondary, bin=bin_dir, launcher=launcher, control=control,
                              root=work / "root", store=work / "store")


def backup(lab: SimpleNamespace, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*parsectl_command(), "backup", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PARSECTL_MONGOD_PASSWORD": "pw-Secret-42", **(env or {})},
                          stdin=subprocess.DEVNULL)


def schedule_args(lab: SimpleNamespace, *extra: str, port: int | None = None) -> list[str]:
    return ["schedule", "--hosts", ",".join(h.login for h in lab.hosts), "--ssh-key", str(lab.key),
            "--known-hosts", str(lab.known), "--storage", "local", "--mpoint", str(lab.store),
            "--strata", str(lab.launcher), "--port", str(port or lab.primary.port), "--mongod-user", "backup",
            "--every", "2h", "--retention", "30d", "--keep-at-least", "2", "--root", str(lab.root),
            "--output", "json", *extra]


def session(lab: SimpleNamespace, host: int = 0):  # type: ignore[no-untyped-def]
    h = lab.hosts[host]
    return connect(Target("127.0.0.1", port=h.port, user="root", key_file=str(lab.key), known_hosts=str(lab.known)))


def calls_since(lab: SimpleNamespace, n: int) -> list[dict[str, object]]:
    return fake_strata.read_calls(lab.bin)[n:]


def verbs(calls: list[dict[str, object]]) -> list[str]:
    out = []
    for call in calls:
        argv = [a for a in call["argv"] if not a.startswith("--mpoint") and not a.startswith("--port")  # type: ignore[union-attr]
                and not a.startswith("--username") and not a.startswith("--password")]
        out.append(" ".join(argv))
    return out


def test_schedule_install_idempotent_run_and_remove(lab: SimpleNamespace) -> None:
    root = lab.root
    first = backup(lab, *schedule_args(lab))
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert [n["replica_id"] for n in report["nodes"]] == ["rs0-db1", "rs0-db2"]  # <replset>-<short hostname>
    assert all(n["changed"] for n in report["nodes"])
    assert first.stderr.count("is the PRIMARY of rs0") == 2  # the stand-in mongod answers hello as primary

    cron = root / "etc/cron.d/parsectl-backup-rs0-db1"
    script = root / "usr/local/lib/parsectl/backup-rs0-db1.sh"
    env_file = root / "etc/parsectl/backup-rs0-db1.env"
    cron_text = cron.read_text()
    assert f" root {script}\n" in cron_text and "*/2 * * *" in cron_text or "-23/2 * * *" in cron_text
    assert oct(script.stat().st_mode & 0o777) == "0o755" and oct(env_file.stat().st_mode & 0o777) == "0o600"
    assert "pw-Secret-42" in env_file.read_text()
    assert "pw-Secret-42" not in script.read_text() + cron_text
    assert f"{lab.launcher} --mpoint={lab.store} --port={lab.primary.port} --username=backup" in script.read_text()
    mtimes = {p: p.stat().st_mtime_ns for p in (cron, script, env_file)}

    # the same schedule again: nothing written
    again = backup(lab, *schedule_args(lab))
    assert again.returncode == 0, again.stderr
    nodes = json.loads(again.stdout)["nodes"]
    assert not any(n["changed"] for n in nodes)
    assert {s for n in nodes for s in n["files"].values()} == {"unchanged"}
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes

    # a secondary: no warning
    quiet = backup(lab, *schedule_args(lab, port=lab.secondary.port), "--dry-run")
    assert quiet.returncode == 0 and "PRIMARY" not in quiet.stderr
    assert {s for n in json.loads(quiet.stdout)["nodes"] for s in n["files"].values()} >= {"would-updated"}

    # three 40-day-old backups, then the installed script on db1: backup, guarded delete, gc
    fake_strata.write_control(lab.bin, {**lab.control, "clock_offset": -40 * DAY})
    with session(lab) as s:
        for _ in range(3):
            r = s.run(f"REMOTE_STORAGE=local {lab.launcher} --mpoint={lab.store} --port={lab.primary.port} "
                      "--username=backup --password=pw-Secret-42 backup -r rs0-db1", check=False)
            assert r.exit_code == 0, r.stderr
        fake_strata.write_control(lab.bin, lab.control)
        n = len(fake_strata.read_calls(lab.bin))
        run = s.run(str(script), check=False)
        assert run.exit_code == 0, (run.stdout, run.stderr, (root / "var/log/parsectl/backup-rs0-db1.log").read_text())
        calls = calls_since(lab, n)
        assert verbs(calls) == ["backup --replica-id=rs0-db1", "show backups --replica-id=rs0-db1",
                                "delete --replica-id=rs0-db1 --delete-backup-id=0",
                                "delete --replica-id=rs0-db1 --delete-backup-id=1", "gc --replica-id=rs0-db1"]
        assert {c["host"] for c in calls} == {"db1"}
        assert all(c["env"]["REMOTE_STORAGE"] == "local" and c["env"]["TZ"] == "UTC" for c in calls)
        # the password reached strata (it can only take it on argv) but no shell or cron line
        assert all("--password=pw-Secret-42" in c["argv"] for c in calls)
        assert not any("pw-Secret-42" in " ".join(c["parent_cmdline"]) for c in calls)
        shown = backup(lab, "show", "--storage", "local", "--mpoint", str(lab.store), "--strata", str(lab.launcher),
                       "--replica-id", "rs0-db1", "--port", str(lab.primary.port), "--mongod-user", "backup",
                       "--lock-dir", str(root / "run/lock"), "-o", "json")
        assert [b["id"] for b in json.loads(shown.stdout)["backups"]] == ["2", "3"]  # keep-at-least 2 kept the old 2
        log = (root / "var/log/parsectl/backup-rs0-db1.log").read_text()
        assert "backup: ok" in log and "gc: ok" in log and "Backup finished" in log

        # a failed backup: nothing deleted, nothing collected
        fake_strata.write_control(lab.bin, {**lab.control, "fail": {"backup": "no reachable servers"}})
        n = len(fake_strata.read_calls(lab.bin))
        run = s.run(str(script), check=False)
        assert run.exit_code == 1
        assert verbs(calls_since(lab, n)) == ["backup --replica-id=rs0-db1"]
        assert "backup failed: skipping delete and gc" in (root / "var/log/parsectl/backup-rs0-db1.log").read_text()

        # a panic in gc: exit 2 and strata's line in the log
        fake_strata.write_control(lab.bin, {**lab.control, "panic": {"gc": "runtime error: index out of range"}})
        assert s.run(str(script), check=False).exit_code == 2
        assert "gc: FAILED (exit 2): panic: runtime error: index out of range" in \
            (root / "var/log/parsectl/backup-rs0-db1.log").read_text()
        fake_strata.write_control(lab.bin, lab.control)

        # runs never overlap: while the replica's lock is held, the script and `parsectl backup run` step back
        lock = root / "run/lock/parsectl-strata-rs0-db1.lock"
        with open(lock, "a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            n = len(fake_strata.read_calls(lab.bin))
            assert s.run(str(script), check=False).exit_code == 75
            busy = backup(lab, "run", "--host", lab.hosts[0].login, "--ssh-key", str(lab.key), "--known-hosts",
                          str(lab.known), "--storage", "local", "--mpoint", str(lab.store), "--strata",
                          str(lab.launcher), "--port", str(lab.primary.port), "--mongod-user", "backup",
                          "--lock-dir", str(root / "run/lock"))
            assert busy.returncode == 75, busy.stderr
            assert "another backup, delete or gc for replica rs0-db1 is running" in busy.stderr
            assert calls_since(lab, n) == []

    # uninstall, twice
    gone = backup(lab, *schedule_args(lab, "--remove", "--yes"))
    assert gone.returncode == 0, gone.stderr
    assert {s for n in json.loads(gone.stdout)["nodes"] for s in n["files"].values()} == {"removed"}
    assert not cron.exists() and not script.exists() and not env_file.exists()
    again = backup(lab, *schedule_args(lab, "--remove", "--yes"))
    assert {s for n in json.loads(again.stdout)["nodes"] for s in n["files"].values()} == {"absent"}


def test_remove_needs_confirmation_and_bad_every(lab: SimpleNamespace) -> None:
    refused = backup(lab, *schedule_args(lab, "--remove"))
    assert refused.returncode == 4 and "--yes" in refused.stderr
    bad = backup(lab, *[a if a != "2h" else "7h" for a in schedule_args(lab)])
    assert bad.returncode == 2 and "--every 7h" in bad.stderr


def test_strata_over_ssh_keeps_credentials_off_command_lines(lab: SimpleNamespace, tmp_path: Path) -> None:
    """`backup run --host`: the storage secret travels in the script on stdin, never on a command line."""
    from tests.support.s3 import s3_server

    with s3_server() as endpoint:
        fake_strata.write_control(lab.bin, {**lab.control, "s3_endpoint": endpoint})
        n = len(fake_strata.read_calls(lab.bin))
        secret = "aws-Secret-" + os.urandom(4).hex()
        done = backup(lab, "run", "--host", lab.hosts[1].login, "--ssh-key", str(lab.key), "--known-hosts",
                      str(lab.known), "--bucket", "strata-ssh", "--prefix", "prod", "--strata", str(lab.launcher),
                      "--port", str(lab.primary.port), "--mongod-user", "backup", "--lock-dir", str(tmp_path),
                      "--output", "json",
                      env={"AWS_ACCESS_KEY_ID": "AKIATEST", "AWS_SECRET_ACCESS_KEY": secret})
        assert done.returncode == 0, done.stderr
        target = tmp_path / "restore-target"
        restored = backup(lab, "restore", "--host", lab.hosts[1].login, "--ssh-key", str(lab.key), "--known-hosts",
                          str(lab.known), "--bucket", "strata-ssh", "--prefix", "prod", "--strata", str(lab.launcher),
                          "--replica-id", "rs0-db2", "--lock-dir", str(tmp_path), "-i", "0", "--target-path",
                          str(target), "--owner", "nobody:nogroup", "--yes",
                          env={"AWS_ACCESS_KEY_ID": "AKIATEST", "AWS_SECRET_ACCESS_KEY": secret})
        fake_strata.write_control(lab.bin, lab.control)
        assert restored.returncode == 0, restored.stderr
        assert "sudo -u nobody mongod --dbpath=" in restored.stdout
        sst = target / "db" / "000001.sst"
        assert sst.read_bytes() == b"s" * 1000 and sst.stat().st_mode & 0o777 == 0o640
        import pwd

        assert pwd.getpwuid(sst.stat().st_uid).pw_name == "nobody"
        assert json.loads(done.stdout)["replica_id"] == "rs0-db2"  # asked mongod for the set name, host for its name
        call = calls_since(lab, n)[0]
        assert call["host"] == "db2"
        assert call["argv"] == ["--bucket=strata-ssh", "--region=us-east-1", "--bucket-prefix=prod",
                                f"--port={lab.primary.port}", "--username=backup", "--password=pw-Secret-42",
                                "backup", "--replica-id=rs0-db2"]
        assert call["env"]["AWS_SECRET_ACCESS_KEY"] == secret and call["env"]["REMOTE_STORAGE"] == "s3"
        assert secret not in " ".join(call["cmdline"]) + " ".join(call["parent_cmdline"])
        assert call["parent_cmdline"][:3] == ["flock", "-n", "-E"]
