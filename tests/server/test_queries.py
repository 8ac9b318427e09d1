"""Query operators, ordering, projection, include and relations through the REST layer, in process."""

from __future__ import annotations

import json

import pytest

from tests.server.conftest import Client


@pytest.fixture
def data(client: Client) -> dict[str, str]:
    ids: dict[str, str] = {}

    def create(cls: str, name: str, body: dict) -> str:
        r = client.request("POST", f"/classes/{cls}", json=body, master=True)
        assert r.status_code == 201, r.text
        ids[name] = r.json()["objectId"]
        return ids[name]

    team = create("Team", "red", {"name": "red"})
    blue = create("Team", "blue", {"name": "blue"})
    tp = {"__type": "Pointer", "className": "Team", "objectId": team}
    bp = {"__type": "Pointer", "className": "Team", "objectId": blue}
    create("Player", "ann", {"name": "Ann", "score": 10, "tags": ["a", "b"], "team": tp, "teams": [tp, bp],
                             "meta": {"lvl": 1}, "when": {"__type": "Date", "iso": "2020-01-01T00:00:00.000Z"}})
    create("Player", "bob", {"name": "bob", "score": 20, "tags": ["b"], "team": bp, "meta": {"lvl": 2},
                             "when": {"__type": "Date", "iso": "2021-01-01T00:00:00.000Z"}})
    create("Player", "cid", {"name": "Cid", "score": 30, "tags": [], "active": True})
    return ids


def names(client: Client, where: dict | None = None, **params: object) -> list[str]:
    query = {k: (json.dumps(v) if isinstance(v, dict | list) else v) for k, v in params.items()}
    if where is not None:
        query["where"] = json.dumps(where)
    query.setdefault("order", "score")
    r = client.request("GET", "/classes/Player", params=query)
    assert r.status_code == 200, r.text
    return [o["name"] for o in r.json()["results"]]


@pytest.mark.parametrize(("where", "expected"), [
    ({"score": {"$gt": 10}}, ["bob", "Cid"]),
    ({"score": {"$gte": 10, "$lt": 30}}, ["Ann", "bob"]),
    ({"score": {"$ne": 20}}, ["Ann", "Cid"]),
    ({"score": {"$eq": 20}}, ["bob"]),
    ({"score": {"$in": [10, 30]}}, ["Ann", "Cid"]),
    ({"score": {"$nin": [10, 30]}}, ["bob"]),
    ({"tags": "a"}, ["Ann"]),
    ({"tags": {"$all": ["a", "b"]}}, ["Ann"]),
    ({"tags": {"$in": ["b"]}}, ["Ann", "bob"]),
    ({"tags": {"$containedBy": ["b"]}}, ["bob", "Cid"]),
    ({"active": {"$exists": True}}, ["Cid"]),
    ({"active": {"$exists": False}}, ["Ann", "bob"]),
    ({"active": {"$ne": True}}, ["Ann", "bob"]),
    ({"name": {"$regex": "^c", "$options": "i"}}, ["Cid"]),
    ({"name": {"$regex": "\\Qo\\E"}}, ["bob"]),
    ({"meta.lvl": 2}, ["bob"]),
    ({"meta.lvl": {"$gte": 1}}, ["Ann", "bob"]),
    ({"when": {"$lt": {"__type": "Date", "iso": "2020-06-01T00:00:00.000Z"}}}, ["Ann"]),
    ({"$or": [{"score": 10}, {"score": 30}]}, ["Ann", "Cid"]),
    ({"$and": [{"score": {"$gt": 5}}, {"score": {"$lt": 25}}]}, ["Ann", "bob"]),
    ({"$nor": [{"score": 10}, {"tags": "b"}]}, ["Cid"]),
    ({"nosuchfield": 1}, []),
    ({"nosuchfield": {"$exists": False}}, ["Ann", "bob", "Cid"]),
])
def test_operators(client: Client, data: dict[str, str], where: dict, expected: list[str]) -> None:
    assert names(client, where) == expected


def test_pointer_values_and_arrays_of_pointers(client: Client, data: dict[str, str]) -> None:
    red = {"__type": "Pointer", "className": "Team", "objectId": data["red"]}
    blue = {"__type": "Pointer", "className": "Team", "objectId": data["blue"]}
    assert names(client, {"team": red}) == ["Ann"]
    assert names(client, {"teams": blue}) == ["Ann"]
    assert names(client, {"team": {"$in": [red, blue]}}) == ["Ann", "bob"]


def test_subqueries(client: Client, data: dict[str, str]) -> None:
    blue_q = {"className": "Team", "where": {"name": "blue"}}
    assert names(client, {"team": {"$inQuery": blue_q}}) == ["bob"]
    # as parse-server on PostgreSQL: objects without a value in the field are left out
    assert names(client, {"team": {"$notInQuery": blue_q}}) == ["Ann"]
    assert names(client, {"score": {"$nin": [10]}}) == ["bob", "Cid"]
    select = {"query": {"className": "Team", "where": {"name": "red"}}, "key": "name"}
    assert names(client, {"tags": {"$select": select}}) == []
    select = {"query": {"className": "Player", "where": {"score": 20}}, "key": "name"}
    assert names(client, {"name": {"$select": select}}) == ["bob"]
    assert names(client, {"name": {"$dontSelect": select}}) == ["Ann", "Cid"]


