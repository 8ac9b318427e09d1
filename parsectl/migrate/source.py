"""What a migration source provides (an export, a live Parse Server, a database)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from parsectl.model.schema import ClassSchema
from parsectl.storage.base import StoredObject


@dataclass
class Problem:
    """Something found in the source that needs a decision: ``policy`` is fail, skip or fix."""

    kind: str  # e.g. duplicate-username, invalid-field-name, type-conflict, dangling-pointer, too-large
    class_name: str
    message: str
    object_id: str | None = None
    field: str | None = None
    fix: str | None = None  # under --on-problem fix: the repair made (None: not fixable, skipped or refused)

    def to_json(self) -> dict[str, Any]:
        """camelCase, as the rest of the report: kind, className, message, objectId, field, fix."""
        keys = {"kind": self.kind, "className": self.class_name, "message": self.message,
                "objectId": self.object_id, "field": self.field, "fix": self.fix}
        return {k: v for k, v in keys.items() if v is not None}


@dataclass
class SourceSchema:
    """The classes a source holds, with how each schema was obtained."""

    classes: dict[str, ClassSchema]
    counts: dict[str, int | None] = field(default_factory=dict)
    # class -> field -> how its type was decided ("stated", "inferred from 12 values", "relation file", ...)
    notes: dict[str, dict[str, str]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


@dataclass
class Batch:
    """Objects in storage form, and the checkpoint to resume *after* this batch.

    A source that was handed a writer's row layout (``ExportSource.objects(rows=...)``) may instead give
    the batch as ``rows`` ready for the writer, made in its worker process: then ``objects`` is empty and
    ``ids`` (the objectIds, in row order), ``files`` (File name -> url, when asked) and ``legacy_tokens``
    (users with a hosted-Parse session token) tell the migration what it would have read off the objects.
    A worker asked to spool its rows writes them to a file instead (``spool``, ``spooled``; no ``ids``).
    """

    objects: list[StoredObject]
    checkpoint: str
    rows: list[list[Any]] | None = None
    ids: list[str] = field(default_factory=list)
    files: dict[str, str | None] = field(default_factory=dict)
    legacy_tokens: int = 0
    # rows written to a spool file (a SQLite database of one table ``r``, in the writer's column order)
    # instead of ``rows``: its path (None: no row) and how many rows it holds
    spool: str | None = None
    spooled: int = 0


@contextlib.contextmanager
def relation_rows(path: str, select: str, params: tuple[Any, ...]) -> Iterator[sqlite3.Cursor]:
    """The rows of a source's ``relation_rows_sql`` query (``path`` attached read-only as ``src`` to a
    connection of its own, usable from a thread; closed after)."""
    db = sqlite3.connect("file::memory:", uri=True, check_same_thread=False)
    try:
        db.execute("ATTACH DATABASE ? AS src", (f"file:{path}?mode=ro",))
        yield db.execute(select, params)
    finally:
        db.close()


def file_names(value: Any, out: dict[str, str | None]) -> None:
    """Collect the File values (name -> url) anywhere in a value: top level, nested, in arrays."""
    if isinstance(value, dict):
        if value.get("__type") == "File" and isinstance(value.get("name"), str):
            out.setdefault(value["name"], value.get("url"))
            return
        for item in value.values():
            file_names(item, out)
    elif isinstance(value, list):
        for item in value:
            file_names(item, out)


class Source(Protocol):
    description: str
    # False for REST sources: parse-server never returns password hashes over REST
    has_password_hashes: bool

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def schema(self) -> SourceSchema:
        """Every class with its (stated or inferred) schema, counts if cheap, and problems found."""

    def objects(self, class_name: str, *, after: str | None = None, batch_size: int = 1000
                ) -> AsyncIterator[Batch]:
        """The class's objects in storage form, in a stable order, resuming after a checkpoint."""

    def relations(self, class_name: str, field_name: str, *, batch_size: int = 5000
                  ) -> AsyncIterator[list[tuple[str, str]]]:
        """The (owningId, relatedId) rows of a relation field."""

    async def file_bytes(self, name: str, url: str | None) -> bytes | None:
        """The bytes of a file the data references, or None if they cannot be fetched."""
