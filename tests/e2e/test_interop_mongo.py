"""Interop on one MongoDB database (SecantusDB, or $PARSECTL_TEST_MONGODB_URI): node parse-server 9.10
and ``parsectl serve`` side by side.

Objects of every type, pointers, arrays of pointers, relations and ACLs written through one server
read back identically, and update correctly, through the other; the raw documents parsectl writes
have the same keys and BSON types as node's for the same request; node's users and roles load.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from bson.binary import Binary
from pymongo import MongoClient

from tests.support.mongo import MongoServer
from tests.support.parsectl_proc import parsectl_server
from tests.support.reference import reference_server
from tests.support.servers import RunningServer

pytestmark = [pytest.mark.slow, pytest.mark.reference]


@pytest.fixture(scope="module")
def shared_uri(mongo: MongoServer) -> str:
    return mongo.database_uri(f"interop_{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def node(shared_uri: str) -> Iterator[RunningServer]:
    with reference_server(shared_uri) as server:
        yield server


@pytest.fixture(scope="module")
def ours(node: RunningServer, shared_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with parsectl_server(data_dir=tmp_path_factory.mktemp("interop-mongo"), database_uri=shared_uri) as server:
        yield server


@pytest.fixture(scope="module")
def raw(shared_uri: str) -> Iterator[Any]:
    client: MongoClient = MongoClient(shared_uri)
    yield client.get_default_database()
    client.close()


def call(srv: RunningServer, method: str, path: str, body: Any = None, master: bool = True,
         params: dict[str, str] | None = None, **headers: str) -> httpx.Response:
    return httpx.request(method, srv.server_url + path, json=body, params=params,
                         headers=srv.headers(master=master, **headers), timeout=15)


def ok(r: httpx.Response) -> Any:
    assert r.status_code in (200, 201), r.text
    return r.json()


def without_urls(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: ("<url>" if k == "url" else without_urls(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [without_urls(v) for v in obj]
    return obj


def every_type(target_cls: str, target_id: str) -> dict[str, Any]:
    ptr = {"__type": "Pointer", "className": target_cls, "objectId": target_id}
    return {
        "s": "text", "n": 1.5, "i": 3, "b": True, "d": {"__type": "Date", "iso": "2020-01-02T03:04:05.678Z"},
        "o": {"nested": {"when": {"__type": "Date", "iso": "2021-01-01T00:00:00.000Z"}}, "k": [1, 2]},
        "a": [1, "x", ptr, {"__type": "Date", "iso": "2019-05-05T00:00:00.000Z"}], "p": ptr, "ps": [ptr, ptr],
        "g": {"__type": "GeoPoint", "latitude": 40.5, "longitude": -30.25},
        "poly": {"__type": "Polygon", "coordinates": [[0, 0], [0, 1], [1, 1]]},
        "by": {"__type": "Bytes", "base64": "aGVsbG8="},
        "f": {"__type": "File", "name": "abc_x.txt"},
        "ACL": {"*": {"read": True}, "role:Admin": {"write": True}},
    }


def shape(value: Any) -> Any:
    """The BSON shape of a raw document: types for scalars, structure for containers."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items() if k not in ("_id",)}
    if isinstance(value, list):
        return [shape(v) for v in value]
    if isinstance(value, datetime):
        return "date"
    if isinstance(value, bytes | Binary):
        return "binary"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def test_raw_documents_match_node(node: RunningServer, ours: RunningServer, raw: Any) -> None:
    cls = f"Raw{uuid.uuid4().hex[:6]}"
    target = ok(call(node, "POST", f"/classes/{cls}T", {"name": "t"}))["objectId"]
    body = every_type(f"{cls}T", target)
    by_node = ok(call(node, "POST", f"/classes/{cls}", body))["objectId"]
    by_us = ok(call(ours, "POST", f"/classes/{cls}", body))["objectId"]
    doc_node, doc_us = raw[cls].find_one({"_id": by_node}), raw[cls].find_one({"_id": by_us})
    assert shape(doc_us) == shape(doc_node)
    for key in ("_p_p", "g", "poly", "f", "_rperm", "_wperm", "_acl", "ps", "a", "o", "d", "by"):
        assert doc_us[key] == doc_node[key], key
    assert doc_us["_p_p"] == f"{cls}T${target}" and doc_us["g"] == [-30.25, 40.5]
    assert doc_us["_acl"] == {"role:Admin": {"w": True}, "*": {"r": True}}
    # _SCHEMA: the class written by parsectl has node's field type strings
    other = f"{cls}Ours"
    ok(call(ours, "POST", f"/classes/{other}", body))
    node_schema = raw["_SCHEMA"].find_one({"_id": cls})
    our_schema = raw["_SCHEMA"].find_one({"_id": other})
    assert {k: v for k, v in our_schema.items() if k not in ("_id", "_metadata")} == \
        {k: v for k, v in node_schema.items() if k not in ("_id", "_metadata")}
    assert our_schema["p"] == f"*{cls}T" and our_schema["g"] == "geopoint"


