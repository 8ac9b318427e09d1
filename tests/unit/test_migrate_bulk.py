"""Migration bulk paths: the writers' column encoders equal the adapters' own, the fast paths of the shared
codec equal the slow ones, and ``--on-problem fix`` repairs (export source level, then into SQLite)."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import zipfile
from pathlib import Path
from typing import Any

import orjson
import pytest

from parsectl.migrate.engine import Migration, MigrationError, Options
from parsectl.migrate.sources.export import ExportSource
from parsectl.model import codec
from parsectl.model.errors import ParseError
from parsectl.model.schema import ClassSchema
from parsectl.storage import postgres, sqlite
from parsectl.storage.sql import _canonical, canonical_json

T = "2015-01-01T00:00:00.000Z"

SAMPLES: list[tuple[dict[str, str], Any]] = [
    ({"type": "String"}, "text ü"), ({"type": "String"}, {"odd": 1.0}), ({"type": "Number"}, 3),
    ({"type": "Number"}, 2.5), ({"type": "Boolean"}, True), ({"type": "Boolean"}, False),
    ({"type": "Date"}, {"__type": "Date", "iso": T}), ({"type": "Date"}, T),
    ({"type": "Pointer", "targetClass": "_User"}, {"__type": "Pointer", "className": "_User", "objectId": "u1"}),
    ({"type": "File"}, {"__type": "File", "name": "a.txt"}),
    ({"type": "Object"}, {"b": [1.0, 2.5, {"c": 3.0}], "a": "x.y"}), ({"type": "Array"}, ["a", 1, 2.0, None]),
    ({"type": "GeoPoint"}, {"__type": "GeoPoint", "latitude": 10.5, "longitude": -20}),
    ({"type": "Polygon"}, {"__type": "Polygon", "coordinates": [[0, 0], [0, 1], [1, 1], [0, 0]]}),
    ({"type": "Bytes"}, {"__type": "Bytes", "base64": "aGVsbG8="}),
]


@pytest.mark.parametrize(("ftype", "value"), SAMPLES)
def test_sqlite_column_encoder_is_the_adapters_encoding(ftype: dict[str, str], value: Any) -> None:
    assert sqlite.column_encoder(ftype)(value) == sqlite._encode(ftype, value)


@pytest.mark.parametrize(("ftype", "value"), SAMPLES)
def test_postgres_copy_encoder_is_the_adapters_encoding(ftype: dict[str, str], value: Any) -> None:
    adapter = postgres.PostgresAdapter("postgresql://localhost/none")
    expected = postgres._copy_value(adapter._value(ftype, value)[1])
    encode = postgres.copy_encoder(ftype)
    got = value if encode is None else encode(value)
    if ftype["type"] == "Date" and not isinstance(expected, str):  # the server may bind a datetime
        assert codec.parse_iso(got) == expected
    else:
        assert got == expected


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return rng.choice([1.0, 2.5, -3.0, 1e15, 1e16, 1e-7, 0.1, 2.0**53, 12345678.0])
    if kind == 1:
        return rng.randrange(-10**6, 10**6)
    if kind == 2:
        return rng.choice(["a", "b.c", "1.0", "e", ""])
    if kind == 3:
        return rng.choice([True, False, None])
    if kind == 4:
        return rng.uniform(-1e6, 1e6)
    if kind == 5:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice("zyxab") + str(i): _random_value(rng, depth + 1) for i in range(rng.randrange(4))}


def test_canonical_json_fast_path_equals_the_walk() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        value = _random_value(rng)
        assert canonical_json(value) == orjson.dumps(_canonical(value), option=orjson.OPT_SORT_KEYS).decode()


@pytest.mark.parametrize("acl", [{"*": {"read": True}}, {"u1": {"read": True, "write": True}, "role:A": {"write": True}},
                                 {"u2": {"read": False, "write": True}}, {}])
def test_acl_perms_is_validate_then_convert(acl: dict[str, Any]) -> None:
    assert codec.acl_perms(acl) == codec.acl_to_perms(codec.validate_acl(acl))


@pytest.mark.parametrize("acl", [[], {"*": {"read": "yes"}}, {"*": {"delete": True}}, {"": {"read": True}},
                                 {"*": True}])
def test_acl_perms_refuses_what_validate_refuses(acl: Any) -> None:
    with pytest.raises(ParseError) as a:
        codec.acl_perms(acl)
    with pytest.raises(ParseError) as b:
        codec.validate_acl(acl)
    assert (a.value.code, a.value.message) == (b.value.code, b.value.message)


# --- --on-problem fix --------------------------------------------------------------------------------------


def _obj(oid: str, **kw: Any) -> dict[str, Any]:
    return {"objectId": oid, "createdAt": T, "updatedAt": T, **kw}


def _problem_export(folder: Path) -> Path:
    folder.mkdir(parents=True)
    files = {
        "_User.json": [_obj("u1", username="Ann", email="ann@x.com"), _obj("u2", username="ann", email="ANN@x.com"),
                       _obj("u3", username="bob", email="b@x.com")],
        "_Role.json": [_obj("r1", name="Admins"), _obj("r2", name="Admins")],
        "Thing.json": [
            _obj("t1", size=1, ref={"__type": "Pointer", "className": "_User", "objectId": "u1"}),
            _obj("t2", size="big", ref={"__type": "Pointer", "className": "_User", "objectId": "ghost"}),
            _obj("t3", size=3, **{"bad-name": 1, "2nd": "x"},
                 refs=[{"__type": "Pointer", "className": "_User", "objectId": "u3"},
                       {"__type": "Pointer", "className": "_User", "objectId": "gone"}]),
            _obj("t4", size=4, bad_name="taken"),
        ],
    }
    for name, rows in files.items():
        (folder / name).write_bytes(orjson.dumps({"results": rows}))
    return folder


async def _read(source: ExportSource, class_name: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    async for batch in source.objects(class_name, batch_size=2):
        out.update({o["objectId"]: o for o in batch.objects})
    return out


def test_fix_plans_and_applies_every_repair(tmp_path: Path) -> None:
    async def go() -> None:
        source = ExportSource(_problem_export(tmp_path / "e"), fix=True)
        await source.open()
        try:
            plan = await source.schema()
            fixes = {(p.kind, p.object_id, p.field): p.fix for p in plan.problems}
            assert fixes[("duplicate-username", "u2", "username")] == "renamed to 'ann_u2'"
            assert fixes[("duplicate-email", "u2", "email")] == "renamed to 'ANN+u2@x.com'"
            assert fixes[("duplicate-role-name", "r2", "name")] == "renamed to 'Admins_r2'"
            assert fixes[("dangling-pointer", "t2", "ref")].startswith("pointer unset")
            assert fixes[("dangling-pointer", "t3", "refs")].startswith("pointer unset")
            assert fixes[("type-conflict", "t2", "size")] == "value moved to the new field size_String"
            # bad_name exists already, so bad-name becomes bad_name_2; 2nd needs a letter first
            assert fixes[("invalid-field-name", None, "bad-name")] == "renamed to 'bad_name_2'"
            assert fixes[("invalid-field-name", None, "2nd")] == "renamed to 'f2nd'"
            assert all(p.fix for p in plan.problems)
            thing = plan.classes["Thing"].fields
            assert thing["size"] == {"type": "Number"} and thing["size_String"] == {"type": "String"}
            assert thing["bad_name_2"] == {"type": "Number"} and thing["f2nd"] == {"type": "String"}

            users, roles, things = (await _read(source, "_User"), await _read(source, "_Role"),
                                    await _read(source, "Thing"))
            assert (users["u1"]["username"], users["u2"]["username"]) == ("Ann", "ann_u2")
            assert (users["u1"]["email"], users["u2"]["email"]) == ("ann@x.com", "ANN+u2@x.com")
            assert roles["r2"]["name"] == "Admins_r2" and roles["r1"]["name"] == "Admins"
            assert "ref" not in things["t2"] and things["t2"]["size_String"] == "big" and "size" not in things["t2"]
            assert things["t1"]["ref"]["objectId"] == "u1" and things["t1"]["size"] == 1
            assert [p["objectId"] for p in things["t3"]["refs"]] == ["u3"]
            assert things["t3"]["bad_name_2"] == 1 and things["t3"]["f2nd"] == "x" and "bad-name" not in things["t3"]
            assert things["t4"]["bad_name"] == "taken"
            assert not source.skipped
        finally:
            await source.close()

    asyncio.run(go())


def test_without_fix_the_same_export_is_refused_and_nothing_is_renamed(tmp_path: Path) -> None:
    folder = _problem_export(tmp_path / "e")
    options = Options(state_dir=tmp_path / "state")
    with pytest.raises(MigrationError, match="--on-problem fix"):
        asyncio.run(Migration(ExportSource(folder), f"sqlite:///{tmp_path / 'a.db'}", options).run())
    plan = asyncio.run(ExportSource(folder).schema())
    assert not any(p.fix for p in plan.problems)
    assert "size_String" not in plan.classes["Thing"].fields


def test_fix_into_sqlite_stores_the_repaired_objects(tmp_path: Path) -> None:
    folder = _problem_export(tmp_path / "e")
    db_path = tmp_path / "a.db"
    options = Options(on_problem="fix", state_dir=tmp_path / "state", batch_size=2)
    report = asyncio.run(Migration(ExportSource(folder, fix=True), f"sqlite:///{db_path}", options).run())
    assert {n: c.copied for n, c in report.classes.items()} == {"_User": 3, "_Role": 2, "Thing": 4}
    listed = report.to_json()["problems"]
    assert listed and all(p["fix"] for p in listed)
    db = sqlite3.connect(db_path)
    assert db.execute('SELECT "username" FROM "_User" ORDER BY "objectId"').fetchall() == [("Ann",), ("ann_u2",),
                                                                                           ("bob",)]
    row = db.execute('SELECT "size", "size_String", "ref" FROM "Thing" WHERE "objectId" = ?', ("t2",)).fetchone()
    assert row == (None, "big", None)
    refs = db.execute('SELECT "refs", "bad_name_2", "f2nd" FROM "Thing" WHERE "objectId" = ?', ("t3",)).fetchone()
    assert [p["objectId"] for p in orjson.loads(refs[0])] == ["u3"] and refs[1:] == (1, "x")
    stored = sqlite.SQLiteAdapter(db_path)
    schemas = asyncio.run(_schemas(stored))
    assert schemas["Thing"].fields["size_String"] == {"type": "String"}


async def _schemas(adapter: sqlite.SQLiteAdapter) -> dict[str, ClassSchema]:
    await adapter.open()
    try:
        return await adapter.load_schemas()
    finally:
        await adapter.close()


# --- the export reader process ------------------------------------------------------------------------------


async def _batches(source: ExportSource, class_name: str, **kw: Any) -> list[tuple[list[dict[str, Any]], str]]:
    return [(b.objects, b.checkpoint) async for b in source.objects(class_name, **kw)]


def test_worker_process_reads_what_the_thread_reads(tmp_path: Path) -> None:
    from tests.support.export_gen import generate_export

    facts = generate_export(tmp_path / "e", objects=300, problems=True)

    async def read_all(parallel: bool, fix: bool) -> tuple[dict[str, Any], list[Any]]:
        source = ExportSource(facts.path, parallel=parallel, fix=fix)
        await source.open()
        try:
            await source.schema()
            out = {name: await _batches(source, name, batch_size=7) for name in facts.counts}
            out["resumed"] = await _batches(source, "Post", after="20", batch_size=9)
            # a class abandoned midway, then another one read whole
            partial = source.objects("Comment", batch_size=5)
            await anext(partial)
            await partial.aclose()
            out["after-abandon"] = await _batches(source, "Everything", batch_size=50)
            return out, [p.to_json() for p in source.skipped]
        finally:
            await source.close()

    for fix in (False, True):
        in_thread, skipped_thread = asyncio.run(read_all(False, fix))
        in_worker, skipped_worker = asyncio.run(read_all(True, fix))
        assert in_worker == in_thread
        assert skipped_worker == skipped_thread
        assert bool(skipped_thread) is not fix  # without fix, the invalid field name's object is skipped
    assert [o["objectId"] for o in in_worker["resumed"][0][0]][:1] == [in_worker["Post"][2][0][6]["objectId"]]


@pytest.mark.parametrize("fix", [False, True])
def test_schema_pass_in_worker_processes_finds_what_one_pass_finds(tmp_path: Path, fix: bool) -> None:
    """The schema pass scans files on several worker processes at once and merges what they found: the
    plan (schemas, counts, notes, every problem in order) and the repairs are those of one in-process pass."""
    from tests.support.export_gen import generate_export

    facts = generate_export(tmp_path / "e", objects=400, problems=True)

    async def plan(parallel: bool) -> tuple[Any, ...]:
        source = ExportSource(facts.path, parallel=parallel, fix=fix, max_problems=1)
        await source.open()
        try:
            got = await source.schema()
            fixes = sorted(source._fixes.execute("SELECT * FROM fix").fetchall()) if source._fixes else []
            return ({n: s.to_json() for n, s in got.classes.items()}, got.counts, got.notes,
                    [p.to_json() for p in got.problems], source.renames, source.moves, fixes)
        finally:
            await source.close()

    one_pass, in_workers = asyncio.run(plan(False)), asyncio.run(plan(True))
    assert in_workers == one_pass
    kinds = {p["kind"] for p in one_pass[3]}
    assert {"type-conflict", "dangling-pointer", "duplicate-username"} <= kinds, kinds


def test_dangling_relation_rows_looked_up_in_two_halves_are_found_in_order(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A big join file's lookups run in two threads over two halves of its rows; the problems found, and
    their order, are those of one lookup over all rows."""
    from parsectl.migrate.sources import export

    folder = _problem_export(tmp_path / "e")
    pairs = [{"owningId": f"t{1 + i % 5}", "relatedId": f"u{1 + i % 4}"} for i in range(40)]  # t5, u4: missing
    (folder / "_Join:fans:Thing.json").write_bytes(orjson.dumps({"results": pairs}))

    def problems() -> list[dict[str, Any]]:
        plan = asyncio.run(ExportSource(folder).schema())
        return [p.to_json() for p in plan.problems if "relation row" in p.message]

    whole = problems()
    monkeypatch.setattr(export, "SPLIT_LOOKUPS_FROM", 2)
    halves = problems()
    assert halves == whole
    expected = [f"relation row ({p['owningId']}, {p['relatedId']}): no Thing t5 in the export"
                if p["owningId"] == "t5" else f"relation row (t{p['owningId'][1:]}, u4): no _User u4 in the export"
                for p in pairs if p["owningId"] == "t5" or p["relatedId"] == "u4"]
    assert [p["message"] for p in whole] == expected and len(expected) == 16  # in the join file's order


