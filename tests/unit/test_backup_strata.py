"""strata command lines, show parsing, the retention guard and error handling (no processes started,
except the stand-in strata for the runner tests)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import pytest

from parsectl.backup import strata
from parsectl.backup.strata import (
    BackupRecord,
    Completed,
    Credentials,
    Invocation,
    Mongod,
    OptionsError,
    RetentionError,
    Storage,
    StrataConfig,
    StrataError,
)
from tests.support import fake_strata

UTC = dt.UTC
CREDS = Credentials("AKIAEXAMPLE", "s3cr3t/KEY", "test")


def cfg(**storage: object) -> StrataConfig:
    kind = storage.pop("kind", "s3")
    mongod = storage.pop("mongod", Mongod())
    return StrataConfig(storage=Storage(kind=kind, **storage), mongod=mongod, credentials=CREDS,  # type: ignore[arg-type]
                        lock_dir="/run/lock")


# --- command lines ----------------------------------------------------------------------------------------

def test_s3_backup_command_line_and_environment() -> None:
    inv = strata.backup_cmd(cfg(bucket="backups", region="us-west-2", prefix="mongo/prod",
                                acl="bucket-owner-full-control"), "mydata-db1")
    assert inv.argv == ["strata", "--bucket=backups", "--region=us-west-2", "--bucket-prefix=mongo/prod",
                        "--bucket-acl=bucket-owner-full-control", "backup", "--replica-id=mydata-db1"]
    assert inv.env == {"TZ": "UTC", "REMOTE_STORAGE": "s3", "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
                       "AWS_SECRET_ACCESS_KEY": "s3cr3t/KEY"}
    assert not any("s3cr3t" in a or "AKIA" in a for a in inv.command())
    assert inv.command()[:5] == ["flock", "-n", "-E", "75", "/run/lock/parsectl-strata-mydata-db1.lock"]


def test_minio_and_local_command_lines() -> None:
    minio = strata.gc_cmd(cfg(kind="minio", bucket="b", endpoint="http://127.0.0.1:9000", prefix="p"), "rs0-db2")
    assert minio.argv == ["strata", "--bucket=b", "--region=us-east-1", "--bucket-prefix=p", "gc",
                          "--replica-id=rs0-db2"]
    assert minio.env["REMOTE_STORAGE"] == "minio"
    assert minio.env["MINIO_ENDPOINT"] == "127.0.0.1:9000" and minio.env["MINIO_SECURE"] == "false"
    assert minio.env["MINIO_SECRET_ACCESS_KEY"] == "s3cr3t/KEY"
    local = strata.show_backups_cmd(cfg(kind="local", mpoint="/mnt/backup"), "rs0-db1", show_size=True)
    assert local.argv == ["strata", "--mpoint=/mnt/backup", "show", "backups", "--replica-id=rs0-db1", "--show-size"]
    assert local.env == {"TZ": "UTC", "REMOTE_STORAGE": "local"}
    assert local.lock is None  # show is read-only: no lock


def test_every_verb_uses_strata_flags() -> None:
    c = cfg(bucket="b", mongod=Mongod(port=27018, username="backup", password="pw'x"))
    g = ["strata", "--bucket=b", "--region=us-east-1", "--port=27018", "--username=backup", "--password=pw'x"]
    assert strata.delete_id_cmd(c, "r", "3").argv == g + ["delete", "--replica-id=r", "--delete-backup-id=3"]
    assert strata.delete_age_cmd(c, "r", "30d").argv == g + ["delete", "--replica-id=r", "--age=720h"]
    assert strata.last_backup_time_cmd(c, "r").argv == g + ["show", "last-backup-time", "--replica-id=r"]
    assert strata.replica_ids_cmd(c).argv == g + ["show", "replica-ids"]
    assert strata.restore_cmd(c, "r", "7", "/data/restore").argv == g + [
        "restore", "--replica-id=r", "--backup-id=7", "--target-path=/data/restore"]
    assert "pw'x" not in strata.backup_cmd(c, "r").display() and "--password=***" in strata.backup_cmd(c, "r").display()


def test_strata_accepts_every_command_line(tmp_path: Path) -> None:
    """The stand-in parses exactly strata's flags (go-flags): every built command line gets past parsing."""
    c = cfg(kind="local", mpoint=str(tmp_path / "store"), mongod=Mongod(port=27018, username="u", password="p"))
    c.max_background_copies = 4
    for inv in (strata.show_backups_cmd(c, "r", show_size=True), strata.last_backup_time_cmd(c, "r"),
                strata.replica_ids_cmd(c), strata.gc_cmd(c, "r"), strata.delete_age_cmd(c, "r", "12h")):
        command, g, sub = fake_strata.parse(inv.argv[1:], fake_strata.LOCAL_FLAGS)
        assert g["port"] == 27018 and g["max-background-copies"] == 4 and g["mpoint"] == str(tmp_path / "store")
    s3 = cfg(bucket="b", prefix="x", acl="private")
    command, g, sub = fake_strata.parse(strata.restore_cmd(s3, "r", "2", "/t").argv[1:], fake_strata.S3_FLAGS)
    assert (command, g["bucket"], g["bucket-prefix"], sub) == ("restore", "b", "x", {
        "replica-id": "r", "backup-id": "2", "target-path": "/t"})


