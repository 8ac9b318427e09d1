"""``indexes`` in POST/PUT /schemas/:className on SQLite, PostgreSQL and MongoDB, as parse-server 9.10
(``setIndexesWithSchemaFormat`` of its PostgreSQL and MongoDB adapters; SQLite follows PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.server.conftest import Client


def kind(client: Client) -> str:
    return type(client.api.rest.storage).__module__.rsplit(".", 1)[-1]


def physical_indexes(client: Client, class_name: str) -> set[str]:
    """The names of the indexes the database really has on the class's table or collection."""
    storage = client.api.rest.storage
    if kind(client) == "sqlite":
        rows = storage.db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?",
                                  (class_name,)).fetchall()
        return {row[0] for row in rows}
    if kind(client) == "postgres":
        async def pg() -> set[str]:
            async with storage.pool.connection() as conn:
                cur = await conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", (class_name,))
                return {row[0] for row in await cur.fetchall()}
        return client.loop.run_until_complete(pg())

    async def mongo() -> set[str]:
        return set(await storage._coll(class_name).index_information())
    return client.loop.run_until_complete(mongo())


def schema(client: Client, class_name: str) -> dict[str, Any]:
    return client.request("GET", f"/schemas/{class_name}", master=True).json()


def put_indexes(client: Client, class_name: str, indexes: Any, **body: Any) -> Any:
    return client.request("PUT", f"/schemas/{class_name}", master=True, json={"indexes": indexes, **body})


def error(r: Any) -> tuple[int, dict[str, Any]]:
    return r.status_code, r.json()


def invalid_query(message: str) -> tuple[int, dict[str, Any]]:
    return 400, {"code": 102, "error": message}


def test_create_class_with_indexes(client: Client) -> None:
    r = client.request("POST", "/schemas/Idx", master=True, json={
        "fields": {"name": {"type": "String"}, "n": {"type": "Number"}}, "indexes": {"name_1": {"name": 1}}})
    assert r.status_code == 200, r.text
    assert r.json()["indexes"] == {"name_1": {"name": 1}}  # the submitted ones, on every store
    stored = schema(client, "Idx")["indexes"]
    if kind(client) == "mongo":
        assert stored == {"name_1": {"name": 1}}
    else:
        assert stored == {"_id_": {"_id": 1}, "name_1": {"name": 1}}
    assert "name_1" in physical_indexes(client, "Idx")


def test_create_class_with_a_bad_index_creates_nothing(client: Client) -> None:
    r = client.request("POST", "/schemas/Bad", master=True, json={
        "fields": {"name": {"type": "String"}}, "indexes": {"i": {"nope": 1}}})
    assert error(r) == invalid_query("Field nope does not exist, cannot add index.")
    assert client.request("GET", "/schemas/Bad", master=True).json() == {
        "code": 103, "error": "Class Bad does not exist."}


def test_class_without_indexes_shows_none(client: Client) -> None:
    client.request("POST", "/schemas/Plain", master=True, json={"fields": {"a": {"type": "String"}},
                                                                "indexes": {}})
    assert "indexes" not in schema(client, "Plain")
    # an empty change still stores the default map, as node does
    r = put_indexes(client, "Plain", {})
    assert r.status_code == 200 and r.json()["indexes"] == {"_id_": {"_id": 1}}
    assert schema(client, "Plain")["indexes"] == {"_id_": {"_id": 1}}


