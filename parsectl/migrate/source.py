"""What a migration source provides (an export, a live Parse Server, a database)."""

from __future__ import annotations

from collections.abc import AsyncIterator
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
        return {k: v for k, v in self.__dict__.items() if v is not None}


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
    """Objects in storage form, and the checkpoint to resume *after* this batch."""

    objects: list[StoredObject]
    checkpoint: str


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
