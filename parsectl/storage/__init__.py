"""Storage adapters: one boundary (:mod:`parsectl.storage.base`), one module per database."""

from __future__ import annotations

from pathlib import Path

from parsectl.storage.base import StorageAdapter


def adapter_for(database_uri: str) -> StorageAdapter:
    """The storage adapter for a ``databaseURI``."""
    if database_uri.startswith("sqlite:"):
        from parsectl.storage.sqlite import SQLiteAdapter

        path = database_uri.removeprefix("sqlite://").removeprefix("sqlite:")
        return SQLiteAdapter(Path(path))
    if database_uri.startswith(("postgres://", "postgresql://")):
        from parsectl.storage.postgres import PostgresAdapter

        return PostgresAdapter(database_uri)
    scheme = database_uri.split(":", 1)[0]
    raise ValueError(
        f"databaseURI scheme {scheme!r} is not supported by this version of parsectl; "
        "use sqlite:///path/to/file.db or postgres://user:password@host:5432/db"
    )
