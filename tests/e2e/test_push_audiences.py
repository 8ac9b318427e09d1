"""/push_audiences (Parse Dashboard's saved push audiences) against node parse-server 9.10 and parsectl."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from tests.support.servers import RunningServer

pytestmark = pytest.mark.slow


def call(server: RunningServer, method: str, path: str, body: Any = None, master: bool = True) -> tuple[int, Any]:
    r = httpx.request(method, server.server_url + path, headers=server.headers(master=master), json=body, timeout=10)
    return r.status_code, r.json()


def test_push_audiences(server: RunningServer) -> None:
    name = f"ios-fans-{uuid.uuid4().hex[:6]}"
    where = {"deviceType": "ios", "channels": {"$in": ["news"]}}
    assert call(server, "GET", "/push_audiences", master=False) == (403, {"error": "Permission denied"})
    assert call(server, "POST", "/push_audiences", {"name": name, "query": json.dumps(where)}, master=False) == (
        403, {"error": "Permission denied"})

    status, created = call(server, "POST", "/push_audiences", {"name": name, "query": json.dumps(where)})
    assert status == 201 and set(created) == {"objectId", "createdAt"}
    oid = created["objectId"]

    status, listed = call(server, "GET", "/push_audiences")
    mine = [a for a in listed["results"] if a["objectId"] == oid]
    assert status == 200 and len(mine) == 1
    assert mine[0]["name"] == name and mine[0]["query"] == where  # the stored JSON string comes back parsed

    status, one = call(server, "GET", f"/push_audiences/{oid}")
    assert status == 200 and one["query"] == where and one["name"] == name

    status, updated = call(server, "PUT", f"/push_audiences/{oid}", {"name": name + "-2"})
    assert status == 200 and set(updated) == {"updatedAt"}
    assert call(server, "GET", f"/push_audiences/{oid}")[1]["name"] == name + "-2"

    assert call(server, "DELETE", f"/push_audiences/{oid}") == (200, {})
    assert call(server, "GET", f"/push_audiences/{oid}") == (404, {"code": 101, "error": "Object not found."})
    status, info = call(server, "GET", "/serverInfo")
    assert info["features"]["push"]["pushAudiences"] is True
