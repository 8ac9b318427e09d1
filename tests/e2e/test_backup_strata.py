"""`parsectl backup` driving the stand-in strata end to end: local storage, S3 and MinIO on moto (127.0.0.1),
exact command lines, retention guard, gc, restore (mongod running refused, permissions fixed), panics."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest

from tests.support import fake_strata
from tests.support.parsectl_proc import parsectl_command

pytestmark = pytest.mark.slow
DAY = 86400


def backup(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MINIO_", "REMOTE_STORAGE"))}
    return subprocess.run([*parsectl_command(), "backup", *args], capture_output=True, text=True, timeout=120,
                          env={**clean, **(env or {})}, stdin=subprocess.DEVNULL)


@pytest.fixture
def node(tmp_path: Path) -> SimpleNamespace:
    mongo = tmp_path / "mongo"
    (mongo / "db").mkdir(parents=True)
    for name, size in (("000010.sst", 5000), ("000011.sst", 7000), ("MANIFEST-000005", 100), ("CURRENT", 16)):
        (mongo / "db" / name).write_bytes(os.urandom(size))
    control = {"dbpath": str(mongo)}
    launcher = fake_strata.install(tmp_path / "bin", control=control)
    return SimpleNamespace(tmp=tmp_path, mongo=mongo, bin=tmp_path / "bin", launcher=launcher, control=control,
                           common=["--strata", str(launcher), "--lock-dir", str(tmp_path / "locks"),
                                   "--replica-id", "mydata-db1"])


def test_local_storage_lifecycle(node: SimpleNamespace) -> None:
    local = ["--storage", "local", "--mpoint", str(node.tmp / "store"), *node.common]
    fake_strata.write_control(node.bin, {**node.control, "clock_offset": -40 * DAY})
    for _ in range(2):
        assert backup("run", *local).returncode == 0
    fake_strata.write_control(node.bin, node.control)
    ran = backup("run", *local, "-o", "json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["command"] == (f"{node.launcher} --mpoint={node.tmp / 'store'} backup "
                                                 "--replica-id=mydata-db1")
    calls = fake_strata.read_calls(node.bin)
    assert calls[-1]["argv"] == [f"--mpoint={node.tmp / 'store'}", "backup", "--replica-id=mydata-db1"]
    assert calls[-1]["env"] == {"REMOTE_STORAGE": "local", "TZ": "UTC"}

    shown = json.loads(backup("show", *local, "-o", "json").stdout)["backups"]
    assert [b["id"] for b in shown] == ["0", "1", "2"]
    assert shown[0]["num_files"] == 4 and shown[0]["incremental_files"] == 4 and shown[1]["incremental_files"] == 0
    last = json.loads(backup("last", *local, "-o", "json").stdout)
    assert last["age_seconds"] < 60 and last["newest_unix"] == shown[2]["started_unix"]

    # guard: the newest can never go; --keep-at-least 3 keeps everything
    refused = backup("delete", *local, "--backup-id", "2", "--yes")
    assert refused.returncode == 4 and "newest" in refused.stderr
    kept = backup("delete", *local, "--older-than", "30d", "--keep-at-least", "3", "--yes")
    assert kept.returncode == 0 and "nothing to delete" in kept.stdout
    # dry run shows strata's own command (no kept backup is near the cutoff: `delete --age` in hours)
    n = len(fake_strata.read_calls(node.bin))
    dry = backup("delete", *local, "--older-than", "30d", "--dry-run", "-o", "json")
    plan = json.loads(dry.stdout)
    assert plan["delete"] == ["0", "1"] and plan["commands"] == [
        f"{node.launcher} --mpoint={node.tmp / 'store'} delete --replica-id=mydata-db1 --age=720h"]
    assert [c["argv"][1:3] for c in fake_strata.read_calls(node.bin)[n:]] == [["show", "backups"]]
    done = backup("delete", *local, "--older-than", "30d", "--yes", "-o", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["deleted"] == ["0", "1"]
    argvs = [c["argv"][1:] for c in fake_strata.read_calls(node.bin)[n:]]
    assert ["delete", "--replica-id=mydata-db1", "--age=720h"] in argvs and ["gc", "--replica-id=mydata-db1"] in argvs
    assert [b["id"] for b in json.loads(backup("show", *local, "-o", "json").stdout)["backups"]] == ["2"]
    assert backup("check", *local, "--max-age", "26h").returncode == 0

    # restore: refused while a mongod holds the target; otherwise files land in <target>/db, 0640/0750
    target = node.tmp / "restore"
    target.mkdir()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (target / "mongod.lock").write_text(f"{sleeper.pid}\n")
        n = len(fake_strata.read_calls(node.bin))
        busy = backup("restore", *local, "-i", "2", "--target-path", str(target), "--owner", "", "--yes")
        assert busy.returncode == 4 and f"pid {sleeper.pid}" in busy.stderr and "stop mongod first" in busy.stderr
        assert fake_strata.read_calls(node.bin)[n:] == []
    finally:
        sleeper.kill()
        sleeper.wait()
    (target / "mongod.lock").write_text("")
    restored = backup("restore", *local, "-i", "2", "--target-path", str(target), "--owner", "root:root", "--yes")
    assert restored.returncode == 0, restored.stderr
    assert "--storageEngine=rocksdb" in restored.stdout and f"--dbpath={target}" in restored.stdout
    for src in (node.mongo / "db").iterdir():
        dest = target / "db" / src.name
        assert dest.read_bytes() == src.read_bytes()
        assert dest.stat().st_mode & 0o777 == 0o640  # strata wrote 0666
    assert (target / "db").stat().st_mode & 0o777 == 0o750


def test_s3_and_minio_on_moto(node: SimpleNamespace) -> None:
    from tests.support.s3 import s3_server

    with s3_server() as endpoint:
        fake_strata.write_control(node.bin, {**node.control, "s3_endpoint": endpoint})
        creds = {"AWS_ACCESS_KEY_ID": "AKIAFAKE", "AWS_SECRET_ACCESS_KEY": "fake-secret-1"}
        s3 = ["--bucket", "strata", "--region", "eu-west-1", "--prefix", "mongo", "--acl", "bucket-owner-full-control",
              *node.common]
        assert backup("run", *s3, env=creds).returncode == 0
        call = fake_strata.read_calls(node.bin)[-1]
        assert call["argv"] == ["--bucket=strata", "--region=eu-west-1", "--bucket-prefix=mongo",
                                "--bucket-acl=bucket-owner-full-control", "backup", "--replica-id=mydata-db1"]
        assert call["env"]["AWS_SECRET_ACCESS_KEY"] == "fake-secret-1"
        assert "fake-secret-1" not in " ".join(call["cmdline"] + call["parent_cmdline"])
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="x", aws_secret_access_key="y",
                              region_name="us-east-1")
        keys = {o["Key"] for o in client.list_objects_v2(Bucket="strata")["Contents"]}
        assert any(k.startswith("mongo/metadata/mydata-db1/0_") for k in keys)
        assert sum(k.startswith("mongo/mydata-db1/") for k in keys) == 4

        # no credentials: refused before strata runs; a region goamz does not know: refused too
        nocreds = backup("run", *s3)
        assert nocreds.returncode == 2 and "AWS_ACCESS_KEY_ID" in nocreds.stderr
        region = backup("run", "--bucket", "strata", "--region", "eu-north-1", *node.common, env=creds)
        assert region.returncode == 2 and "--storage minio" in region.stderr

        # MinIO driver against the same S3 endpoint (http -> MINIO_SECURE=false)
        minio = ["--storage", "minio", "--endpoint", endpoint, "--bucket", "strata-minio", *node.common]
        done = backup("run", *minio, env={"MINIO_ACCESS_KEY_ID": "m", "MINIO_SECRET_ACCESS_KEY": "n"})
        assert done.returncode == 0, done.stderr
        call = fake_strata.read_calls(node.bin)[-1]
        assert call["env"]["REMOTE_STORAGE"] == "minio" and call["env"]["MINIO_SECURE"] == "false"
        assert call["env"]["MINIO_ENDPOINT"] == endpoint.removeprefix("http://")
        assert call["argv"] == ["--bucket=strata-minio", "--region=us-east-1", "backup", "--replica-id=mydata-db1"]
        shown = json.loads(backup("show", *minio, "-o", "json", env={"MINIO_ACCESS_KEY_ID": "m",
                                                                      "MINIO_SECRET_ACCESS_KEY": "n"}).stdout)
        assert [b["id"] for b in shown["backups"]] == ["0"]


def test_failures_become_one_clear_message(node: SimpleNamespace) -> None:
    local = ["--storage", "local", "--mpoint", str(node.tmp / "store"), *node.common]
    fake_strata.write_control(node.bin, {**node.control, "panic": {"backup": "open /data/db/backup: permission denied"}})
    panicked = backup("run", *local)
    assert panicked.returncode == 1
    assert panicked.stderr.strip() == ("parsectl backup: strata backup panicked (exit 2): panic: open /data/db/backup: "
                                       "permission denied")
    fake_strata.write_control(node.bin, {**node.control, "silent": ["backup"]})
    silent = backup("run", *local)
    assert silent.returncode == 1 and "never said 'Backup finished'" in silent.stderr
    fake_strata.write_control(node.bin, {**node.control, "mongod_port": 27018})
    wrong_port = backup("run", *local)
    assert wrong_port.returncode == 1 and "strata backup failed (exit 1): no reachable servers" in wrong_port.stderr
    assert backup("run", *local, "--port", "27018").returncode == 0
    missing = backup("run", "--storage", "local", "--mpoint", str(node.tmp / "s"), "--strata", "/nonexistent/strata",
                     "--lock-dir", str(node.tmp), "--replica-id", "r")
    assert missing.returncode == 1 and "could not be started" in missing.stderr
    nothing = backup("check", "--storage", "local", "--mpoint", str(node.tmp / "empty"), *node.common)
    assert nothing.returncode == 1 and nothing.stdout.startswith("CRITICAL: localhost mydata-db1: no backup at all")
    unknown = backup("check", "--hosts", "root@127.0.0.1:1", "--storage", "local", "--mpoint", str(node.tmp / "e"),
                     *node.common)
    assert unknown.returncode == 3 and unknown.stdout.startswith("UNKNOWN:")
