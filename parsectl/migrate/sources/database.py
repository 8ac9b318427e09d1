"""A database in parse-server's format (PostgreSQL, MongoDB) or a parsectl SQLite store as a migration source.

Read through the storage adapter of its ``databaseURI`` (:func:`parsectl.storage.adapter_for`): schemas as
stored (with CLPs and indexes), objects already in storage form (``_hashed_password`` and the other internal
``_User`` fields included), paged by objectId, and relation rows from the join tables. ``_Session`` is left out
unless asked for, and so are the volatile classes (``_PushStatus``, ``_JobStatus``, ``_Idempotency``, ...).

Nothing is written to the source's data. Opening an adapter does what parse-server does when it starts on
the database (create ``_SCHEMA`` and the default classes if missing), so a URI that names no Parse database
at all is refused before the adapter is opened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from parsectl.migrate.source import Batch, SourceSchema
from parsectl.model.query import And, Compare, MatchAll, RelatedTo, SortKey
from parsectl.model.schema import VOLATILE_CLASSES, ClassSchema
from parsectl.storage import adapter_for
from parsectl.storage.base import StorageAdapter, StoredObject
from parsectl.uri import redact


class DatabaseSourceError(RuntimeError):
    """The database cannot be read as a Parse database."""


class DatabaseSource:
    """``Source`` over a database URI (``sqlite:///…``, ``postgres://…``, ``mongodb://…``)."""

    has_password_hashes = True

    def __init__(self, database_uri: str, *, include_sessions: bool = False, include_volatile: bool = False,
                 collection_prefix: str = "", database_options: dict[str, Any] | None = None,
                 files_adapter: dict[str, Any] | str | None = None, file_key: str | None = None) -> None:
        self.database_uri = database_uri
        self.include_sessions = include_sessions
        self.include_volatile = include_volatile
        self.collection_prefix = collection_prefix
        self.database_options = database_options
        self.files_adapter_spec = files_adapter
        self.file_key = file_key
        self.description = f"database {redact(database_uri)}"
        self._adapter: StorageAdapter | None = None
        self._schemas: dict[str, ClassSchema] | None = None
        self._files: Any = None
        self._files_tried = False
        self._http: Any = None

    # --- lifecycle ------------------------------------------------------------------------------------
    async def open(self) -> None:
        await self._check_exists()
        adapter = adapter_for(self.database_uri, collection_prefix=self.collection_prefix,
                              database_options=self.database_options)
        await adapter.open()
        self._adapter = adapter

    async def close(self) -> None:
        if self._adapter is not None:
            await self._adapter.close()
            self._adapter = None
        if self._files is not None:
            await self._files.close()
            self._files = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def adapter(self) -> StorageAdapter:
        if self._adapter is None:
            raise RuntimeError("DatabaseSource is not open")
        return self._adapter

    async def _check_exists(self) -> None:
        """Refuse a URI that names no Parse database (opening the adapter would create one)."""
        uri = self.database_uri
        if uri.startswith("sqlite:"):
            path = sqlite_path(uri)
            if not path.is_file():
                raise DatabaseSourceError(f"no SQLite database at {path}")
            import sqlite3

            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                found = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='_SCHEMA'").fetchone()
            finally:
                db.close()
            if not found:
                raise DatabaseSourceError(f"{path} is not a Parse database (it has no _SCHEMA table)")
        elif uri.startswith(("postgres://", "postgresql://")):
            import psycopg

            try:
                async with await psycopg.AsyncConnection.connect(uri, connect_timeout=10) as conn:
                    row = await (await conn.execute("""SELECT to_regclass('"_SCHEMA"')""")).fetchone()
            except psycopg.Error as exc:
                raise DatabaseSourceError(f"cannot connect to PostgreSQL at {redact(uri)}: "
                                          f"{str(exc).strip().splitlines()[0]}") from None
            if not row or row[0] is None:
                raise DatabaseSourceError(f"{redact(uri)} is not a Parse database (it has no _SCHEMA table)")
        elif uri.startswith(("mongodb://", "mongodb+srv://")):
            from pymongo import AsyncMongoClient
            from pymongo.errors import PyMongoError

            client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=10000)
            try:
                names = await client.get_default_database("test").list_collection_names()
            except PyMongoError as exc:
                raise DatabaseSourceError(f"cannot connect to MongoDB at {redact(uri)}: "
                                          f"{str(exc).split(', Timeout:')[0]}") from None
            finally:
                await client.close()
            if self.collection_prefix + "_SCHEMA" not in names:
                raise DatabaseSourceError(f"{redact(uri)} is not a Parse database (it has no "
                                          f"{self.collection_prefix}_SCHEMA collection)")

    # --- schema ----------------------------------------------------------------------------------------
    def _wanted(self, class_name: str) -> bool:
        if class_name == "_Session":
            return self.include_sessions
        if class_name in VOLATILE_CLASSES:
            return self.include_volatile
        return not class_name.startswith("_Join:")

    async def _load_schemas(self) -> dict[str, ClassSchema]:
        if self._schemas is None:
            stored = await self.adapter.load_schemas()
            self._schemas = {name: s for name, s in sorted(stored.items()) if self._wanted(name)}
        return self._schemas

    async def _schema_of(self, class_name: str) -> ClassSchema:
        schema = (await self._load_schemas()).get(class_name)
        if schema is None:
            raise DatabaseSourceError(f"class {class_name} is not in {self.description}")
        return schema

    async def schema(self) -> SourceSchema:
        schemas = await self._load_schemas()
        counts: dict[str, int | None] = {}
        for name, schema in schemas.items():
            counts[name] = await self.adapter.count(schema, MatchAll())
        notes = {name: {field: "stated in _SCHEMA" for field in s.fields} for name, s in schemas.items()}
        return SourceSchema(classes=dict(schemas), counts=counts, notes=notes)

    # --- objects ---------------------------------------------------------------------------------------
    async def objects(self, class_name: str, *, after: str | None = None, batch_size: int = 1000
                      ) -> AsyncIterator[Batch]:
        schema = await self._schema_of(class_name)
        limit = max(1, batch_size)
        while True:
            where = Compare("objectId", "gt", after) if after is not None else MatchAll()
            objects = await self.adapter.find(schema, where, limit=limit, order=[SortKey("objectId")])
            if not objects:
                return
            after = objects[-1]["objectId"]
            yield Batch(objects=objects, checkpoint=after)
            if len(objects) < limit:
                return

    async def relations(self, class_name: str, field_name: str, *, batch_size: int = 5000
                        ) -> AsyncIterator[list[tuple[str, str]]]:
        relation_rows = getattr(self.adapter, "relation_rows", None)
        if relation_rows is None:
            raise NotImplementedError(f"the {type(self.adapter).__name__} cannot list relation rows yet")
        after: tuple[str, str] | None = None
        limit = max(1, batch_size)
        while True:
            rows = await relation_rows(class_name, field_name, after=after, limit=limit)
            if not rows:
                return
            yield rows
            if len(rows) < limit:
                return
            after = rows[-1]

    # --- following a live database (``migrate --follow``) --------------------------------------------------
    async def live_schemas(self) -> dict[str, ClassSchema]:
        """The schemas as they are now (classes and fields added since the copy began included)."""
        self._schemas = None
        return await self._load_schemas()

    async def changed(self, class_name: str, since: str, *, batch_size: int = 1000
                      ) -> AsyncIterator[list[StoredObject]]:
        """Objects updated at or after ``since`` (an ISO date), in objectId order."""
        schema = await self._schema_of(class_name)
        after: str | None = None
        while True:
            where: Any = Compare("updatedAt", "gte", since)
            if after is not None:
                where = And([where, Compare("objectId", "gt", after)])
            objects = await self.adapter.find(schema, where, limit=batch_size, order=[SortKey("objectId")])
            if not objects:
                return
            yield objects
            after = objects[-1]["objectId"]

    async def change_feed(self) -> Any:
        """The database's change stream (a MongoDB replica set), or None: then ``changed`` is polled."""
        if not self.database_uri.startswith(("mongodb://", "mongodb+srv://")):
            return None
        from parsectl.migrate.change_feed import open_feed

        return await open_feed(self.adapter)

    def decode_document(self, schema: ClassSchema, document: dict[str, Any]) -> StoredObject:
        """A raw MongoDB document of a change event in the adapter's stored form."""
        return self.adapter._decode(schema, document)  # type: ignore[attr-defined]  # noqa: SLF001

    async def related_ids(self, class_name: str, field_name: str, owner_id: str) -> list[str]:
        schema = await self._schema_of(class_name)
        target = (await self._load_schemas()).get(schema.fields[field_name]["targetClass"])
        if target is None:
            return []
        owner = {"__type": "Pointer", "className": class_name, "objectId": owner_id}
        return [o["objectId"] for o in await self.adapter.find(target, RelatedTo(owner, field_name))]

    # --- files -----------------------------------------------------------------------------------------
    async def _files_adapter(self) -> Any:
        """parse-server's default files storage for this database: GridFS on MongoDB, the data directory of a
        parsectl SQLite store; for PostgreSQL only one named with ``files_adapter``."""
        if not self._files_tried:
            self._files_tried = True
            spec = self.files_adapter_spec
            if spec is None and self.database_uri.startswith(("postgres://", "postgresql://")):
                return None
            from parsectl.files.factory import adapter_for as files_adapter_for
            from parsectl.server.config import ServerOptions

            options: dict[str, Any] = {"appId": "migrate", "masterKey": "migrate", "databaseURI": self.database_uri}
            if spec is not None:
                options["filesAdapter"] = spec
            if self.file_key is not None:
                options["fileKey"] = self.file_key
            if self.database_options:
                options["databaseOptions"] = self.database_options
            self._files = files_adapter_for(ServerOptions.from_mapping(options))
        return self._files

    async def file_bytes(self, name: str, url: str | None) -> bytes | None:
        """The bytes from the database's files storage, else from the URL; None if neither has them."""
        from parsectl.files.base import FileNotFound

        files = await self._files_adapter()
        if files is not None:
            try:
                return await files.get_file_data(name)
            except FileNotFound:
                pass
        if url and url.startswith(("http://", "https://")):
            import httpx

            if self._http is None:
                self._http = httpx.AsyncClient(timeout=60.0, follow_redirects=True)
            for _ in range(3):
                try:
                    response = await self._http.get(url)
                except httpx.TransportError:
                    continue
                if response.status_code == 200:
                    return response.content
                if response.status_code < 500:
                    return None
        return None


def sqlite_path(uri: str) -> Path:
    """The file of a ``sqlite:`` URI, as :func:`parsectl.storage.adapter_for` reads it."""
    path = uri.removeprefix("sqlite://").removeprefix("sqlite:")
    if path.startswith("//"):  # sqlite:////abs/path
        path = "/" + path.lstrip("/")
    return Path(path)
