"""/config, /purge/:className and /aggregate/:className on every storage adapter."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.server.conftest import Client


def _agg(client: Client, class_name: str, master: bool = True, **params: Any) -> Any:
    query = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in params.items()}
    return client.request("GET", f"/aggregate/{class_name}", master=master, params=query)


def _seed(client: Client) -> list[str]:
    user = client.request("POST", "/classes/_User", master=True,
                          json={"username": "u1", "password": "p"}).json()["objectId"]
    other = client.request("POST", "/classes/_User", master=True,
                           json={"username": "u2", "password": "p"}).json()["objectId"]
    rows = [
        {"name": "a", "score": 10, "tags": ["x", "y"], "owner": user,
         "when": "2020-01-01T00:00:00.000Z"},
        {"name": "b", "score": 20, "tags": ["y"], "owner": user, "when": "2021-06-01T00:00:00.000Z"},
        {"name": "a", "score": 30, "tags": [], "owner": other, "when": "2022-01-01T00:00:00.000Z"},
        {"name": "c", "score": 5, "owner": other, "when": "2023-01-01T00:00:00.000Z"},
    ]
    for row in rows:
        body = {**row, "owner": {"__type": "Pointer", "className": "_User", "objectId": row["owner"]},
                "when": {"__type": "Date", "iso": row["when"]}}
        r = client.request("POST", "/classes/Score", master=True, json=body)
        assert r.status_code == 201, r.text
    return [user, other]


# --- /config ---------------------------------------------------------------------------------------------


def test_config_empty_then_merge_and_master_only(client: Client) -> None:
    r = client.request("GET", "/config")
    assert (r.status_code, r.json()) == (200, {"params": {}})
    r = client.request("PUT", "/config", json={"params": {"a": 1}})
    assert (r.status_code, r.json()) == (403, {"error": "Permission denied"})
    r = client.request("PUT", "/config", master=True, json={
        "params": {"a": 1, "secret": "s", "when": {"__type": "Date", "iso": "2020-01-01T00:00:00.000Z"}},
        "masterKeyOnly": {"secret": True}})
    assert (r.status_code, r.json()) == (200, {"result": True})
    r = client.request("PUT", "/config", master=True, json={"params": {"b": [1, 2], "a": 2}})
    assert r.json() == {"result": True}
    full = client.request("GET", "/config", master=True).json()
    assert full == {"params": {"a": 2, "b": [1, 2], "secret": "s",
                               "when": {"__type": "Date", "iso": "2020-01-01T00:00:00.000Z"}},
                    "masterKeyOnly": {"a": False, "b": False, "secret": True, "when": False}}
    public = client.request("GET", "/config").json()
    assert public == {"params": {"a": 2, "b": [1, 2], "when": {"__type": "Date", "iso": "2020-01-01T00:00:00.000Z"}},
                      "masterKeyOnly": {"a": False, "b": False, "when": False}}
    r = client.request("PUT", "/config", master=True, json={"params": {"a": {"__op": "Delete"}}})
    assert r.json() == {"result": True}
    full = client.request("GET", "/config", master=True).json()
    assert "a" not in full["params"] and full["masterKeyOnly"]["a"] is False
    # _GlobalConfig is no class of /schemas
    names = [s["className"] for s in client.request("GET", "/schemas", master=True).json()["results"]]
    assert "_GlobalConfig" not in names


# --- /purge ----------------------------------------------------------------------------------------------


def test_purge_keeps_the_schema(client: Client) -> None:
    _seed(client)
    assert client.request("DELETE", "/purge/Score").status_code == 403
    r = client.request("DELETE", "/purge/Score", master=True)
    assert (r.status_code, r.json()) == (200, {})
    assert client.request("GET", "/classes/Score", master=True).json() == {"results": []}
    schema = client.request("GET", "/schemas/Score", master=True).json()
    assert schema["fields"]["score"] == {"type": "Number"}
    r = client.request("DELETE", "/purge/NoSuchClass", master=True)
    assert (r.status_code, r.json()) == (200, {})


# --- /aggregate ------------------------------------------------------------------------------------------


def test_aggregate_needs_master_and_valid_stages(client: Client) -> None:
    _seed(client)
    r = _agg(client, "Score", master=False, pipeline=[{"$match": {}}])
    assert (r.status_code, r.json()) == (403, {"error": "Permission denied"})
    r = _agg(client, "Score", pipeline=[{"$group": {"objectId": "$name"}}])
    assert r.json() == {"code": 102, "error": "Cannot use 'objectId' in aggregation stage $group."}
    r = _agg(client, "Score", pipeline=[{"$group": {"total": {"$sum": 1}}}])
    assert r.json() == {"code": 102, "error": "Invalid parameter for query: group. Missing key _id"}
    r = _agg(client, "Score", pipeline=[{"$match": {}, "$limit": 1}])
    assert r.json()["code"] == 102 and r.json()["error"].startswith("Pipeline stages should only have one key")
    r = _agg(client, "Score", pipeline=[{"match": {}}])
    assert r.json() == {"code": 102, "error": "Invalid aggregate stage 'match'."}
    for stage in ({"$out": "x"}, {"$merge": {"into": "x"}}, {"$lookup": {}},
                  {"$match": {"$where": "true"}},
                  {"$project": {"x": {"$function": {"body": "", "args": [], "lang": "js"}}}},
                  {"$group": {"_id": None, "x": {"$accumulator": {}}}}):
        r = _agg(client, "Score", pipeline=[stage])
        assert (r.status_code, r.json()["code"]) == (400, 102), stage
    assert _agg(client, "Missing", pipeline=[{"$match": {}}]).json() == {"results": []}


def test_aggregate_group_accumulators(client: Client) -> None:
    _seed(client)
    r = _agg(client, "Score", pipeline=[
        {"$group": {"_id": "$name", "total": {"$sum": "$score"}, "n": {"$sum": 1}, "avg": {"$avg": "$score"},
                    "lo": {"$min": "$score"}, "hi": {"$max": "$score"}, "scores": {"$push": "$score"},
                    "tags": {"$addToSet": "$tags"}, "latest": {"$max": "$when"}}},
        {"$sort": {"_id": 1}}])
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["objectId"] for x in results] == ["a", "b", "c"]
    a = results[0]
    assert (a["total"], a["n"], a["avg"], a["lo"], a["hi"]) == (40, 2, 20, 10, 30)
    assert a["scores"] == [10, 30]
    assert a["latest"] == {"__type": "Date", "iso": "2022-01-01T00:00:00.000Z"}
    r = _agg(client, "Score", pipeline=[{"$group": {"_id": None, "total": {"$sum": "$score"},
                                                    "first": {"$first": "$name"}}}])
    assert r.json()["results"] == [{"objectId": None, "total": 65, "first": r.json()["results"][0]["first"]}]
    r = _agg(client, "Score", pipeline={"$group": {"_id": {"name": "$name"}, "n": {"$sum": 1}}})
    keys = sorted(x["objectId"]["name"] for x in r.json()["results"])
    assert keys == ["a", "b", "c"]


def test_aggregate_group_by_pointer_and_date_parts(client: Client) -> None:
    user, other = _seed(client)
    r = _agg(client, "Score", pipeline=[{"$group": {"_id": "$owner", "n": {"$sum": 1}}}])
    assert sorted((x["objectId"], x["n"]) for x in r.json()["results"]) == sorted([(user, 2), (other, 2)])
    r = _agg(client, "Score", pipeline=[{"$group": {"_id": {"year": {"$year": "$when"}}, "n": {"$sum": 1}}},
                                        {"$sort": {"_id.year": -1}}, {"$limit": 2}])
    assert [x["objectId"] for x in r.json()["results"]] == [{"year": 2023}, {"year": 2022}]


def test_aggregate_match_runs_in_the_database(client: Client) -> None:
    user, _ = _seed(client)
    r = _agg(client, "Score", pipeline=[{"$match": {"score": {"$gte": 10}, "owner": user}},
                                        {"$sort": {"score": -1}}])
    results = r.json()["results"]
    assert [x["score"] for x in results] == [20, 10]
    first = results[0]
    assert isinstance(first["objectId"], str) and isinstance(first["createdAt"], str)
    assert first["owner"] == {"__type": "Pointer", "className": "_User", "objectId": user}
    assert first["when"] == {"__type": "Date", "iso": "2021-06-01T00:00:00.000Z"}
    assert "ACL" not in first and "_rperm" not in first
    r = _agg(client, "Score", pipeline=[{"$match": {"when": {"$lt": "2021-12-31T00:00:00.000Z"}}},
                                        {"$count": "n"}])
    assert r.json() == {"results": [{"n": 2}]}
    r = _agg(client, "Score", pipeline=[{"$match": {"createdAt": {"$gt": "2000-01-01T00:00:00.000Z"}}},
                                        {"$count": "n"}])
    assert r.json() == {"results": [{"n": 4}]}
    r = _agg(client, "Score", pipeline=[{"$match": {"name": "zzz"}}, {"$count": "n"}])
    assert r.json() == {"results": []}
    first_id = results[0]["objectId"]
    r = _agg(client, "Score", pipeline=[{"$match": {"objectId": first_id}}, {"$project": {"name": 1}}])
    assert r.json() == {"results": [{"name": "b", "objectId": first_id}]}


def test_aggregate_project_unwind_skip_limit_and_later_match(client: Client) -> None:
    _seed(client)
    r = _agg(client, "Score", pipeline=[{"$unwind": "$tags"}, {"$group": {"_id": "$tags", "n": {"$sum": 1}}},
                                        {"$match": {"n": {"$gt": 1}}}])
    assert r.json() == {"results": [{"objectId": "y", "n": 2}]}
    r = _agg(client, "Score", pipeline=[{"$sort": {"score": 1}}, {"$skip": 1}, {"$limit": 2},
                                        {"$project": {"_id": 0, "score": 1, "double": {"$multiply": ["$score", 2]}}}])
    assert r.json() == {"results": [{"score": 10, "double": 20}, {"score": 20, "double": 40}]}
    r = _agg(client, "Score", pipeline=[{"$match": {"name": "a"}}, {"$limit": 1}, {"$project": {"tags": 0}}])
    (only,) = r.json()["results"]
    assert "tags" not in only and only["name"] == "a"
    r = _agg(client, "Score", pipeline=[{"$limit": 0}])
    assert r.json()["code"] == 102


def test_distinct(client: Client) -> None:
    user, other = _seed(client)
    r = _agg(client, "Score", distinct="name")
    assert r.json() == {"results": ["a", "b", "c"]}
    r = _agg(client, "Score", distinct="name", where={"score": {"$gt": 15}})
    assert r.json() == {"results": ["a", "b"]}
    r = _agg(client, "Score", distinct="tags")
    assert r.json() == {"results": ["x", "y"]}
    r = _agg(client, "Score", distinct="owner")
    assert sorted(p["objectId"] for p in r.json()["results"]) == sorted([user, other])
    assert r.json()["results"][0]["__type"] == "Pointer"


@pytest.mark.parametrize("stage", [{"$sort": {"score": 2}}, {"$count": "$x"}, {"$unwind": "tags"}])
def test_bad_stage_arguments(client: Client, stage: dict[str, Any]) -> None:
    _seed(client)
    r = _agg(client, "Score", pipeline=[stage])
    assert (r.status_code, r.json()["code"]) == (400, 102)