def test_order_skip_limit_count(client: Client, data: dict[str, str]) -> None:
    assert names(client, order="-score") == ["Cid", "bob", "Ann"]
    assert names(client, order="-score", skip=1, limit=1) == ["bob"]
    r = client.request("GET", "/classes/Player", params={"count": 1, "limit": 1, "order": "score"}).json()
    assert r["count"] == 3 and len(r["results"]) == 1


def test_keys_exclude_keys_and_include(client: Client, data: dict[str, str]) -> None:
    r = client.request("GET", "/classes/Player", params={"keys": "name", "order": "score"}).json()["results"]
    assert set(r[0]) == {"objectId", "createdAt", "updatedAt", "name"}
    r = client.request("GET", "/classes/Player", params={"excludeKeys": "tags,meta", "limit": 1,
                                                         "order": "score"}).json()["results"]
    assert "tags" not in r[0] and "meta" not in r[0] and "score" in r[0]
    r = client.request("GET", "/classes/Player", params={"include": "team,teams", "order": "score"}).json()
    ann = r["results"][0]
    assert ann["team"]["__type"] == "Object" and ann["team"]["className"] == "Team"
    assert ann["team"]["name"] == "red"
    assert [t["name"] for t in ann["teams"]] == ["red", "blue"]
    r = client.request("GET", "/classes/Player", params={"include": "*", "order": "score"}).json()
    assert r["results"][1]["team"]["name"] == "blue"
    r = client.request("GET", "/classes/Player", params={"keys": "team.name", "order": "score"}).json()
    assert r["results"][0]["team"]["name"] == "red" and "score" not in r["results"][0]


def test_include_drops_pointers_the_caller_cannot_read(client: Client) -> None:
    hidden = client.request("POST", "/classes/Secret", json={"x": 1, "ACL": {}}, master=True).json()["objectId"]
    ptr = {"__type": "Pointer", "className": "Secret", "objectId": hidden}
    client.request("POST", "/classes/Holder", json={"s": ptr, "many": [ptr]}, master=True)
    got = client.request("GET", "/classes/Holder", params={"include": "s,many"}).json()["results"][0]
    assert "s" not in got and got["many"] == []
    got = client.request("GET", "/classes/Holder", params={"include": "s"}, master=True).json()["results"][0]
    assert got["s"]["x"] == 1


def test_relations(client: Client, data: dict[str, str]) -> None:
    red = data["red"]
    players = [{"__type": "Pointer", "className": "Player", "objectId": data[n]} for n in ("ann", "bob")]
    r = client.request("PUT", f"/classes/Team/{red}", json={"members": {"__op": "AddRelation", "objects": players}},
                       master=True)
    assert r.status_code == 200, r.text
    team = client.request("GET", f"/classes/Team/{red}").json()
    assert team["members"] == {"__type": "Relation", "className": "Player"}
    related = {"$relatedTo": {"object": {"__type": "Pointer", "className": "Team", "objectId": red},
                              "key": "members"}}
    assert names(client, related) == ["Ann", "bob"]
    r = client.request("GET", "/classes/Team", params={"where": json.dumps({"members": players[1]})}).json()
    assert [t["name"] for t in r["results"]] == ["red"]
    client.request("PUT", f"/classes/Team/{red}", json={"members": {"__op": "Batch", "ops": [
        {"__op": "RemoveRelation", "objects": [players[0]]}]}}, master=True)
    assert names(client, related) == ["bob"]
    r = client.request("GET", "/classes/Team", params={
        "where": json.dumps(related | {"$relatedTo": {"object": related["$relatedTo"]["object"],
                                                      "key": "members"}}),
        "redirectClassNameForKey": "members"}).json()
    assert [(o["className"], o["name"]) for o in r["results"]] == [("Player", "bob")]


def test_array_ops(client: Client) -> None:
    oid = client.request("POST", "/classes/L", json={"a": [1, 2, 2, 3]}, master=True).json()["objectId"]
    r = client.request("PUT", f"/classes/L/{oid}", json={"a": {"__op": "Remove", "objects": [2]}}).json()
    assert r["a"] == [1, 3]
    r = client.request("PUT", f"/classes/L/{oid}", json={"a": {"__op": "AddUnique", "objects": [1, 4]}}).json()
    assert r["a"] == [1, 3, 4]
    client.request("PUT", f"/classes/L/{oid}", json={"a": {"__op": "Delete"}})
    assert "a" not in client.request("GET", f"/classes/L/{oid}").json()


def test_explain_needs_the_master_key(client: Client, data: dict[str, str]) -> None:
    r = client.request("GET", "/classes/Player", params={"explain": "true"})
    assert (r.status_code, r.json()) == (400, {"code": 102, "error": "Using the explain query parameter requires "
                                                                       "the master key"})
    r = client.request("GET", "/classes/Player", params={"explain": "true", "where": json.dumps({"score": 10})},
                       master=True)
    plan = r.json()["results"]
    assert r.status_code == 200 and plan and "objectId" not in plan[0]  # a query plan, not the objects
