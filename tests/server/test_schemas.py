"""/schemas: master-key only; create, read, add and delete fields, CLPs, drop."""

from __future__ import annotations

from tests.server.conftest import Client


def test_schemas_need_the_master_key(client: Client) -> None:
    r = client.request("GET", "/schemas")
    assert (r.status_code, r.json()) == (403, {"error": "Permission denied"})


def test_inferred_schema_shape(client: Client) -> None:
    client.request("POST", "/classes/GameScore", json={"score": 1, "name": "a", "when": {
        "__type": "Date", "iso": "2020-01-01T00:00:00.000Z"}}, master=True)
    r = client.request("GET", "/schemas/GameScore", master=True)
    assert r.status_code == 200
    body = r.json()
    assert body["className"] == "GameScore"
    assert list(body["fields"])[:4] == ["objectId", "createdAt", "updatedAt", "ACL"]
    assert body["fields"]["score"] == {"type": "Number"} and body["fields"]["when"] == {"type": "Date"}
    assert body["classLevelPermissions"]["find"] == {"*": True}
    assert body["classLevelPermissions"]["ACL"] == {"*": {"read": True, "write": True}}
    names = [s["className"] for s in client.request("GET", "/schemas", master=True).json()["results"]]
    assert "GameScore" in names


def test_create_update_and_drop(client: Client) -> None:
    r = client.request("POST", "/schemas/Thing", master=True, json={
        "className": "Thing", "fields": {"name": {"type": "String"},
                                         "owner": {"type": "Pointer", "targetClass": "_User"},
                                         "fans": {"type": "Relation", "targetClass": "_User"}}})
    assert r.status_code == 200, r.text
    assert r.json()["fields"]["owner"] == {"type": "Pointer", "targetClass": "_User"}
    r = client.request("POST", "/schemas/Thing", master=True, json={})
    assert (r.status_code, r.json()) == (400, {"code": 103, "error": "Class Thing already exists."})
    r = client.request("PUT", "/schemas/Thing", master=True, json={"fields": {
        "age": {"type": "Number"}, "name": {"__op": "Delete"}},
        "classLevelPermissions": {"find": {"*": True}, "get": {"*": True}, "create": {}, "update": {},
                                  "delete": {}, "count": {}, "addField": {}, "protectedFields": {}}})
    assert r.status_code == 200, r.text
    assert "name" not in r.json()["fields"] and r.json()["fields"]["age"] == {"type": "Number"}
    r = client.request("POST", "/classes/Thing", json={"age": 3})
    assert (r.status_code, r.json()["code"]) == (400, 119)
    oid = client.request("POST", "/classes/Thing", json={"age": 3}, master=True).json()["objectId"]
    r = client.request("DELETE", "/schemas/Thing", master=True)
    assert (r.status_code, r.json()["code"]) == (400, 255)
    client.request("DELETE", f"/classes/Thing/{oid}", master=True)
    assert client.request("DELETE", "/schemas/Thing", master=True).json() == {}
    r = client.request("GET", "/schemas/Thing", master=True)
    assert (r.status_code, r.json()) == (400, {"code": 103, "error": "Class Thing does not exist."})


def test_schema_errors(client: Client) -> None:
    cases = [
        ("POST", "/schemas/1Bad", {}, 103),
        ("POST", "/schemas/A", {"className": "B"}, 103),
        ("POST", "/schemas/A", {"fields": {"x": {"type": "Nope"}}}, 111),
        ("POST", "/schemas/A", {"fields": {"x": {"type": "Pointer"}}}, 135),
        ("POST", "/schemas/A", {"fields": {"bad-name": {"type": "String"}}}, 105),
        ("POST", "/schemas/A", {"fields": {"objectId": {"type": "String"}}}, 136),
        ("POST", "/schemas/A", {"classLevelPermissions": {"frob": {}}}, 107),
        ("PUT", "/schemas/Nope", {"fields": {}}, 103),
    ]
    for method, path, body, code in cases:
        r = client.request(method, path, json=body, master=True)
        assert (r.status_code, r.json()["code"]) == (400, code), (path, body, r.text)
    client.request("POST", "/schemas/A", json={"fields": {"x": {"type": "String"}}}, master=True)
    r = client.request("PUT", "/schemas/A", json={"fields": {"x": {"type": "Number"}}}, master=True)
    assert (r.status_code, r.json()) == (400, {"code": 255, "error": "Field x exists, cannot update."})
    r = client.request("PUT", "/schemas/A", json={"fields": {"y": {"__op": "Delete"}}}, master=True)
    assert (r.status_code, r.json()) == (400, {"code": 255, "error": "Field y does not exist, cannot delete."})
