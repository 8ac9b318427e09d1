"""The schema controller: an in-process cache of class schemas in front of the storage adapter.

Schemas are read once at start-up and kept in memory, so no request reloads them. Another worker
process (or node parse-server on the same database) may change a schema: stores that keep a cheap
schema version (SQLite's ``user_version``) are asked for it and the cache reloads when it moved;
otherwise a cache miss, or a type the cache does not expect, reloads before anything is refused.
"""

from __future__ import annotations

import asyncio

from parsectl.model import codec, errors
from parsectl.model.codec import FieldType
from parsectl.model.errors import ParseError
from parsectl.model.schema import ClassSchema, check_class_name
from parsectl.storage.base import StorageAdapter


class SchemaController:
    def __init__(self, storage: StorageAdapter) -> None:
        self.storage = storage
        self._cache: dict[str, ClassSchema] = {}
        self._version: int | None = None
        self._loading = asyncio.Lock()

    async def load(self) -> None:
        # One load at a time: two overlapping loads could finish out of order and leave the older
        # snapshot in the cache under the newer version, so a field added meanwhile would stay unseen.
        async with self._loading:
            version = await self.storage.schema_version()
            self._cache = await self.storage.load_schemas()
            self._version = version

    async def get(self, class_name: str) -> ClassSchema | None:
        """The class's schema, or None if the class does not exist."""
        version = await self.storage.schema_version()
        if version is not None and version != self._version:
            await self.load()
        schema = self._cache.get(class_name)
        if schema is None:
            await self.load()
            schema = self._cache.get(class_name)
        return schema

    def cached(self, class_name: str) -> ClassSchema | None:
        return self._cache.get(class_name)

    def all(self) -> list[ClassSchema]:
        return list(self._cache.values())

    async def create(self, class_name: str) -> ClassSchema:
        check_class_name(class_name)
        schema = await self.storage.ensure_class(ClassSchema.new(class_name))
        self._cache[class_name] = schema
        return schema

    async def ensure_fields(self, schema: ClassSchema, fields: dict[str, FieldType | None]) -> ClassSchema:
        """Check value types against the schema (111 on mismatch) and add the new fields."""
        new: dict[str, FieldType] = {}
        for name, ftype in fields.items():
            try:
                if schema.check_value_type(name, ftype):
                    new[name] = ftype  # type: ignore[assignment]
            except ParseError:
                # Maybe another process changed the schema: check against the stored one once.
                await self.load()
                schema = self._cache.get(schema.class_name, schema)
                if schema.check_value_type(name, ftype):
                    new[name] = ftype  # type: ignore[assignment]
        geo = [n for n, t in {**schema.fields, **new}.items() if t and t["type"] == "GeoPoint"]
        if len(geo) > 1:
            raise ParseError(
                errors.INCORRECT_TYPE,
                "currently, only one GeoPoint field may exist in an object. "
                f"Adding {geo[1]} when {geo[0]} already exists.",
            )
        if not new:
            return schema
        for ftype in new.values():
            if ftype["type"] in ("Pointer", "Relation"):
                check_class_name(ftype["targetClass"])
        schema = await self.storage.add_fields(schema.class_name, new)
        # Another request may have added other fields meanwhile and cached a newer schema while this
        # one waited: keep what the cache knows, so a late answer never drops a field from it.
        cached = self._cache.get(schema.class_name)
        if cached is not None and cached is not schema:
            for name, ftype in cached.fields.items():
                schema.fields.setdefault(name, ftype)
        self._cache[schema.class_name] = schema
        return schema

    @staticmethod
    def describe(ftype: FieldType | None) -> str:
        return codec.type_to_string(ftype)
