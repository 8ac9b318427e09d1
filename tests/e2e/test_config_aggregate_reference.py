"""/config, /purge and /aggregate: parsectl against node parse-server 9.10 (the reference, on PostgreSQL).

The same requests go to both servers and must answer the same. Aggregation is compared only where
parse-server's PostgreSQL adapter implements it (``$group`` by a field with ``$sum``/``$max``/``$min``/
``$avg``, ``$match`` by equality, ``distinct``); the rest follows MongoDB's semantics in parsectl.
A config written by parsectl on the reference's own database must read back through node, and back.
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

def call(srv: RunningServer, method: str, path: str, body: Any = None, master: bool = True,
         params: dict[str, str] | None = None) -> httpx.Response:
    return httpx.request(method, srv.server_url + path, json=body, params=params,
                         headers=srv.headers(master=master), timeout=15)


def both(reference: RunningServer, parsectl: RunningServer, method: str, path: str, body: Any = None,
         master: bool = True, params: dict[str, str] | None = None) -> tuple[Any, Any]:
    answers = []
    for srv in (reference, parsectl):
        r = call(srv, method, path, body, master, params)
        answers.append((r.status_code, r.json()))
    return answers[0], answers[1]


@pytest.fixture
def servers(reference_server: RunningServer, parsectl_server: RunningServer) -> tuple[RunningServer, RunningServer]:
    return reference_server, parsectl_server


def test_config_round_trip_matches(servers: tuple[RunningServer, RunningServer]) -> None:
    ref, ours = servers
    tag = "p" + uuid.uuid4().hex[:8]
    body = {"params": {f"{tag}_a": 1, f"{tag}_s": "secret", f"{tag}_d": {"__type": "Date",
                                                                           "iso": "2020-01-01T00:00:00.000Z"}},
            "masterKeyOnly": {f"{tag}_s": True}}
    a, b = both(ref, ours, "PUT", "/config", body, master=False)
    assert a == b == (403, {"error": "Permission denied"})
    a, b = both(ref, ours, "PUT", "/config", body)
    assert a == b == (200, {"result": True})
    a, b = both(ref, ours, "PUT", "/config", {"params": {f"{tag}_a": {"__op": "Delete"}, f"{tag}_b": [1]}})
    assert a == b

    def mine(answer: tuple[int, Any]) -> tuple[int, Any]:
        status, data = answer
        return status, {k: {n: v for n, v in (data.get(k) or {}).items() if n.startswith(tag)}
                        for k in ("params", "masterKeyOnly")}

    for master in (True, False):
        a, b = both(ref, ours, "GET", "/config", master=master)
        assert mine(a) == mine(b), (master, a, b)


def test_purge_matches(servers: tuple[RunningServer, RunningServer]) -> None:
    ref, ours = servers
    cls = "Purge" + uuid.uuid4().hex[:6]
    for srv in servers:
        for i in range(3):
            assert call(srv, "POST", f"/classes/{cls}", {"i": i}).status_code == 201
    a, b = both(ref, ours, "DELETE", f"/purge/{cls}", master=False)
    assert a[0] == b[0] == 403 and a == b
    assert both(ref, ours, "DELETE", f"/purge/{cls}") == ((200, {}), (200, {}))
    a, b = both(ref, ours, "GET", f"/classes/{cls}")
    assert a == b == (200, {"results": []})
    a, b = both(ref, ours, "GET", f"/schemas/{cls}")
    assert a[1]["fields"]["i"] == b[1]["fields"]["i"] == {"type": "Number"}
    assert both(ref, ours, "DELETE", "/purge/NoSuchClassHere") == ((200, {}), (200, {}))


def test_aggregate_matches_where_postgres_implements_it(servers: tuple[RunningServer, RunningServer]) -> None:
    ref, ours = servers
    cls = "Agg" + uuid.uuid4().hex[:6]
    rows = [{"name": "a", "score": 10}, {"name": "b", "score": 20}, {"name": "a", "score": 30},
            {"name": "c", "score": 5}]
    for srv in servers:
        for row in rows:
            assert call(srv, "POST", f"/classes/{cls}", row).status_code == 201

    def agg(**params: Any) -> tuple[Any, Any]:
        return both(ref, ours, "GET", f"/aggregate/{cls}",
                    params={k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()})

    a, b = agg(pipeline=[{"$group": {"_id": "$name", "total": {"$sum": "$score"}, "hi": {"$max": "$score"},
                                     "lo": {"$min": "$score"}}}])
    assert a[0] == b[0] == 200
    def key(r: dict[str, Any]) -> Any:
        return r["objectId"]
    assert sorted(a[1]["results"], key=key) == sorted(b[1]["results"], key=key)
    a, b = agg(pipeline=[{"$group": {"_id": None, "n": {"$sum": 1}}}])
    assert a == b == (200, {"results": [{"objectId": None, "n": 4}]})
    a, b = agg(distinct="name")
    assert a[0] == b[0] == 200 and sorted(a[1]["results"]) == sorted(b[1]["results"]) == ["a", "b", "c"]
    a, b = agg(distinct="name", where={"score": {"$gt": 15}})
    assert sorted(a[1]["results"]) == sorted(b[1]["results"]) == ["a", "b"]
    for bad in ([{"$group": {"objectId": "$name"}}], [{"$group": {"n": {"$sum": 1}}}], [{"group": {}}],
                [{"$match": {}, "$limit": 1}]):
        a, b = agg(pipeline=bad)
        assert a == b, bad
    a, b = both(ref, ours, "GET", f"/aggregate/{cls}", master=False,
                params={"pipeline": json.dumps([{"$group": {"_id": None}}])})
    assert a == b


@pytest.fixture(scope="module")
def parsectl_same_db(reference_server: RunningServer, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[RunningServer]:
    """parsectl serve on the reference's own database."""
    uri = reference_server.extra["database_uri"]
    with parsectl_server(data_dir=tmp_path_factory.mktemp("config-interop"), database_uri=uri) as server:
        yield server


