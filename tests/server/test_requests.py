"""Status codes and bodies of the REST API for good and bad input, checked in process."""

from __future__ import annotations

import json

import pytest

from tests.server.conftest import Client, make_client


def create(client: Client, cls: str, body: dict, master: bool = True) -> dict:
    r = client.request("POST", f"/classes/{cls}", json=body, master=master)
    assert r.status_code == 201, r.text
    return r.json()


def test_health_needs_no_keys(client: Client) -> None:
    r = client.request("GET", "/health", headers={"X-Parse-Application-Id": ""})
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


def test_missing_app_id_is_unauthorized_without_json_type(client: Client) -> None:
    r = client.request("GET", "/classes/X", headers={"X-Parse-Application-Id": "nope"})
    assert r.status_code == 403
    assert r.text == '{"error":"unauthorized"}'
    assert "content-type" not in r.headers


def test_create_returns_201_location_and_only_id_and_created_at(client: Client) -> None:
    r = client.request("POST", "/classes/GameScore", json={"score": 1}, master=True)
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"objectId", "createdAt"}
    assert len(body["objectId"]) == 10 and body["objectId"].isalnum()
    assert r.headers["location"] == f"http://testserver/parse/classes/GameScore/{body['objectId']}"


def test_client_class_creation_is_refused_by_default(client: Client) -> None:
    r = client.request("POST", "/classes/Fresh", json={"a": 1})
    assert (r.status_code, r.json()) == (400, {"code": 119, "error": "Permission denied"})
    r = client.request("GET", "/classes/Fresh")
    assert (r.status_code, r.json()["code"]) == (400, 119)
    r = client.request("GET", "/classes/Fresh", master=True)
    assert (r.status_code, r.json()) == (200, {"results": []})


def test_client_class_creation_when_allowed(database_uri: str) -> None:
    c = make_client(database_uri, allow_client_class_creation=True)
    try:
        assert c.request("POST", "/classes/Fresh", json={"a": 1}).status_code == 201
    finally:
        c.close()


def test_update_echoes_updated_at_and_op_results_only(client: Client) -> None:
    oid = create(client, "GameScore", {"score": 1, "tags": ["a"]})["objectId"]
    r = client.request("PUT", f"/classes/GameScore/{oid}", json={
        "score": {"__op": "Increment", "amount": 5}, "tags": {"__op": "Add", "objects": ["b"]}, "name": "x"})
    assert r.status_code == 200
    body = r.json()
    assert body["score"] == 6 and body["tags"] == ["a", "b"]
    assert set(body) == {"score", "tags", "updatedAt"}


def test_every_wire_type_round_trips(client: Client) -> None:
    target = create(client, "Target", {"n": 1})["objectId"]
    pointer = {"__type": "Pointer", "className": "Target", "objectId": target}
    values = {
        "s": "text", "n": 1.5, "b": True, "d": {"__type": "Date", "iso": "2020-01-02T03:04:05.678Z"},
        "o": {"nested": {"when": {"__type": "Date", "iso": "2021-01-01T00:00:00.000Z"}}},
        "a": [1, "x", pointer], "p": pointer, "g": {"__type": "GeoPoint", "latitude": 40.0, "longitude": -30.0},
        "poly": {"__type": "Polygon", "coordinates": [[0, 0], [0, 1], [1, 1]]},
        "bytes": {"__type": "Bytes", "base64": "aGVsbG8="},
        "f": {"__type": "File", "name": "abc_photo.jpg"},
        "ACL": {"*": {"read": True}},
    }
    oid = create(client, "AllTypes", values)["objectId"]
    got = client.request("GET", f"/classes/AllTypes/{oid}", master=True).json()
    for key in ("s", "n", "b", "d", "o", "a", "p", "g", "bytes", "ACL"):
        assert got[key] == values[key], key
    assert got["poly"]["coordinates"] == [[0, 0], [0, 1], [1, 1], [0, 0]]
    assert got["f"] == {"__type": "File", "name": "abc_photo.jpg",
                        "url": "http://testserver/parse/files/test/abc_photo.jpg"}
    assert isinstance(got["createdAt"], str) and got["createdAt"].endswith("Z")


