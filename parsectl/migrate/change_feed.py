"""``migrate --follow`` on a MongoDB replica set: the source's change stream instead of polling.

Polling by ``updatedAt`` finds changed objects but not deleted ones (those wait for the final
reconciliation) and costs a query per class per pass. A change stream (MongoDB 3.6+, replica sets only)
delivers every insert, update, replace and delete as it happens, with the current document. The feed is
opened *before* the catch-up pass, so nothing written between the copy and the stream is missed: an event
for an object the catch-up already copied just writes the same document again.

A standalone MongoDB has no change streams: :func:`open_feed` answers None and the engine polls.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from pymongo.errors import OperationFailure, PyMongoError

SCHEMA_COLLECTION = "_SCHEMA"
JOIN_PREFIX = "_Join:"


@dataclass
class Change:
    """One event, in Parse terms: ``kind`` is upsert, delete, schema, relation_add or relation_dirty."""

    kind: str
    class_name: str = ""
    object_id: str = ""
    document: dict[str, Any] | None = None
    field: str = ""
    pair: tuple[str, str] | None = None


class ChangeFeed:
    def __init__(self, stream: Any, prefix: str) -> None:
        self._stream = stream
        self._prefix = prefix

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._stream.close(), 5)

    async def next_batch(self, max_events: int = 1000) -> list[Change]:
        """The events available now (waiting at most the stream's await time for the first)."""
        out: list[Change] = []
        while len(out) < max_events:
            event = await self._stream.try_next()
            if event is None:
                break
            change = self._translate(event)
            if change is not None:
                out.append(change)
        return out

    def _translate(self, event: dict[str, Any]) -> Change | None:
        op = event.get("operationType")
        collection = (event.get("ns") or {}).get("coll") or ""
        if op in ("drop", "rename", "dropDatabase", "invalidate"):
            return Change("schema")
        if not collection.startswith(self._prefix):
            return None
        name = collection[len(self._prefix):]
        if name == SCHEMA_COLLECTION:
            return Change("schema")
        if name.startswith(JOIN_PREFIX):
            _, field, owner = (name.split(":", 2) + ["", ""])[:3]
            doc = event.get("fullDocument")
            if op == "insert" and doc and "owningId" in doc and "relatedId" in doc:
                return Change("relation_add", owner, field=field, pair=(doc["owningId"], doc["relatedId"]))
            return Change("relation_dirty", owner, field=field)  # a delete names only the row's _id
        key = (event.get("documentKey") or {}).get("_id")
        if not isinstance(key, str):
            return None
        if op == "delete":
            return Change("delete", name, key)
        if op in ("insert", "update", "replace"):
            doc = event.get("fullDocument")
            if doc is None:  # deleted again before the lookup: its delete event follows
                return None
            return Change("upsert", name, key, doc)
        return None


async def open_feed(adapter: Any, await_ms: int = 500) -> ChangeFeed | None:
    """A change stream over the adapter's whole database, or None where there is none (standalone)."""
    db = getattr(adapter, "db", None)
    if db is None:
        return None
    try:
        stream = await db.watch(full_document="updateLookup", max_await_time_ms=await_ms)
    except (OperationFailure, PyMongoError):
        return None
    return ChangeFeed(stream, getattr(adapter, "prefix", "") or "")
