"""`parsectl migrate` end to end: a generated hosted-Parse export into SQLite and PostgreSQL, then served.

Checks: the report, `migrate verify` (and that it catches a corrupted row), idempotent re-runs, the
non-empty-destination guard, resuming after `kill -9`, parsectl serving the result (objects, relations,
files), and the real node parse-server serving the PostgreSQL result (users log in with their old
passwords, roles, pointers). On that result, the official JS SDK (tests/js/migrated.js) then drives node
parse-server and `parsectl serve` alike: logins with the old passwords, objects, pointer and relation
queries, roles and their inheritance, ACLs, and file URLs resolving to the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.support import JS_DIR, SetupError, free_port
from tests.support.export_gen import ExportFacts, file_content, generate_export
from tests.support.parsectl_proc import parsectl_command, parsectl_server
from tests.support.pg import PgCluster
from tests.support.reference import node_bin, reference_server
from tests.support.servers import RunningServer

pytestmark = pytest.mark.slow


def migrate(*args: str, cwd: Path, check: bool = True, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*parsectl_command(), "migrate", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExportFacts, Path]:
    base = tmp_path_factory.mktemp("export")
    facts = generate_export(base / "app.zip", objects=600, zip=True, files_dir=base / "files")
    return facts, base


def test_export_into_sqlite_verified_idempotent_and_served(export: tuple[ExportFacts, Path], tmp_path: Path) -> None:
    facts, base = export
    dest = f"sqlite:///{tmp_path / 'data' / 'parse.db'}"
    out = migrate("--from", str(base / "app.zip"), "--to", dest, "--files", "--files-from", str(base / "files"),
                  "--output", "json", cwd=tmp_path)
    report = json.loads(out.stdout)
    for name, count in facts.counts.items():
        assert report["classes"][name]["copied"] == count, name
    assert report["classes"]["_Role"]["relations"] == {"users": facts.relations["_Join:users:_Role.json"],
                                                       "roles": facts.relations["_Join:roles:_Role.json"]}
    assert report["files"] == {"copied": len(facts.file_names), "missing": [],
                               "location": f"folder {tmp_path / 'data' / 'files'}"}  # beside the database
    verify = migrate("verify", "--from", str(base / "app.zip"), "--to", dest, "--files", "--files-from",
                     str(base / "files"), cwd=tmp_path)
    assert "everything matches" in verify.stdout
    assert f"files: {len(facts.file_names)} checked, 0 missing, {len(facts.file_names)} compared" in verify.stdout

    # a second run with --mode merge adds nothing; without a mode a non-empty destination is refused
    again = json.loads(migrate("--from", str(base / "app.zip"), "--to", dest, "--mode", "merge", "--output", "json",
                               cwd=tmp_path).stdout)
    assert all(c["copied"] == 0 and c["alreadyThere"] == facts.counts[n] for n, c in again["classes"].items())
    refused = migrate("--from", str(base / "app.zip"), "--to", dest, cwd=tmp_path, check=False)
    assert refused.returncode == 1 and "--mode merge" in refused.stderr

    # parsectl serves the result: ids, timestamps, relations, pointers and file bytes
    with parsectl_server(data_dir=tmp_path / "data", database_uri=dest) as srv:
        h = srv.headers(master=True)
        post_id = facts.ids["first_post"]
        post = httpx.get(f"{srv.server_url}/classes/Post/{post_id}", headers=h).json()
        assert post["objectId"] == post_id and post["createdAt"].endswith("Z")
        likes = httpx.get(f"{srv.server_url}/schemas/Post", headers=h).json()["fields"]["likes"]
        assert likes == {"type": "Relation", "targetClass": "_User"}  # inferred from the join file's ids
        owner = sqlite3.connect(tmp_path / "data" / "parse.db").execute(
            'SELECT "owningId", count(*) FROM "_Join:likes:Post" GROUP BY 1 LIMIT 1').fetchone()
        related = {"$relatedTo": {"object": {"__type": "Pointer", "className": "Post", "objectId": owner[0]},
                                  "key": "likes"}}
        liked = httpx.get(f"{srv.server_url}/classes/_User", params={"where": json.dumps(related)}, headers=h).json()
        assert len(liked["results"]) == owner[1]
        users = httpx.get(f"{srv.server_url}/classes/_User", params={"limit": 1000}, headers=h).json()["results"]
        assert len(users) == facts.counts["_User"]
        assert not any("bcryptPassword" in u or "_hashed_password" in u for u in users)
        name = facts.file_names[0]
        r = httpx.get(f"{srv.server_url}/files/{srv.app_id}/{name}")
        assert r.status_code == 200 and r.content == file_content(name)

    # verify catches a corrupted row
    db = sqlite3.connect(tmp_path / "data" / "parse.db")
    db.execute('UPDATE "Post" SET "createdAt" = ? WHERE "objectId" = ?', ("2001-01-01T00:00:00.000Z", post_id))
    db.commit()
    db.close()
    bad = migrate("verify", "--from", str(base / "app.zip"), "--to", dest, cwd=tmp_path, check=False)
    assert bad.returncode == 1 and post_id in bad.stdout and "MISMATCH" in bad.stdout

    # ... and a stored file whose bytes are not the source's (compared where the source can give them)
    stored = tmp_path / "data" / "files" / facts.file_names[0]
    stored.write_bytes(stored.read_bytes() + b"!")
    files = json.loads(migrate("verify", "--from", str(base / "app.zip"), "--to", dest, "--files", "--files-from",
                               str(base / "files"), "--classes", "Post", "--output", "json", cwd=tmp_path,
                               check=False).stdout)["files"]
    assert files["different"] == [facts.file_names[0]] and files["compared"] == files["checked"] > 0


@pytest.mark.parametrize(("destination", "readers"), [
    ("sqlite", "thread"), ("sqlite", "worker processes"),
    pytest.param("postgres", "worker processes", marks=pytest.mark.reference),
])
def test_killed_midway_then_resumed_equals_one_run(tmp_path: Path, request: pytest.FixtureRequest,
                                                   destination: str, readers: str) -> None:
    """Killed with kill -9 during the copy, then run again: it resumes and the result verifies. Both ways of
    reading the export: in a thread (small files) and by worker processes taking turns (big files; every
    file counts as big here); into SQLite (commits grouped over a second) and PostgreSQL (a commit per
    batch; the batch that meets rows already there is loaded the idempotent way)."""
    base = tmp_path / "big"
    generate_export(base / "export", objects=20_000)
    if destination == "sqlite":
        dest = f"sqlite:///{tmp_path / 'resume.db'}"
    else:
        dest = request.getfixturevalue("pg").fresh_database("resumed")
    env = {"PARSECTL_MIGRATE_PARALLEL_MIN_BYTES": "0" if readers == "worker processes" else str(2**40)}
    proc = subprocess.Popen([*parsectl_command(), "migrate", "--from", str(base / "export"), "--to", dest,
                             "--batch-size", "200"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, env={**os.environ, **env})
    state_dir = tmp_path / ".parsectl-migrate"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until some batches are committed, then kill -9
        states = list(state_dir.glob("*.json")) if state_dir.exists() else []
        if states:
            with_progress = json.loads(states[0].read_text())
            if sum(c.get("copied", 0) for c in with_progress["classes"].values()) >= 2000:
                break
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert list(state_dir.glob("*.json")), "the run finished before it could be interrupted"
    resumed = json.loads(migrate("--from", str(base / "export"), "--to", dest, "--batch-size", "200",
                                 "--output", "json", cwd=tmp_path, env=env).stdout)
    assert resumed["resumed"] is True
    verify = migrate("verify", "--from", str(base / "export"), "--to", dest, cwd=tmp_path)
    assert "everything matches" in verify.stdout
    assert not list(state_dir.glob("*.json"))  # a finished run leaves no checkpoint behind


@pytest.mark.reference
def test_export_into_postgres_then_node_parse_server_logs_users_in(export: tuple[ExportFacts, Path],
                                                                    pg: PgCluster, tmp_path: Path) -> None:
    facts, base = export
    dest = pg.fresh_database("migrated")
    node_dir = tmp_path / "node"  # node's FSFilesAdapter reads <its working directory>/files
    files_adapter = json.dumps({"module": "fs", "options": {"filesDirectory": str(node_dir / "files")}})
    migrate("--from", str(base / "app.zip"), "--to", dest, "--secure-clps", "--files", "--files-from",
            str(base / "files"), "--files-adapter", files_adapter, cwd=tmp_path)
    assert "everything matches" in migrate("verify", "--from", str(base / "app.zip"), "--to", dest, "--files",
                                           "--files-from", str(base / "files"), "--files-adapter", files_adapter,
                                           cwd=tmp_path).stdout
    with reference_server(dest, work_dir=node_dir) as node:
        # the migrated files are served by node, byte for byte, under the names the objects keep
        for name in facts.file_names:
            r = httpx.get(f"{node.server_url}/files/{node.app_id}/{name}")
            assert r.status_code == 200 and r.content == file_content(name), name
        for username, password in facts.passwords.items():
            r = httpx.post(f"{node.server_url}/login", json={"username": username, "password": password},
                           headers=node.headers(**{"X-Parse-Installation-Id": "11111111-2222-3333-4444-555555555555"}))
            assert r.status_code == 200, (username, r.text)
            assert r.json()["objectId"] == facts.user_ids[username]
        r = httpx.post(f"{node.server_url}/login", json={"username": "alice", "password": "wrong"},
                       headers=node.headers())
        assert r.status_code == 404
        admins = {"$relatedTo": {"object": {"__type": "Pointer", "className": "_Role",
                                            "objectId": facts.role_ids["Administrators"]}, "key": "users"}}
        r = httpx.get(f"{node.server_url}/classes/_User", params={"where": json.dumps(admins)},
                      headers=node.headers(master=True))
        assert r.status_code == 200 and r.json()["results"]
        # --secure-clps: clients may no longer list users
        r = httpx.get(f"{node.server_url}/classes/_User", headers=node.headers())
        assert r.status_code == 400 and r.json()["code"] == 119
        r = httpx.get(f"{node.server_url}/classes/Comment", params={"include": "post", "limit": 5},
                      headers=node.headers(master=True))
        assert r.status_code == 200 and any(isinstance(c.get("post"), dict) and c["post"].get("__type") == "Object"
                                            for c in r.json()["results"])
        expect = _sdk_expectations(facts, base / "app.zip", tmp_path / "expect.json")
        _assert_sdk_report(_run_sdk_check(node, tmp_path / "expect.json"), expect)
    # parsectl serve on the same database and files: the same, through the same SDK script
    config = tmp_path / "parsectl.json"
    config.write_text(json.dumps({"filesAdapter": json.loads(files_adapter)}))
    with parsectl_server(data_dir=tmp_path / "parsectl-data", database_uri=dest,
                         extra_args=["--config", str(config)]) as srv:
        _assert_sdk_report(_run_sdk_check(srv, tmp_path / "expect.json"), expect)


def test_files_of_a_postgres_destination_go_where_serve_looks(export: tuple[ExportFacts, Path], pg: PgCluster,
                                                               tmp_path: Path) -> None:
    """Without --files-adapter, a PostgreSQL destination's files go to <data-dir>/files (./parsectl-data by
    default), the folder `parsectl serve --data-dir` serves them from; the report says where."""
    facts, base = export
    dest = pg.fresh_database("files_default")
    out = migrate("--from", str(base / "app.zip"), "--to", dest, "--files", "--files-from", str(base / "files"),
                  "--output", "json", cwd=tmp_path).stdout
    files = json.loads(out[out.index("{"):])["files"]
    assert files["location"] == f"folder {tmp_path / 'parsectl-data' / 'files'}" and not files["missing"]
    assert "everything matches" in migrate("verify", "--from", str(base / "app.zip"), "--to", dest, "--files",
                                           "--files-from", str(base / "files"), cwd=tmp_path).stdout
    with parsectl_server(data_dir=tmp_path / "parsectl-data", database_uri=dest) as srv:
        for name in sorted(facts.file_names)[:5]:
            r = httpx.get(f"{srv.server_url}/files/{srv.app_id}/{name}")
            assert r.status_code == 200 and r.content == file_content(name), name


def test_nested_files_can_point_at_the_new_server(export: tuple[ExportFacts, Path], tmp_path: Path) -> None:
    """--nested-files-url: Files inside objects and arrays get the new server's URL (their legacy one is dead
    after a move off hosted Parse), and those URLs give the files' bytes; verify compares with the same."""
    facts, base = export
    port = free_port()
    prefix = f"http://127.0.0.1:{port}/parse/files/test/"
    dest = f"sqlite:///{tmp_path / 'data' / 'parse.db'}"
    migrate("--from", str(base / "app.zip"), "--to", dest, "--files", "--files-from", str(base / "files"),
            "--nested-files-url", prefix, cwd=tmp_path)
    assert "everything matches" in migrate("verify", "--from", str(base / "app.zip"), "--to", dest,
                                           "--nested-files-url", prefix, cwd=tmp_path).stdout
    assert migrate("verify", "--from", str(base / "app.zip"), "--to", dest, cwd=tmp_path, check=False).returncode == 1
    nested = next(e for e in _export_records(base / "app.zip")["Everything"]
                  if e.get("gallery") and "cover" in (e.get("object") or {}))
    with parsectl_server(data_dir=tmp_path / "data", database_uri=dest, port=port) as srv:
        obj = httpx.get(f"{srv.server_url}/classes/Everything/{nested['objectId']}", headers=srv.headers(master=True)).json()
        for file in [*obj["gallery"], obj["object"]["cover"]]:
            assert file["url"] == prefix + quote(file["name"], safe="")
            r = httpx.get(file["url"])
            assert r.status_code == 200 and r.content == file_content(file["name"]), file


