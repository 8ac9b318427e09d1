"""The ``_Hooks`` class, stored as parse-server stores it.

One record per webhook: ``{functionName, url}`` or ``{className, triggerName, url}``. parse-server writes
them with an upsert keyed by the function name (or class and trigger). On MongoDB that makes documents
``{_id: ObjectId, functionName, url}`` (the same here, written to the collection directly); on PostgreSQL
a ``"_Hooks"`` table with parse-server's columns; on SQLite (parsectl's own layout) a ``_Hooks`` table
written through the adapter.
"""

from __future__ import annotations

from typing import Any

from parsectl.model import query
from parsectl.model.schema import ClassSchema
from parsectl.storage import storage_kind

CLASS_NAME = "_Hooks"
FIELDS = ("functionName", "className", "triggerName", "url")


def hooks_schema() -> ClassSchema:
    return ClassSchema.new(CLASS_NAME, {name: {"type": "String"} for name in FIELDS})


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in FIELDS if isinstance(record.get(k), str)}


class HookStore:
    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self.kind = storage_kind(storage)
        self.schema = hooks_schema()
        self._table_ready = False

    async def all(self) -> list[dict[str, Any]]:
        """Every stored hook, in storage order."""
        if self.kind == "mongo":
            cursor = self.storage._coll(CLASS_NAME).find({}, {"_id": 0})  # noqa: SLF001
            return [_clean(doc) async for doc in cursor]
        if self.kind == "postgres":
            from psycopg import errors as pg_errors

            try:
                async with self.storage.pool.connection() as conn:
                    rows = await (await conn.execute(
                        'SELECT "functionName", "className", "triggerName", "url" FROM "_Hooks"')).fetchall()
            except pg_errors.UndefinedTable:
                return []
            return [_clean(dict(zip(FIELDS, row, strict=True))) for row in rows]
        if not await self._sqlite_table_exists():
            return []
        return [_clean(row) for row in await self.storage.find(self.schema, query.MatchAll())]

    async def _sqlite_table_exists(self) -> bool:
        if self._table_ready:
            return True
        found = self.storage.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                        (CLASS_NAME,)).fetchone()
        self._table_ready = found is not None
        return self._table_ready

    async def _ensure_table(self) -> None:
        if self.kind == "postgres":
            async with self.storage.pool.connection() as conn:
                await conn.execute('CREATE TABLE IF NOT EXISTS "_Hooks" ("functionName" text, "className" text,'
                                   ' "triggerName" text, "url" text)')
            return
        if await self._sqlite_table_exists():
            return
        with self.storage._write() as db:  # noqa: SLF001 - the adapter's write transaction
            db.execute('CREATE TABLE IF NOT EXISTS "_Hooks" ("objectId" TEXT PRIMARY KEY, "createdAt" TEXT,'
                       ' "updatedAt" TEXT, "_rperm" TEXT, "_wperm" TEXT, "functionName" TEXT, "className" TEXT,'
                       ' "triggerName" TEXT, "url" TEXT)')
        self._table_ready = True

    @staticmethod
    def _key(hook: dict[str, Any]) -> dict[str, str]:
        if "functionName" in hook:
            return {"functionName": hook["functionName"]}
        return {"className": hook["className"], "triggerName": hook["triggerName"]}

    async def save(self, hook: dict[str, Any]) -> None:
        """Insert or replace the hook with the same key (an upsert, as parse-server writes it)."""
        key = self._key(hook)
        if self.kind == "mongo":
            await self.storage._coll(CLASS_NAME).update_one(key, {"$set": hook}, upsert=True)  # noqa: SLF001
            return
        await self._ensure_table()
        if self.kind == "postgres":
            where = " AND ".join(f'"{k}" = %s' for k in key)
            async with self.storage.pool.connection() as conn, conn.transaction():
                updated = await conn.execute(f'UPDATE "_Hooks" SET "url" = %s WHERE {where}',  # noqa: S608
                                             (hook["url"], *key.values()))
                if updated.rowcount == 0:
                    columns = ", ".join(f'"{k}"' for k in hook)
                    await conn.execute(f'INSERT INTO "_Hooks" ({columns}) VALUES (%s{", %s" * (len(hook) - 1)})',
                                       tuple(hook.values()))
            return
        where = self._where(key)
        if not await self.storage.update(self.schema, where, {"url": hook["url"]}):
            from parsectl.server.rest import new_object_id

            await self.storage.insert(self.schema, {"objectId": new_object_id(), **hook})

    @staticmethod
    def _where(key: dict[str, str]) -> query.Node:
        return query.And([query.Compare(k, "eq", v) for k, v in key.items()])

    async def delete(self, key: dict[str, str]) -> None:
        if self.kind == "mongo":
            await self.storage._coll(CLASS_NAME).delete_many(key)  # noqa: SLF001
            return
        if self.kind == "postgres":
            from psycopg import errors as pg_errors

            where = " AND ".join(f'"{k}" = %s' for k in key)
            try:
                async with self.storage.pool.connection() as conn:
                    await conn.execute(f'DELETE FROM "_Hooks" WHERE {where}', tuple(key.values()))  # noqa: S608
            except pg_errors.UndefinedTable:
                pass
            return
        if await self._sqlite_table_exists():
            await self.storage.delete(self.schema, self._where(key), many=True)
