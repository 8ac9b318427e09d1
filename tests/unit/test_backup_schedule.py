"""Schedule rendering: cron expressions, templates, what goes where (secrets only in the 0600 env file),
idempotent apply/remove on this machine (the SSH path is in tests/e2e/test_backup_schedule.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from parsectl.backup import schedule as sch
from parsectl.backup.strata import Credentials, Mongod, Storage, StrataConfig


@pytest.mark.parametrize(("every", "pattern"), [
    ("2h", r"^\d+ (\*/2|1-23/2) \* \* \*$"), ("1h", r"^\d+ \* \* \* \*$"), ("6h", r"^\d+ (\*|\d)(/6|-23/6)? ?\* \* \*$"),
    ("30m", r"^(\*/30|\d+-59/30) \* \* \* \*$"), ("1d", r"^\d+ \d+ \* \* \*$"), ("15m", r"^(\*/15|\d+-59/15) \* \* \* \*$"),
])
def test_cron_spec(every: str, pattern: str) -> None:
    import re

    spec = sch.cron_spec(every, "mydata-db1")
    assert re.match(pattern, spec), spec
    assert sch.cron_spec(every, "mydata-db1") == spec  # stable: re-running changes nothing


@pytest.mark.parametrize("every", ["7h", "45s", "25h", "7m", "90m"])
def test_cron_spec_refuses_uneven(every: str) -> None:
    with pytest.raises(sch.ScheduleError):
        sch.cron_spec(every, "x")


def test_spread_between_nodes() -> None:
    specs = {sch.cron_spec("2h", f"mydata-db{i}") for i in range(8)}
    assert len(specs) > 1


def test_fill_refuses_unknown_placeholders() -> None:
    assert sch.fill("a @X@ ${HOME}", {"X": "1"}) == "a 1 ${HOME}"
    with pytest.raises(sch.ScheduleError, match="@Y@"):
        sch.fill("@Y@", {})


def config(tmp_path: Path) -> StrataConfig:
    return StrataConfig(storage=Storage("s3", bucket="b", prefix="p", region="us-west-2"),
                        mongod=Mongod(27018, "backup", "mongo-pw"), credentials=Credentials("AK", "SK-secret"),
                        binary="/usr/local/bin/strata", lock_dir="/run/lock")


def test_strata_plan_contents(tmp_path: Path) -> None:
    plan = sch.strata_plan(config(tmp_path), "mydata-db1.x", every="2h", retention="30d", keep_at_least=3,
                           root=str(tmp_path))
    files = {Path(f.path).relative_to(tmp_path).as_posix(): f for f in plan.files}
    assert set(files) == {"etc/parsectl/backup-mydata-db1_x.env", "usr/local/lib/parsectl/backup-mydata-db1_x.sh",
                          "etc/cron.d/parsectl-backup-mydata-db1_x"}  # no dot in a cron.d name
    env = files["etc/parsectl/backup-mydata-db1_x.env"]
    script = files["usr/local/lib/parsectl/backup-mydata-db1_x.sh"]
    cron = files["etc/cron.d/parsectl-backup-mydata-db1_x"]
    assert env.mode == 0o600 and script.mode == 0o755 and cron.mode == 0o644
    assert "AWS_SECRET_ACCESS_KEY=SK-secret" in env.content and "MONGOD_PASSWORD=mongo-pw" in env.content
    assert "REMOTE_STORAGE=s3" in env.content
    for public in (script.content, cron.content):
        assert "SK-secret" not in public and "mongo-pw" not in public
    assert ("/usr/local/bin/strata --bucket=b --region=us-west-2 --bucket-prefix=p --port=27018 --username=backup"
            in script.content)
    assert "RETENTION_SECONDS=2592000" in script.content and "KEEP_AT_LEAST=3" in script.content
    assert f"LOCK={tmp_path}/run/lock/parsectl-strata-mydata-db1.x.lock" in script.content
    assert cron.content.rstrip().endswith(f" root {tmp_path}/usr/local/lib/parsectl/backup-mydata-db1_x.sh")
    assert "720h" in script.content
    subprocess.run(["sh", "-n"], input=script.content, text=True, check=True)


def test_apply_is_idempotent_and_remove(tmp_path: Path) -> None:
    session = sch.LocalSession()
    plan = sch.strata_plan(config(tmp_path), "rs0-db1", every="2h", retention="30d", root=str(tmp_path))
    assert set(sch.apply(session, plan).values()) == {"created"}
    assert set(sch.apply(session, plan).values()) == {"unchanged"}
    Path(plan.files[1].path).chmod(0o700)  # drift in mode is repaired
    assert list(sch.apply(session, plan).values()) == ["unchanged", "updated", "unchanged"]
    changed = sch.strata_plan(config(tmp_path), "rs0-db1", every="4h", retention="30d", root=str(tmp_path))
    assert sch.apply(session, changed, dry_run=True)[changed.files[2].path] == "would-updated"
    assert set(sch.remove(session, plan).values()) == {"removed"}
    assert set(sch.remove(session, plan).values()) == {"absent"}


def test_sqlite_plan(tmp_path: Path) -> None:
    plan = sch.sqlite_plan("sqlite:////srv/parse/parse.db", ["--bucket", "bk", "--prefix", "x"],
                           {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s"}, every="1d", retention="14d",
                           parsectl="/opt/parsectl/bin/parsectl", root=str(tmp_path))
    script = plan.files[1].content
    assert "/opt/parsectl/bin/parsectl \"$@\"" in script
    assert "backup run --database sqlite:////srv/parse/parse.db --bucket bk --prefix x" in script
    assert "--older-than 14d --keep-at-least 1 --yes" in script
    assert "AWS_SECRET_ACCESS_KEY=s" in plan.files[0].content and "AWS_SECRET" not in script
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)


def test_member_state_warnings() -> None:
    primary = sch.MemberState(True, primary=True, set_name="rs0", how="hello")
    assert "PRIMARY of rs0" in (primary.warning("db1", 27017) or "")
    assert sch.MemberState(True, secondary=True, set_name="rs0").warning("db1", 27017) is None
    assert "could not ask" in (sch.MemberState(False, error="refused").warning("db1", 27017) or "")
