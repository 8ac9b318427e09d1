"""SQLiteAdapter and the query compiler end to end on temporary database files."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from parsectl.model import codec, ops
from parsectl.model import query as q
from parsectl.model.errors import ParseError
from parsectl.model.query import compile_regex
from parsectl.model.schema import ClassSchema
from parsectl.storage import adapter_for
from parsectl.storage.sqlite import SQLiteAdapter
from parsectl.storage.sqlite_query import Compiler, regex_match

run = asyncio.run
T0 = "2015-01-01T00:00:00.000Z"

FIELDS = {
    "n": {"type": "Number"},
    "s": {"type": "String"},
    "b": {"type": "Boolean"},
    "when": {"type": "Date"},
    "arr": {"type": "Array"},
    "obj": {"type": "Object"},
    "ptr": {"type": "Pointer", "targetClass": "Other"},
    "rel": {"type": "Relation", "targetClass": "Other"},
    "f": {"type": "File"},
    "g": {"type": "GeoPoint"},
    "poly": {"type": "Polygon"},
    "by": {"type": "Bytes"},
}
P1 = codec.pointer("Other", "p1")
P2 = codec.pointer("Other", "p2")
POLY = {"__type": "Polygon", "coordinates": [[0, 0], [0, 1], [1, 1], [0, 0]]}


def _base(day: int) -> dict:
    stamp = f"2024-01-0{day}T00:00:00.000Z"
    return {"createdAt": stamp, "updatedAt": stamp}


I1 = {
    "objectId": "i1", **_base(1), "_rperm": ["*"], "_wperm": ["u1"],
    "n": 1, "s": "apple", "b": True, "when": codec.date("2020-01-01T00:00:00.000Z"),
    "arr": [1, "x", P1], "obj": {"lvl": 3, "tag": "gold", "inner": {"k": "v"}}, "ptr": P1,
    "f": {"__type": "File", "name": "abc_a.txt"}, "g": {"__type": "GeoPoint", "latitude": 1.5, "longitude": -2.25},
    "poly": POLY, "by": {"__type": "Bytes", "base64": "aGk="},
}
I2 = {
    "objectId": "i2", **_base(2), "_rperm": ["u1"], "_wperm": ["u1"],
    "n": 2.5, "s": "a.c", "b": False, "when": codec.date("2021-06-01T00:00:00.000Z"),
    "arr": ["x", "y"], "obj": {"lvl": 1}, "ptr": P2,
}
I3 = {
    "objectId": "i3", **_base(3), "_rperm": ["role:Admin"], "_wperm": [],
    "n": 10, "s": "Banana", "when": codec.date("2022-01-01T00:00:00.000Z"),
    "arr": [True, {"k": 1}], "obj": {"lvl": 3, "tag": "silver"},
}
I4 = {"objectId": "i4", **_base(4)}
I5 = {"objectId": "i5", **_base(5), "n": -3, "s": "a\\Eb", "b": True, "arr": []}
ALL = ["i1", "i2", "i3", "i4", "i5"]


async def _open(path: Path) -> SQLiteAdapter:
    adapter = SQLiteAdapter(path)
    await adapter.open()
    return adapter


async def _populate(adapter: SQLiteAdapter) -> tuple[ClassSchema, ClassSchema]:
    await adapter.ensure_class(ClassSchema.new("Item", {"n": FIELDS["n"]}))
    schema = await adapter.add_fields("Item", {k: v for k, v in FIELDS.items() if k != "n"})
    await adapter.insert(schema, I1, relations={"rel": ["p1", "p2"]})
    await adapter.insert(schema, I2, relations={"rel": ["p2"]})
    for obj in (I3, I4, I5):
        await adapter.insert(schema, obj)
    owner = await adapter.ensure_class(ClassSchema.new("Owner", {"items": {"type": "Relation", "targetClass": "Item"}}))
    await adapter.insert(owner, {"objectId": "o1", **_base(1)}, relations={"items": ["i1", "i3"]})
    await adapter.insert(owner, {"objectId": "o2", **_base(1)}, relations={"items": ["i2"]})
    return schema, owner


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    adapter = run(_open(tmp_path_factory.mktemp("sqlite") / "items.db"))
    schema, _ = run(_populate(adapter))
    yield adapter, schema
    run(adapter.close())


@pytest.fixture
def fresh(tmp_path):
    adapter = run(_open(tmp_path / "fresh.db"))
    schema, owner = run(_populate(adapter))
    yield adapter, schema, owner
    run(adapter.close())


def ids(adapter, schema, where, **kwargs) -> list[str]:
    node = where if isinstance(where, q.Node) else q.parse_where(where, master=True)
    return [o["objectId"] for o in run(adapter.find(schema, node, **kwargs))]


def found(items, where, **kwargs) -> list[str]:
    adapter, schema = items
    return sorted(ids(adapter, schema, where, **kwargs))


# --- schema ------------------------------------------------------------------------------------------


def test_schema_is_stored_and_reloaded(items):
    adapter, schema = items
    stored = run(adapter.load_schemas())
    assert set(stored) == {"Item", "Owner", "_User", "_Role"}  # parse-server's start-up classes too
    assert stored["Item"].fields == {**ClassSchema.new("Item").fields, **FIELDS}
    assert stored["Owner"].fields["items"] == {"type": "Relation", "targetClass": "Item"}


def test_tables_and_journal_mode(items):
    adapter, _ = items
    tables = {r[0] for r in adapter.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"_SCHEMA", "Item", "Owner", "_Join:rel:Item", "_Join:items:Owner"} <= tables
    columns = {r[1] for r in adapter.db.execute('PRAGMA table_info("Item")')}
    assert columns == {"objectId", "createdAt", "updatedAt", "_rperm", "_wperm", *FIELDS} - {"rel"}
    assert adapter.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_ensure_class_returns_existing_schema(fresh):
    adapter, _, _ = fresh
    again = run(adapter.ensure_class(ClassSchema.new("Item", {"other": {"type": "String"}})))
    assert "other" not in again.fields
    assert again.fields["n"] == {"type": "Number"}


def test_add_fields_type_conflict_111(fresh):
    adapter, _, _ = fresh
    with pytest.raises(ParseError) as info:
        run(adapter.add_fields("Item", {"s": {"type": "Number"}}))
    assert info.value.code == 111
    assert info.value.message == "schema mismatch for Item.s; expected String but got Number"
    with pytest.raises(ParseError) as info:
        run(adapter.add_fields("Item", {"ptr": {"type": "Pointer", "targetClass": "_User"}}))
    assert info.value.message == "schema mismatch for Item.ptr; expected Pointer<Other> but got Pointer<_User>"
    assert run(adapter.load_schemas())["Item"].fields["s"] == {"type": "String"}


def test_add_fields_same_type_is_a_no_op_and_new_field_is_added(fresh):
    adapter, _, _ = fresh
    schema = run(adapter.add_fields("Item", {"s": {"type": "String"}, "extra": {"type": "Number"}}))
    assert schema.fields["extra"] == {"type": "Number"}
    assert run(adapter.load_schemas())["Item"].fields["extra"] == {"type": "Number"}
    run(adapter.insert(schema, {"objectId": "e1", **_base(6), "extra": 7}))
    assert ids(adapter, schema, {"extra": 7}) == ["e1"]


def test_add_fields_to_missing_class_103(fresh):
    adapter, _, _ = fresh
    with pytest.raises(ParseError) as info:
        run(adapter.add_fields("Nope", {"x": {"type": "String"}}))
    assert (info.value.code, info.value.message) == (103, "Class Nope does not exist.")


def test_adapter_for_sqlite_uri(tmp_path):
    adapter = adapter_for(f"sqlite://{tmp_path}/x.db")
    assert isinstance(adapter, SQLiteAdapter)
    assert adapter.path == Path(f"{tmp_path}/x.db")
    with pytest.raises(ValueError, match="'redis' is not supported"):
        adapter_for("redis://localhost/0")


# --- round trip ------------------------------------------------------------------------------------


def test_every_type_round_trips(items):
    adapter, schema = items
    by_id = {o["objectId"]: o for o in run(adapter.find(schema, q.TRUE))}
    assert by_id["i1"] == I1
    assert by_id["i2"] == I2
    assert by_id["i3"] == I3
    assert by_id["i4"] == I4
    assert by_id["i5"] == I5
    assert isinstance(by_id["i1"]["b"], bool) and by_id["i2"]["b"] is False


def test_insert_duplicate_object_id_137(fresh):
    adapter, schema, _ = fresh
    with pytest.raises(ParseError) as info:
        run(adapter.insert(schema, {"objectId": "i1", **_base(9)}))
    assert (info.value.code, info.value.message) == (
        137, "A duplicate value for a field with unique values was provided")


def test_missing_class_reads_as_empty(items):
    adapter, _ = items
    ghost = ClassSchema.new("Ghost", {"x": {"type": "String"}})
    assert run(adapter.find(ghost, q.TRUE)) == []
    assert run(adapter.count(ghost, q.TRUE)) == 0
    assert run(adapter.delete(ghost, q.TRUE, many=True)) == 0


# --- comparisons --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"n": 1}, ["i1"]),
        ({"n": 1.0}, ["i1"]),
        ({"n": {"$gt": 1}}, ["i2", "i3"]),
        ({"n": {"$gte": 2.5}}, ["i2", "i3"]),
        ({"n": {"$lte": 2.5}}, ["i1", "i2", "i5"]),
        ({"n": {"$lt": 0}}, ["i5"]),
        ({"n": {"$ne": 1}}, ["i2", "i3", "i4", "i5"]),
        ({"n": {"$eq": 10}}, ["i3"]),
        ({"n": None}, ["i4"]),
        ({"n": {"$ne": None}}, ["i1", "i2", "i3", "i5"]),
        ({"n": {"$gt": None}}, []),
        ({"n": {"$gt": 0, "$lt": 5}}, ["i1", "i2"]),
    ],
)
def test_compare_numbers(items, where, expected):
    assert found(items, where) == expected


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"s": "apple"}, ["i1"]),
        ({"s": "APPLE"}, []),
        ({"s": {"$gt": "a"}}, ["i1", "i2", "i5"]),
        ({"s": {"$lt": "a"}}, ["i3"]),
        ({"s": {"$ne": "apple"}}, ["i2", "i3", "i4", "i5"]),
        ({"objectId": "i3"}, ["i3"]),
        ({"objectId": {"$in": ["i2", "i5", "zz"]}}, ["i2", "i5"]),
        ({"objectId": {"$gt": "i3"}}, ["i4", "i5"]),
    ],
)
def test_compare_strings(items, where, expected):
    assert found(items, where) == expected


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"when": codec.date("2021-06-01T00:00:00.000Z")}, ["i2"]),
        ({"when": {"__type": "Date", "iso": "2021-06-01T02:00:00+02:00"}}, ["i2"]),
        ({"when": {"$lt": codec.date("2021-01-01T00:00:00.000Z")}}, ["i1"]),
        ({"when": {"$gte": codec.date("2021-06-01T00:00:00.000Z")}}, ["i2", "i3"]),
        ({"when": {"$ne": codec.date("2020-01-01T00:00:00.000Z")}}, ["i2", "i3", "i4", "i5"]),
        ({"createdAt": {"$gt": "2024-01-03T00:00:00Z"}}, ["i4", "i5"]),
        ({"createdAt": {"$lte": codec.date("2024-01-02T00:00:00.000Z")}}, ["i1", "i2"]),
        ({"createdAt": "2024-01-02T00:00:00.000Z"}, ["i2"]),
        ({"updatedAt": {"$gte": {"$relativeTime": "1 day ago"}}}, []),
        ({"createdAt": {"$lt": {"$relativeTime": "1 day ago"}}}, ALL),
    ],
)
def test_compare_dates(items, where, expected):
    assert found(items, where) == expected


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"ptr": P1}, ["i1"]),
        ({"ptr": {"$ne": P1}}, ["i2", "i3", "i4", "i5"]),
        ({"ptr": {"$in": [P1, P2]}}, ["i1", "i2"]),
        # $nin leaves out objects without a value, as parse-server on PostgreSQL (NOT IN)
        ({"ptr": {"$nin": [P2]}}, ["i1"]),
        ({"ptr": {"$exists": False}}, ["i3", "i4", "i5"]),
    ],
)
def test_compare_pointers(items, where, expected):
    assert found(items, where) == expected


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"b": True}, ["i1", "i5"]),
        ({"b": False}, ["i2"]),
        ({"b": {"$ne": True}}, ["i2", "i3", "i4"]),
        ({"b": {"$in": [False, None]}}, ["i2", "i3", "i4"]),
    ],
)
def test_compare_booleans(items, where, expected):
    assert found(items, where) == expected


def test_compare_other_types(items):
    assert found(items, {"f": {"__type": "File", "name": "abc_a.txt", "url": "http://x"}}) == ["i1"]
    assert found(items, {"g": {"__type": "GeoPoint", "latitude": 1.5, "longitude": -2.25}}) == ["i1"]
    assert found(items, {"by": {"__type": "Bytes", "base64": "aGk="}}) == ["i1"]
    assert found(items, {"poly": {"$exists": True}}) == ["i1"]
    assert found(items, {"obj": {"lvl": 1}}) == ["i2"]
    assert found(items, {"obj": {"tag": "gold", "lvl": 3, "inner": {"k": "v"}}}) == ["i1"]


def test_object_equality_ignores_int_float_spelling(items):
    assert found(items, {"obj": {"lvl": 1.0}}) == ["i2"]


def test_unknown_field_matches_nothing_but_is_not_an_error(items):
    assert found(items, {"nope": 1}) == []
    assert found(items, {"nope": None}) == ALL
    assert found(items, {"nope": {"$exists": False}}) == ALL


# --- arrays -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"arr": "x"}, ["i1", "i2"]),
        ({"arr": 1}, ["i1"]),
        ({"arr": True}, ["i3"]),
        ({"arr": P1}, ["i1"]),
        ({"arr": P2}, []),
        ({"arr": {"k": 1}}, ["i3"]),
        ({"arr": ["x", "y"]}, ["i2"]),
        ({"arr": ["y", "x"]}, []),
        ({"arr": []}, ["i5"]),
        ({"arr": {"$ne": "x"}}, ["i3", "i4", "i5"]),
        ({"arr": {"$in": ["y", True]}}, ["i2", "i3"]),
        ({"arr": {"$nin": ["x"]}}, ["i3", "i4", "i5"]),
        ({"arr": {"$in": [None]}}, ["i4"]),
        ({"arr": {"$all": ["x", 1]}}, ["i1"]),
        ({"arr": {"$all": ["x"]}}, ["i1", "i2"]),
        ({"arr": {"$all": [P1, "x"]}}, ["i1"]),
        ({"arr": {"$all": ["x", "z"]}}, []),
        ({"arr": {"$exists": True, "$containedBy": ["x", "y", 1]}}, ["i2", "i5"]),
        ({"arr": {"$exists": True, "$containedBy": ["x", "y", 1, P1]}}, ["i1", "i2", "i5"]),
        ({"arr": {"$exists": True, "$containedBy": []}}, ["i5"]),
    ],
)
def test_arrays(items, where, expected):
    assert found(items, where) == expected


def test_array_range_compares_only_numbers_with_numbers(items):
    assert found(items, {"arr": {"$gt": 0}}) == ["i1"]


def test_all_regex_on_array_elements(items):
    where = {"arr": {"$all": [{"$regex": "^\\Qx\\E"}, {"$regex": "^\\Qy\\E"}]}}
    assert found(items, where) == ["i2"]


# --- in / nin / exists ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"n": {"$in": [1, 10]}}, ["i1", "i3"]),
        ({"n": {"$in": [None, 1]}}, ["i1", "i4"]),
        ({"n": {"$in": [None]}}, ["i4"]),
        ({"n": {"$in": []}}, []),
        ({"n": {"$nin": [1]}}, ["i2", "i3", "i5"]),
        ({"n": {"$nin": [None, 1]}}, ["i2", "i3", "i5"]),
        ({"n": {"$nin": []}}, ALL),
        ({"when": {"$in": [codec.date("2020-01-01T00:00:00.000Z")]}}, ["i1"]),
        ({"obj": {"$exists": True}}, ["i1", "i2", "i3"]),
        ({"obj": {"$exists": False}}, ["i4", "i5"]),
        ({"b": {"$exists": True}}, ["i1", "i2", "i5"]),
    ],
)
def test_in_nin_exists(items, where, expected):
    assert found(items, where) == expected


# --- regex ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"s": {"$regex": "^a"}}, ["i1", "i2", "i5"]),
        ({"s": {"$regex": "^b"}}, []),
        ({"s": {"$regex": "^b", "$options": "i"}}, ["i3"]),
        ({"s": {"$regex": "a.p"}}, ["i1"]),
        ({"s": {"$regex": "\\Qa.p\\E"}}, []),
        ({"s": {"$regex": "\\Qa.c\\E"}}, ["i2"]),
        ({"s": {"$regex": "^\\Qa.\\E"}}, ["i2"]),
        ({"s": {"$regex": "\\Qna\\E$"}}, ["i3"]),
        ({"s": {"$regex": "\\Qa\\E\\\\E\\Qb\\E"}}, ["i5"]),
        ({"s": {"$regex": "^ b a n", "$options": "ix"}}, ["i3"]),
        ({"n": {"$regex": "1"}}, []),
        ({"obj.tag": {"$regex": "^go"}}, ["i1"]),
    ],
)
def test_regex(items, where, expected):
    assert found(items, where) == expected


def test_invalid_regex_node_matches_nothing(items):
    assert found(items, q.Regex("s", "(", "")) == []


def test_regex_helpers():
    assert compile_regex("\\Qa+b\\E", "").pattern == "a\\+b"
    assert compile_regex("[", "") is None
    assert regex_match("Hello", "^hel", "i") == 1
    assert regex_match("Hello", "^hel", "") == 0
    assert regex_match("line1\nline2", "^line2$", "m") == 1
    assert regex_match("a\nb", "a.b", "s") == 1
    assert regex_match(None, ".", "") == 0
    assert regex_match(5, ".", "") == 0


# --- dotted keys into Object fields --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"obj.lvl": 3}, ["i1", "i3"]),
        ({"obj.lvl": {"$gt": 1}}, ["i1", "i3"]),
        ({"obj.lvl": {"$ne": 3}}, ["i2", "i4", "i5"]),
        ({"obj.tag": "gold"}, ["i1"]),
        ({"obj.tag": {"$in": ["gold", "silver"]}}, ["i1", "i3"]),
        ({"obj.inner.k": "v"}, ["i1"]),
        ({"obj.tag": {"$exists": True}}, ["i1", "i3"]),
        ({"obj.missing": {"$exists": True}}, []),
        ({"s.length": 5}, []),
    ],
)
def test_dotted_keys(items, where, expected):
    assert found(items, where) == expected


# --- boolean structure ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"$or": [{"n": 1}, {"s": "Banana"}]}, ["i1", "i3"]),
        ({"$or": [{"n": 1}, {"n": {"$gt": 5}}], "b": True}, ["i1"]),
        ({"$and": [{"n": {"$gt": 0}}, {"n": {"$lt": 5}}]}, ["i1", "i2"]),
        ({"$nor": [{"b": True}]}, ["i2", "i3", "i4"]),
        ({"$nor": [{"n": {"$gt": 1}}, {"s": "apple"}]}, ["i4", "i5"]),
        ({"$nor": [{"obj.lvl": 3}]}, ["i2", "i4", "i5"]),
        ({"$or": []}, []),
    ],
)
def test_or_and_nor(items, where, expected):
    assert found(items, where) == expected


def test_not_node_keeps_missing_fields(items):
    assert found(items, q.Not(q.Compare("s", "gt", "a"))) == ["i3", "i4"]
    assert found(items, q.MatchAll()) == ALL
    assert found(items, q.MatchNone()) == []


# --- relations --------------------------------------------------------------------------------------


def test_related_to(items):
    assert found(items, {"$relatedTo": {"object": codec.pointer("Owner", "o1"), "key": "items"}}) == ["i1", "i3"]
    assert found(items, {"$relatedTo": {"object": codec.pointer("Owner", "o2"), "key": "items"}}) == ["i2"]
    assert found(items, {"$relatedTo": {"object": codec.pointer("Owner", "o9"), "key": "items"}}) == []
    assert found(items, {"$relatedTo": {"object": codec.pointer("Owner", "o1"), "key": "items"}, "n": 10}) == ["i3"]


def test_relation_field_queries(items):
    assert found(items, {"rel": P2}) == ["i1", "i2"]
    assert found(items, {"rel": P1}) == ["i1"]
    assert found(items, {"rel": {"$in": [P1]}}) == ["i1"]
    assert found(items, {"rel": {"$nin": [P1]}}) == ["i2", "i3", "i4", "i5"]
    assert found(items, {"rel": {"$ne": P2}}) == ["i3", "i4", "i5"]


# --- ACL filter ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("perm", "group", "expected"),
    [
        ("_rperm", ["*"], ["i1", "i4", "i5"]),
        ("_rperm", ["*", "u1"], ["i1", "i2", "i4", "i5"]),
        ("_rperm", ["*", "role:Admin"], ["i1", "i3", "i4", "i5"]),
        ("_wperm", ["*"], ["i4", "i5"]),
        ("_wperm", ["*", "u1"], ["i1", "i2", "i4", "i5"]),
    ],
)
def test_perm_in(items, perm, group, expected):
    assert found(items, q.PermIn(perm, group)) == expected


def test_perm_in_combined_with_query(items):
    where = q.And([q.parse_where({"n": {"$gt": 0}}), q.PermIn("_rperm", ["*"])])
    assert found(items, where) == ["i1"]


# --- order, skip, limit, count -------------------------------------------------------------------------


def _ordered(items, *keys: str, **kwargs) -> list[str]:
    adapter, schema = items
    order = [q.SortKey(k.lstrip("-"), k.startswith("-")) for k in keys]
    return ids(adapter, schema, kwargs.pop("where", q.TRUE), order=order, **kwargs)


def test_order_single_key_nulls(items):
    assert _ordered(items, "n") == ["i5", "i1", "i2", "i3", "i4"]
    assert _ordered(items, "-n") == ["i4", "i3", "i2", "i1", "i5"]
    assert _ordered(items, "-createdAt") == ["i5", "i4", "i3", "i2", "i1"]
    assert _ordered(items, "s", where=q.parse_where({"s": {"$exists": True}})) == ["i3", "i2", "i5", "i1"]
    assert _ordered(items, "when") == ["i1", "i2", "i3", "i4", "i5"]


def test_order_multi_key(items):
    assert _ordered(items, "-b", "n") == ["i3", "i4", "i5", "i1", "i2"]
    assert _ordered(items, "-obj.lvl", "objectId") == ["i4", "i5", "i1", "i3", "i2"]
    assert _ordered(items, "nope", "-n") == ["i4", "i3", "i2", "i1", "i5"]


def test_skip_and_limit(items):
    assert _ordered(items, "n", skip=1, limit=2) == ["i1", "i2"]
    assert _ordered(items, "n", skip=3) == ["i3", "i4"]
    assert _ordered(items, "n", limit=1) == ["i5"]
    assert _ordered(items, "n", limit=0) == []
    assert _ordered(items, "n", skip=10, limit=5) == []


def test_count(items):
    adapter, schema = items
    assert run(adapter.count(schema, q.TRUE)) == 5
    assert run(adapter.count(schema, q.parse_where({"b": True}))) == 2
    assert run(adapter.count(schema, q.parse_where({"arr": "x"}))) == 2
    assert run(adapter.count(schema, q.PermIn("_rperm", ["*"]))) == 3


def test_unresolved_subquery_is_refused(items):
    adapter, schema = items
    node = q.parse_where({"ptr": {"$inQuery": {"className": "Other", "where": {}}}})
    with pytest.raises(AssertionError):
        run(adapter.find(schema, node))


# --- updates -----------------------------------------------------------------------------------------


def _get(adapter, schema, oid):
    rows = run(adapter.find(schema, q.Compare("objectId", "eq", oid)))
    assert len(rows) == 1
    return rows[0]


def test_update_ops(fresh):
    adapter, schema, _ = fresh
    changes = {
        "n": ops.Increment(2),
        "arr": ops.AddUnique([P1, "z", codec.pointer("Other", "p9")]),
        "s": ops.Delete(),
        "b": False,
        "updatedAt": "2024-02-01T00:00:00.000Z",
    }
    updated = run(adapter.update(schema, q.Compare("objectId", "eq", "i1"), changes))
    assert len(updated) == 1
    assert updated[0]["n"] == 3
    assert updated[0]["arr"] == [1, "x", P1, "z", codec.pointer("Other", "p9")]
    assert "s" not in updated[0]
    stored = _get(adapter, schema, "i1")
    assert stored == updated[0]
    assert stored["b"] is False
    assert stored["updatedAt"] == "2024-02-01T00:00:00.000Z"
    assert stored["obj"] == I1["obj"]


def test_update_increment_missing_and_float(fresh):
    adapter, schema, _ = fresh
    run(adapter.update(schema, q.Compare("objectId", "eq", "i4"), {"n": ops.Increment(5)}))
    run(adapter.update(schema, q.Compare("objectId", "eq", "i2"), {"n": ops.Increment(-0.5)}))
    assert _get(adapter, schema, "i4")["n"] == 5
    assert _get(adapter, schema, "i2")["n"] == 2


def test_update_add_and_remove(fresh):
    adapter, schema, _ = fresh
    where = q.Compare("objectId", "eq", "i2")
    run(adapter.update(schema, where, {"arr": ops.Add(["x", "w"])}))
    assert _get(adapter, schema, "i2")["arr"] == ["x", "y", "x", "w"]
    run(adapter.update(schema, where, {"arr": ops.Remove(["x", "nope"])}))
    assert _get(adapter, schema, "i2")["arr"] == ["y", "w"]
    run(adapter.update(schema, q.Compare("objectId", "eq", "i4"), {"arr": ops.Remove(["x"])}))
    assert _get(adapter, schema, "i4")["arr"] == []
    run(adapter.update(schema, q.Compare("objectId", "eq", "i1"), {"arr": ops.Remove([P1])}))
    assert _get(adapter, schema, "i1")["arr"] == [1, "x"]
    assert ids(adapter, schema, {"arr": "w"}) == ["i2"]


def test_update_set_every_type(fresh):
    adapter, schema, _ = fresh
    changes = {k: v for k, v in I1.items() if k in FIELDS}
    run(adapter.update(schema, q.Compare("objectId", "eq", "i4"), changes))
    assert {k: v for k, v in _get(adapter, schema, "i4").items() if k in FIELDS} == changes


def test_update_relation_ops(fresh):
    adapter, schema, owner = fresh
    where = q.Compare("objectId", "eq", "o2")
    run(adapter.update(owner, where, {"items": ops.RelationOp("Item", [codec.pointer("Item", "i4")],
                                                               [codec.pointer("Item", "i2")])}))
    related = {"$relatedTo": {"object": codec.pointer("Owner", "o2"), "key": "items"}}
    assert sorted(ids(adapter, schema, related)) == ["i4"]
    run(adapter.update(owner, where, {"items": ops.RelationOp("Item", [codec.pointer("Item", "i4"),
                                                                       codec.pointer("Item", "i5")], [])}))
    assert sorted(ids(adapter, schema, related)) == ["i4", "i5"]
    assert sorted(ids(adapter, owner, {"items": codec.pointer("Item", "i5")})) == ["o2"]


def test_update_first_or_many(fresh):
    adapter, schema, _ = fresh
    where = q.parse_where({"b": True})
    assert len(run(adapter.update(schema, where, {"s": "one"}))) == 1
    assert len(ids(adapter, schema, {"s": "one"})) == 1
    updated = run(adapter.update(schema, where, {"s": "many"}, many=True))
    assert sorted(o["objectId"] for o in updated) == ["i1", "i5"]
    assert sorted(ids(adapter, schema, {"s": "many"})) == ["i1", "i5"]
    assert run(adapter.update(schema, q.Compare("objectId", "eq", "zz"), {"s": "x"})) == []


def test_failed_update_rolls_back(fresh):
    adapter, schema, _ = fresh
    run(adapter.insert(schema, {"objectId": "bad", **_base(6), "n": "not a number"}))
    with pytest.raises(ParseError) as info:
        run(adapter.update(schema, q.parse_where({"n": {"$exists": True}}), {"n": ops.Increment(1)}, many=True))
    assert info.value.code == 107
    assert _get(adapter, schema, "i1")["n"] == 1
    assert _get(adapter, schema, "i3")["n"] == 10


def test_increments_from_two_connections_are_atomic(tmp_path):
    path = tmp_path / "shared.db"
    first = run(_open(path))
    schema = run(first.ensure_class(ClassSchema.new("C", {"n": {"type": "Number"}, "log": {"type": "Array"}})))
    run(first.insert(schema, {"objectId": "c", **_base(1), "n": 0}))
    errors: list[BaseException] = []

    def worker(tag: str) -> None:
        try:
            adapter = run(_open(path))
            for i in range(40):
                run(adapter.update(schema, q.Compare("objectId", "eq", "c"),
                                   {"n": ops.Increment(1), "log": ops.Add([f"{tag}{i}"])}))
            run(adapter.close())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(tag,)) for tag in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    row = _get(first, schema, "c")
    run(first.close())
    assert row["n"] == 80
    assert sorted(row["log"]) == sorted([f"a{i}" for i in range(40)] + [f"b{i}" for i in range(40)])


# --- delete --------------------------------------------------------------------------------------------


def test_delete_first_and_many(fresh):
    adapter, schema, _ = fresh
    assert run(adapter.delete(schema, q.parse_where({"n": {"$gt": 0}}), many=True)) == 3
    assert sorted(ids(adapter, schema, q.TRUE)) == ["i4", "i5"]
    assert run(adapter.delete(schema, q.TRUE)) == 1
    assert len(ids(adapter, schema, q.TRUE)) == 1
    assert run(adapter.delete(schema, q.Compare("objectId", "eq", "zz"))) == 0


def test_delete_removes_owned_relation_rows(fresh):
    adapter, schema, _ = fresh
    join = '"_Join:rel:Item"'
    assert adapter.db.execute(f"SELECT COUNT(*) FROM {join}").fetchone()[0] == 3
    assert run(adapter.delete(schema, q.Compare("objectId", "eq", "i1"))) == 1
    assert adapter.db.execute(f'SELECT "owningId", "relatedId" FROM {join}').fetchall() == [("i2", "p2")]
    run(adapter.insert(schema, {"objectId": "i1", **_base(7)}))
    assert sorted(ids(adapter, schema, {"rel": P2})) == ["i2"]


# --- hostile identifiers and values --------------------------------------------------------------------


def test_injection_looking_strings_stay_data(tmp_path):
    async def scenario():
        adapter = await _open(tmp_path / "evil.db")
        cls = 'Evil"; DROP TABLE "_SCHEMA"; --'
        field = "f\" TEXT); DROP TABLE x; --"
        value = "'; DROP TABLE \"Evil\"; --"
        schema = await adapter.ensure_class(ClassSchema.new(cls, {field: {"type": "String"},
                                                                   "arr": {"type": "Array"}}))
        await adapter.insert(schema, {"objectId": "a' OR '1'='1", **_base(1), field: value, "arr": [value]})
        await adapter.insert(schema, {"objectId": "b", **_base(2), field: "plain"})
        rows = await adapter.find(schema, q.Compare(field, "eq", value))
        by_regex = await adapter.find(schema, q.Regex(field, "DROP", ""))
        in_array = await adapter.find(schema, q.parse_where({"arr": value}, master=True))
        by_id = await adapter.find(schema, q.Compare("objectId", "eq", "a' OR '1'='1"))
        not_id = await adapter.find(schema, q.Compare("objectId", "eq", "' OR 1=1 --"))
        schemas = await adapter.load_schemas()
        await adapter.close()
        return rows, by_regex, in_array, by_id, not_id, schemas

    rows, by_regex, in_array, by_id, not_id, schemas = run(scenario())
    assert [r["objectId"] for r in rows] == ["a' OR '1'='1"]
    assert rows[0]["f\" TEXT); DROP TABLE x; --"] == "'; DROP TABLE \"Evil\"; --"
    assert [r["objectId"] for r in by_regex] == ["a' OR '1'='1"]
    assert [r["objectId"] for r in in_array] == ["a' OR '1'='1"]
    assert [r["objectId"] for r in by_id] == ["a' OR '1'='1"]
    assert not_id == []
    assert [s for s in schemas if not s.startswith("_")] == ['Evil"; DROP TABLE "_SCHEMA"; --']
    db = sqlite3.connect(tmp_path / "evil.db")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    db.close()
    assert {t for t in tables if not t.startswith("_")} | {"_SCHEMA"} == {"_SCHEMA", 'Evil"; DROP TABLE "_SCHEMA"; --'}
    assert "_SCHEMA" in tables


def test_dotted_path_with_quotes_is_not_sql(items):
    adapter, schema = items
    compiler = Compiler(schema)
    assert compiler.column("obj.a'b").sql == "NULL"
    assert compiler.column("obj.lvl").sql == "json_extract(\"obj\", '$.\"lvl\"')"
    assert found(items, q.Compare("obj.x') OR 1=1 --", "eq", None)) == ALL
    assert found(items, q.Compare("obj.x') OR 1=1 --", "eq", 1)) == []


def test_order_on_hostile_field_name_is_dropped(items):
    assert _ordered(items, 'n" DESC; DROP TABLE "Item', "n") == ["i5", "i1", "i2", "i3", "i4"]


# --- odd values and missing tables ----------------------------------------------------------------------


def test_nul_unicode_and_big_ints_round_trip(tmp_path):
    async def scenario():
        adapter = await _open(tmp_path / "odd.db")
        schema = await adapter.ensure_class(ClassSchema.new("T", {"s": {"type": "String"}, "o": {"type": "Object"},
                                                                  "n": {"type": "Number"}, "a": {"type": "Array"}}))
        obj = {"objectId": "x", **_base(1), "s": "nul\x00inside", "o": {"k": "é\x00😀"}, "n": 2**53 + 1,
               "a": ["😀", "ü"]}
        await adapter.insert(schema, obj)
        rows = await adapter.find(schema, q.TRUE)
        by_nul = await adapter.find(schema, q.Compare("s", "eq", "nul\x00inside"))
        by_emoji = await adapter.find(schema, q.parse_where({"a": "😀"}, master=True))
        by_big = await adapter.find(schema, q.Compare("n", "gt", 2**53))
        await adapter.close()
        return obj, rows, by_nul, by_emoji, by_big

    obj, rows, by_nul, by_emoji, by_big = run(scenario())
    assert rows == [obj]
    assert by_nul == [obj] and by_emoji == [obj] and by_big == [obj]


def test_related_to_unknown_relation_is_empty(items):
    adapter, schema = items
    where = q.parse_where({"$relatedTo": {"object": codec.pointer("Owner", "o1"), "key": "nokey"}}, master=True)
    assert run(adapter.find(schema, where)) == []
    assert run(adapter.count(schema, where)) == 0


def test_update_on_missing_class_is_empty(items):
    adapter, _ = items
    ghost = ClassSchema.new("Ghost", {"x": {"type": "String"}})
    assert run(adapter.update(ghost, q.TRUE, {"x": "y"}, many=True)) == []


def test_other_tasks_read_what_is_committed_beside_an_open_transaction(tmp_path: Path) -> None:
    """While one task's transaction (POST /batch with "transaction": true) is open, another task's reads
    answer at once with what is committed, on a read-only connection (a Cloud Code webhook that queries the
    server during the batch used to wait for it, until its own timeout); its writes wait for the end."""

    async def go() -> None:
        db = SQLiteAdapter(tmp_path / "t.db")
        await db.open()
        schema = await db.ensure_class(ClassSchema.new("T", {"n": {"type": "Number"}}))
        await db.insert(schema, {"objectId": "a", "createdAt": T0, "updatedAt": T0, "n": 1})
        version = await db.schema_version()
        inside, release = asyncio.Event(), asyncio.Event()

        async def batch() -> None:
            async with db.transaction():
                await db.insert(schema, {"objectId": "b", "createdAt": T0, "updatedAt": T0, "n": 2})
                await db.ensure_class(ClassSchema.new("New"))  # a schema change inside it
                inside.set()
                await release.wait()

        task = asyncio.create_task(batch())
        await inside.wait()
        found = await asyncio.wait_for(db.find(schema, q.TRUE), 2)
        assert [o["objectId"] for o in found] == ["a"]  # not the uncommitted one
        assert await asyncio.wait_for(db.count(schema, q.TRUE), 2) == 1
        assert "New" not in await asyncio.wait_for(db.load_schemas(), 2)
        assert await asyncio.wait_for(db.schema_version(), 2) == version
        write = asyncio.create_task(db.insert(schema, {"objectId": "c", "createdAt": T0, "updatedAt": T0, "n": 3}))
        await asyncio.sleep(0.2)
        assert not write.done()  # writes wait for the transaction
        release.set()
        await task
        await write
        assert sorted(o["objectId"] for o in await db.find(schema, q.TRUE)) == ["a", "b", "c"]
        assert "New" in await db.load_schemas() and await db.schema_version() > version
        await db.close()

    run(go())
