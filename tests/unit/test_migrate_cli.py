"""``parsectl migrate`` from the command line: dry runs, what a run reports and leaves behind, verify."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from parsectl.cli.main import app
from tests.support.export_gen import generate_export


@pytest.fixture
def in_tmp(tmp_path: Path) -> Iterator[Path]:
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(cwd)


def test_dry_run_shows_the_plan_and_writes_nothing(in_tmp: Path) -> None:
    """The plan: every class with its count, the inferred schema and every problem; and nothing written:
    no destination file (opening one creates parse-server's start-up classes), no state folder, no
    temporary file."""
    facts = generate_export(in_tmp / "export", objects=300, problems=True)
    dest = in_tmp / "app.db"
    result = CliRunner().invoke(app, ["migrate", "--from", str(facts.path), "--to", f"sqlite:///{dest}",
                                      "--dry-run", "--output", "json"])
    # the planted problems would stop the migration (--on-problem fail): the plan, then exit 1 saying so
    assert result.exit_code == 1, result.output
    assert "would stop this migration under --on-problem fail" in result.stderr
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["dryRun"] is True and report["blockingProblems"] > 0
    assert {name: c["sourceCount"] for name, c in report["classes"].items()} == facts.counts
    assert all(c["copied"] == 0 for c in report["classes"].values())
    assert {p["kind"] for p in report["problems"]} >= set(facts.problems)
    assert report["schemaNotes"]["Post"]["likes"].startswith("relation file, target inferred from")
    assert not dest.exists()
    assert sorted(p.name for p in in_tmp.iterdir()) == ["export"]  # the state folder it made is gone
    skipping = CliRunner().invoke(app, ["migrate", "--from", str(facts.path), "--to", f"sqlite:///{dest}",
                                        "--dry-run", "--on-problem", "skip", "--output", "json"])
    assert skipping.exit_code == 0, skipping.output  # leaving the offending objects out, it would go through
    assert json.loads(skipping.stdout[skipping.stdout.index("{"):])["blockingProblems"] == 0


def test_the_plans_temporary_files_go_in_the_state_folder(in_tmp: Path) -> None:
    """Not in the system's temporary folder (a RAM-backed tmpfs on many systems): the state folder, on disk,
    which keeps only the checkpoint of an unfinished migration; for ``migrate verify`` too."""
    from parsectl.migrate.sources import export

    seen: list[str] = []
    real = export._temp_file

    def spy(kind: str, directory: str | None) -> tuple[int, str]:
        seen.append(str(directory))
        return real(kind, directory)

    facts = generate_export(in_tmp / "export", objects=300)
    state = in_tmp / "state"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(export, "_temp_file", spy)
        result = CliRunner().invoke(app, ["migrate", "--from", str(facts.path), "--to",
                                          f"sqlite:///{in_tmp / 'app.db'}", "--state-dir", str(state), "--yes",
                                          "--output", "json"])
        assert result.exit_code == 0, result.output
        assert seen and set(seen) == {str(state)}
        assert not state.exists()  # made by this run, empty at its end: removed
        seen.clear()
        checked = CliRunner().invoke(app, ["migrate", "verify", "--from", str(facts.path), "--to",
                                           f"sqlite:///{in_tmp / 'app.db'}", "--state-dir", str(state)])
    assert checked.exit_code == 0 and "verify: everything matches" in checked.output, checked.output
    assert seen and set(seen) == {str(state)} and not state.exists()


def test_a_refused_command_leaves_nothing_behind(in_tmp: Path) -> None:
    result = CliRunner().invoke(app, ["migrate", "--from", str(in_tmp / "missing.zip"), "--to",
                                      f"sqlite:///{in_tmp / 'app.db'}"])
    assert result.exit_code == 2 and "does not exist" in result.output
    assert list(in_tmp.iterdir()) == []


def test_verify_counts_the_records_that_cannot_be_stored(in_tmp: Path) -> None:
    """Records the migration cannot store (`--on-problem skip` leaves them out) are in the source: verify
    counts them and fails, unless told they were left out on purpose (its own --on-problem skip)."""
    stamp = {"createdAt": "2015-01-01T00:00:00.000Z", "updatedAt": "2015-01-01T00:00:00.000Z"}
    records = [{"objectId": "bytes00001", "data": {"__type": "Bytes", "base64": ""}, **stamp},
               {"objectId": "geo0000001", "where": {"__type": "GeoPoint", "latitude": 95, "longitude": 0}, **stamp},
               {"objectId": "field00001", "bad-field": 1, **stamp},
               {"objectId": "good000001", "n": 1, **stamp}]
    (in_tmp / "export").mkdir()
    (in_tmp / "export" / "Thing.json").write_text(json.dumps({"results": records}))
    dest = f"sqlite:///{in_tmp / 'app.db'}"
    migrated = CliRunner().invoke(app, ["migrate", "--from", "export", "--to", dest, "--on-problem", "skip"])
    assert migrated.exit_code == 0, migrated.output
    strict = CliRunner().invoke(app, ["migrate", "verify", "--from", "export", "--to", dest, "--output", "json"])
    assert strict.exit_code == 1, strict.output
    thing = json.loads(strict.stdout)["classes"]["Thing"]
    assert (thing["ok"], thing["sourceCount"], thing["destinationCount"], thing["notStored"]) == (False, 4, 1, 3)
    assert sorted(item["objectId"] for item in thing["notStoredSample"]) == ["bytes00001", "field00001", "geo0000001"]
    accepted = CliRunner().invoke(app, ["migrate", "verify", "--from", "export", "--to", dest, "--on-problem", "skip"])
    assert accepted.exit_code == 0, accepted.output
    assert "left out geo0000001: " in accepted.stdout and "verify: everything matches" in accepted.stdout


def test_installations_that_differ_only_in_case_are_one_device(in_tmp: Path) -> None:
    """parse-server stores installationIds lower-cased: two that differ only in case would be two records
    of one device. The plan reports it (it stops the migration under --on-problem fail); under skip the
    second is left out, and verify --on-problem skip lists it as left out."""
    stamp = {"createdAt": "2015-01-01T00:00:00.000Z", "updatedAt": "2015-01-01T00:00:00.000Z"}
    device = "ABCDEF01-2345-6789-ABCD-EF0123456789"
    records = [{"objectId": "inst000001", "installationId": device, "deviceType": "ios", **stamp},
               {"objectId": "inst000002", "installationId": device.lower(), "deviceType": "ios", **stamp},
               {"objectId": "inst000003", "installationId": "other-device", "deviceType": "android", **stamp}]
    (in_tmp / "export").mkdir()
    (in_tmp / "export" / "_Installation.json").write_text(json.dumps({"results": records}))
    dest = f"sqlite:///{in_tmp / 'app.db'}"
    refused = CliRunner().invoke(app, ["migrate", "--from", "export", "--to", dest, "--output", "json"])
    assert refused.exit_code == 1, refused.output
    [problem] = [p for p in json.loads(refused.stdout[refused.stdout.index("{"):])["problems"]
                 if p["kind"] == "duplicate-installation-id"]
    assert (problem["objectId"], problem["field"]) == ("inst000002", "installationId")
    assert device in problem["message"]
    migrated = CliRunner().invoke(app, ["migrate", "--from", "export", "--to", dest, "--on-problem", "skip"])
    assert migrated.exit_code == 0, migrated.output
    strict = CliRunner().invoke(app, ["migrate", "verify", "--from", "export", "--to", dest, "--output", "json"])
    assert strict.exit_code == 1 and json.loads(strict.stdout)["classes"]["_Installation"]["missingSample"] == [
        "inst000002"]
    accepted = CliRunner().invoke(app, ["migrate", "verify", "--from", "export", "--to", dest, "--on-problem", "skip"])
    assert accepted.exit_code == 0, accepted.output
    assert "left out inst000002: installationId" in accepted.stdout


@pytest.mark.parametrize("workers", [False, True], ids=["thread", "workers"])
def test_an_exports_sessions_are_copied_only_when_asked(in_tmp: Path, monkeypatch: pytest.MonkeyPatch,
                                                        workers: bool) -> None:
    """--include-sessions decides for an export's _Session.json as for a database's sessions (also when
    worker processes read the export)."""
    from parsectl.migrate.sources import export

    if workers:
        monkeypatch.setattr(export, "PARALLEL_MIN_BYTES", 0)
    stamp = {"createdAt": "2015-01-01T00:00:00.000Z", "updatedAt": "2015-01-01T00:00:00.000Z"}
    (in_tmp / "export").mkdir()
    (in_tmp / "export" / "_User.json").write_text(json.dumps({"results": [
        {"objectId": "user000001", "username": "ann", **stamp}]}))
    (in_tmp / "export" / "_Session.json").write_text(json.dumps({"results": [
        {"objectId": "sess000001", "sessionToken": "r:abc", "user": {"__type": "Pointer", "className": "_User",
                                                                     "objectId": "user000001"}, **stamp}]}))
    for flags, sessions in (([], 0), (["--include-sessions"], 1)):
        dest = in_tmp / f"app{len(flags)}.db"
        result = CliRunner().invoke(app, ["migrate", "--from", "export", "--to", f"sqlite:///{dest}", *flags,
                                          "--output", "json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout[result.stdout.index("{"):])
        assert report["classes"].get("_Session", {}).get("copied", 0) == sessions
        db = sqlite3.connect(dest)
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert (db.execute('SELECT count(*) FROM "_Session"').fetchone()[0] if "_Session" in tables else 0) == sessions
        db.close()


def test_a_dry_run_needs_no_destination_and_the_text_report_names_objects(in_tmp: Path) -> None:
    """--dry-run without --to plans the export; problems in the text report name their object and field."""
    facts = generate_export(in_tmp / "export", objects=200, problems=True)
    result = CliRunner().invoke(app, ["migrate", "--from", str(facts.path), "--dry-run"], env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output  # the planted problems would stop it
    assert "Plan (dry run)" in result.stdout and "(none: a dry run without --to)" in result.stdout
    duplicate = next(line for line in result.stdout.splitlines() if "problem duplicate-username in _User " in line)
    assert duplicate.split(" in _User ")[1].split()[1] == "username:"  # _User <objectId> username: ...
    assert not (in_tmp / "parsectl-data").exists() and sorted(p.name for p in in_tmp.iterdir()) == ["export"]
    missing = CliRunner().invoke(app, ["migrate", "--from", str(facts.path)])
    assert missing.exit_code == 2 and "a --dry-run may leave out --to" in missing.stderr


def test_bad_inputs_get_a_message_and_an_exit_code_never_a_traceback(in_tmp: Path) -> None:
    """A broken export, a missing database, wrong option values: a one-line message and an exit code (with
    --output json also a JSON line), for migrate and verify alike."""
    (in_tmp / "broken.zip").write_bytes(b"not a zip")
    (in_tmp / "cut").mkdir()
    (in_tmp / "cut" / "Thing.json").write_text('{"results": [\n{"objectId": "a1", "n": 1},\n{"objectId": "a2", "n":')
    dest = f"sqlite:///{in_tmp / 'app.db'}"
    cases = [
        (["--from", "broken.zip", "--to", dest], 1, "is not a readable zip file"),
        (["--from", "cut", "--to", dest, "--output", "json"], 1, "not valid JSON"),
        (["verify", "--from", "cut", "--to", dest], 1, "not valid JSON"),
        (["verify", "--from", "cut", "--to", f"sqlite:///{in_tmp / 'typo.db'}"], 1, "no SQLite database at"),
        (["--from", f"sqlite:///{in_tmp / 'missing.db'}", "--to", dest], 69, "no SQLite database"),
        (["--from", "cut", "--to", dest, "--nested-files-url", "files/"], 2, "--nested-files-url takes the URL"),
        (["--from", "cut", "--to", dest, "--files-from", "nowhere"], 2, "--files-from nowhere: no such folder"),
        (["--from", "cut", "--to", dest, "--schema", "none.json"], 2, "--schema none.json: no such file"),
    ]
    for args, code, message in cases:
        result = CliRunner().invoke(app, ["migrate", *args])
        assert (result.exit_code, isinstance(result.exception, SystemExit | None)) == (code, True), (args, result)
        assert message in result.stderr, (args, result.stderr)
        if "json" in args:
            doc = json.loads(result.stdout)
            assert (doc["ok"], doc["exitCode"], message in doc["error"]) == (False, code, True), doc
    assert not (in_tmp / "typo.db").exists()  # verify did not create the store it was pointed at
