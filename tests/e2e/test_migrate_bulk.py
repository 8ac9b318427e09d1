"""`parsectl migrate` bulk paths end to end: MongoDB (legacy session tokens kept, 2dsphere indexes rebuilt
after the load) and PostgreSQL (COPY straight into the table; a batch that meets existing rows falls back
to the idempotent load), each checked with `migrate verify` and the stored documents/rows themselves."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from pymongo import MongoClient

from tests.e2e.test_migrate import migrate
from tests.support.export_gen import generate_export
from tests.support.pg import PgCluster

pytestmark = pytest.mark.slow


def test_export_with_legacy_session_tokens_into_mongodb(mongo_uri: str, tmp_path: Path) -> None:
    facts = generate_export(tmp_path / "export", objects=400)
    exported = {u["objectId"]: u for u in orjson.loads((tmp_path / "export" / "_User.json").read_bytes())["results"]}
    tokens = {oid: u["sessionToken"] for oid, u in exported.items() if u.get("sessionToken")}
    assert tokens  # the generated export carries hosted Parse's legacy tokens
    report = json.loads(migrate("--from", str(tmp_path / "export"), "--to", mongo_uri, "--batch-size", "100",
                                "--output", "json", cwd=tmp_path).stdout)
    for name, count in facts.counts.items():
        assert report["classes"][name]["copied"] == count, name
    assert "everything matches" in migrate("verify", "--from", str(tmp_path / "export"), "--to", mongo_uri,
                                           cwd=tmp_path).stdout
    client: MongoClient = MongoClient(mongo_uri)
    try:
        db = client.get_default_database()
        stored = {d["_id"]: d.get("_session_token") for d in db["_User"].find({}, {"_session_token": 1})}
        assert {oid: stored[oid] for oid in tokens} == tokens  # where parse-server's Mongo format keeps them
        schema = db["_SCHEMA"].find_one({"_id": "_User"})
        assert "_session_token" not in schema and "sessionToken" not in schema
        polygons = [n for n, t in db["_SCHEMA"].find_one({"_id": "Everything"}).items() if t == "polygon"]
        assert polygons
        keys = [info["key"] for info in db["Everything"].index_information().values()]
        assert all([(name, "2dsphere")] in keys for name in polygons)  # built after the load
    finally:
        client.close()


def test_postgres_copy_then_merge_falls_back_to_the_idempotent_load(pg: PgCluster, tmp_path: Path) -> None:
    facts = generate_export(tmp_path / "export", objects=600, problems=True)
    pg.psql("CREATE DATABASE bulkcopy", database="postgres")
    dest = pg.uri.rsplit("/", 1)[0] + "/bulkcopy"
    src = str(tmp_path / "export")
    refused = migrate("--from", src, "--to", dest, cwd=tmp_path, check=False)
    assert refused.returncode == 1 and "--on-problem fix" in refused.stderr
    first = json.loads(migrate("--from", src, "--to", dest, "--on-problem", "fix", "--batch-size", "50",
                               "--output", "json", cwd=tmp_path).stdout)
    assert {n: c["copied"] for n, c in first["classes"].items()} == facts.counts
    assert {p["kind"] for p in first["problems"] if p.get("fix")} == set(facts.problems)
    conflict = facts.ids["type_conflict"]
    assert pg.psql(f"SELECT \"views_String\" FROM \"Post\" WHERE \"objectId\" = '{conflict}'",
                   database="bulkcopy").strip() == "many"
    assert pg.psql(f"SELECT count(*) FROM \"Comment\" WHERE \"objectId\" = '{facts.ids['dangling_pointer']}' "
                   "AND \"post\" IS NULL", database="bulkcopy").strip() == "1"
    # verify compares with the repaired export
    assert migrate("verify", "--from", src, "--to", dest, cwd=tmp_path, check=False).returncode == 1
    assert "everything matches" in migrate("verify", "--from", src, "--to", dest, "--on-problem", "fix",
                                           cwd=tmp_path).stdout

    # lose some rows, then merge: the batches meeting existing rows load the idempotent way
    pg.psql("DELETE FROM \"Post\" WHERE \"objectId\" IN (SELECT \"objectId\" FROM \"Post\" ORDER BY \"objectId\" "
            "LIMIT 7)", database="bulkcopy")
    again = json.loads(migrate("--from", src, "--to", dest, "--on-problem", "fix", "--mode", "merge",
                               "--batch-size", "50", "--output", "json", cwd=tmp_path).stdout)
    assert again["classes"]["Post"]["copied"] == 7
    assert again["classes"]["Post"]["alreadyThere"] == facts.counts["Post"] - 7
    assert all(c["copied"] == 0 for n, c in again["classes"].items() if n != "Post")
    count = pg.psql('SELECT count(*) FROM "Post"', database="bulkcopy").strip()
    assert int(count) == facts.counts["Post"]
    # relation rows: COPY on the first run, the ON CONFLICT path on the merge, each row once
    likes = pg.psql('SELECT count(*) FROM "_Join:likes:Post"', database="bulkcopy").strip()
    assert int(likes) == facts.relations["_Join:likes:Post.json"] == again["classes"]["Post"]["relations"]["likes"]


def test_postgres_writer_rows_read_back_as_written(pg: PgCluster) -> None:
    """Every column type through COPY (text[] permissions with quotes, backslashes, commas and braces)."""
    import asyncio

    from parsectl.migrate.writers import writer_for
    from parsectl.model.query import MatchAll
    from parsectl.model.schema import ClassSchema
    from parsectl.storage import adapter_for

    pg.psql("CREATE DATABASE writerrows", database="postgres")
    uri = pg.uri.rsplit("/", 1)[0] + "/writerrows"
    t = "2015-01-02T03:04:05.678Z"
    obj = {
        "objectId": "w1", "createdAt": t, "updatedAt": t,
        "_rperm": ["*", 'a"b', "c\\d", "x,y", "{z}", "role:A B"], "_wperm": ["w1"],
        "s": 'quote " tab \t newline \n back \\', "n": 2.5, "i": 7, "b": False,
        "d": {"__type": "Date", "iso": t}, "p": {"__type": "Pointer", "className": "T", "objectId": "w2"},
        "f": {"__type": "File", "name": "f.txt"}, "o": {"k": [1, "two", {"three": None}]}, "a": [1, "a"],
        "g": {"__type": "GeoPoint", "latitude": 1.5, "longitude": -2},
        "poly": {"__type": "Polygon", "coordinates": [[0, 0], [0, 1], [1, 1], [0, 0]]},
        "by": {"__type": "Bytes", "base64": "aGk="},
    }
    fields = {"s": "String", "n": "Number", "i": "Number", "b": "Boolean", "d": "Date", "f": "File", "o": "Object",
              "a": "Array", "g": "GeoPoint", "poly": "Polygon", "by": "Bytes"}

    async def go() -> dict:
        adapter = adapter_for(uri)
        await adapter.open()
        try:
            await adapter.ensure_class(ClassSchema.new("T"))
            types = {k: {"type": v} for k, v in fields.items()} | {"p": {"type": "Pointer", "targetClass": "T"}}
            schema = await adapter.add_fields("T", types)
            writer = writer_for(adapter)
            assert await writer.write(schema, [obj]) == 1
            assert await writer.write(schema, [obj]) == 0  # already there: the idempotent path
            [row] = await adapter.find(schema, MatchAll())
            return row
        finally:
            await adapter.close()

    row = asyncio.run(go())
    assert row == obj
