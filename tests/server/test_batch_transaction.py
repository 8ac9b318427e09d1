"""POST /batch with "transaction": true: all or nothing, on SQLite, PostgreSQL and MongoDB (SecantusDB runs as
a replica set, so it supports transactions)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.server.conftest import Client, make_client


def batch(c: Client, requests: list[dict[str, Any]], transaction: Any = True) -> tuple[int, Any]:
    r = c.request("POST", "/batch", master=True, json={"requests": requests, "transaction": transaction})
    return r.status_code, r.json()


def create(cls: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"method": "POST", "path": f"/parse/classes/{cls}", "body": body}


def values(c: Client, cls: str) -> list[Any]:
    r = c.request("GET", f"/classes/{cls}", master=True, params={"order": "a"})
    return [row.get("a") for row in r.json().get("results", [])]


def test_all_or_nothing(client: Client) -> None:
    assert client.request("POST", "/classes/T", master=True, json={"a": 1}).status_code == 201
    obj = client.request("POST", "/classes/T", master=True, json={"a": 2}).json()["objectId"]
    # a failing sub-request rolls back the ones before it: creates, an update and a delete
    status, body = batch(client, [create("T", {"a": 3}),
                                  {"method": "PUT", "path": f"/parse/classes/T/{obj}", "body": {"a": 20}},
                                  {"method": "DELETE", "path": "/parse/classes/T/" + obj},
                                  create("T", {"a": "not a number"})])
    assert status == 400
    assert body == {"code": 111, "error": "schema mismatch for T.a; expected Number but got String"}
    assert values(client, "T") == [1, 2]
    status, body = batch(client, [create("T", {"a": 4}), {"method": "PUT", "path": "/parse/classes/T/nope",
                                                          "body": {"a": 5}}])
    assert (status, body) == (404, {"code": 101, "error": "Object not found."})
    assert values(client, "T") == [1, 2]
    # all succeed: all are written, the answer is the usual list
    status, body = batch(client, [create("T", {"a": 5}), create("T", {"a": 6}),
                                  {"method": "PUT", "path": f"/parse/classes/T/{obj}", "body": {"a": 7}}])
    assert status == 200 and len(body) == 3 and all("success" in item for item in body)
    assert body[2]["success"]["updatedAt"]
    assert values(client, "T") == [1, 5, 6, 7]
    # "transaction" must be exactly true (as parse-server): anything else is an ordinary batch
    status, body = batch(client, [create("T", {"a": 8}), create("T", {"a": "x"})], transaction="yes")
    assert status == 200 and "success" in body[0] and body[1]["error"]["code"] == 111
    assert values(client, "T") == [1, 5, 6, 7, 8]


def test_rolled_back_class_creation_leaves_a_consistent_schema(client: Client) -> None:
    assert client.request("POST", "/classes/T", master=True, json={"a": 1}).status_code == 201
    status, _ = batch(client, [create("Fresh", {"b": 1}), create("T", {"a": "bad"})])
    assert status == 400
    assert client.request("GET", "/classes/Fresh", master=True).json() == {"results": []}
    # the class can be used afterwards (the schema cache does not believe in a table that was rolled back)
    assert client.request("POST", "/classes/Fresh", master=True, json={"b": 2}).status_code == 201
    assert [r["b"] for r in client.request("GET", "/classes/Fresh", master=True).json()["results"]] == [2]


def test_other_requests_during_a_transaction(database_uri: str) -> None:
    """Requests that run while a transactional batch is open neither see nor join its writes."""
    c = make_client(database_uri)
    try:
        assert c.request("POST", "/classes/T", master=True, json={"a": 1}).status_code == 201

        async def scenario() -> tuple[Any, Any]:
            headers = {"X-Parse-Application-Id": "test", "X-Parse-Master-Key": "test"}
            tx = c.http.post("/parse/batch", headers=headers, json={"transaction": True, "requests": [
                create("T", {"a": i}) for i in range(10, 30)] + [create("T", {"a": "bad"})]})
            plain = [c.http.post("/parse/classes/T", headers=headers, json={"a": 100 + i}) for i in range(5)]
            reads = [c.http.get("/parse/classes/T", headers=headers) for _ in range(5)]
            return await asyncio.gather(tx, *plain, *reads)

        answers = c.loop.run_until_complete(scenario())
        assert answers[0].status_code == 400
        assert all(r.status_code == 201 for r in answers[1:6])
        for read in answers[6:]:
            assert all(not 10 <= row["a"] < 30 for row in read.json()["results"])
        assert sorted(values(c, "T")) == [1, 100, 101, 102, 103, 104]
    finally:
        c.close()