def _export_records(export_zip: Path) -> dict[str, list[dict[str, Any]]]:
    with zipfile.ZipFile(export_zip) as z:
        return {name.removesuffix(".json"): json.loads(z.read(name))["results"] for name in z.namelist()
                if name.endswith(".json")}


def _sdk_expectations(facts: ExportFacts, export_zip: Path, path: Path) -> dict[str, Any]:
    """What tests/js/migrated.js should see on the migrated export (picked from the export's own files);
    written to ``path`` for the script."""
    records = _export_records(export_zip)
    users = {uid: name for name, uid in facts.user_ids.items() if name in facts.passwords}
    login = {name: {"username": name, "password": facts.passwords[name]} for name in facts.passwords}
    comments = Counter(c["post"]["objectId"] for c in records["Comment"])
    post = next(p for p in records["Post"] if p["objectId"] == comments.most_common(1)[0][0])
    likes: dict[str, list[str]] = {}
    for row in records["_Join:likes:Post"]:
        likes.setdefault(row["owningId"], []).append(row["relatedId"])
    liked = max(likes, key=lambda k: len(likes[k]))
    role_ids = facts.role_ids
    role_names = {v: k for k, v in role_ids.items()}
    role_users = {name: sorted(r["relatedId"] for r in records["_Join:users:_Role"] if r["owningId"] == rid)
                  for name, rid in role_ids.items()}
    role_roles = {name: sorted(role_names[r["relatedId"]] for r in records["_Join:roles:_Role"]
                               if r["owningId"] == rid) for name, rid in role_ids.items()}
    admin, moderator, outsider = (users[role_users["Administrators"][0]], users[role_users["Moderators"][0]],
                                  next(n for n in login if facts.user_ids[n] not in sum(role_users.values(), [])))
    private = next(c for c in records["Comment"] if list(c.get("ACL") or {}) == [c["author"]["objectId"]]
                   and c["author"]["objectId"] in users and c["post"]["objectId"] != post["objectId"])
    other = next(n for n in login if facts.user_ids[n] != private["author"]["objectId"])
    admin_object = next(c for c in records["Comment"] if "role:Administrators" in (c.get("ACL") or {})
                        and c["author"]["objectId"] not in (facts.user_ids[admin], facts.user_ids[moderator])
                        and c["objectId"] != private["objectId"])
    with_image = next(p for p in records["Post"] if "image" in p)
    nested = next(e for e in records["Everything"] if e.get("gallery") and "cover" in (e.get("object") or {}))
    expect = {
        "logins": list(login.values()),
        "user_ids": {name: facts.user_ids[name] for name in login},
        "post": {"objectId": post["objectId"], "title": post["title"], "createdAt": post["createdAt"],
                 "updatedAt": post["updatedAt"], "tags": post["tags"], "author": post["author"]["objectId"],
                 "comments": comments[post["objectId"]]},
        "likes": {"postId": liked, "userIds": sorted(likes[liked])},
        "roles": role_ids,
        "role_members": {name: {"name": name, "users": role_users[name], "roles": role_roles[name]}
                         for name in role_ids},
        "private": {"className": "Comment", "objectId": private["objectId"],
                    "owner": login[users[private["author"]["objectId"]]], "other": login[other]},
        "adminObject": {"className": "Comment", "objectId": admin_object["objectId"], "admin": login[admin],
                        "moderator": login[moderator]},
        "inheritance": {"admin": login[admin], "outsider": login[outsider]},
        "file": {"postId": with_image["objectId"], "name": with_image["image"]["name"],
                 "sha256": hashlib.sha256(file_content(with_image["image"]["name"])).hexdigest()},
        "nested": {"objectId": nested["objectId"], "gallery": [[f["name"], f["url"]] for f in nested["gallery"]],
                   "cover": [nested["object"]["cover"]["name"], nested["object"]["cover"]["url"]]},
    }
    path.write_text(json.dumps(expect))
    return expect


