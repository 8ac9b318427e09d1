"""The hosted Parse export source (parsectl.migrate.sources.export) over generated exports."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import threading
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import orjson
import pytest

from parsectl.migrate.source import SourceSchema
from parsectl.migrate.sources.export import ExportSource
from parsectl.model.objects import checksum
from tests.support import free_port
from tests.support.export_gen import ExportFacts, file_content, generate_export


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _all_objects(src: ExportSource, class_name: str, **kw: Any) -> list[tuple[list[dict], str]]:
    return [(b.objects, b.checkpoint) async for b in src.objects(class_name, **kw)]


def objects_of(src: ExportSource, class_name: str, **kw: Any) -> list[dict]:
    return [o for batch, _ in run(_all_objects(src, class_name, **kw)) for o in batch]


def schema_of(src: ExportSource) -> SourceSchema:
    async def go() -> SourceSchema:
        await src.open()
        try:
            return await src.schema()
        finally:
            await src.close()

    return run(go())


def relations_of(src: ExportSource, class_name: str, field: str, batch_size: int = 5000) -> list[list]:
    async def go() -> list[list]:
        return [rows async for rows in src.relations(class_name, field, batch_size=batch_size)]

    return run(go())


def write_export(folder: Path, files: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = content if isinstance(content, bytes) else orjson.dumps({"results": content})
        (folder / name).write_bytes(data)
    return folder


def kinds(schema: SourceSchema) -> dict[str, list]:
    out: dict[str, list] = {}
    for p in schema.problems:
        out.setdefault(p.kind, []).append(p)
    return out


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> ExportFacts:
    root = tmp_path_factory.mktemp("export")
    return generate_export(root / "app", objects=300, problems=True, files_dir=root / "files")


@pytest.fixture(scope="module")
def export_zip(tmp_path_factory: pytest.TempPathFactory) -> ExportFacts:
    return generate_export(tmp_path_factory.mktemp("zip") / "app.zip", objects=300, zip=True, problems=True)


@pytest.fixture(scope="module")
def plan(export: ExportFacts) -> SourceSchema:
    return schema_of(ExportSource(export.path))


# --- the export's layout -------------------------------------------------------------------------------
def test_generated_export_layout(export: ExportFacts, export_zip: ExportFacts) -> None:
    names = sorted(p.name for p in export.path.iterdir())
    assert names == ["Comment.json", "Everything.json", "Post.json", "_Installation.json",
                     "_Join:likes:Post.json", "_Join:members:Everything.json", "_Join:roles:_Role.json",
                     "_Join:users:_Role.json", "_Role.json", "_User.json"]
    with zipfile.ZipFile(export_zip.path) as zf:
        assert sorted(zf.namelist()) == names
    users = orjson.loads((export.path / "_User.json").read_bytes())["results"]
    assert len(users) == export.counts["_User"]
    alice = next(u for u in users if u["username"] == "alice")
    assert alice["bcryptPassword"].startswith("$2a$10$")
    assert bcrypt.checkpw(export.passwords["alice"].encode(), alice["bcryptPassword"].encode())
    assert any(u.get("authData", {}).get("facebook") for u in users)
    assert any(u.get("authData", {}).get("anonymous") for u in users)
    assert len(alice["sessionToken"]) == 25 and alice["createdAt"].endswith("Z") and "." in alice["createdAt"]
    assert export.counts == export_zip.counts and export.relations == export_zip.relations
    assert all((export.path.parent / "files" / name).read_bytes() == file_content(name)
               for name in export.file_names)
    assert any("files.parsetfss.com" in url for url in export.file_urls.values())


def test_zip_and_folder_give_the_same_data(export: ExportFacts, export_zip: ExportFacts) -> None:
    folder, packed = ExportSource(export.path), ExportSource(export_zip.path)
    assert packed.description == f"Parse export {export_zip.path}"
    a, b = schema_of(folder), schema_of(packed)
    assert {n: s.fields for n, s in a.classes.items()} == {n: s.fields for n, s in b.classes.items()}
    assert a.counts == b.counts == export.counts
    assert a.notes == b.notes
    # same seed, same data (bcrypt hashes are salted per process cache, so compare without them)
    for name in export.counts:
        left = [checksum(o, ignore=("_hashed_password",)) for o in objects_of(folder, name)]
        assert left == [checksum(o, ignore=("_hashed_password",)) for o in objects_of(packed, name)]
    assert relations_of(folder, "Post", "likes") == relations_of(packed, "Post", "likes")


# --- schema inference ------------------------------------------------------------------------------------
def test_inferred_types(plan: SourceSchema) -> None:
    everything = plan.classes["Everything"].fields
    expected = {"string": "String", "int": "Number", "float": "Number", "bool": "Boolean", "object": "Object",
                "array": "Array", "posts": "Array", "location": "GeoPoint", "area": "Polygon", "bytes": "Bytes",
                "file": "File", "gallery": "Array", "date": "Date", "maybe": "String"}
    assert {k: everything[k]["type"] for k in expected} == expected
    assert everything["owner"] == {"type": "Pointer", "targetClass": "_User"}
    assert everything["members"] == {"type": "Relation", "targetClass": "_User"}
    assert "nothing" not in everything and "bad-field" not in everything
    assert plan.classes["Comment"].fields["post"] == {"type": "Pointer", "targetClass": "Post"}
    assert plan.classes["Post"].fields["views"] == {"type": "Number"}  # majority over the planted string
    assert plan.classes["_Installation"].fields["user"] == {"type": "Pointer", "targetClass": "_User"}


def test_relation_targets_inferred_from_ids(plan: SourceSchema, export: ExportFacts) -> None:
    assert plan.classes["Post"].fields["likes"] == {"type": "Relation", "targetClass": "_User"}
    likes = export.relations["_Join:likes:Post.json"]
    assert plan.notes["Post"]["likes"] == f"relation file, target inferred from {likes} ids"
    assert plan.classes["_Role"].relation_fields() == {"users": "_User", "roles": "_Role"}
    assert plan.notes["Everything"]["members"].startswith("inferred from")
    assert "relation file with" in plan.notes["Everything"]["members"]


def test_notes_and_user_fields(plan: SourceSchema, export: ExportFacts) -> None:
    notes = plan.notes
    assert notes["Everything"]["string"] == f"inferred from {export.counts['Everything']} values"
    assert notes["Everything"]["nothing"].startswith("only null values")
    assert notes["Post"]["views"].endswith("(1 of other types)")
    assert notes["_User"]["username"].startswith("parse-server default field")
    user_fields = plan.classes["_User"].fields
    assert "bcryptPassword" not in user_fields and "sessionToken" not in user_fields
    assert not any(f.startswith("_") for f in user_fields)
    assert {"username", "password", "email", "emailVerified", "authData"} <= set(user_fields)
    assert {"installationId", "deviceToken", "channels", "badge"} <= set(plan.classes["_Installation"].fields)
    assert plan.counts == export.counts


def test_schema_file_wins(export: ExportFacts, tmp_path: Path) -> None:
    dump = {"results": [
        {"className": "Everything", "fields": {"nothing": {"type": "Date"}, "maybe": {"type": "String"}},
         "classLevelPermissions": {"find": {"requiresAuthentication": True}}, "indexes": {"_id_": {"_id": 1}}},
        {"className": "Post", "fields": {"views": {"type": "String"},
                                         "likes": {"type": "Relation", "targetClass": "Comment"}}},
        {"className": "Archive", "fields": {"note": {"type": "String"}}},
    ]}
    schema_file = tmp_path / "schemas.json"
    schema_file.write_bytes(orjson.dumps(dump))
    plan = schema_of(ExportSource(export.path, schema_file=schema_file))
    assert plan.classes["Everything"].fields["nothing"] == {"type": "Date"}
    assert plan.notes["Everything"]["nothing"] == "stated by --schema"
    assert plan.classes["Everything"].clp["find"] == {"requiresAuthentication": True}
    assert plan.classes["Everything"].indexes == {"_id_": {"_id": 1}}
    assert plan.classes["Post"].fields["views"] == {"type": "String"}
    assert plan.classes["Post"].fields["likes"] == {"type": "Relation", "targetClass": "Comment"}
    assert plan.notes["Post"]["likes"].startswith("stated by --schema")
    assert plan.classes["Archive"].fields["note"] == {"type": "String"} and plan.counts["Archive"] == 0
    conflicts = [p for p in plan.problems if p.kind == "type-conflict" and p.field == "views"]
    # every Number value now conflicts with the stated String, each named by its object
    assert len(conflicts) == export.counts["Post"] - 1 and all(p.object_id for p in conflicts)
    assert "--schema says String" in conflicts[0].message
    # a list instead of {"results": [...]} is accepted too
    schema_file.write_bytes(orjson.dumps(dump["results"]))
    assert "Archive" in schema_of(ExportSource(export.path, schema_file=schema_file)).classes


# --- problems ---------------------------------------------------------------------------------------------
def test_planted_problems(plan: SourceSchema, export: ExportFacts) -> None:
    found = kinds(plan)
    assert set(found) == set(export.problems)
    [dup] = found["duplicate-username"]
    assert (dup.class_name, dup.object_id, dup.field) == ("_User", export.ids["duplicate_username"], "username")
    assert "'alice'" in dup.message and "except for case" in dup.message
    [bad] = found["invalid-field-name"]
    assert (bad.class_name, bad.object_id, bad.field) == ("Everything", export.ids["invalid_field"], "bad-field")
    [conflict] = found["type-conflict"]
    assert (conflict.class_name, conflict.field, conflict.object_id) == ("Post", "views", export.ids["type_conflict"])
    assert "Number (" in conflict.message and "String (1 value)" in conflict.message
    [dangling] = found["dangling-pointer"]
    assert (dangling.class_name, dangling.field, dangling.object_id) == (
        "Comment", "post", export.ids["dangling_pointer"])
    assert "Dangling00" in dangling.message
    assert plan.problems[0].to_json()["kind"]


@pytest.mark.parametrize("guess_rows", [1000, 2])
def test_a_relation_files_target_is_the_class_holding_most_of_its_ids(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, guess_rows: int) -> None:
    """The target is guessed from a join file's first rows and checked against the counts of the rest: two
    rows that guess shows ``Note`` ids, the other six ``_User`` ids, so ``_User`` is the target, the rows
    naming other objects are dangling, and the classes are listed in a type conflict."""
    from parsectl.migrate.sources import export as export_module

    monkeypatch.setattr(export_module, "_GUESS_ROWS", guess_rows)
    t = "2015-01-01T00:00:00.000Z"

    def obj(oid: str) -> dict[str, Any]:
        return {"objectId": oid, "createdAt": t, "updatedAt": t}

    users, notes = [f"u{i}" for i in range(6)], ["n0", "n1"]
    rows = [{"owningId": "t1", "relatedId": rid} for rid in [*notes, *users, "ghost"]]
    folder = write_export(tmp_path / "exp", {
        "_User.json": [obj(u) for u in users], "Note.json": [obj(n) for n in notes], "Thing.json": [obj("t1")],
        "_Join:fans:Thing.json": rows,
        "_Join:owners:Thing.json": [{"owningId": "t1", "relatedId": "n0"}, {"owningId": "t2", "relatedId": "u0"}],
    })
    plan = schema_of(ExportSource(folder, schema_file=_schema_dump(tmp_path, {"Thing": {"owners": "Note"}})))
    found = kinds(plan)
    assert plan.classes["Thing"].fields["fans"] == {"type": "Relation", "targetClass": "_User"}
    assert plan.notes["Thing"]["fans"] == "relation file, target inferred from 6 ids"
    [conflict] = [p for p in found["type-conflict"] if p.field == "fans"]
    assert "_User (6 ids), Note (2 ids); the target is _User" in conflict.message
    # a stated target keeps its class, whatever the counts
    assert plan.classes["Thing"].fields["owners"] == {"type": "Relation", "targetClass": "Note"}
    [stated_conflict] = [p for p in found["type-conflict"] if p.field == "owners"]
    assert "Note (1 id)" in stated_conflict.message and "_User (1 id)" in stated_conflict.message
    assert stated_conflict.message.endswith("the target is Note")
    dangling = sorted(p.message for p in found["dangling-pointer"])
    assert dangling == ["relation row (t1, ghost): no _User ghost in the export",
                        "relation row (t1, n0): no _User n0 in the export",
                        "relation row (t1, n1): no _User n1 in the export",
                        "relation row (t2, u0): no Thing t2 in the export"]


def _schema_dump(tmp_path: Path, relations: dict[str, dict[str, str]]) -> Path:
    path = tmp_path / "schema.json"
    path.write_bytes(orjson.dumps({"results": [
        {"className": cls, "fields": {f: {"type": "Relation", "targetClass": target} for f, target in fields.items()}}
        for cls, fields in relations.items()]}))
    return path


def test_every_problem_kind(tmp_path: Path) -> None:
    t = "2015-01-01T00:00:00.000Z"

    def obj(oid: str, **kw: Any) -> dict[str, Any]:
        return {"objectId": oid, "createdAt": t, "updatedAt": t, **kw}

    big = "x" * (16 * 1024 * 1024 + 10)
    folder = write_export(tmp_path / "exp", {
        "_User.json": [obj("u1", username="Ann", email="ann@x.com"), obj("u2", username="bob", email="ANN@x.com"),
                       obj("u3", username="bob", email="b@x.com")],
        "_Role.json": [obj("r1", name="Admins"), obj("r2", name="Admins")],
        "Thing.json": [obj("t1", size=1), obj("t1", size=2), {"createdAt": t, "size": 3},
                       obj("t3", ACL={"*": {"read": "yes"}}), obj("t4", blob=big),
                       obj("t5", ref={"__type": "Pointer", "className": "Ghost", "objectId": "g1"}),
                       obj("t6", nested={"deep": [{"__type": "Pointer", "className": "Thing", "objectId": "nope"}]})],
        "Bad-Class.json": [obj("b1")],
        "_Join:orphans:Thing.json": [{"owningId": "t1", "relatedId": "zzz"}],
        "_Join:friends:Thing.json": [{"owningId": "t1", "relatedId": "u1"}, {"owningId": "t9", "relatedId": "u2"}],
        "Empty.json": b"",
    })
    plan = schema_of(ExportSource(folder))
    found = kinds(plan)
    assert [p.object_id for p in found["duplicate-email"]] == ["u2"]
    assert [p.object_id for p in found["duplicate-username"]] == ["u3"]
    assert [p.object_id for p in found["duplicate-role-name"]] == ["r2"]
    assert [p.object_id for p in found["duplicate-object-id"]] == ["t1"]
    assert [p.message for p in found["missing-object-id"]] == ["record #3 has no objectId"]
    assert [p.object_id for p in found["invalid-object"]] == ["t3"]
    assert [p.object_id for p in found["too-large"]] == ["t4"]
    assert [p.class_name for p in found["invalid-class-name"]] == ["Bad-Class"]
    assert [p.field for p in found["relation-target-unknown"]] == ["orphans"]
    dangling = {(p.object_id, p.field) for p in found["dangling-pointer"]}
    assert dangling == {("t5", "ref"), ("t6", "nested"), ("t9", "friends")}
    assert "Bad-Class" not in plan.classes and "Empty" not in plan.classes
    assert plan.classes["Thing"].fields["friends"] == {"type": "Relation", "targetClass": "_User"}
    assert "orphans" not in plan.classes["Thing"].fields
    assert plan.counts["Thing"] == 7
    # for a destination other than MongoDB the 16 MB limit is not checked, also by the scan's worker processes
    for parallel in (False, True):
        unchecked = kinds(schema_of(ExportSource(folder, check_size=False, parallel=parallel)))
        assert "too-large" not in unchecked and unchecked["duplicate-email"]


def test_problem_lists_are_capped(tmp_path: Path) -> None:
    t = "2015-01-01T00:00:00.000Z"
    rows = [{"objectId": f"o{i}", "createdAt": t, "p": {"__type": "Pointer", "className": "X", "objectId": f"x{i}"}}
            for i in range(30)]
    plan = schema_of(ExportSource(write_export(tmp_path / "e", {"A.json": rows}), max_problems=10))
    dangling = [p for p in plan.problems if p.kind == "dangling-pointer"]
    assert len(dangling) == 11 and dangling[-1].object_id is None and "20 more" in dangling[-1].message


def test_relation_file_without_a_class_file_and_unusual_names(tmp_path: Path) -> None:
    t = "2015-01-01T00:00:00.000Z"
    folder = write_export(tmp_path / "e", {
        "_User.json": b"\xef\xbb\xbf" + orjson.dumps({"results": [{"objectId": "u1", "createdAt": t}]}),
        "Tag.json": orjson.dumps([{"objectId": "g1", "createdAt": t, "label": "x"}]),  # a bare list
        "_Join\uA789fans\uA789Gone.json": [{"owningId": "gone1", "relatedId": "u1"}],  # back4app's name
    })
    src = ExportSource(folder)
    plan = schema_of(src)
    assert plan.classes["Gone"].fields["fans"] == {"type": "Relation", "targetClass": "_User"}
    assert plan.counts["Gone"] == 0 and plan.counts["Tag"] == 1
    assert [o["label"] for o in objects_of(src, "Tag")] == ["x"]
    assert relations_of(src, "Gone", "fans") == [[("gone1", "u1")]]
    assert objects_of(src, "Nope") == [] and relations_of(src, "Tag", "nope") == []


# --- objects ----------------------------------------------------------------------------------------------
def test_objects_batches_and_resume(export: ExportFacts) -> None:
    src = ExportSource(export.path)
    batches = run(_all_objects(src, "Post", batch_size=7))
    assert all(len(b) == 7 for b, _ in batches[:-1])
    assert int(batches[-1][1]) == export.counts["Post"]
    every = [o["objectId"] for b, _ in batches for o in b]
    assert len(every) == export.counts["Post"] == len(set(every))
    for k in (1, 5, len(batches) - 1):
        resumed = [o["objectId"] for o in objects_of(src, "Post", after=batches[k - 1][1], batch_size=7)]
        assert every[: 7 * k] + resumed == every
    assert objects_of(src, "Post", after=batches[-1][1]) == []
    assert objects_of(src, "Post", after=str(10**9)) == []


def test_skipped_objects_are_problems_and_checkpoints_count_records(export: ExportFacts) -> None:
    src = ExportSource(export.path)
    batches = run(_all_objects(src, "Everything", batch_size=2))
    total = sum(len(b) for b, _ in batches)
    assert total == export.counts["Everything"] - 1
    assert int(batches[-1][1]) == export.counts["Everything"]
    [skipped] = src.skipped
    assert (skipped.kind, skipped.object_id, skipped.field) == (
        "invalid-field-name", export.ids["invalid_field"], "bad-field")
    # resuming past the bad record does not report it again
    src2 = ExportSource(export.path)
    assert len(objects_of(src2, "Everything", after="4")) == export.counts["Everything"] - 4 and not src2.skipped


def test_users_in_storage_form(export: ExportFacts) -> None:
    users = {u["objectId"]: u for u in objects_of(ExportSource(export.path), "_User")}
    for name, password in export.passwords.items():
        user = users[export.user_ids[name]]
        assert user["_hashed_password"].startswith("$2a$10$")
        assert bcrypt.checkpw(password.encode(), user["_hashed_password"].encode())
        assert len(user["_session_token"]) == 25
    for user in users.values():
        assert not {"bcryptPassword", "sessionToken", "password", "ACL"} & set(user)
    assert users[export.ids["facebook_user"]]["authData"]["facebook"]["id"]
    anonymous = users[export.ids["anonymous_user"]]
    assert "_hashed_password" not in anonymous and anonymous["authData"]["anonymous"]["id"]
    alice = users[export.user_ids["alice"]]
    assert alice["_rperm"] == ["*", alice["objectId"]] and alice["_wperm"] == [alice["objectId"]]
    assert "bcryptPassword" not in orjson.dumps(list(users.values())).decode()


def test_installations_lower_cased(export: ExportFacts) -> None:
    raw = orjson.loads((export.path / "_Installation.json").read_bytes())["results"]
    assert any(r["installationId"] != r["installationId"].lower() for r in raw)
    stored = objects_of(ExportSource(export.path), "_Installation")
    assert len(stored) == len(raw)
    for before, after in zip(raw, stored, strict=True):
        assert after["installationId"] == before["installationId"].lower()
        if before["deviceType"] == "ios":
            assert after["deviceToken"] == before["deviceToken"].lower() != before["deviceToken"]
        else:
            assert after["deviceToken"] == before["deviceToken"]


def test_every_type_in_storage_form(export: ExportFacts) -> None:
    [first] = [o for o in objects_of(ExportSource(export.path), "Everything")
               if o["objectId"] == export.ids["everything"]]
    assert first["object"]["when"]["__type"] == "Date" and first["date"]["__type"] == "Date"
    assert first["file"] == {"__type": "File", "name": first["file"]["name"]}
    assert first["file"]["name"] in export.file_names
    assert first["posts"][0]["__type"] == "Pointer" and first["area"]["coordinates"][0] == \
        first["area"]["coordinates"][-1]
    assert "nothing" not in first and "members" not in first
    assert first["createdAt"].endswith("Z") and len(first["createdAt"]) == 24


def test_relations(export: ExportFacts) -> None:
    src = ExportSource(export.path)
    likes = relations_of(src, "Post", "likes", batch_size=50)
    assert all(len(rows) == 50 for rows in likes[:-1])
    assert sum(map(len, likes)) == export.relations["_Join:likes:Post.json"]
    inheritance = relations_of(src, "_Role", "roles")
    ids = export.role_ids
    assert inheritance == [[(ids["Moderators"], ids["Administrators"]), (ids["Members"], ids["Moderators"])]]
    members = [r for rows in relations_of(src, "_Role", "users") for r in rows]
    assert (ids["Administrators"], export.user_ids["alice"]) in members


# --- files ------------------------------------------------------------------------------------------------
def test_file_bytes_from_a_folder(export: ExportFacts) -> None:
    src = ExportSource(export.path, files_from=export.path.parent / "files")
    name = export.file_names[0]
    assert run(src.file_bytes(name, export.file_urls[name])) == file_content(name)
    assert run(src.file_bytes("missing.txt", None)) is None
    assert run(src.file_bytes("../app/_User.json", None)) is None


@contextlib.contextmanager
def _serving_files(facts: ExportFacts) -> Iterator[str]:
    """A loopback HTTP server answering /<fileKey>/<name> with the generated bytes."""
    known = {f"/{facts.file_key}/{name}": file_content(name) for name in facts.file_names}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = known.get(self.path)
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", next(iter(known)))
                self.end_headers()
                return
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def file_server(export: ExportFacts) -> Iterator[str]:
    with _serving_files(export) as url:
        yield url


def test_file_bytes_over_http_with_a_rewrite(export: ExportFacts, file_server: str) -> None:
    async def go() -> None:
        src = ExportSource(export.path, url_rewrite=("http://files.parsetfss.com/", file_server + "/"), timeout=5)
        try:
            tfss = next(n for n in export.file_names if n.startswith("tfss-"))
            assert await src.file_bytes(tfss, export.file_urls[tfss]) == file_content(tfss)
            assert await src.file_bytes("x", f"{file_server}/{export.file_key}/missing") is None
            first = export.file_names[0]
            assert await src.file_bytes(first, f"{file_server}/moved") == file_content(first)
            assert await src.file_bytes("x", f"http://127.0.0.1:{free_port()}/nothing-listens") is None
            assert await src.file_bytes("x", None) is None
        finally:
            await src.close()

    run(go())


@pytest.mark.parametrize("path", ["thread", "worker rows", "worker objects"])
def test_migrate_files_fetches_them_from_their_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    path: str) -> None:
    """``--files`` without ``--files-from``: every File is fetched from the URL its record gives (here
    rewritten to a loopback server), whichever way the records were read. Storage form keeps only a File's
    name, so the URLs come with the batches."""
    from parsectl.migrate.engine import Migration, Options
    from parsectl.migrate.writers import SQLiteWriter

    export = generate_export(tmp_path / "app", objects=300)
    for part in export.path.glob("*.json"):  # every URL on the host the rewrite sends to loopback
        part.write_bytes(part.read_bytes().replace(b"http://files.parse.com/", b"http://files.parsetfss.com/"))
    if path == "worker objects":  # a writer without a row layout (as MongoDB's): workers send objects
        monkeypatch.setattr(SQLiteWriter, "row_kind", None)
    options = Options(files=True, state_dir=tmp_path / "state", batch_size=50,
                      files_adapter={"module": "fs", "options": {"filesDirectory": str(tmp_path / "files")}})
    with _serving_files(export) as file_server:
        source = ExportSource(export.path, url_rewrite=("http://files.parsetfss.com/", file_server + "/"),
                              timeout=5, parallel=path != "thread")
        report = run(Migration(source, f"sqlite:///{tmp_path / 'app.db'}", options).run())
    assert report.files_missing == []
    assert report.files_copied == len(set(export.file_names)) > 0
    stored = {p.name: p.read_bytes() for p in (tmp_path / "files").rglob("*") if p.is_file()}
    assert all(stored.get(name) == file_content(name) for name in export.file_names), sorted(stored)


@pytest.mark.parametrize("path", ["thread", "worker rows", "worker objects"])
def test_users_with_legacy_session_tokens_are_counted_into_sql(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                path: str) -> None:
    """A SQL destination has no place for hosted Parse's session tokens: the report says how many users
    carry one (they sign in again), whichever way the users' rows were made; the users themselves and
    their password hashes are copied."""
    from parsectl.migrate.engine import Migration, Options
    from parsectl.migrate.writers import SQLiteWriter

    export = generate_export(tmp_path / "app", objects=300)
    users = orjson.loads((export.path / "_User.json").read_bytes())["results"]
    with_token = sum(1 for u in users if isinstance(u.get("sessionToken"), str) and u["sessionToken"])
    assert with_token > 0
    if path == "worker objects":
        monkeypatch.setattr(SQLiteWriter, "row_kind", None)
    source = ExportSource(export.path, parallel=path != "thread")
    report = run(Migration(source, f"sqlite:///{tmp_path / 'app.db'}", Options(state_dir=tmp_path / "s",
                                                                            batch_size=7)).run())
    assert any(w.startswith(f"{with_token} user(s) carry a legacy hosted-Parse session token")
               for w in report.warnings), report.warnings
    assert report.classes["_User"].copied == len(users)
    import sqlite3

    db = sqlite3.connect(tmp_path / "app.db")
    hashes = dict(db.execute('SELECT "objectId", "_hashed_password" FROM "_User"').fetchall())
    assert hashes == {u["objectId"]: u.get("bcryptPassword") or None for u in users}


# --- memory -----------------------------------------------------------------------------------------------
def _peak_over_a_full_read(path: Path, batch_size: int = 500) -> int:
    async def go() -> int:
        src = ExportSource(path)
        await src.open()
        plan = await src.schema()
        n = 0
        for name in plan.classes:
            async for batch in src.objects(name, batch_size=batch_size):
                n += len(batch.objects)
            for field in plan.classes[name].relation_fields():
                async for rows in src.relations(name, field):
                    n += len(rows)
        await src.close()
        return n

    tracemalloc.start()
    try:
        assert run(go()) > 0
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.iterdir())


def test_memory_does_not_grow_with_the_export(tmp_path: Path) -> None:
    # the peak is one batch of objects plus fixed buffers: 2,000 objects fill every batch already
    small = generate_export(tmp_path / "small.zip", objects=2_000, zip=True).path
    large = generate_export(tmp_path / "large", objects=8_000).path
    peak_small, peak_large = _peak_over_a_full_read(small, 200), _peak_over_a_full_read(large, 200)
    assert _size(large) > 4_500_000
    assert peak_large < 6_000_000, peak_large
    assert peak_large < peak_small * 1.75 + 1_000_000, (peak_small, peak_large)


@pytest.mark.slow
def test_memory_bounded_on_50k_objects(tmp_path: Path) -> None:
    """The peak stays at batch size while the export is many times larger (tracemalloc makes this slow)."""
    path = generate_export(tmp_path / "big.zip", objects=50_000, zip=True).path
    unpacked = sum(i.file_size for i in zipfile.ZipFile(path).infolist())
    assert unpacked > 25_000_000
    peak = _peak_over_a_full_read(path)
    assert peak < 16_000_000, peak


@pytest.mark.slow
def test_generator_memory_does_not_grow(tmp_path: Path) -> None:
    peaks = []
    for n in (2_000, 60_000):
        tracemalloc.start()
        try:
            generate_export(tmp_path / f"g{n}.zip", objects=n, zip=True)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert peaks[1] < peaks[0] * 1.5 + 500_000, peaks


@pytest.mark.parametrize("zipped", [False, True])
def test_relation_rows_read_from_the_plan_index_are_the_join_files(export: ExportFacts, export_zip: ExportFacts,
                                                                   zipped: bool) -> None:
    """After the schema pass, relation rows come from its index (parsed once); the same rows, in the same
    batches, as reading the join files again."""
    src = ExportSource((export_zip if zipped else export).path)
    run(src.open())
    run(src.schema())
    joins = sorted(src._joins)
    assert joins and all(src.relation_rows_sql(*key) is not None for key in joins)
    from_index = {key: relations_of(src, *key, batch_size=7) for key in joins}
    src._drop_index()
    assert all(src.relation_rows_sql(*key) is None for key in joins)
    assert {key: relations_of(src, *key, batch_size=7) for key in joins} == from_index
    assert sum(len(rows) for batches in from_index.values() for rows in batches) > 0
    run(src.close())


def test_temporary_files_of_killed_migrations_are_removed(export: ExportFacts, tmp_path: Path) -> None:
    """The schema pass's index and fixes are temporary files named after their process; one that a killed
    migration left (its process is gone) is removed by the next schema pass, others are kept."""
    import os
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = [tmp_path / f"parsectl-export-{gone.pid}-abc_1.sqlite", tmp_path / f"parsectl-fixes-{gone.pid}-x.sqlite"]
    alive = [tmp_path / f"parsectl-export-{os.getppid()}-def.sqlite", tmp_path / "parsectl-export-other.sqlite",
             tmp_path / f"notes-{gone.pid}-1.sqlite"]
    for path in stale + alive:
        path.write_bytes(b"")
    src = ExportSource(export.path, tmp_dir=tmp_path)
    run(src.open())
    run(src.schema())
    assert not any(p.exists() for p in stale) and all(p.exists() for p in alive)
    assert src._index_path is not None and Path(src._index_path).parent == tmp_path
    assert Path(src._index_path).name.startswith(f"parsectl-export-{os.getpid()}-")
    run(src.close())  # and its own index is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in alive)
