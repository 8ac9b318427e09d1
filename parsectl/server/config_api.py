"""``GET /config`` and ``PUT /config``: the app's global config (Parse.Config).

Stored as parse-server stores it: one ``_GlobalConfig`` object with objectId ``"1"`` holding ``params``
(name -> value) and ``masterKeyOnly`` (name -> bool). ``_GlobalConfig`` is a volatile class: it has
no ``_SCHEMA`` entry. On PostgreSQL its table has parse-server's three columns (objectId, params,
masterKeyOnly jsonb; created on first write if node has not created it), read and written with SQL on
the adapter's connection pool. On SQLite (parsectl's own layout) the table is created on first write,
then read and written through the storage adapter with an unregistered schema. On
MongoDB parse-server keeps the document with an *integer* ``_id: 1``, which the adapter's objectId
mapping cannot express, so that collection is read and written directly (``$set``/``$unset`` of
``params.<name>`` as parse-server does), values encoded with the adapter's own helpers.

A PUT merges (read, merge, write, serialized within this process; a concurrent PUT from another
process may lose a key): each named param is set (or removed by ``{"__op": "Delete"}``; other ops apply to the
current value) and its ``masterKeyOnly`` flag set to what the body says, false by default.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any

from parsectl.model import errors, query
from parsectl.model.errors import ParseError
from parsectl.model.ops import Delete, Op, parse_value
from parsectl.model.schema import ClassSchema
from parsectl.server.http import Response
from parsectl.storage import storage_kind

if TYPE_CHECKING:
    from parsectl.server.rest import RestService
    from parsectl.server.routes import Request, Router

CLASS_NAME = "_GlobalConfig"
OBJECT_ID = "1"
_LOCKS: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()


def config_schema() -> ClassSchema:
    return ClassSchema.new(CLASS_NAME, {"params": {"type": "Object"}, "masterKeyOnly": {"type": "Object"}})


class ConfigStore:
    """Reads and writes the one ``_GlobalConfig`` object in parse-server's format."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self.kind = storage_kind(storage)
        self.schema = config_schema()

    async def read(self) -> dict[str, Any] | None:
        if self.kind == "mongo":
            from parsectl.storage.mongo import decode_interior

            doc = await self.storage._coll(CLASS_NAME).find_one({"_id": {"$in": [1, OBJECT_ID]}})  # noqa: SLF001
            if doc is None:
                return None
            return {k: decode_interior(doc[k]) for k in ("params", "masterKeyOnly") if doc.get(k) is not None}
        if self.kind == "postgres":
            from psycopg import errors as pg_errors

            try:
                async with self.storage.pool.connection() as conn:
                    row = await (await conn.execute(
                        'SELECT "params", "masterKeyOnly" FROM "_GlobalConfig" WHERE "objectId" = %s',
                        (OBJECT_ID,))).fetchone()
            except pg_errors.UndefinedTable:
                return None
            if row is None:
                return None
            return {k: v for k, v in (("params", row[0]), ("masterKeyOnly", row[1])) if v is not None}
        rows = await self.storage.find(self.schema, query.Compare("objectId", "eq", OBJECT_ID), limit=1)
        return rows[0] if rows else None

    async def _ensure_table(self) -> None:
        if self.kind == "postgres":
            async with self.storage.pool.connection() as conn:
                await conn.execute('CREATE TABLE IF NOT EXISTS "_GlobalConfig" ("objectId" text, "params" jsonb,'
                                   ' "masterKeyOnly" jsonb, PRIMARY KEY ("objectId"))')
        else:
            with self.storage._write() as db:  # noqa: SLF001 - the adapter's write transaction
                db.execute('CREATE TABLE IF NOT EXISTS "_GlobalConfig" ("objectId" TEXT PRIMARY KEY,'
                           ' "createdAt" TEXT, "updatedAt" TEXT, "_rperm" TEXT, "_wperm" TEXT, "params" TEXT,'
                           ' "masterKeyOnly" TEXT)')

    async def write(self, params: dict[str, Any], master_only: dict[str, Any]) -> None:
        """Merge ``params`` (values or ops) with their masterKeyOnly flags into the stored config."""
        if self.kind == "mongo":
            await self._write_mongo(params, master_only)
            return
        current = await self.read()
        stored_params = dict((current or {}).get("params") or {})
        stored_flags = dict((current or {}).get("masterKeyOnly") or {})
        for name, value in params.items():
            if isinstance(value, Op):
                new = value.apply(stored_params.get(name))
                if new is None:
                    stored_params.pop(name, None)
                else:
                    stored_params[name] = new
            else:
                stored_params[name] = value
            stored_flags[name] = bool(master_only.get(name) or False)
        if self.kind == "postgres":
            from psycopg.types.json import Jsonb

            await self._ensure_table()
            async with self.storage.pool.connection() as conn:
                await conn.execute(
                    'INSERT INTO "_GlobalConfig" ("objectId", "params", "masterKeyOnly") VALUES (%s, %s, %s)'
                    ' ON CONFLICT ("objectId") DO UPDATE SET "params" = %s, "masterKeyOnly" = %s',
                    (OBJECT_ID, Jsonb(stored_params), Jsonb(stored_flags), Jsonb(stored_params), Jsonb(stored_flags)))
            return
        if current is None:
            await self._ensure_table()
            await self.storage.insert(self.schema, {"objectId": OBJECT_ID, "params": stored_params,
                                                    "masterKeyOnly": stored_flags})
        else:
            await self.storage.update(self.schema, query.Compare("objectId", "eq", OBJECT_ID),
                                      {"params": stored_params, "masterKeyOnly": stored_flags})

    async def _write_mongo(self, params: dict[str, Any], master_only: dict[str, Any]) -> None:
        from parsectl.storage.mongo_query import interior

        coll = self.storage._coll(CLASS_NAME)  # noqa: SLF001
        existing = await coll.find_one({"_id": {"$in": [1, OBJECT_ID]}}, {"_id": 1, "params": 1})
        key = existing["_id"] if existing else 1
        current = (existing or {}).get("params") or {}
        sets: dict[str, Any] = {}
        unsets: dict[str, Any] = {}
        for name, value in params.items():
            if isinstance(value, Delete):
                unsets[f"params.{name}"] = ""
            elif isinstance(value, Op):
                from parsectl.storage.mongo import decode_interior

                new = value.apply(decode_interior(current.get(name)) if name in current else None)
                sets[f"params.{name}"] = interior(new)
            else:
                sets[f"params.{name}"] = interior(value)
            sets[f"masterKeyOnly.{name}"] = bool(master_only.get(name) or False)
        update: dict[str, Any] = {}
        if sets:
            update["$set"] = sets
        if unsets:
            update["$unset"] = unsets
        if update:
            await coll.update_one({"_id": key}, update, upsert=True)


