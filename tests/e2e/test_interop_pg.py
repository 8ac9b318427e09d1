"""Interop on one PostgreSQL database: node parse-server 9.10 and parsectl serve side by side.

Data written through one server must read back identically, and update correctly, through the other:
objects of every type, pointers, arrays of pointers, relations, ACLs, schemas and CLPs, and the
`_User`/`_Session`/`_Role` rows node parse-server writes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.parsectl_proc import parsectl_server
from tests.support.servers import RunningServer

pytestmark = [pytest.mark.slow, pytest.mark.reference]


@pytest.fixture(scope="module")
def parsectl_same_db(reference_server: RunningServer, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[RunningServer]:
    """parsectl serve on the reference's own database."""
    uri = reference_server.extra["database_uri"]
    with parsectl_server(data_dir=tmp_path_factory.mktemp("interop"), database_uri=uri) as server:
        yield server


def call(srv: RunningServer, method: str, path: str, body: Any = None, master: bool = True,
         params: dict[str, str] | None = None, **headers: str) -> httpx.Response:
    return httpx.request(method, srv.server_url + path, json=body, params=params,
                         headers=srv.headers(master=master, **headers), timeout=15)


def ok(r: httpx.Response) -> Any:
    assert r.status_code in (200, 201), r.text
    return r.json()


def without_urls(obj: Any) -> Any:
    """File URLs name each server's own host and port; everything else must be equal."""
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
        "a": [1, "x", ptr], "p": ptr, "ps": [ptr, ptr],
        "g": {"__type": "GeoPoint", "latitude": 40.5, "longitude": -30.25},
        "poly": {"__type": "Polygon", "coordinates": [[0, 0], [0, 1], [1, 1]]},
        "by": {"__type": "Bytes", "base64": "aGVsbG8="},
        "f": {"__type": "File", "name": "abc_x.txt"},
        "ACL": {"*": {"read": True}, "role:Admin": {"write": True}},
    }


@pytest.mark.parametrize("writer_kind", ["node", "parsectl"])
def test_objects_written_by_one_read_and_updated_by_the_other(
        writer_kind: str, reference_server: RunningServer, parsectl_same_db: RunningServer) -> None:
    writer, reader = ((reference_server, parsectl_same_db) if writer_kind == "node"
                      else (parsectl_same_db, reference_server))
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
    queries = [{"d": {"$lt": {"__type": "Date", "iso": "2020-06-01T00:00:00.000Z"}}}, {"a": {"$all": ["x"]}},
               {"p": {"__type": "Pointer", "className": f"{cls}Target", "objectId": target}},
               {"s": {"$regex": "^te"}}, {"b": True, "n": {"$gte": 1.5}}]
    if reader is parsectl_same_db:
        # node parse-server on PostgreSQL answers 500 to the first and finds nothing for the second
        queries += [{"a": "x"}, {"o.k": {"$exists": True}}]
    for where in queries:
        res = ok(call(reader, "GET", f"/classes/{cls}", params={"where": json.dumps(where)}))["results"]
        assert [x["objectId"] for x in res] == [oid], where

    # the reader updates; the writer sees the result
    ok(call(reader, "PUT", f"/classes/{cls}/{oid}", {
        "i": {"__op": "Increment", "amount": 2}, "a": {"__op": "AddUnique", "objects": ["x", "y"]},
        "s": "changed", "ACL": {"*": {"read": True, "write": True}}}))
    after = ok(call(writer, "GET", f"/classes/{cls}/{oid}"))
    assert after["i"] == 5 and after["s"] == "changed"
    assert len(after["a"]) == 4 and after["a"].count("x") == 1 and "y" in after["a"]
    assert after["ACL"] == {"*": {"read": True, "write": True}}
    assert ok(call(writer, "GET", f"/classes/{cls}", params={"count": "1", "limit": "0",
                                                              "where": json.dumps({"i": 5})}))["count"] == 1

    # a public (non-master) reader sees what the ACL allows on both sides
    assert call(reader, "GET", f"/classes/{cls}/{oid}", master=False).status_code == 200