# --- reading records: one per line fast, any other layout as a streaming parser reads it ---------------------


@pytest.mark.parametrize("layout", ["lines", "pretty", "one-line", "two-per-line", "blank-lines", "bare-list",
                                    "bom", "odd-record", "big-int", "trailing-space"])
def test_records_are_the_same_whatever_the_layout(tmp_path: Path, layout: str) -> None:
    import ijson

    rows: list[Any] = [_obj(f"o{i}", n=i, f=i + 0.5, s=f"line {i} ü \\n", nested={"a": [1, {"b": None}]})
                       for i in range(12)]
    if layout == "odd-record":
        rows.insert(5, 7)
    if layout == "big-int":
        rows[3]["huge"] = 2**70
    if layout == "lines":
        text = b'{"results": [\n' + b",\n".join(orjson.dumps(r) for r in rows) + b"\n]}\n"
    elif layout == "pretty":
        text = orjson.dumps({"results": rows}, option=orjson.OPT_INDENT_2)
    elif layout == "one-line":
        text = orjson.dumps({"results": rows})
    elif layout == "two-per-line":
        text = b'{"results": [\n' + b",\n".join(orjson.dumps(rows[i]) + b", " + orjson.dumps(rows[i + 1])
                                                 for i in range(0, 12, 2)) + b"\n]}"
    elif layout == "blank-lines":
        text = b'{ "results" : [\n\n' + b",\n\n".join(orjson.dumps(r) for r in rows) + b"\n\n]}"
    elif layout == "bare-list":
        text = b"[\n" + b",\n".join(orjson.dumps(r) for r in rows) + b"\n]"
    elif layout == "bom":
        text = b'\xef\xbb\xbf{"results": [\n' + b",\n".join(orjson.dumps(r) for r in rows) + b"\n]}"
    elif layout in ("odd-record", "big-int"):
        import json

        text = b'{"results": [\n' + b",\n".join(json.dumps(r).encode() for r in rows) + b"\n]}"
    else:
        text = b'{"results": [  \n' + b" ,\n".join(b"  " + orjson.dumps(r) + b"  " for r in rows) + b"\n  ]}  \n"
    folder = tmp_path / "e"
    folder.mkdir()
    (folder / "Thing.json").write_bytes(text)
    source = ExportSource(folder)
    source._scan()
    got = list(source._iter_records(source.class_files["Thing"]))
    if layout == "big-int":  # beyond 64 bits: a float, as parsectl stores such numbers (ijson's C parser fails)
        rows[3]["huge"] = float(2**70)
        assert got == rows and isinstance(got[3]["huge"], float)
        return
    prefix = "item" if text.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] == b"[" else "results.item"
    expected = list(ijson.items(text.removeprefix(b"\xef\xbb\xbf"), prefix, use_float=True))
    assert got == expected == rows