def test_config_is_shared_with_node_on_one_database(reference_server: RunningServer,
                                                     parsectl_same_db: RunningServer) -> None:
    tag = "i" + uuid.uuid4().hex[:8]
    r = call(parsectl_same_db, "PUT", "/config", {"params": {f"{tag}_x": 1, f"{tag}_m": "m"},
                                                  "masterKeyOnly": {f"{tag}_m": True}})
    assert r.json() == {"result": True}
    node = call(reference_server, "GET", "/config", master=False).json()
    assert node["params"][f"{tag}_x"] == 1 and f"{tag}_m" not in node["params"]
    r = call(reference_server, "PUT", "/config", {"params": {f"{tag}_y": {"k": "v"}}})
    assert r.json() == {"result": True}
    ours = call(parsectl_same_db, "GET", "/config").json()
    assert ours["params"][f"{tag}_y"] == {"k": "v"} and ours["params"][f"{tag}_m"] == "m"
    assert ours["masterKeyOnly"][f"{tag}_m"] is True


# --- MongoDB: node and parsectl on one database, where node's aggregation is MongoDB's own ------------------


@pytest.fixture(scope="module")
def mongo_pair(mongo: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, RunningServer,
                                                                                       str]]:
    from tests.support.reference import reference_server

    uri = mongo.database_uri(f"cfgagg_{uuid.uuid4().hex[:8]}")
    with reference_server(uri) as node, parsectl_server(data_dir=tmp_path_factory.mktemp("cfgagg-mongo"),
                                                        database_uri=uri) as ours:
        yield node, ours, uri


