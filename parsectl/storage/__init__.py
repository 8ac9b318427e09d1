"""Storage adapters: one boundary (:mod:`parsectl.storage.base`), one module per database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from parsectl.storage.base import StorageAdapter


def adapter_for(database_uri: str, *, collection_prefix: str = "",
                database_options: dict[str, Any] | None = None) -> StorageAdapter:
    """The storage adapter for a ``databaseURI`` (``collectionPrefix`` and ``databaseOptions`` as parse-server's)."""
    if database_uri.startswith("sqlite:"):
        from parsectl.storage.sqlite import SQLiteAdapter

        path = database_uri.removeprefix("sqlite://").removeprefix("sqlite:")
        return SQLiteAdapter(Path(path))
    if database_uri.startswith(("postgres://", "postgresql://")):
        from parsectl.storage.postgres import PostgresAdapter

        return PostgresAdapter(database_uri, **(database_options or {}))
    if database_uri.startswith(("mongodb://", "mongodb+srv://")):
        from parsectl.storage.mongo import MongoAdapter

        return MongoAdapter(database_uri, collection_prefix=collection_prefix, options=database_options or {})
    scheme = database_uri.split(":", 1)[0]
    raise ValueError(
        f"databaseURI scheme {scheme!r} is not supported by this version of parsectl; "
        "use sqlite:///path/to/file.db, postgres://user:password@host:5432/db or mongodb://host:27017/db"
    )


def storage_kind(storage: Any) -> str:
    """"mongo", "postgres" or "sqlite": which adapter ``storage`` is, for code that speaks to the database in
    its own terms (the volatile classes kept outside the adapter boundary, such as _GlobalConfig and _Hooks)."""
    module = type(storage).__module__
    if module.endswith(".mongo"):
        return "mongo"
    if module.endswith(".postgres"):
        return "postgres"
    return "sqlite"