@pytest.mark.parametrize(("body", "code", "message"), [
    ('{"score":"x"}', 111, "schema mismatch for GameScore.score; expected Number but got String"),
    ('{"bad-name":1}', 105, "Invalid field name: bad-name."),
    ('{"objectId":"abc"}', 105, "objectId is an invalid field name."),
    ('{"score":{"__op":"Nope"}}', 108, "The Nope operator is not supported yet."),
    ('{"score":{"__op":"Increment","amount":"1"}}', 107, "incrementing must provide a number"),
    ('{"o":{"a.b":1}}', 121, "Nested keys should not contain the '$' or '.' characters"),
    ('{"d":{"__type":"Date","iso":"yesterday"}}', 111, "This is not a valid Date"),
    ('{"ACL":{"*":{"read":"yes"}}}', 123, "Invalid ACL."),
    ('{"constructor":1}', 105, 'Prohibited keyword in request data: {"key":"constructor"}.'),
    ('[1]', 107, "This request body is not a JSON object."),
])
def test_bad_write_bodies(client: Client, body: str, code: int, message: str) -> None:
    create(client, "GameScore", {"score": 1})
    r = client.request("POST", "/classes/GameScore", content=body, master=True)
    assert (r.status_code, r.json()) == (400, {"code": code, "error": message})


def test_malformed_json_and_deep_nesting_are_400(client: Client) -> None:
    create(client, "GameScore", {"score": 1})
    r = client.request("POST", "/classes/GameScore", content=b"{bad", master=True)
    assert r.status_code == 400 and r.json()["code"] == 107
    deep = '{"a":' * 300 + "1" + "}" * 300
    r = client.request("POST", "/classes/GameScore", content=deep, master=True)
    assert r.status_code == 400 and r.json()["code"] == 107
    count = client.request("GET", "/classes/GameScore", params={"count": 1, "limit": 0}, master=True).json()
    assert count["count"] == 1


def test_body_over_max_upload_size_is_413(database_uri: str) -> None:
    c = make_client(database_uri, max_upload_size="1kb")
    try:
        r = c.request("POST", "/classes/X", content=json.dumps({"s": "x" * 2000}), master=True)
        assert (r.status_code, r.json()) == (413, {"error": "request entity too large"})
    finally:
        c.close()


@pytest.mark.parametrize(("params", "code", "message"), [
    ({"where": "{bad"}, 107, "where parameter is not valid JSON"),
    ({"foo": "1"}, 102, "Invalid parameter for query: foo"),
    ({"where": '{"score":{"$foo":1}}'}, 107, "bad constraint: $foo"),
    ({"where": '{"$or":{}}'}, 102, "Bad $or format - use an array value."),
    ({"where": '{"ACL":1}'}, 102, "Cannot query on ACL."),
    ({"where": '{"score":{"$in":5}}'}, 107, "bad $in value"),
    ({"where": '{"s":{"$regex":"a","$options":"q"}}'}, 102, "Bad $options value for query: q"),
    ({"where": '{"bad key":1}'}, 105, "Invalid key name: bad key"),
])
def test_bad_queries(client: Client, params: dict, code: int, message: str) -> None:
    create(client, "GameScore", {"score": 1})
    r = client.request("GET", "/classes/GameScore", params=params)
    assert (r.status_code, r.json()) == (400, {"code": code, "error": message})


def test_get_allows_only_its_parameters(client: Client) -> None:
    oid = create(client, "GameScore", {"score": 1})["objectId"]
    r = client.request("GET", f"/classes/GameScore/{oid}", params={"limit": 1})
    assert (r.status_code, r.json()) == (400, {"code": 102, "error": "Improper encode of parameter"})
    r = client.request("GET", "/classes/GameScore/nothere1")
    assert (r.status_code, r.json()) == (404, {"code": 101, "error": "Object not found."})