@pytest.mark.parametrize("writer_kind", ["node", "parsectl"])
def test_objects_written_by_one_read_and_updated_by_the_other(
        writer_kind: str, node: RunningServer, ours: RunningServer) -> None:
    writer, reader = (node, ours) if writer_kind == "node" else (ours, node)
    cls = f"Interop{writer_kind.title()}{uuid.uuid4().hex[:6]}"
    target = ok(call(writer, "POST", f"/classes/{cls}Target", {"name": "t"}))["objectId"]
    oid = ok(call(writer, "POST", f"/classes/{cls}", every_type(f"{cls}Target", target)))["objectId"]
    ok(call(writer, "PUT", f"/classes/{cls}/{oid}", {"rel": {"__op": "AddRelation", "objects": [
        {"__type": "Pointer", "className": f"{cls}Target", "objectId": target}]}}))

    written = ok(call(writer, "GET", f"/classes/{cls}/{oid}"))
    read = ok(call(reader, "GET", f"/classes/{cls}/{oid}"))
    assert without_urls(read) == without_urls(written)

    included = ok(call(reader, "GET", f"/classes/{cls}", params={"include": "p,ps"}))["results"][0]
    assert included["p"]["name"] == "t" and [x["name"] for x in included["ps"]] == ["t", "t"]
    related = {"$relatedTo": {"object": {"__type": "Pointer", "className": cls, "objectId": oid}, "key": "rel"}}
    found = ok(call(reader, "GET", f"/classes/{cls}Target", params={"where": json.dumps(related)}))["results"]
    assert [x["objectId"] for x in found] == [target]
    ptr = {"__type": "Pointer", "className": f"{cls}Target", "objectId": target}
    queries = [{"d": {"$lt": {"__type": "Date", "iso": "2020-06-01T00:00:00.000Z"}}}, {"a": {"$all": ["x"]}},
               {"p": ptr}, {"p": {"$in": [ptr]}}, {"rel": ptr}, {"ps": ptr}, {"a": "x"},
               {"s": {"$regex": "^te"}}, {"b": True, "n": {"$gte": 1.5}},
               {"o.k": {"$exists": True}}, {"o.nested.when": {"$gt": {"__type": "Date", "iso": "2020-01-01T00:00:00Z"}}},
               {"f": {"__type": "File", "name": "abc_x.txt"}}, {"i": {"$nin": [7]}}]
    if reader is ours:
        # node passes \\Q...\\E to the server, and SecantusDB's regex engine has no \\Q: node answers 500
        queries.append({"s": {"$regex": "\\Qtex\\E"}})
    for where in queries:
        r = call(reader, "GET", f"/classes/{cls}", params={"where": json.dumps(where)})
        assert r.status_code == 200, (where, r.text)
        res = r.json()["results"]
        assert [x["objectId"] for x in res] == [oid], where

    # the reader updates; the writer sees the result
    ok(call(reader, "PUT", f"/classes/{cls}/{oid}", {
        "i": {"__op": "Increment", "amount": 2}, "a": {"__op": "AddUnique", "objects": ["x", "y"]},
        "s": "changed", "ACL": {"*": {"read": True, "write": True}},
        "rel": {"__op": "RemoveRelation", "objects": [ptr]}}))
    after = ok(call(writer, "GET", f"/classes/{cls}/{oid}"))
    assert after["i"] == 5 and after["s"] == "changed"
    assert len(after["a"]) == 5 and after["a"].count("x") == 1 and "y" in after["a"]
    assert after["ACL"] == {"*": {"read": True, "write": True}}
    assert ok(call(writer, "GET", f"/classes/{cls}Target", params={"where": json.dumps(related)}))["results"] == []
    assert ok(call(writer, "GET", f"/classes/{cls}", params={"count": "1", "limit": "0",
                                                              "where": json.dumps({"i": 5})}))["count"] == 1

    # ACLs: an object readable only by one user is hidden from the public on both servers
    secret = ok(call(writer, "POST", f"/classes/{cls}", {"s": "secret", "ACL": {"someone": {"read": True}}}))
    for srv in (writer, reader):
        assert call(srv, "GET", f"/classes/{cls}/{secret['objectId']}", master=False).status_code == 404
        public = ok(call(srv, "GET", f"/classes/{cls}", master=False))["results"]
        assert [x["objectId"] for x in public] == [oid]
        assert call(srv, "GET", f"/classes/{cls}/{oid}", master=False).status_code == 200