def test_worker_process_memory_does_not_grow_with_the_export(tmp_path: Path) -> None:
    import tracemalloc

    from tests.support.export_gen import generate_export

    def peak(path: Path) -> int:
        async def go() -> None:
            source = ExportSource(path, parallel=True)
            await source.open()
            plan = await source.schema()
            tracemalloc.start()
            for name in plan.classes:
                async for _ in source.objects(name, batch_size=200):
                    pass
            await source.close()

        try:
            asyncio.run(go())
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small = peak(generate_export(tmp_path / "small", objects=2_000).path)
    large = peak(generate_export(tmp_path / "large", objects=8_000).path)
    assert large < 9_000_000, large  # up to three batches of the big Everything objects in flight (two readers)
    assert large < small * 1.75 + 1_000_000, (small, large)


# --- the copy through worker processes that make the writer's rows -----------------------------------------


def _dump(uri: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of a destination, rows sorted (what two equal migrations must have written)."""
    if uri.startswith("sqlite"):
        db = sqlite3.connect(uri.removeprefix("sqlite:///"))
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        out = {name: sorted(db.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr) for name in names}
        db.close()
        return out
    import psycopg

    with psycopg.connect(uri) as conn:
        names = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return {name: sorted(conn.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr) for name in names}


NEW_FILES = "https://api.example.com/parse/files/app/"


@pytest.mark.parametrize(("kind", "on_problem", "layout"), [
    ("sqlite", "skip", "lines"), ("sqlite", "fix", "lines"), ("sqlite", "skip", "zip"),
    ("sqlite", "fix", "pretty"), ("sqlite", "skip", "files"),
    pytest.param("postgres", "skip", "lines", marks=pytest.mark.reference),
    pytest.param("postgres", "fix", "lines", marks=pytest.mark.reference),
])
def test_rows_made_by_worker_processes_are_what_the_migration_writes_itself(
        tmp_path: Path, request: pytest.FixtureRequest, kind: str, on_problem: str, layout: str) -> None:
    """With worker processes, the export's objects reach the writer as rows made in the workers (two
    workers taking turns on files of one record per line, one worker on others, here a pretty-printed
    Post.json); the destination must be exactly what the in-process path writes, repairs, skipped objects
    and report included."""
    from tests.support.export_gen import generate_export

    files_dir = tmp_path / "files" if layout == "files" else None  # with --files (names come with the rows)
    facts = generate_export(tmp_path / ("e.zip" if layout == "zip" else "e"), objects=600, problems=True,
                            zip=layout == "zip", files_dir=files_dir)
    if layout == "pretty":
        post = Path(facts.path) / "Post.json"
        post.write_bytes(orjson.dumps(orjson.loads(post.read_bytes()), option=orjson.OPT_INDENT_2))
    dumps, reports = [], []
    for parallel in (False, True):
        if kind == "sqlite":
            uri = f"sqlite:///{tmp_path / f'{parallel}.db'}"
        else:
            uri = request.getfixturevalue("pg").fresh_database(f"rows_{on_problem}_{str(parallel).lower()}")
        # with --files also --nested-files-url (the workers make the rewritten rows too)
        source = ExportSource(facts.path, parallel=parallel, fix=on_problem == "fix", files_from=files_dir,
                              nested_files_url=NEW_FILES if files_dir is not None else None)
        options = Options(on_problem=on_problem, state_dir=tmp_path / f"state-{parallel}", batch_size=37,
                          files=files_dir is not None,
                          files_adapter={"module": "fs", "options": {"filesDirectory": str(tmp_path / f"f{parallel}")}})
        report = asyncio.run(Migration(source, uri, options).run()).to_json()
        report.pop("seconds", None), report.pop("destination")
        if files_dir is not None:
            assert report["files"].pop("location") == f"folder {tmp_path / f'f{parallel}'}"
        reports.append(report)
        dumps.append(_dump(uri))
        if parallel:
            assert source.parallel and not source._readers  # the workers ran, and were stopped at the end
        if kind == "postgres":  # analyzed: class and join tables have statistics (COPY leaves none)
            import psycopg

            with psycopg.connect(uri) as conn:
                never = conn.execute("SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                                     "WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.reltuples < 0 "
                                     "AND relname NOT LIKE '\\_%' AND relname NOT LIKE '\\_Join:%' ").fetchall()
                joins = conn.execute("SELECT relname, reltuples FROM pg_class WHERE relname LIKE '\\_Join:%'").fetchall()
            assert not never and joins and all(n >= 0 for _, n in joins), (never, joins)
    assert dumps[1] == dumps[0]
    assert reports[1] == reports[0]
    if files_dir is not None:
        assert reports[0]["files"]["copied"] > 0, reports[0]["files"]  # fetched where the export says they are
        assert NEW_FILES in repr(dumps[0]["Everything"]) and "parsetfss" not in repr(dumps[0]["Everything"])
        assert sorted(p.name for p in (tmp_path / "fTrue").rglob("*")) == sorted(
            p.name for p in (tmp_path / "fFalse").rglob("*"))
    assert sum(len(rows) for rows in dumps[0].values()) > 600


@pytest.mark.parametrize("interrupted", [False, True])
def test_spooled_rows_are_what_the_migration_writes_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           interrupted: bool) -> None:
    """Into SQLite, two workers taking turns write the rows to spool files (here 53 records' worth each,
    so many), which the writer loads with INSERT … SELECT: the destination and the report are what the
    in-process path writes, and no spool file is left. Also when the load stops halfway (the run fails)
    and a second run resumes it."""
    from parsectl.migrate.sources import export
    from parsectl.migrate.writers import SQLiteWriter
    from tests.support.export_gen import generate_export

    facts = generate_export(tmp_path / "e", objects=900)
    monkeypatch.setattr(export, "SPOOL_RECORDS", 53)
    loaded: list[str] = []
    load = SQLiteWriter.write_spool

    async def counted(self: SQLiteWriter, schema: ClassSchema, path: str) -> int:
        if interrupted and len(loaded) == 7 and not stopped:
            stopped.append(path)
            raise RuntimeError("the disk is full")
        loaded.append(path)
        return await load(self, schema, path)

    stopped: list[str] = []
    monkeypatch.setattr(SQLiteWriter, "write_spool", counted)
    spools = tmp_path / "tmp"
    spools.mkdir()
    dumps, reports = [], []
    for parallel in (False, True):
        uri = f"sqlite:///{tmp_path / f'{parallel}.db'}"
        options = Options(state_dir=tmp_path / f"state-{parallel}", batch_size=20)
        if parallel and interrupted:
            with pytest.raises(RuntimeError, match="the disk is full"):
                asyncio.run(Migration(ExportSource(facts.path, parallel=True, tmp_dir=spools), uri, options).run())
            assert not list(spools.glob("parsectl-spool-*"))  # the stopped workers' files are deleted
        report = asyncio.run(Migration(ExportSource(facts.path, parallel=parallel, tmp_dir=spools), uri,
                                       options).run()).to_json()
        report.pop("seconds", None), report.pop("destination"), report.pop("resumed")
        reports.append(report)
        dumps.append(_dump(uri))
    assert len(loaded) > 900 // 53 and not list(spools.glob("parsectl-spool-*"))
    assert dumps[1] == dumps[0]
    assert reports[1] == reports[0]
    assert reports[0]["classes"]["Post"]["copied"] > 100


def test_sqlite_relations_load_without_the_owning_index_then_have_it(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Join tables load without their owningId index (built once at the end): after a run that stopped
    before building it, the resumed run leaves every relation row there and every join table indexed."""
    from parsectl.migrate.writers import SQLiteWriter
    from tests.support.export_gen import generate_export

    facts = generate_export(tmp_path / "e", objects=500)
    db_path = tmp_path / "a.db"
    options = Options(state_dir=tmp_path / "state", batch_size=50)

    async def interrupted(self: SQLiteWriter, class_name: str, field: str) -> None:
        raise RuntimeError("interrupted")

    with monkeypatch.context() as patch:
        patch.setattr(SQLiteWriter, "end_relation", interrupted)
        with pytest.raises(RuntimeError, match="interrupted"):
            asyncio.run(Migration(ExportSource(facts.path), f"sqlite:///{db_path}", options).run())
    db = sqlite3.connect(db_path)
    tables = db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name LIKE '_Join:%'").fetchone()
    indexed = db.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE '_Join_owning:%'").fetchone()
    assert indexed[0] == tables[0] - 1  # the first relation stopped before its index was built
    db.close()
    report = asyncio.run(Migration(ExportSource(facts.path), f"sqlite:///{db_path}", options).run())
    assert report.resumed
    db = sqlite3.connect(db_path)
    joins = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '_Join:%'")]
    indexes = {r[0] for r in db.execute("SELECT tbl_name FROM sqlite_master WHERE type = 'index' "
                                        "AND name LIKE '_Join_owning:%'")}
    assert joins and set(joins) == indexes
    rows = {name: db.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in joins}
    assert sum(rows.values()) == sum(sum(c.relations.values()) for c in report.classes.values()) > 0
    db.close()