@pytest.mark.parametrize(("storage", "message"), [
    ({"kind": "s3"}, "--bucket is required"),
    ({"kind": "s3", "bucket": "b", "region": "us-east-2"}, "unknown to strata's S3 library"),
    ({"kind": "s3", "bucket": "b", "acl": "everyone"}, "--acl"),
    ({"kind": "s3", "bucket": "b", "endpoint": "http://x"}, "--storage minio"),
    ({"kind": "minio", "bucket": "b"}, "--endpoint"),
    ({"kind": "local"}, "not expanded"),
    ({"kind": "local", "mpoint": "backups"}, "absolute"),
    ({"kind": "gcs"}, "choose s3, minio or local"),
])
def test_bad_storage_options(storage: dict[str, object], message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        strata.backup_cmd(cfg(**storage), "r")


def test_missing_credentials_and_bad_ids() -> None:
    c = cfg(bucket="b")
    c.credentials = Credentials(source="missing")
    with pytest.raises(OptionsError, match="AWS_ACCESS_KEY_ID"):
        strata.backup_cmd(c, "r")
    with pytest.raises(OptionsError, match="whole numbers"):
        strata.delete_id_cmd(cfg(bucket="b"), "r", "latest")
    with pytest.raises(OptionsError, match="replica ID"):
        strata.gc_cmd(cfg(bucket="b"), "bad id;rm")


def test_credentials_from_environment_and_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "MINIO_ACCESS_KEY_ID": "m",
           "MINIO_SECRET_ACCESS_KEY": "n"}
    assert (Credentials.resolve("s3", environ=env).access_key, Credentials.resolve("minio", environ=env).access_key) \
        == ("a", "m")
    assert not Credentials.resolve("s3", environ={}).complete
    creds = tmp_path / "credentials"
    creds.write_text("[backup]\naws_access_key_id = PA\naws_secret_access_key = PS\n"
                     "[temp]\naws_access_key_id = TA\naws_secret_access_key = TS\naws_session_token = TT\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    got = Credentials.resolve("s3", profile="backup")
    assert (got.access_key, got.secret_key) == ("PA", "PS")
    with pytest.raises(OptionsError, match="session token"):
        Credentials.resolve("s3", profile="temp")


def test_replica_id_default() -> None:
    assert strata.default_replica_id("mydata", "db1.internal.example.com") == "mydata-db1"
    assert strata.default_replica_id(None, "db2") == "db2"


def test_shell_script_keeps_secrets_off_the_command_line() -> None:
    inv = strata.backup_cmd(cfg(bucket="b"), "rs0-db1")
    script = inv.shell_script()
    assert "export AWS_SECRET_ACCESS_KEY=s3cr3t/KEY\n" in script
    assert script.strip().splitlines()[-1].startswith("exec flock -n -E 75 /run/lock/parsectl-strata-rs0-db1.lock strata")


# --- show parsing -----------------------------------------------------------------------------------------

# strata README's sample, with the trailing cell padding tabwriter really writes
README_SAMPLE = (
    "ID   data                      num files   size (GB)   incremental files   incremental size   duration       \n"
    "0    2015-09-02 21:11:20 UTC   4           0.000005    4                   0.000005           187.929573ms   \n"
)
UNKNOWN_STATS = (
    "ID   data                      num files   size (GB)   incremental files   incremental size   duration    \n"
    "0    2016-01-04 10:00:03 PST   ?           ?           ?                   ?                  ?           \n"
    "1    2016-01-04 12:00:02 PST   812         35.204811   3                   0.120002           1h2m3.4s    \n"
    "10   2016-03-13 03:30:00 PDT   9           ?           ?                   ?                  ?           \n"
)


def test_parse_readme_sample() -> None:
    [row] = strata.parse_show_backups(README_SAMPLE)
    assert row.id == "0" and row.num_files == 4 and row.size_gb == 0.000005 and row.incremental_files == 4
    assert row.started == dt.datetime(2015, 9, 2, 21, 11, 20, tzinfo=UTC)
    assert row.duration == "187.929573ms" and row.duration_seconds == pytest.approx(0.187929573)


def test_parse_unknown_stats_and_local_zones() -> None:
    rows = strata.parse_show_backups(UNKNOWN_STATS)
    assert [r.id for r in rows] == ["0", "1", "10"]
    assert rows[0].num_files is None and rows[0].size_gb is None and rows[0].duration is None
    assert rows[1].size_gb == pytest.approx(35.204811) and rows[1].duration_seconds == pytest.approx(3723.4)
    assert rows[2].num_files == 9 and rows[2].size_gb is None  # `show backups -s`: files and size only
    assert rows[0].started == dt.datetime(2016, 1, 4, 18, 0, 3, tzinfo=UTC)
    assert rows[2].started == dt.datetime(2016, 3, 13, 10, 30, tzinfo=UTC)
    assert rows[1].to_json()["started_unix"] == 1451937602


def test_parse_dates_in_the_hosts_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    assert strata.parse_strata_date("2020-07-01 12:00:00 CEST", berlin) == dt.datetime(2020, 7, 1, 10, tzinfo=UTC)
    assert strata.parse_strata_date("2020-07-01 12:00:00 +03") == dt.datetime(2020, 7, 1, 9, tzinfo=UTC)
    assert strata.parse_strata_date("2020-07-01 12:00:00 -0330") == dt.datetime(2020, 7, 1, 15, 30, tzinfo=UTC)
    assert strata.parse_strata_date("2020-07-01 12:00:00 XYZT") is None


def test_parse_the_stand_ins_table_in_any_zone(tmp_path: Path) -> None:
    """The stand-in writes with Go's layout in the TZ it is given; our parser reads it back exactly."""
    launcher = fake_strata.install(tmp_path / "bin", control={"dbpath": str(tmp_path / "mongo")})
    (tmp_path / "mongo" / "db").mkdir(parents=True)
    (tmp_path / "mongo" / "db" / "000001.sst").write_bytes(b"x" * 100)
    env = {**os.environ, "REMOTE_STORAGE": "local"}
    base = [str(launcher), f"--mpoint={tmp_path / 'store'}"]
    subprocess.run([*base, "backup", "-r", "rs0-a"], env=env, check=True, capture_output=True)
    for zone in ("UTC", "America/Los_Angeles", "Asia/Kolkata"):
        out = subprocess.run([*base, "show", "backups", "-r", "rs0-a"], env={**env, "TZ": zone}, check=True,
                             capture_output=True, text=True).stdout
        last = subprocess.run([*base, "show", "last-backup-time", "-r", "rs0-a"], env=env, check=True,
                              capture_output=True, text=True).stdout
        from zoneinfo import ZoneInfo

        [row] = strata.parse_show_backups(out, ZoneInfo(zone))
        assert int(row.started.timestamp()) == strata.parse_last_backup_time(last)
        assert not last.endswith("\n")


def test_parse_other_outputs() -> None:
    assert strata.parse_last_backup_time("") is None
    assert strata.parse_last_backup_time("1441228280") == 1441228280
    assert strata.parse_replica_ids("Replicas with backups in remote storage:\nmydata-db1\nmydata-db2\n") == [
        "mydata-db1", "mydata-db2"]
    assert strata.parse_id_date_table("ID   date\n3    2016-01-04 10:00:03 UTC\n12   2016-01-05 10:00:03 UTC\n") \
        == [("3", dt.datetime(2016, 1, 4, 10, 0, 3, tzinfo=UTC)), ("12", dt.datetime(2016, 1, 5, 10, 0, 3, tzinfo=UTC))]
    assert strata.parse_show_backups("") == []
    with pytest.raises(strata.ParseFailure):
        strata.parse_show_backups("Usage:\n  strata [OPTIONS]\n")
    with pytest.raises(strata.ParseFailure):
        strata.parse_last_backup_time("panic: oops")


# --- retention guard --------------------------------------------------------------------------------------

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def rec(bid: int, days_ago: float) -> BackupRecord:
    t = NOW - dt.timedelta(days=days_ago)
    return BackupRecord(str(bid), t.strftime("%Y-%m-%d %H:%M:%S UTC"), t, 1, 0.1, 1, 0.1, "1s", 1.0)


def test_age_never_deletes_the_newest_or_below_keep() -> None:
    backups = [rec(0, 40), rec(1, 35), rec(2, 31)]  # all older than 30 days: strata's -a 720h would delete all
    plan = strata.plan_delete(backups, older_than="30d", now=NOW)
    assert [r.id for r in plan.delete] == ["0", "1"] and [r.id for r in plan.protected] == ["2"]
    assert plan.age_flag is None  # guard active: delete by ID
    plan = strata.plan_delete(backups, older_than="30d", keep_at_least=3, now=NOW)
    assert plan.delete == [] and len(plan.protected) == 3


def test_age_uses_strata_age_when_that_is_exactly_the_plan() -> None:
    plan = strata.plan_delete([rec(0, 40), rec(1, 31), rec(2, 1), rec(3, 0.1)], older_than="30d",
                              keep_at_least=2, now=NOW)
    assert [r.id for r in plan.delete] == ["0", "1"] and plan.age_flag == "720h"
    # a kept backup within minutes of the cutoff: strata's later clock could take it too -> by ID
    near = strata.plan_delete([rec(0, 40), rec(1, 30 - 1 / 1440), rec(2, 1)], older_than="30d", now=NOW)
    assert [r.id for r in near.delete] == ["0"] and near.age_flag is None


def test_by_id_guard() -> None:
    backups = [rec(0, 3), rec(1, 2), rec(2, 1)]
    with pytest.raises(RetentionError, match="newest"):
        strata.plan_delete(backups, backup_ids=["2"], now=NOW)
    with pytest.raises(RetentionError, match="fewer than --keep-at-least 3"):
        strata.plan_delete(backups, backup_ids=["0"], keep_at_least=3, now=NOW)
    with pytest.raises(RetentionError, match="no backup with ID 9"):
        strata.plan_delete(backups, backup_ids=["9"], now=NOW)
    with pytest.raises(RetentionError, match="1 or more"):
        strata.plan_delete(backups, older_than="1d", keep_at_least=0, now=NOW)
    assert [r.id for r in strata.plan_delete(backups, backup_ids=["0", "1"], now=NOW).delete] == ["0", "1"]


def test_newest_is_by_time_not_id() -> None:
    """IDs restart at 0 when every backup of a replica was deleted: the newest is the latest start time."""
    backups = [rec(5, 40), rec(0, 0.5)]
    plan = strata.plan_delete(backups, older_than="1d", now=NOW)
    assert [r.id for r in plan.delete] == ["5"]
    with pytest.raises(RetentionError, match="newest"):
        strata.plan_delete(backups, backup_ids=["0"], now=NOW)


# --- errors and panics ------------------------------------------------------------------------------------

PANIC = (
    "2016/01/04 10:00:03 Starting strata driver\n"
    "panic: Environment variables AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set\n\n"
    "goroutine 1 [running]:\ngithub.com/facebookgo/rocks-strata/strata.(*BackupCommand).Execute(0xc42)\n"
    "\t/go/src/github.com/facebookgo/rocks-strata/strata/driver.go:262 +0x1a5\n"
)


def test_panic_becomes_one_message() -> None:
    inv = strata.backup_cmd(cfg(bucket="b"), "r")
    with pytest.raises(StrataError) as err:
        strata.check(inv, Completed(2, "", PANIC), "db1")
    assert err.value.message == ("strata backup panicked on db1 (exit 2): panic: Environment variables "
                                 "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set")
    assert "\n" not in err.value.message


def test_error_exit_uses_strata_line() -> None:
    inv = strata.gc_cmd(cfg(bucket="b"), "r")
    stderr = "2016/01/04 10:00:03 Starting strata driver\nthe required flag `-r, --replica-id' was not specified\n"
    with pytest.raises(StrataError, match="strata gc failed \\(exit 1\\): the required flag `-r, --replica-id'"):
        strata.check(inv, Completed(1, "", stderr))


def test_exit_zero_without_finished_is_not_done() -> None:
    inv = strata.backup_cmd(cfg(bucket="b"), "r")
    logs = "2016/01/04 10:00:03 Starting strata driver\n2016/01/04 10:00:04 Saving to remote storage\n"
    with pytest.raises(StrataError, match="never said 'Backup finished'"):
        strata.check(inv, Completed(0, "", logs + "2016/01/04 10:00:04 Driver finished cleanly.\n"))
    ok = logs + "2016/01/04 10:00:05 Backup finished (12.500000 MB/s)\n2016/01/04 10:00:05 Driver finished cleanly.\n"
    assert strata.check(inv, Completed(0, "", ok)).exit_code == 0


def test_lock_busy_and_missing_binary() -> None:
    inv = strata.backup_cmd(cfg(bucket="b"), "rs0-db1")
    with pytest.raises(StrataError, match="is running.*lock /run/lock/parsectl-strata-rs0-db1.lock"):
        strata.check(inv, Completed(75, "", ""))
    with pytest.raises(StrataError, match="could not be started.*not found"):
        strata.check(inv, Completed(127, "", "sh: 1: strata: not found"))


def test_runner_with_the_stand_in(tmp_path: Path) -> None:
    launcher = fake_strata.install(tmp_path / "bin", control={"dbpath": str(tmp_path / "mongo"),
                                                              "panic": {"delete": "boom: no such backup"}})
    (tmp_path / "mongo" / "db").mkdir(parents=True)
    c = StrataConfig(storage=Storage(kind="local", mpoint=str(tmp_path / "store")), binary=str(launcher),
                     lock_dir=str(tmp_path / "locks"))
    node = strata.StrataNode(c, strata.LocalRunner(), "rs0-db1")
    node.backup()
    assert [r.id for r in node.show()] == ["0"]
    with pytest.raises(StrataError, match="strata delete panicked \\(exit 2\\): panic: boom: no such backup"):
        strata.run_checked(node.runner, strata.delete_id_cmd(c, "rs0-db1", "0"))
    calls = fake_strata.read_calls(tmp_path / "bin")
    assert calls[0]["argv"] == [f"--mpoint={tmp_path / 'store'}", "backup", "--replica-id=rs0-db1"]
    assert calls[0]["env"]["REMOTE_STORAGE"] == "local"
    assert isinstance(Invocation, type)