def test_users_roles_and_schemas_from_node_load(node: RunningServer, ours: RunningServer, raw: Any) -> None:
    name = f"u{uuid.uuid4().hex[:8]}"
    user = ok(call(node, "POST", "/users", {"username": name, "password": "pw-1", "email": f"{name}@x.y"},
                   master=False, **{"X-Parse-Installation-Id": str(uuid.uuid4())}))
    anon = ok(call(node, "POST", "/users", {"authData": {"anonymous": {"id": str(uuid.uuid4())}}}, master=False))
    role = ok(call(node, "POST", "/roles", {
        "name": f"R{name}", "ACL": {"*": {"read": True}},
        "users": {"__op": "AddRelation", "objects": [{"__type": "Pointer", "className": "_User",
                                                      "objectId": user["objectId"]}]}}))
    got = ok(call(ours, "GET", f"/classes/_User/{user['objectId']}"))
    assert got["username"] == name and got["email"] == f"{name}@x.y"
    assert "password" not in got and "_hashed_password" not in got
    assert got["ACL"] == {user["objectId"]: {"read": True, "write": True}}
    node_user = ok(call(node, "GET", f"/classes/_User/{user['objectId']}"))
    assert {k: v for k, v in got.items() if k != "sessionToken"} == \
        {k: v for k, v in node_user.items() if k != "sessionToken"}
    got_anon = ok(call(ours, "GET", f"/classes/_User/{anon['objectId']}"))
    assert got_anon["username"] == anon["username"]
    members = {"$relatedTo": {"object": {"__type": "Pointer", "className": "_Role", "objectId": role["objectId"]},
                              "key": "users"}}
    res = ok(call(ours, "GET", "/classes/_User", params={"where": json.dumps(members)}))["results"]
    assert [x["objectId"] for x in res] == [user["objectId"]]
    sessions = ok(call(ours, "GET", "/classes/_Session", params={"where": json.dumps({"user": {
        "__type": "Pointer", "className": "_User", "objectId": user["objectId"]}})}))["results"]
    assert len(sessions) == 1 and sessions[0]["sessionToken"].startswith("r:")

    # schemas and CLPs agree both ways
    assert ok(call(ours, "GET", "/schemas/_User"))["fields"] == ok(call(node, "GET", "/schemas/_User"))["fields"]
    cls = f"Schema{uuid.uuid4().hex[:6]}"
    ok(call(ours, "POST", f"/schemas/{cls}", {"fields": {
        "name": {"type": "String"}, "owner": {"type": "Pointer", "targetClass": "_User"},
        "fans": {"type": "Relation", "targetClass": "_User"}}}))
    assert ok(call(node, "GET", f"/schemas/{cls}"))["fields"] == ok(call(ours, "GET", f"/schemas/{cls}"))["fields"]
    clp = {"find": {"*": True}, "get": {"*": True}, "count": {"*": True}, "create": {}, "update": {},
           "delete": {}, "addField": {}, "protectedFields": {"*": []}}
    ok(call(node, "PUT", f"/schemas/{cls}", {"classLevelPermissions": clp, "fields": {"age": {"type": "Number"}}}))
    mine = ok(call(ours, "GET", f"/schemas/{cls}"))
    assert mine["fields"]["age"] == {"type": "Number"}
    assert {k: v for k, v in mine["classLevelPermissions"].items() if k != "ACL"} == clp
    r = call(ours, "POST", f"/classes/{cls}", {"name": "x"}, master=False)
    assert (r.status_code, r.json()["code"]) == (400, 119)
    # the start-up indexes are there once, with parse-server's names
    names = {ix["name"] for ix in raw["_User"].list_indexes()}
    assert {"username_1", "email_1", "case_insensitive_username", "case_insensitive_email", "_email_verify_token",
            "_perishable_token", "_auth_data_anonymous_id"} <= names
