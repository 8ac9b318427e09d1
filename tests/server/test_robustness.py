"""Inputs on which node parse-server 9.10 on PostgreSQL answers 500: parsectl answers a 4xx or succeeds."""

from __future__ import annotations

import json

from tests.server.conftest import Client


def test_known_reference_500s_are_handled(client: Client) -> None:
    oid = client.request("POST", "/classes/R", json={"tags": ["a", "b"], "n": 1}, master=True).json()["objectId"]
    r = client.request("GET", "/classes/R", params={"where": json.dumps({"tags": "a"})})
    assert r.status_code == 200 and [o["objectId"] for o in r.json()["results"]] == [oid]
    r = client.request("PUT", f"/classes/R/{oid}", json={"brandNew": None}, master=True)
    assert r.status_code == 200, r.text
    r = client.request("PUT", f"/classes/R/{oid}", json={"n": {"__op": "Increment", "amount": "x"}})
    assert (r.status_code, r.json()["code"]) == (400, 107)
    r = client.request("POST", "/classes/R", json={"s": "nul\u0000here"}, master=True)
    assert r.status_code in (201, 400) and (r.status_code == 201 or r.json()["code"] == 107)
    r = client.request("GET", "/classes/R", params={"where": json.dumps({"s": "nul\u0000here"})})
    assert r.status_code in (200, 400)
    r = client.request("GET", "/classes/R", params={"where": json.dumps({"n": {"$nearSphere": {}}})})
    assert (r.status_code, r.json()["code"]) == (400, 107)