def test_schemas_and_clps_agree(reference_server: RunningServer, parsectl_same_db: RunningServer) -> None:
    cls = f"InteropSchema{uuid.uuid4().hex[:6]}"
    ok(call(parsectl_same_db, "POST", f"/schemas/{cls}", {"fields": {
        "name": {"type": "String"}, "owner": {"type": "Pointer", "targetClass": "_User"},
        "fans": {"type": "Relation", "targetClass": "_User"}}}))
    node_view = ok(call(reference_server, "GET", f"/schemas/{cls}"))
    ours = ok(call(parsectl_same_db, "GET", f"/schemas/{cls}"))
    assert node_view["fields"] == ours["fields"]
    clp = {"find": {"*": True}, "get": {"*": True}, "count": {"*": True}, "create": {}, "update": {},
           "delete": {}, "addField": {}, "protectedFields": {"*": []}}
    ok(call(reference_server, "PUT", f"/schemas/{cls}", {"classLevelPermissions": clp,
                                                          "fields": {"age": {"type": "Number"}}}))
    ours = ok(call(parsectl_same_db, "GET", f"/schemas/{cls}"))
    assert ours["fields"]["age"] == {"type": "Number"}
    assert {k: v for k, v in ours["classLevelPermissions"].items() if k != "ACL"} == clp
    r = call(parsectl_same_db, "POST", f"/classes/{cls}", {"name": "x"}, master=False)
    assert (r.status_code, r.json()["code"]) == (400, 119)


def test_user_session_and_role_rows_from_node_load(reference_server: RunningServer,
                                                   parsectl_same_db: RunningServer) -> None:
    name = f"u{uuid.uuid4().hex[:8]}"
    user = ok(call(reference_server, "POST", "/users", {"username": name, "password": "pw-1", "email": f"{name}@x.y"},
                   master=False, **{"X-Parse-Installation-Id": str(uuid.uuid4())}))
    role = ok(call(reference_server, "POST", "/roles", {
        "name": f"R{name}", "ACL": {"*": {"read": True}},
        "users": {"__op": "AddRelation", "objects": [{"__type": "Pointer", "className": "_User",
                                                      "objectId": user["objectId"]}]}}))
    got = ok(call(parsectl_same_db, "GET", f"/classes/_User/{user['objectId']}"))
    assert got["username"] == name and got["email"] == f"{name}@x.y"
    assert not any(k.startswith("_") or k in ("password", "sessionToken") for k in got)
    sessions = ok(call(parsectl_same_db, "GET", "/classes/_Session",
                       params={"where": json.dumps({"sessionToken": user["sessionToken"]})}))["results"]
    assert len(sessions) == 1 and sessions[0]["user"]["objectId"] == user["objectId"]
    assert sessions[0]["createdWith"] == {"action": "signup", "authProvider": "password"}
    roles = ok(call(parsectl_same_db, "GET", f"/classes/_Role/{role['objectId']}"))
    assert roles["users"] == {"__type": "Relation", "className": "_User"}
    members = {"$relatedTo": {"object": {"__type": "Pointer", "className": "_Role", "objectId": role["objectId"]},
                              "key": "users"}}
    found = ok(call(parsectl_same_db, "GET", "/classes/_User", params={"where": json.dumps(members)}))["results"]
    assert [u["objectId"] for u in found] == [user["objectId"]]
    # the session token node issued is honoured by parsectl (the user is resolved from _Session)
    r = call(parsectl_same_db, "GET", f"/classes/_User/{user['objectId']}", master=False,
             **{"X-Parse-Session-Token": user["sessionToken"]})
    assert r.status_code == 200
    r = call(parsectl_same_db, "GET", "/classes/_User", master=False, **{"X-Parse-Session-Token": "r:nope"})
    assert (r.status_code, r.json()) == (400, {"code": 209, "error": "Invalid session token"})


def test_parsectl_survives_a_postgres_restart(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A database restart costs the requests made while it is down, nothing more: the pool reconnects."""
    from tests.support.pg import _run, pg_cluster

    with pg_cluster() as pg, parsectl_server(data_dir=tmp_path_factory.mktemp("restart"),
                                             database_uri=pg.uri) as srv:
        oid = ok(call(srv, "POST", "/classes/Restart", {"n": 1}))["objectId"]
        _run([str(pg.bindir / "pg_ctl"), "-D", str(pg.data_dir), "-l", str(pg.base_dir / "restart.log"), "-m",
              "fast", "-w", "restart"], pg.run_as,
             timeout=60)
        answers = [call(srv, "GET", f"/classes/Restart/{oid}").status_code for _ in range(3)]
        assert answers[-1] == 200, answers
        assert ok(call(srv, "PUT", f"/classes/Restart/{oid}", {"n": {"__op": "Increment", "amount": 1}}))["n"] == 2