class ConfigAPI:
    def __init__(self, rest: RestService) -> None:
        self.rest = rest

    def _store(self) -> ConfigStore:
        return ConfigStore(self.rest.storage)

    async def get(self, request: Request, args: dict[str, str]) -> Response:
        stored = await self._store().read()
        if stored is None:
            return Response.json({"params": {}})
        params = dict(stored.get("params") or {})
        flags = stored.get("masterKeyOnly")
        if not request.auth.master and flags is not None:
            flags = dict(flags)
            for name in list(params):
                if flags.get(name):
                    del params[name]
                    del flags[name]
        body: dict[str, Any] = {"params": params}
        if flags is not None:
            body["masterKeyOnly"] = flags
        return Response.json(body)

    async def put(self, request: Request, args: dict[str, str]) -> Response:
        from parsectl.server.routes import require_master

        require_master(request)
        if request.auth.read_only:
            raise ParseError(errors.OPERATION_FORBIDDEN, "read-only masterKey isn't allowed to update the config.")
        body = request.body if isinstance(request.body, dict) else {}
        raw_params = body.get("params")
        if not isinstance(raw_params, dict):
            raise ParseError(errors.INVALID_JSON, "params must be an object")
        master_only = body.get("masterKeyOnly") or {}
        if not isinstance(master_only, dict):
            raise ParseError(errors.INVALID_JSON, "masterKeyOnly must be an object")
        params: dict[str, Any] = {}
        for name, value in raw_params.items():
            if not isinstance(name, str) or not name or "." in name or name.startswith("$"):
                raise ParseError(errors.INVALID_KEY_NAME, f"Invalid config param name: {name}")
            params[name] = parse_value(value)
        store = self._store()
        lock = _LOCKS.setdefault(self.rest.storage, asyncio.Lock())
        async with lock:
            await store.write(params, master_only)
        return Response.json({"result": True})



def register_routes(router: Router) -> None:
    """Add ``GET``/``PUT /config``, ``DELETE /purge/:className`` and ``GET /aggregate/:className`` to a router
    (one call from :class:`~parsectl.server.routes.Router`'s constructor)."""
    from parsectl.server.aggregate import AggregateAPI
    from parsectl.server.purge_api import PurgeAPI

    config = ConfigAPI(router.rest)
    router.add("GET", r"/config", config.get)
    router.add("PUT", r"/config", config.put)
    router.add("DELETE", r"/purge/(?P<className>[^/]+)", PurgeAPI(router.rest).purge)
    router.add("GET", r"/aggregate/(?P<className>[^/]+)", AggregateAPI(router.rest).handle)