def test_add_and_delete_indexes(client: Client) -> None:
    client.request("POST", "/schemas/Game", master=True, json={
        "fields": {"score": {"type": "Number"}, "name": {"type": "String"}}})
    r = put_indexes(client, "Game", {"score_1": {"score": -1}, "both": {"name": 1, "score": 1}})
    assert r.status_code == 200, r.text
    expected = {"_id_": {"_id": 1}, "score_1": {"score": -1}, "both": {"name": 1, "score": 1}}
    assert r.json()["indexes"] == expected
    assert schema(client, "Game")["indexes"] == expected
    assert {"score_1", "both"} <= physical_indexes(client, "Game")

    assert error(put_indexes(client, "Game", {"score_1": {"name": 1}})) == invalid_query(
        "Index score_1 exists, cannot update.")
    assert error(put_indexes(client, "Game", {"gone": {"__op": "Delete"}})) == invalid_query(
        "Index gone does not exist, cannot delete.")
    assert error(put_indexes(client, "Game", {"x": {"missing": 1}})) == invalid_query(
        "Field missing does not exist, cannot add index.")
    assert error(put_indexes(client, "Game", {"_id_": {"__op": "Delete"}})) == invalid_query(
        "Index _id_ cannot be deleted.")
    for bad in ({"x": {}}, {"x": 1}):
        assert error(put_indexes(client, "Game", bad)) == invalid_query("Index x must be an object of field names.")
    assert error(put_indexes(client, "Game", ["score"])) == invalid_query("indexes must be an object of index names.")

    r = put_indexes(client, "Game", {"score_1": {"__op": "Delete"}})
    assert r.status_code == 200
    assert r.json()["indexes"] == {"_id_": {"_id": 1}, "both": {"name": 1, "score": 1}}
    assert "score_1" not in physical_indexes(client, "Game")
    # queries still work with the indexes in place
    client.request("POST", "/classes/Game", master=True, json={"score": 3, "name": "a"})
    found = client.request("GET", "/classes/Game", params={"where": '{"name": "a", "score": 3}'}).json()
    assert len(found["results"]) == 1


def test_index_on_a_field_added_in_the_same_request(client: Client) -> None:
    client.request("POST", "/schemas/Mixed", master=True, json={"fields": {"a": {"type": "String"}}})
    r = put_indexes(client, "Mixed", {"b_1": {"b": 1}}, fields={"b": {"type": "String"}, "a": {"__op": "Delete"}})
    assert r.status_code == 200, r.text
    assert r.json()["indexes"]["b_1"] == {"b": 1} and "a" not in r.json()["fields"]
    # an index on a field the same request deletes is refused, and nothing of that request is applied
    r = put_indexes(client, "Mixed", {"b_2": {"b": 1}}, fields={"c": {"type": "String"}, "b": {"__op": "Delete"}})
    assert error(r) == invalid_query("Field b does not exist, cannot add index.")
    fields = schema(client, "Mixed")["fields"]
    assert "b" in fields and "c" not in fields


def test_pointer_keys(client: Client) -> None:
    client.request("POST", "/schemas/Post", master=True, json={
        "fields": {"owner": {"type": "Pointer", "targetClass": "_User"},
                   "likers": {"type": "Relation", "targetClass": "_User"}}})
    if kind(client) == "mongo":  # a pointer is stored under _p_<field>, which is what an index must name
        assert put_indexes(client, "Post", {"owner_1": {"_p_owner": 1}}).status_code == 200
        assert "owner_1" in physical_indexes(client, "Post")
    else:  # the column is the field's own name
        assert error(put_indexes(client, "Post", {"owner_1": {"_p_owner": 1}})) == invalid_query(
            "Field _p_owner does not exist, cannot add index.")
        assert put_indexes(client, "Post", {"owner_1": {"owner": 1}}).status_code == 200
        assert "owner_1" in physical_indexes(client, "Post")
        assert error(put_indexes(client, "Post", {"l": {"likers": 1}})) == invalid_query(
            "Field likers has no column to index.")


def test_deleting_an_indexed_field(client: Client) -> None:
    client.request("POST", "/schemas/Drop", master=True, json={
        "fields": {"a": {"type": "String"}, "b": {"type": "String"}}, "indexes": {"a_1": {"a": 1}}})
    client.request("POST", "/classes/Drop", master=True, json={"a": "x", "b": "y"})
    r = client.request("PUT", "/schemas/Drop", master=True, json={"fields": {"a": {"__op": "Delete"}}})
    assert r.status_code == 200, r.text
    assert "a" not in r.json()["fields"]
    listed = "a_1" in schema(client, "Drop")["indexes"]
    if kind(client) == "sqlite":  # SQLite cannot drop an indexed column: the index goes with it
        assert not listed and "a_1" not in physical_indexes(client, "Drop")
    elif kind(client) == "postgres":  # the column takes its index along; node leaves the entry in _SCHEMA
        assert listed and "a_1" not in physical_indexes(client, "Drop")
    else:  # node only unsets the values: the index stays, on MongoDB and in _SCHEMA
        assert listed and "a_1" in physical_indexes(client, "Drop")
    assert client.request("GET", "/classes/Drop", master=True).json()["results"][0]["b"] == "y"


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_indexes_need_the_master_key(client: Client, method: str) -> None:
    r = client.request(method, "/schemas/Locked", json={"indexes": {"i": {"a": 1}}})
    assert r.status_code == 403