def test_mongo_config_document_and_sharing(mongo_pair: tuple[RunningServer, RunningServer, str]) -> None:
    from pymongo import MongoClient

    node, ours, uri = mongo_pair
    r = call(ours, "PUT", "/config", {"params": {"x": 1, "m": "m"}, "masterKeyOnly": {"m": True}})
    assert r.json() == {"result": True}
    client: MongoClient = MongoClient(uri)
    try:
        doc = client.get_default_database()["_GlobalConfig"].find_one({})
    finally:
        client.close()
    assert doc == {"_id": 1, "params": {"x": 1, "m": "m"}, "masterKeyOnly": {"x": False, "m": True}}
    assert call(node, "GET", "/config", master=False).json() == {"params": {"x": 1}, "masterKeyOnly": {"x": False}}
    assert call(node, "PUT", "/config", {"params": {"y": [1], "x": {"__op": "Delete"}}}).json() == {"result": True}
    a, b = (call(srv, "GET", "/config").json() for srv in (node, ours))
    assert a == b == {"params": {"m": "m", "y": [1]}, "masterKeyOnly": {"x": False, "m": True, "y": False}}


def test_mongo_aggregate_matches_node(mongo_pair: tuple[RunningServer, RunningServer, str]) -> None:
    node, ours, _ = mongo_pair
    cls = "Agg" + uuid.uuid4().hex[:6]
    rows = [{"name": "a", "score": 10, "tags": ["x", "y"], "when": {"__type": "Date", "iso": "2020-01-01T00:00:00.000Z"}},
            {"name": "b", "score": 20, "tags": ["y"], "when": {"__type": "Date", "iso": "2021-01-01T00:00:00.000Z"}},
            {"name": "a", "score": 30, "tags": [], "when": {"__type": "Date", "iso": "2022-01-01T00:00:00.000Z"}}]
    owner = call(node, "POST", "/classes/Owner", {"n": 1}).json()["objectId"]
    for row in rows:
        row["owner"] = {"__type": "Pointer", "className": "Owner", "objectId": owner}
        assert call(node, "POST", f"/classes/{cls}", row).status_code == 201
    pipelines: list[Any] = [
        [{"$group": {"_id": "$owner", "n": {"$sum": 1}}}],
        [{"$match": {"name": "b"}}],
        [{"$match": {"owner": owner}}, {"$group": {"_id": None, "n": {"$sum": 1}}}],
        [{"$match": {"name": "b"}}, {"$project": {"owner": 1, "createdAt": 1, "_id": 0}},
         {"$project": {"owner": 1}}],
        [{"$group": {"_id": "$name", "total": {"$sum": "$score"}, "n": {"$sum": 1}, "avg": {"$avg": "$score"},
                     "latest": {"$max": "$when"}, "tags": {"$push": "$tags"}}}, {"$sort": {"_id": 1}}],
        [{"$match": {"score": {"$gte": 20}}}, {"$sort": {"score": 1}}, {"$project": {"name": 1, "score": 1}}],
        [{"$match": {"when": {"$lt": "2021-06-01T00:00:00.000Z"}}}, {"$count": "n"}],
        [{"$unwind": "$tags"}, {"$group": {"_id": "$tags", "n": {"$sum": 1}}}, {"$sort": {"_id": 1}}],
        [{"$sort": {"score": -1}}, {"$skip": 1}, {"$limit": 1}, {"$project": {"_id": 0, "score": 1}}],
        [{"$group": {"_id": None, "lo": {"$min": "$createdAt"}}}, {"$project": {"_id": 1}}],
    ]
    for pipeline in pipelines:
        a, b = (call(srv, "GET", f"/aggregate/{cls}", params={"pipeline": json.dumps(pipeline)})
                for srv in (node, ours))
        assert (a.status_code, a.json()) == (b.status_code, b.json()), pipeline
    for distinct in ("name", "tags", "when"):
        a, b = (call(srv, "GET", f"/aggregate/{cls}", params={"distinct": distinct}) for srv in (node, ours))
        assert (a.status_code, a.json()) == (b.status_code, b.json()), distinct
