"""The query compiler for MongoDB (parsectl.storage.mongo_query): filters as dicts, and their
semantics on mongomock for the cases where MongoDB and the SQL stores could differ."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import mongomock
import pytest
from bson.binary import Binary

from parsectl.model import query
from parsectl.model.query import SortKey, parse_where
from parsectl.model.schema import ClassSchema
from parsectl.storage.mongo import from_mongo_schema, legacy_acl, to_mongo_schema
from parsectl.storage.mongo_query import MATCH_NONE, MongoCompiler, mongo_regex, top_level

SCHEMA = ClassSchema.new("Thing", {
    "s": {"type": "String"}, "n": {"type": "Number"}, "b": {"type": "Boolean"}, "d": {"type": "Date"},
    "a": {"type": "Array"}, "o": {"type": "Object"}, "p": {"type": "Pointer", "targetClass": "T"},
    "r": {"type": "Relation", "targetClass": "T"}, "f": {"type": "File"}, "g": {"type": "GeoPoint"},
    "by": {"type": "Bytes"}, "sessionToken": {"type": "String"},
})
PTR = {"__type": "Pointer", "className": "T", "objectId": "t1"}
JOINS = {"_Join:r:Thing": [{"owningId": "o1", "relatedId": "t1"}, {"owningId": "o2", "relatedId": "t2"}],
         "_Join:users:_Role": [{"owningId": "role1", "relatedId": "u1"}]}


async def lookup(join: str, match: dict[str, Any], want: str) -> list[str]:
    coll = mongomock.MongoClient().db.joins
    coll.insert_many([dict(d) for d in JOINS.get(join, [])])
    return [d[want] for d in coll.find(match)]


def compile_where(where: Any, schema: ClassSchema = SCHEMA) -> dict[str, Any]:
    return asyncio.run(MongoCompiler(schema, lookup).compile(parse_where(where, master=True)))


@pytest.mark.parametrize(("where", "expected"), [
    ({}, {}),
    ({"objectId": "x"}, {"_id": {"$eq": "x"}}),
    ({"createdAt": {"$gt": {"__type": "Date", "iso": "2020-01-01T00:00:00.000Z"}}},
     {"_created_at": {"$gt": datetime(2020, 1, 1, tzinfo=UTC)}}),
    ({"p": PTR}, {"_p_p": {"$eq": "T$t1"}}),
    ({"p": {"$in": [PTR, None]}}, {"_p_p": {"$in": ["T$t1", None]}}),
    ({"f": {"__type": "File", "name": "x.txt"}}, {"f": {"$eq": "x.txt"}}),
    ({"g": {"__type": "GeoPoint", "latitude": 1, "longitude": 2}}, {"g": {"$eq": [2, 1]}}),
    ({"by": {"__type": "Bytes", "base64": "aGk="}}, {"by": {"$eq": Binary(b"hi")}}),
    ({"a": PTR}, {"a": {"$eq": PTR}}),
    ({"a": {"$all": [1, 2]}}, {"a": {"$all": [1, 2]}}),
    ({"s": {"$all": ["x"]}}, {"s": {"$eq": "x"}}),
    ({"a": {"$containedBy": [1, 2]}}, {"a": {"$not": {"$elemMatch": {"$nin": [1, 2]}}}}),
    ({"s": {"$containedBy": ["x"]}}, MATCH_NONE),
    ({"o.when": {"$lt": {"__type": "Date", "iso": "2020-01-01T00:00:00.000Z"}}},
     {"o.when": {"$lt": datetime(2020, 1, 1, tzinfo=UTC)}}),
    ({"s": {"$exists": True}}, {"s": {"$ne": None}}),
    ({"s": {"$exists": False}}, {"s": None}),
    ({"a": {"$exists": True}}, {"a": {"$exists": True}}),
    ({"s": {"$ne": None}}, {"s": {"$ne": None}}),
    ({"s": {"$ne": "x"}}, {"$nor": [{"s": {"$eq": "x"}}]}),
    ({"s": {"$nin": ["x"]}}, {"s": {"$nin": ["x"], "$ne": None}}),
    ({"s": {"$nin": []}}, {}),
    ({"s": {"$in": []}}, MATCH_NONE),
    ({"s": {"$regex": "^a\\Q.*\\E", "$options": "i"}}, {"s": {"$regex": "^a\\.\\*", "$options": "i"}}),
    ({"n": {"$gt": None}}, MATCH_NONE),
    ({"d": {"$gt": 3}}, MATCH_NONE),
    ({"$or": []}, MATCH_NONE),
    ({"$or": [{"s": "x"}, {"n": 1}]}, {"$or": [{"s": {"$eq": "x"}}, {"n": {"$eq": 1}}]}),
    ({"$nor": [{"s": "x"}]}, {"$nor": [{"s": {"$eq": "x"}}]}),
    ({"s": "x", "n": 1}, {"$and": [{"s": {"$eq": "x"}}, {"n": {"$eq": 1}}]}),
    ({"sessionToken": "r:1"}, {"_session_token": {"$eq": "r:1"}}),
    ({"r": PTR}, {"_id": {"$in": ["o1"]}}),
    ({"r": {"$in": [PTR]}}, {"_id": {"$in": ["o1"]}}),
    ({"r": {"$nin": [PTR]}}, {"_id": {"$nin": ["o1"]}}),
    ({"r": {"$exists": True}}, {}),
    ({"$relatedTo": {"object": {"__type": "Pointer", "className": "_Role", "objectId": "role1"}, "key": "users"}},
     {"_id": {"$in": ["u1"]}}),
])
def test_filters(where: Any, expected: dict[str, Any]) -> None:
    assert compile_where(where) == expected


def test_auth_data_paths_on_users_and_permissions() -> None:
    users = ClassSchema.new("_User")
    assert compile_where({"authData.facebook.id": "7"}, users) == {"_auth_data_facebook.id": {"$eq": "7"}}
    compiled = asyncio.run(MongoCompiler(SCHEMA).compile(query.PermIn("_rperm", ["*", "u1"])))
    assert compiled == {"_rperm": {"$in": [None, "*", "u1"]}}


def test_sort_maps_fields_and_skips_unknown_ones() -> None:
    compiler = MongoCompiler(SCHEMA)
    order = [SortKey("createdAt", True), SortKey("p"), SortKey("nope"), SortKey("o.k"), SortKey("objectId")]
    assert compiler.sort(order) == [("_created_at", -1), ("_p_p", 1), ("o.k", 1), ("_id", 1)]


def test_mongo_regex_quotes_like_pcre() -> None:
    assert mongo_regex("\\Qa+b\\E$") == "a\\+b$"
    assert mongo_regex("x\\Q(unterminated") == "x\\(unterminated"


def test_top_level_values() -> None:
    assert top_level({"type": "Date"}, "2020-01-01T00:00:00.000Z") == datetime(2020, 1, 1, tzinfo=UTC)
    assert top_level({"type": "Pointer", "targetClass": "T"}, "abc") == "T$abc"
    polygon = top_level({"type": "Polygon"}, {"__type": "Polygon", "coordinates": [[0, 0], [0, 1], [1, 1]]})
    assert polygon == {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
    nested = top_level({"type": "Object"}, {"k": [{"__type": "Date", "iso": "2020-01-01T00:00:00.000Z"}, PTR]})
    assert nested == {"k": [datetime(2020, 1, 1, tzinfo=UTC), PTR]}


def test_schema_documents_round_trip() -> None:
    schema = ClassSchema.new("_User", {"age": {"type": "Number"}, "p": {"type": "Pointer", "targetClass": "T"},
                                       "r": {"type": "Relation", "targetClass": "T"}})
    doc = to_mongo_schema(schema)
    assert doc == {"_id": "_User", "objectId": "string", "updatedAt": "date", "createdAt": "date",
                   "username": "string", "email": "string", "emailVerified": "boolean", "authData": "object",
                   "age": "number", "p": "*T", "r": "relation<T>"}
    back = from_mongo_schema(doc)
    assert back.fields == schema.fields
    clp = {"find": {"*": True}, "get": {"*": True}}
    restricted = from_mongo_schema({**doc, "_metadata": {"class_permissions": clp, "indexes": {"_id_": {"_id": 1}}}})
    assert restricted.clp["find"] == {"*": True} and restricted.clp["create"] == {}
    assert restricted.indexes == {"_id_": {"_id": 1}}
    assert legacy_acl(["*", "u"], ["u"]) == {"u": {"w": True, "r": True}, "*": {"r": True}}


DOCS = [
    {"_id": "o1", "s": "x", "n": 1, "a": [1, 2], "_rperm": ["u1"]},
    {"_id": "o2", "s": "y", "n": 2.5, "a": [3]},
    {"_id": "o3", "n": "2", "_rperm": []},
    {"_id": "o4"},
]


@pytest.mark.parametrize(("where", "ids"), [
    ({"s": {"$nin": ["x"]}}, ["o2"]),  # objects without a value are left out, as parse-server on PostgreSQL
    ({"s": {"$ne": "x"}}, ["o2", "o3", "o4"]),
    ({"n": {"$gte": 1}}, ["o1", "o2"]),  # type-bracketed: the string "2" is not a number
    ({"n": {"$lt": "3"}}, ["o3"]),
    ({"a": {"$containedBy": [1, 2, 3]}}, ["o1", "o2", "o3", "o4"]),
    ({"a": 3}, ["o2"]),
    ({"s": {"$exists": False}}, ["o3", "o4"]),
    ({"$nor": [{"n": {"$gt": 1}}]}, ["o1", "o3", "o4"]),
])
def test_semantics_on_mongomock(where: Any, ids: list[str]) -> None:
    coll = mongomock.MongoClient().db.Thing
    coll.insert_many([dict(d) for d in DOCS])
    found = sorted(d["_id"] for d in coll.find(compile_where(where)))
    assert found == ids


def test_public_and_restricted_permissions_on_mongomock() -> None:
    coll = mongomock.MongoClient().db.Thing
    coll.insert_many([dict(d) for d in DOCS])
    flt = asyncio.run(MongoCompiler(SCHEMA).compile(query.PermIn("_rperm", ["*"])))
    assert sorted(d["_id"] for d in coll.find(flt)) == ["o2", "o4"]  # a missing _rperm is public
    flt = asyncio.run(MongoCompiler(SCHEMA).compile(query.PermIn("_rperm", ["*", "u1"])))
    assert sorted(d["_id"] for d in coll.find(flt)) == ["o1", "o2", "o4"]
