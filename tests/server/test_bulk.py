"""The storage adapters' bulk paths used by ``parsectl migrate``: idempotent inserts and relation rows."""

from __future__ import annotations

import asyncio

from parsectl.model import query
from parsectl.model.schema import ClassSchema
from parsectl.storage import adapter_for


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.new_event_loop().run_until_complete(coro)


def test_insert_many_is_idempotent_and_keeps_ids_and_timestamps(database_uri: str) -> None:
    async def scenario() -> None:
        store = adapter_for(database_uri)
        await store.open()
        try:
            schema = await store.ensure_class(ClassSchema.new("Bulk"))
            schema = await store.add_fields("Bulk", {"n": {"type": "Number"}, "d": {"type": "Date"},
                                                     "p": {"type": "Pointer", "targetClass": "Bulk"},
                                                     "o": {"type": "Object"}, "r": {"type": "Relation",
                                                                                    "targetClass": "Bulk"}})
            objects = [{"objectId": f"id{i:08d}", "createdAt": "2015-01-02T03:04:05.006Z",
                        "updatedAt": "2016-01-02T03:04:05.006Z", "n": i, "_rperm": ["*"], "_wperm": [],
                        "d": {"__type": "Date", "iso": "2014-01-01T00:00:00.000Z"}, "o": {"k": [i]},
                        "p": {"__type": "Pointer", "className": "Bulk", "objectId": "id00000000"}}
                       for i in range(50)]
            assert await store.insert_many(schema, objects[:30]) == 30
            assert await store.insert_many(schema, objects) == 20  # the first 30 are skipped
            assert await store.count(schema, query.MatchAll()) == 50
            got = await store.find(schema, query.Compare("objectId", "eq", "id00000007"))
            assert got[0]["createdAt"] == "2015-01-02T03:04:05.006Z" and got[0]["n"] == 7
            assert got[0]["o"] == {"k": [7]} and got[0]["_rperm"] == ["*"] and got[0]["_wperm"] == []
            pairs = [(f"id{i:08d}", f"id{j:08d}") for i in range(3) for j in range(4)]
            await store.add_relation_rows("Bulk", "r", pairs[:5])
            await store.add_relation_rows("Bulk", "r", pairs)
            rows = await store.relation_rows("Bulk", "r", limit=7)
            rows += await store.relation_rows("Bulk", "r", after=rows[-1], limit=100)
            assert rows == sorted(pairs)
            related = await store.find(schema, query.RelatedTo(
                {"__type": "Pointer", "className": "Bulk", "objectId": "id00000001"}, "r"))
            assert sorted(o["objectId"] for o in related) == [f"id{j:08d}" for j in range(4)]
            await store.analyze()
        finally:
            await store.close()

    run(scenario())