def test_js_sdk_envelope(client: Client) -> None:
    create(client, "GameScore", {"score": 7})
    body = {"_method": "GET", "_ApplicationId": "test", "_ClientVersion": "js8.6.2",
            "_InstallationId": "0e5e1c0e-0000-4000-8000-000000000000", "where": {"score": 7}}
    r = client.request("POST", "/classes/GameScore", content=json.dumps(body),
                       headers={"X-Parse-Application-Id": "", "Content-Type": "text/plain"})
    assert r.status_code == 200 and [o["score"] for o in r.json()["results"]] == [7]
    body["_ApplicationId"] = "wrong"
    r = client.request("POST", "/classes/GameScore", content=json.dumps(body),
                       headers={"X-Parse-Application-Id": ""})
    assert r.status_code == 403


def test_client_keys_are_enforced(database_uri: str) -> None:
    c = make_client(database_uri, rest_api_key="rk")
    try:
        assert c.request("GET", "/classes/X").status_code == 403
        assert c.request("GET", "/classes/X", headers={"X-Parse-REST-API-Key": "bad"}).status_code == 403
        r = c.request("GET", "/classes/X", headers={"X-Parse-REST-API-Key": "rk"})
        assert r.status_code == 400 and r.json()["code"] == 119
        assert c.request("GET", "/classes/X", master=True).status_code == 200
    finally:
        c.close()


def test_master_key_only_from_allowed_ips(database_uri: str) -> None:
    c = make_client(database_uri, master_key_ips=["10.9.9.9"])
    try:
        r = c.request("GET", "/classes/X", master=True)
        assert (r.status_code, r.text) == (403, '{"error":"unauthorized"}')
    finally:
        c.close()


def test_acl_hides_and_protects_objects(client: Client) -> None:
    private = create(client, "Doc", {"t": 1, "ACL": {}})["objectId"]
    readonly = create(client, "Doc", {"t": 2, "ACL": {"*": {"read": True}}})["objectId"]
    found = client.request("GET", "/classes/Doc").json()["results"]
    assert [o["objectId"] for o in found] == [readonly]
    assert client.request("GET", f"/classes/Doc/{private}").status_code == 404
    r = client.request("PUT", f"/classes/Doc/{readonly}", json={"t": 3})
    assert (r.status_code, r.json()["code"]) == (404, 101)
    assert client.request("DELETE", f"/classes/Doc/{readonly}").status_code == 404
    assert client.request("PUT", f"/classes/Doc/{readonly}", json={"t": 3}, master=True).status_code == 200


def test_batch_shares_auth_and_keeps_order(client: Client) -> None:
    oid = create(client, "GameScore", {"score": 1})["objectId"]
    r = client.request("POST", "/batch", master=True, json={"requests": [
        {"method": "POST", "path": "/parse/classes/GameScore", "body": {"score": 2}},
        {"method": "PUT", "path": f"/parse/classes/GameScore/{oid}", "body": {"score": {"__op": "Increment",
                                                                                        "amount": 2}}},
        {"method": "DELETE", "path": "/parse/classes/GameScore/missing1"},
        {"method": "GET", "path": f"/parse/classes/GameScore/{oid}"},
    ]})
    assert r.status_code == 200
    out = r.json()
    assert set(out[0]["success"]) == {"objectId", "createdAt"}
    assert out[1]["success"]["score"] == 3
    assert out[2] == {"error": {"code": 101, "error": "Object not found."}}
    assert out[3]["success"]["score"] == 3
    r = client.request("POST", "/batch", json={"requests": [{"method": "POST", "path": "/x/classes/A", "body": {}}]})
    assert (r.status_code, r.json()) == (400, {"code": 107, "error": "cannot route batch path /x/classes/A"})


def test_unknown_route_is_express_404_page(client: Client) -> None:
    r = client.request("GET", "/nothing/here")
    assert r.status_code == 404 and "Cannot GET /parse/nothing/here" in r.text


def test_server_info_needs_master(client: Client) -> None:
    r = client.request("GET", "/serverInfo")
    assert (r.status_code, r.json()) == (403, {"error": "Permission denied"})
    assert client.request("GET", "/serverInfo", master=True).json()["parseServerVersion"]
