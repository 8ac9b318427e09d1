"""/schemas indexes: the same requests against node parse-server 9.10 (PostgreSQL) and parsectl on SQLite,
PostgreSQL and MongoDB. parse-server keeps "_id_" in the stored map on PostgreSQL but not after a create on
MongoDB; everything else answers alike."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest

from tests.support.servers import RunningServer

pytestmark = pytest.mark.slow
_names = itertools.count()


def call(server: RunningServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    r = httpx.request(method, server.server_url + path, headers=server.headers(master=True), json=body, timeout=10)
    return r.status_code, r.json()


def test_schema_indexes(server: RunningServer) -> None:
    name = f"Indexed{next(_names)}"
    fields = {"name": {"type": "String"}, "score": {"type": "Number"},
              "owner": {"type": "Pointer", "targetClass": "_User"}}
    status, body = call(server, "POST", f"/schemas/{name}", {"fields": fields, "indexes": {"name_1": {"name": 1}}})
    assert status == 200 and body["indexes"] == {"name_1": {"name": 1}}, body
    pg_like = not any(str(arg).startswith("mongodb://") for arg in server.extra.get("command", []))
    created = {"_id_": {"_id": 1}, "name_1": {"name": 1}} if pg_like else {"name_1": {"name": 1}}
    assert call(server, "GET", f"/schemas/{name}")[1]["indexes"] == created

    status, body = call(server, "PUT", f"/schemas/{name}", {"indexes": {"score_d": {"score": -1}}})
    assert status == 200 and body["indexes"] == {**created, "score_d": {"score": -1}}, body
    key = "owner" if pg_like else "_p_owner"
    status, body = call(server, "PUT", f"/schemas/{name}", {"indexes": {"owner_1": {key: 1}}})
    assert status == 200 and body["indexes"]["owner_1"] == {key: 1}, body

    assert call(server, "PUT", f"/schemas/{name}", {"indexes": {"score_d": {"name": 1}}}) == (
        400, {"code": 102, "error": "Index score_d exists, cannot update."})
    assert call(server, "PUT", f"/schemas/{name}", {"indexes": {"nope": {"__op": "Delete"}}}) == (
        400, {"code": 102, "error": "Index nope does not exist, cannot delete."})
    assert call(server, "PUT", f"/schemas/{name}", {"indexes": {"x": {"missing": 1}}}) == (
        400, {"code": 102, "error": "Field missing does not exist, cannot add index."})
    assert call(server, "POST", f"/schemas/{name}Bad", {"fields": fields, "indexes": {"x": {"missing": 1}}}) == (
        400, {"code": 102, "error": "Field missing does not exist, cannot add index."})
    assert call(server, "GET", f"/schemas/{name}Bad")[1]["code"] == 103

    status, body = call(server, "PUT", f"/schemas/{name}", {"indexes": {"score_d": {"__op": "Delete"}}})
    assert status == 200 and "score_d" not in body["indexes"] and "name_1" in body["indexes"], body
    # the class still works with its indexes
    status, _ = call(server, "POST", f"/classes/{name}", {"name": "a", "score": 1})
    assert status == 201
    status, body = call(server, "GET", f"/classes/{name}?where=%7B%22name%22%3A%22a%22%7D")
    assert status == 200 and [o["score"] for o in body["results"]] == [1]

    # a class made without indexes has none until a PUT names some (even none)
    plain = f"{name}Plain"
    status, body = call(server, "POST", f"/schemas/{plain}", {"fields": {"a": {"type": "String"}}})
    assert status == 200 and "indexes" not in body
    status, body = call(server, "PUT", f"/schemas/{plain}", {"indexes": {}})
    assert status == 200 and body["indexes"] == {"_id_": {"_id": 1}}, body