def _run_sdk_check(server: RunningServer, expect_path: Path) -> dict[str, Any]:
    env = {**os.environ, "PARSE_SERVER_URL": server.server_url, "PARSE_APP_ID": server.app_id,
           "PARSE_MASTER_KEY": server.master_key, "EXPECT": str(expect_path)}
    proc = subprocess.run([node_bin(), str(JS_DIR / "migrated.js")], capture_output=True, text=True, timeout=180,
                          env=env, cwd=JS_DIR)
    if proc.returncode != 0:
        raise SetupError(f"migrated.js failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_sdk_report(report: dict[str, Any], expect: dict[str, Any]) -> None:
    """The JS SDK saw the export: logins, objects, pointer and relation queries, roles, ACLs, files."""
    def ok(name: str) -> Any:
        assert report[name]["ok"], (name, report[name])
        return report[name]["result"]

    assert ok("logins") == expect["user_ids"]
    assert ok("wrong_password") == 101
    post = expect["post"]
    assert ok("post") == {"title": post["title"], "createdAt": post["createdAt"], "updatedAt": post["updatedAt"],
                          "tags": post["tags"], "author": post["author"], "authorClass": "_User"}
    assert ok("comments_on_post") == {"count": post["comments"], "included": True}
    assert ok("likes") == expect["likes"]["userIds"]
    assert ok("roles") == expect["role_members"]
    assert ok("private_object") == {"owner": {"read": True, "write": True}, "other": {"read": 101}}
    assert ok("admin_object") == {"admin": {"read": True, "write": True}, "moderator": {"read": True, "write": 101}}
    assert ok("inherited_role") == {"admin": True, "outsider": 101}
    assert ok("file") == {"name": expect["file"]["name"], "status": 200, "sha256": expect["file"]["sha256"]}
    nested = expect["nested"]
    assert ok("nested_files") == {"gallery": nested["gallery"], "cover": nested["cover"], "sameOnGet": True}


def start_following(source: str, dest: str, cwd: Path, *, settle: float, extra: tuple[str, ...] = ()
                    ) -> subprocess.Popen[str]:
    """Start `migrate --follow` into a SQLite copy at cwd/copy.db; return once the copy exists and `settle`
    seconds have passed (the copy is done and following)."""
    proc = subprocess.Popen([*parsectl_command(), "migrate", "--from", source, "--to", dest, "--follow",
                             "--output", "json", *extra], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (cwd / "copy.db").exists():
        time.sleep(0.05)
    time.sleep(settle)
    return proc


def finish_following(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    """SIGTERM (finalise); the exit code, stdout and stderr."""
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def test_follow_applies_live_changes_then_finalises_deletions(tmp_path: Path) -> None:
    """copy -> sync -> finalise from a live parsectl store into another database."""
    source_dir = tmp_path / "live"
    source_uri = f"sqlite:///{source_dir / 'parse.db'}"
    dest = f"sqlite:///{tmp_path / 'copy.db'}"
    with parsectl_server(data_dir=source_dir, database_uri=source_uri) as live:
        h = live.headers(master=True)
        ids = [httpx.post(f"{live.server_url}/classes/Item", json={"n": i}, headers=h).json()["objectId"]
               for i in range(30)]
        owner = ids[0]
        proc = start_following(source_uri, dest, tmp_path, settle=1.5)
        try:
            new = httpx.post(f"{live.server_url}/classes/Item", json={"n": 100}, headers=h).json()["objectId"]
            httpx.put(f"{live.server_url}/classes/Item/{ids[1]}", json={"n": {"__op": "Increment", "amount": 5}},
                      headers=h)
            httpx.put(f"{live.server_url}/classes/Item/{owner}", headers=h, json={"rel": {
                "__op": "AddRelation", "objects": [{"__type": "Pointer", "className": "Item", "objectId": new}]}})
            httpx.delete(f"{live.server_url}/classes/Item/{ids[2]}", headers=h)
            time.sleep(3)  # at least one sync pass
        finally:
            code, out, err = finish_following(proc)
        assert code == 0, err
        report = json.loads(out)
        assert report["follow"]["mode"] == "polling"
        assert report["follow"]["changesApplied"] >= 3 and report["follow"]["deletionsApplied"] == 1
    verify = migrate("verify", "--from", source_uri, "--to", dest, cwd=tmp_path)
    assert "everything matches" in verify.stdout
    copy = sqlite3.connect(tmp_path / "copy.db")
    assert copy.execute('SELECT "n" FROM "Item" WHERE "objectId" = ?', (ids[1],)).fetchone()[0] == 6
    assert copy.execute('SELECT count(*) FROM "Item" WHERE "objectId" = ?', (ids[2],)).fetchone()[0] == 0
    assert copy.execute('SELECT count(*) FROM "_Join:rel:Item"').fetchone()[0] == 1


def test_follow_copies_the_files_of_objects_saved_while_following(tmp_path: Path) -> None:
    """--follow --files: a file uploaded, and saved in an object, while the migration follows reaches the
    destination's files storage (not only those of the first copy)."""
    source_uri = f"sqlite:///{tmp_path / 'live' / 'parse.db'}"
    with parsectl_server(data_dir=tmp_path / "live", database_uri=source_uri) as live:
        h = live.headers(master=True)
        first = httpx.post(f"{live.server_url}/files/before.txt", content=b"before", headers=h).json()
        httpx.post(f"{live.server_url}/classes/Doc", json={"file": {"__type": "File", "name": first["name"]}},
                   headers=h)
        proc = start_following(source_uri, f"sqlite:///{tmp_path / 'copy.db'}", tmp_path, settle=1.5,
                               extra=("--files",))
        try:
            later = httpx.post(f"{live.server_url}/files/during.txt", content=b"during", headers=h).json()
            httpx.post(f"{live.server_url}/classes/Doc", headers=h, json={
                "list": [{"__type": "File", "name": later["name"], "url": later["url"]}]})
            time.sleep(3)  # at least one sync pass
        finally:
            code, out, err = finish_following(proc)
        assert code == 0, err
    files = json.loads(out)["files"]
    assert files["copied"] == 2 and not files["missing"], files
    assert (tmp_path / "files" / first["name"]).read_bytes() == b"before"
    assert (tmp_path / "files" / later["name"]).read_bytes() == b"during"


def test_follow_a_mongodb_replica_set_through_its_change_stream(tmp_path: Path, mongo_uri: str) -> None:
    """On a replica set (SecantusDB runs as one) --follow reads the change stream: a deletion reaches the
    copy while following, not only at the final reconciliation, and removed relation rows are reconciled."""
    dest = f"sqlite:///{tmp_path / 'copy.db'}"
    with parsectl_server(data_dir=tmp_path / "live", database_uri=mongo_uri) as live:
        h = live.headers(master=True)
        ids = [httpx.post(f"{live.server_url}/classes/Item", json={"n": i}, headers=h).json()["objectId"]
               for i in range(20)]
        rel = {"__op": "AddRelation", "objects": [{"__type": "Pointer", "className": "Item", "objectId": i}
                                                  for i in ids[5:8]]}
        httpx.put(f"{live.server_url}/classes/Item/{ids[0]}", headers=h, json={"rel": rel})
        proc = start_following(mongo_uri, dest, tmp_path, settle=2.0)
        try:
            new = httpx.post(f"{live.server_url}/classes/Item", json={"n": 100}, headers=h).json()["objectId"]
            httpx.put(f"{live.server_url}/classes/Item/{ids[1]}", json={"n": {"__op": "Increment", "amount": 5}},
                      headers=h)
            httpx.put(f"{live.server_url}/classes/Item/{ids[0]}", headers=h, json={"rel": {
                "__op": "RemoveRelation", "objects": [{"__type": "Pointer", "className": "Item", "objectId": ids[5]}]}})
            httpx.delete(f"{live.server_url}/classes/Item/{ids[2]}", headers=h)
            copy = sqlite3.connect(tmp_path / "copy.db")
            gone = False
            for _ in range(100):  # applied while following, before any finalisation
                if copy.execute('SELECT count(*) FROM "Item" WHERE "objectId" = ?', (ids[2],)).fetchone()[0] == 0:
                    gone = True
                    break
                time.sleep(0.1)
            created = copy.execute('SELECT count(*) FROM "Item" WHERE "objectId" = ?', (new,)).fetchone()[0]
            copy.close()
            assert gone and created == 1
        finally:
            code, out, err = finish_following(proc)
        assert code == 0, err
        report = json.loads(out)
        assert report["follow"]["mode"] == "change stream"
        assert report["follow"]["changesApplied"] >= 2 and report["follow"]["deletionsApplied"] == 1
    verify = migrate("verify", "--from", mongo_uri, "--to", dest, cwd=tmp_path)
    assert "everything matches" in verify.stdout
    copy = sqlite3.connect(tmp_path / "copy.db")
    assert copy.execute('SELECT "n" FROM "Item" WHERE "objectId" = ?', (ids[1],)).fetchone()[0] == 6
    assert sorted(r[0] for r in copy.execute('SELECT "relatedId" FROM "_Join:rel:Item"')) == sorted(ids[6:8])
