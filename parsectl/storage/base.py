"""The storage-adapter boundary, mirroring parse-server's StorageAdapter responsibilities.

Objects cross this boundary in *storage form*: the wire form of every field (see
:mod:`parsectl.model.codec`) with ``createdAt``/``updatedAt`` as ISO strings and the ACL split into
``_rperm``/``_wperm`` lists (absent for an object without an ACL). Queries cross it as trees of
:mod:`parsectl.model.query` nodes with subqueries already resolved; updates as a mapping of field
name to a wire value or a :class:`parsectl.model.ops.Op`. Each adapter compiles these to its own
database and applies updates atomically there.
"""

from __future__ import annotations

from typing import Any, Protocol

from parsectl.model.codec import FieldType
from parsectl.model.errors import ParseError
from parsectl.model.query import Node, SortKey
from parsectl.model.schema import ClassSchema

StoredObject = dict[str, Any]


class StorageAdapter(Protocol):
    async def open(self) -> None:
        """Connect and create the metadata tables/collections if needed."""

    async def close(self) -> None: ...

    # --- schema --------------------------------------------------------------------------------------
    async def schema_version(self) -> int | None:
        """A number that changes whenever any stored schema changes (None if the store cannot tell)."""

    async def load_schemas(self) -> dict[str, ClassSchema]:
        """Every stored class schema, by class name."""

    async def ensure_class(self, schema: ClassSchema) -> ClassSchema:
        """Create the class if it does not exist; return the stored schema either way."""

    async def add_fields(self, class_name: str, fields: dict[str, FieldType]) -> ClassSchema:
        """Add fields (raising 111 on a type conflict with a stored field); return the stored schema."""

    async def set_class_level_permissions(self, class_name: str, clp: dict[str, Any]) -> ClassSchema:
        """Store a class's CLPs; return the stored schema."""

    async def set_indexes(self, class_name: str, indexes: dict[str, Any], create: list[tuple[str, dict[str, Any]]],
                          drop: list[str]) -> ClassSchema:
        """Drop and create the named indexes (``create``: name and keys), store ``indexes`` as the class's
        index map (``/schemas`` ``indexes``); return the stored schema."""

    async def delete_fields(self, class_name: str, names: list[str]) -> ClassSchema:
        """Drop fields with their data (and relation tables); return the stored schema."""

    async def delete_class(self, schema: ClassSchema) -> None:
        """Drop the class, its data, its relation tables and its schema."""

    # --- objects ------------------------------------------------------------------------------------
    async def insert(self, schema: ClassSchema, obj: StoredObject,
                     relations: dict[str, list[str]] | None = None) -> None:
        """Insert one object (137 if its objectId or a unique field is taken) and its relation rows."""

    async def insert_batch(self, schema: ClassSchema, objects: list[StoredObject]) -> list[ParseError | None]:
        """Insert several new objects (a /batch of creates) as one statement where the database allows;
        one result per object: None when inserted, else the error that object alone would get."""

    async def find(self, schema: ClassSchema, where: Node, *, skip: int = 0, limit: int | None = None,
                   order: list[SortKey] | None = None) -> list[StoredObject]: ...

    async def count(self, schema: ClassSchema, where: Node) -> int: ...

    async def explain(self, schema: ClassSchema, where: Node, *, skip: int = 0, limit: int | None = None,
                      order: list[SortKey] | None = None) -> Any:
        """The database's query plan for a find (the ``explain`` query parameter, master key only)."""

    async def update(self, schema: ClassSchema, where: Node, changes: dict[str, Any], *,
                     many: bool = False) -> list[StoredObject]:
        """Apply ``changes`` atomically to the first (or every) matching object; return them updated."""

    async def delete(self, schema: ClassSchema, where: Node, *, many: bool = False) -> int:
        """Delete the first (or every) matching object with its relation rows; return how many."""

    # --- bulk paths (migration) ----------------------------------------------------------------------------
    async def insert_many(self, schema: ClassSchema, objects: list[StoredObject]) -> int:
        """Insert objects in one transaction, skipping any whose objectId (or unique field) exists;
        return how many were inserted. Idempotent, so an interrupted load can simply be repeated."""

    async def upsert_many(self, schema: ClassSchema, objects: list[StoredObject]) -> None:
        """Write objects whole: insert new ones, replace existing ones (fields they lack become unset);
        relation rows are left alone."""

    async def add_relation_rows(self, class_name: str, field: str, pairs: list[tuple[str, str]]) -> None:
        """Add (owningId, relatedId) rows to a relation, ignoring rows already there."""

    async def relation_rows(self, class_name: str, field: str, *, after: tuple[str, str] | None = None,
                            limit: int = 5000) -> list[tuple[str, str]]:
        """(owningId, relatedId) rows in that order, after a given row."""

    async def remove_relation_rows(self, class_name: str, field: str, pairs: list[tuple[str, str]]) -> None:
        """Remove (owningId, relatedId) rows from a relation."""

    async def analyze(self, tables: list[str] | None = None) -> None:
        """Refresh the database's statistics after a bulk load: of these tables (class names, join tables),
        or of all."""