@pytest.mark.reference
def test_worker_rows_into_a_postgres_destination_that_has_them_are_already_there(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """--mode merge through worker-made rows: COPY meets rows already there, the class falls back to the
    idempotent load, and every object counts as already there."""
    from tests.support.export_gen import generate_export

    facts = generate_export(tmp_path / "e", objects=600)
    pg = request.getfixturevalue("pg")
    pg.psql("DROP DATABASE IF EXISTS rows_merge", database="postgres")
    pg.psql("CREATE DATABASE rows_merge", database="postgres")
    uri = pg.uri.rsplit("/", 1)[0] + "/rows_merge"

    def run(mode: str | None) -> dict[str, Any]:
        options = Options(mode=mode, state_dir=tmp_path / "state", batch_size=50)
        return asyncio.run(Migration(ExportSource(facts.path, parallel=True), uri, options).run()).to_json()

    first, again = run(None), run("merge")
    assert sum(c["copied"] for c in first["classes"].values()) > 600
    assert {n: c["alreadyThere"] for n, c in again["classes"].items()} == {
        n: c["copied"] for n, c in first["classes"].items()}
    assert all(c["copied"] == 0 for c in again["classes"].values())
    tables = _dump(uri)
    assert {n: len(tables[n]) for n in first["classes"]} == {n: c["copied"] for n, c in first["classes"].items()}


@pytest.mark.parametrize(("kind", "zipped"), [
    ("sqlite", False), ("sqlite", True), pytest.param("postgres", False, marks=pytest.mark.reference),
])
def test_relations_loaded_from_the_plan_index_are_the_join_files_rows(
        tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, kind: str,
        zipped: bool) -> None:
    """An export's relation rows go straight from the schema pass's index into the destination: on SQLite
    in one statement, on PostgreSQL in one COPY into an empty join table whose key is built after. The
    destination and report must be what reading the join files again gives: with a row the join file
    repeats (PostgreSQL cannot build the key then and loads that relation row by row), and with ``--mode
    merge`` into join tables that lost half their rows (PostgreSQL loads those row by row too)."""
    from parsectl.migrate.writers import PostgresWriter, SQLiteWriter
    from tests.support.export_gen import generate_export

    facts = generate_export(tmp_path / "e", objects=400, problems=True)
    likes = facts.path / "_Join:likes:Post.json"
    rows = orjson.loads(likes.read_bytes())["results"]
    likes.write_bytes(orjson.dumps({"results": [*rows, rows[0]]}))  # one row twice
    if zipped:
        with zipfile.ZipFile(tmp_path / "e.zip", "w") as z:
            for part in facts.path.iterdir():
                z.write(part, part.name)
    source_path = tmp_path / "e.zip" if zipped else facts.path
    writer = SQLiteWriter if kind == "sqlite" else PostgresWriter
    dumps, reports = [], []
    direct_load = writer.load_relation_sql
    for direct in (True, False):
        if kind == "sqlite":
            uri = f"sqlite:///{tmp_path / f'{direct}.db'}"
        else:
            uri = request.getfixturevalue("pg").fresh_database(f"relations_{str(direct).lower()}")
        loaded: list[list[tuple[str, int | None]]] = []  # per run: (relation, what the direct load gave)

        async def spy(self: Any, class_name: str, field: str, *args: Any,
                      loaded: list[list[tuple[str, int | None]]] = loaded) -> int | None:
            result = await direct_load(self, class_name, field, *args)
            loaded[-1].append((field, result))
            return result

        with monkeypatch.context() as patch:
            patch.setattr(writer, "load_relation_sql", spy)
            if not direct:
                patch.setattr(ExportSource, "relation_rows_sql", lambda *_: None)
            for run in range(2):
                loaded.append([])
                options = Options(on_problem="skip", state_dir=tmp_path / f"state-{direct}-{run}",
                                  mode="merge" if run else None)
                report = asyncio.run(Migration(ExportSource(source_path), uri, options).run()).to_json()
                if run == 0:  # half of every join table's rows are lost; the second run puts them back
                    _lose_half_of_the_join_rows(uri)
        if not direct:
            assert loaded == [[], []]
        elif kind == "sqlite":  # every relation in one statement, both runs
            assert all(n for run in loaded for _, n in run) and all(loaded)
        else:  # into empty tables at once, except the one with a repeated row; into filled ones row by row
            first, second = loaded
            assert dict(first)["likes"] is None and all(n for field, n in first if field != "likes")
            assert len(first) > 1 and second and all(n is None for _, n in second)
        report.pop("seconds", None), report.pop("destination")
        reports.append(report)
        dumps.append(_dump(uri))
        if kind == "postgres":  # the join tables' keys are back, with parse-server's names
            import psycopg

            with psycopg.connect(uri) as conn:
                keys = conn.execute("SELECT conrelid::regclass::text, conname FROM pg_constraint WHERE contype = 'p' "
                                    "AND conrelid::regclass::text LIKE '\"\\_Join:%'").fetchall()
            assert keys and all(name == table.strip('"') + "_pkey" for table, name in keys), keys
    assert dumps[0] == dumps[1]
    assert reports[0] == reports[1]
    relations = {k: v for name, c in reports[0]["classes"].items() for k, v in c["relations"].items()}
    assert relations and all(n > 0 for n in relations.values()), relations


def _lose_half_of_the_join_rows(uri: str) -> None:
    if uri.startswith("sqlite"):
        db = sqlite3.connect(uri.removeprefix("sqlite:///"))
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '_Join:%'"):
            db.execute(f'DELETE FROM "{name}" WHERE rowid % 2 = 0')
        db.commit()
        db.close()
        return
    import psycopg

    with psycopg.connect(uri) as conn:
        for (name,) in conn.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE '\\_Join:%'").fetchall():
            conn.execute(f'DELETE FROM "{name}" WHERE "relatedId" < \'M\'')
