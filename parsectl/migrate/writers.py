"""Bulk writers: how a migration loads batches of storage-form objects into each database.

The server's write paths handle one request at a time; a migration writes the same rows by the
hundred thousand, so each destination gets a loader that plans a class's columns once (one encoder per
column, picked by its schema type) and writes a whole batch in one transaction with the database's bulk
path: ``executemany`` on SQLite, ``COPY`` on PostgreSQL, an unordered ``insertMany`` on MongoDB.

The encoders are the adapters' own column encodings (the same functions the server writes with), so a
migrated row is byte for byte what ``parsectl serve`` (and node parse-server) would have written.

Every write stays idempotent: objects whose objectId (or a unique field) already exists are skipped,
so a batch that committed before a crash can simply be written again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import orjson

from parsectl.migrate.source import relation_rows
from parsectl.model import errors
from parsectl.model.errors import ParseError
from parsectl.model.schema import USER_INTERNAL_FIELDS, ClassSchema
from parsectl.storage.base import StorageAdapter, StoredObject
from parsectl.storage.sql import SYSTEM_COLUMNS, join_table, quote

Encoder = Callable[[Any], Any] | None
# SQLite: the transaction the rows go into is committed (and the checkpoint saved) after this many rows or
# seconds, whichever comes first
COMMIT_ROWS = 100_000
COMMIT_SECONDS = 1.0
LOAD_CACHE_KIB = 32768  # SQLite: the page cache of a load (inserting into a big primary key rereads its pages)
_STAGE = '"_parsectl_relation_rows"'  # SQLite: a relation's rows before they go into an empty join table
_SKIPPED_TYPES = ("Relation", "ACL")


class _Plan:
    """A class's columns in table order, and for every storage-form key its column and encoder."""

    __slots__ = ("schema", "columns", "slots")

    def __init__(self, schema: ClassSchema, columns: list[tuple[str, Encoder]]) -> None:
        self.schema = schema
        self.columns = [name for name, _ in columns]
        self.slots = {name: (i, enc) for i, (name, enc) in enumerate(columns)}

    def rows(self, objects: list[StoredObject]) -> list[list[Any]]:
        """Each object as a row of column values (None for what it lacks)."""
        slots, width, class_name = self.slots, len(self.columns), self.schema.class_name
        out = []
        for obj in objects:
            row: list[Any] = [None] * width
            for name, value in obj.items():
                slot = slots.get(name)
                if slot is None:
                    if value is None or name[0] == "_" or name in self.schema.fields:
                        continue  # internal fields without a column (a legacy _session_token), relations, ACL
                    raise ParseError(errors.INCORRECT_TYPE, f"field {name} is not in the schema of {class_name}")
                if value is not None:
                    index, encode = slot
                    row[index] = value if encode is None else encode(value)
            out.append(row)
        return out


def _table_fields(schema: ClassSchema) -> dict[str, dict[str, str]]:
    fields = dict(schema.fields)
    if schema.class_name == "_User":
        fields.update(USER_INTERNAL_FIELDS)
    return {name: ftype for name, ftype in fields.items()
            if name not in SYSTEM_COLUMNS and ftype["type"] not in _SKIPPED_TYPES}


def row_plan(kind: str, schema: ClassSchema) -> _Plan:
    """The row layout of a class for a ``kind`` of database ("sqlite", "postgres"): the same in the
    migration and in the export reader process that makes its rows (:attr:`BulkWriter.row_kind`)."""
    perms: Encoder
    if kind == "sqlite":
        from parsectl.storage.sqlite import column_encoder as encoder

        perms = _perms_json
    elif kind == "postgres":
        from parsectl.storage.postgres import copy_encoder as encoder

        perms = encoder({"type": "Perm"})
    else:
        raise ValueError(f"no row layout for {kind!r}")
    columns: list[tuple[str, Encoder]] = [("objectId", None), ("createdAt", None), ("updatedAt", None),
                                          ("_rperm", perms), ("_wperm", perms)]
    columns += [(name, encoder(ftype)) for name, ftype in _table_fields(schema).items()
                if not (kind == "postgres" and schema.class_name == "_User" and name == "password")]
    return _Plan(schema, columns)


class BulkWriter:
    """Writes batches into one destination; :func:`writer_for` picks the subclass."""

    # the row layout :func:`row_plan` makes for this writer's :meth:`write_rows` (None: objects only)
    row_kind: str | None = None
    spools = False  # loads spool files of rows (:meth:`SQLiteWriter.write_spool`)

    def __init__(self, adapter: StorageAdapter) -> None:
        self.adapter = adapter
        self._plans: dict[int, _Plan] = {}

    def plan(self, schema: ClassSchema) -> _Plan:
        cached = self._plans.get(id(schema))
        if cached is None or cached.schema is not schema:
            assert self.row_kind is not None
            cached = self._plans[id(schema)] = row_plan(self.row_kind, schema)
        return cached

    async def begin_class(self, schema: ClassSchema) -> None:
        """Before a class's objects are loaded."""

    async def end_class(self, schema: ClassSchema) -> None:
        """After all of a class's objects are loaded (also when a resumed run finds the class done)."""

    async def write(self, schema: ClassSchema, objects: list[StoredObject]) -> int:
        """Insert the objects that are new; return how many were inserted."""
        if self.row_kind is None:
            return await self.adapter.insert_many(schema, objects)
        return await self.write_rows(schema, self.plan(schema).rows(objects)) if objects else 0

    async def write_rows(self, schema: ClassSchema, rows: list[list[Any]]) -> int:
        """:meth:`write` for objects already made into rows by :func:`row_plan` (``row_kind``)."""
        raise NotImplementedError

    async def add_relation_rows(self, class_name: str, field: str, pairs: list[tuple[str, str]]) -> None:
        """Add (owningId, relatedId) rows, ignoring rows already there."""
        await self.adapter.add_relation_rows(class_name, field, pairs)

    def should_commit(self) -> bool:
        """Whether to :meth:`commit` now (then the migration saves its checkpoint): always, for writers
        whose every write is its own transaction."""
        return True

    async def commit(self) -> None:
        """Commit what :meth:`write` left in an open transaction (a no-op for most writers)."""

    async def begin_relation(self, class_name: str, field: str) -> None:
        """Before a relation's rows are loaded."""

    async def end_relation(self, class_name: str, field: str) -> None:
        """After all of a relation's rows are loaded."""

    async def load_relation_sql(self, class_name: str, field: str, path: str, select: str,
                                params: tuple[Any, ...]) -> int | None:
        """Load a relation's rows straight from a query on an SQLite file (a source's, attached as ``src``;
        columns owningId, relatedId) and return how many rows it gave; None: this writer cannot (nothing
        was done), load them with :meth:`add_relation_rows`."""
        return None


def _perms_json(value: list[str]) -> str:
    return orjson.dumps(value).decode()


# --- SQLite ----------------------------------------------------------------------------------------------


class SQLiteWriter(BulkWriter):
    """``INSERT OR IGNORE`` through ``executemany``, one ``BEGIN IMMEDIATE`` transaction per batch.

    The migration's connection gets a 32 MB page cache (SQLite's default is 2 MB): inserting random
    objectIds into tables of a million rows otherwise rereads B-tree pages from the OS for most rows."""

    row_kind = "sqlite"
    spools = True

    def __init__(self, adapter: StorageAdapter) -> None:
        super().__init__(adapter)
        self._staged: set[tuple[str, str]] = set()  # relations whose rows go to the staging table first
        self._open_since: float | None = None  # time.monotonic() when the open transaction began
        self._open_rows = 0

    async def begin_class(self, schema: ClassSchema) -> None:
        adapter: Any = self.adapter
        adapter.db.execute(f"PRAGMA cache_size=-{LOAD_CACHE_KIB}")
        adapter.db.execute("PRAGMA threads=2")

    async def begin_relation(self, class_name: str, field: str) -> None:
        """Rows for an empty join table are staged in a temporary table, then inserted in primary-key order
        in one statement, and its owningId index is built after: inserted as they come (random order) into
        the primary key and that index, the same rows load about twice as slowly."""
        if self._empty_join_table(class_name, field):
            adapter: Any = self.adapter
            with adapter._write() as db:
                db.execute(f"DROP TABLE IF EXISTS temp.{_STAGE}")
                db.execute(f'CREATE TEMP TABLE {_STAGE} ("owningId" TEXT, "relatedId" TEXT)')
            self._staged.add((class_name, field))

    def _empty_join_table(self, class_name: str, field: str) -> bool:
        """Create the join table if needed; if it is empty, drop its owningId index (:meth:`end_relation`
        builds it) and say so."""
        from parsectl.storage.sqlite import join_owning_index

        adapter: Any = self.adapter
        with adapter._write() as db:
            adapter._create_join_table(field, class_name)
            if db.execute(f"SELECT 1 FROM {quote(join_table(field, class_name))} LIMIT 1").fetchone() is not None:
                return False
            db.execute(f"DROP INDEX IF EXISTS {join_owning_index(field, class_name)}")
            return True

    async def add_relation_rows(self, class_name: str, field: str, pairs: list[tuple[str, str]]) -> None:
        if (class_name, field) not in self._staged:
            await self.adapter.add_relation_rows(class_name, field, pairs)
            return
        adapter: Any = self.adapter
        db: sqlite3.Connection = adapter.db
        db.execute("BEGIN")
        db.executemany(f"INSERT INTO temp.{_STAGE} VALUES (?, ?)", pairs)
        db.execute("COMMIT")

    async def end_relation(self, class_name: str, field: str) -> None:
        adapter: Any = self.adapter
        with adapter._write() as db:
            if (class_name, field) in self._staged:
                db.execute(f'INSERT OR IGNORE INTO {quote(join_table(field, class_name))} ("relatedId", "owningId") '
                           f'SELECT "relatedId", "owningId" FROM temp.{_STAGE} ORDER BY "relatedId", "owningId"')
                db.execute(f"DROP TABLE temp.{_STAGE}")
            adapter._create_join_table(field, class_name)  # and its index, if the load went without
        self._staged.discard((class_name, field))

    async def load_relation_sql(self, class_name: str, field: str, path: str, select: str,
                                params: tuple[Any, ...]) -> int | None:
        """In one statement, sorted by primary key; into an empty join table, its owningId index is built
        after (as for staged rows, :meth:`begin_relation`). No row passes through Python."""
        self._empty_join_table(class_name, field)
        adapter: Any = self.adapter
        db: sqlite3.Connection = adapter.db
        db.execute("ATTACH DATABASE ? AS src", (path,))
        try:
            with adapter._write():
                db.execute(f'INSERT OR IGNORE INTO {quote(join_table(field, class_name))} ("relatedId", "owningId") '
                           f'SELECT "relatedId", "owningId" FROM ({select}) ORDER BY "relatedId", "owningId"', params)
            count = db.execute(f"SELECT count(*) FROM ({select})", params).fetchone()[0]
        finally:
            db.execute("DETACH DATABASE src")
        await self.end_relation(class_name, field)
        return count

    async def write_rows(self, schema: ClassSchema, rows: list[list[Any]]) -> int:
        """Into one transaction kept open over batches (:meth:`should_commit`): a commit per batch writes
        the same B-tree pages to the WAL again and again, and cost as much as the inserts."""
        if not rows:
            return 0
        columns = self.plan(schema).columns
        sql = (f"INSERT OR IGNORE INTO {quote(schema.class_name)} ({', '.join(quote(c) for c in columns)}) "
               f"VALUES ({', '.join('?' * len(columns))})")
        adapter: Any = self.adapter
        db = adapter.db
        if self._open_since is None:
            db.execute("BEGIN IMMEDIATE")
            self._open_since, self._open_rows = time.monotonic(), 0
        before = db.total_changes
        try:
            db.executemany(sql, rows)
        except BaseException:
            self._open_since = None
            db.execute("ROLLBACK")  # with the batches before it: their checkpoint was not saved either
            raise
        self._open_rows += len(rows)
        return db.total_changes - before

    async def write_spool(self, schema: ClassSchema, path: str) -> int:
        """The rows of a spool file (a worker's: a SQLite database whose table ``r`` holds rows in this
        writer's column order) in one ``INSERT … SELECT`` and a transaction of its own, then the file is
        deleted. No row passes through Python: about half the time of ``executemany`` per row."""
        adapter: Any = self.adapter
        db: sqlite3.Connection = adapter.db
        try:
            if self._open_since is not None:  # ATTACH needs no transaction open: commit the rows before
                await self.commit()
            columns = self.plan(schema).columns
            db.execute("ATTACH DATABASE ? AS spool", (path,))
            try:
                db.execute("BEGIN IMMEDIATE")
                before = db.total_changes
                try:
                    db.execute(f"INSERT OR IGNORE INTO {quote(schema.class_name)} "
                               f"({', '.join(quote(c) for c in columns)}) SELECT * FROM spool.r")
                    inserted = db.total_changes - before
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            finally:
                db.execute("DETACH DATABASE spool")
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
        return inserted

    def should_commit(self) -> bool:
        return self._open_since is None or (self._open_rows >= COMMIT_ROWS
                                            or time.monotonic() - self._open_since >= COMMIT_SECONDS)

    async def commit(self) -> None:
        if self._open_since is not None:
            self._open_since = None
            adapter: Any = self.adapter
            adapter.db.execute("COMMIT")


# --- PostgreSQL --------------------------------------------------------------------------------------------


class PostgresWriter(BulkWriter):
    """``COPY ... FROM STDIN`` straight into the class's table, one transaction per batch.

    A batch that meets a row already there (a batch committed just before an interruption, ``--mode
    merge``, a unique username) is rolled back and loaded the idempotent way instead: COPY into a
    temporary table, then ``INSERT ... ON CONFLICT DO NOTHING``; the class keeps that path from then on.
    """

    row_kind = "postgres"

    def __init__(self, adapter: StorageAdapter) -> None:
        super().__init__(adapter)
        self._conflicting: set[str] = set()

    async def write_rows(self, schema: ClassSchema, rows: list[list[Any]]) -> int:
        if not rows:
            return 0
        import psycopg
        from psycopg import errors as pg_errors

        from parsectl.storage.postgres import _nul_error

        plan = self.plan(schema)
        table, cols = quote(schema.class_name), ", ".join(quote(c) for c in plan.columns)
        adapter: Any = self.adapter
        try:
            if schema.class_name not in self._conflicting:
                try:
                    async with adapter.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                        async with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                            for row in rows:
                                await copy.write_row(row)
                        return len(rows)
                except pg_errors.UniqueViolation:
                    self._conflicting.add(schema.class_name)
            async with adapter.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                await cur.execute(f'CREATE TEMP TABLE "_parsectl_load" (LIKE {table}) ON COMMIT DROP')
                async with cur.copy(f'COPY "_parsectl_load" ({cols}) FROM STDIN') as copy:
                    for row in rows:
                        await copy.write_row(row)
                await cur.execute(f'INSERT INTO {table} ({cols}) SELECT {cols} FROM "_parsectl_load"'
                                  " ON CONFLICT DO NOTHING")
                return cur.rowcount
        except (pg_errors.UntranslatableCharacter, pg_errors.CharacterNotInRepertoire) as exc:
            raise _nul_error() from exc
        except psycopg.DataError as exc:
            raise ParseError(errors.INVALID_JSON, f"{schema.class_name}: PostgreSQL refused a row: "
                             f"{exc.diag.message_primary or exc}") from None


    async def load_relation_sql(self, class_name: str, field: str, path: str, select: str,
                                params: tuple[Any, ...]) -> int | None:
        """Into an empty join table, in one transaction: its primary key is dropped, every row is copied in
        one COPY, and the key is built again after them (one sort instead of an index insert per row). A
        join table that holds rows already, or rows that repeat (the key cannot be built), go the
        row-by-row way instead (None; the transaction left nothing behind)."""
        from psycopg import errors as pg_errors

        adapter: Any = self.adapter
        table = quote(join_table(field, class_name))
        count = 0
        with relation_rows(path, select, params) as rows:
            async with adapter.pool.connection() as conn:
                try:
                    async with conn.transaction(), conn.cursor() as cur:
                        await cur.execute(adapter._join_ddl(field, class_name))
                        await cur.execute(f"SELECT 1 FROM {table} LIMIT 1")
                        if await cur.fetchone() is not None:
                            return None
                        await cur.execute("SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass "
                                          "AND contype = 'p'", (table,))
                        key = (await cur.fetchone() or [None])[0]
                        if key is None:  # not parse-server's join table: no key to rebuild
                            return None
                        await cur.execute(f"ALTER TABLE {table} DROP CONSTRAINT {quote(key)}")
                        async with cur.copy(f'COPY {table} ("owningId", "relatedId") FROM STDIN') as copy:
                            while chunk := await asyncio.to_thread(rows.fetchmany, 10_000):
                                for row in chunk:
                                    await copy.write_row(row)
                                count += len(chunk)
                        await cur.execute(f'ALTER TABLE {table} ADD CONSTRAINT {quote(key)} '
                                          'PRIMARY KEY ("relatedId", "owningId")')
                except pg_errors.UniqueViolation:
                    return None
        return count

    async def add_relation_rows(self, class_name: str, field: str, pairs: list[tuple[str, str]]) -> None:
        """COPY straight into the join table; if a row is already there, COPY into a temporary table and
        ``INSERT ... ON CONFLICT DO NOTHING`` instead (rows already there stay)."""
        if not pairs:
            return
        from psycopg import errors as pg_errors

        adapter: Any = self.adapter
        table = quote(join_table(field, class_name))
        key = f"{class_name}.{field}"
        if key not in self._conflicting:
            try:
                async with adapter.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                    await cur.execute(adapter._join_ddl(field, class_name))
                    async with cur.copy(f'COPY {table} ("owningId", "relatedId") FROM STDIN') as copy:
                        for pair in pairs:
                            await copy.write_row(pair)
                return
            except pg_errors.UniqueViolation:
                self._conflicting.add(key)
        async with adapter.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(adapter._join_ddl(field, class_name))
            await cur.execute(f'CREATE TEMP TABLE "_parsectl_rel" (LIKE {table}) ON COMMIT DROP')
            async with cur.copy('COPY "_parsectl_rel" ("owningId", "relatedId") FROM STDIN') as copy:
                for pair in pairs:
                    await copy.write_row(pair)
            await cur.execute(f'INSERT INTO {table} ("owningId", "relatedId") SELECT "owningId", "relatedId" '
                              'FROM "_parsectl_rel" ON CONFLICT DO NOTHING')


# --- MongoDB ---------------------------------------------------------------------------------------------


class MongoWriter(BulkWriter):
    """The adapter's unordered ``insertMany`` (its document encoding is parse-server's Mongo format).

    The ``2dsphere`` indexes parse-server puts on Polygon fields make every insert slow (a geometry
    index update per document); into an empty collection they are dropped for the load and built once
    at the end of the class, as parse-server defines them. A resumed run rebuilds them too.
    """

    async def begin_class(self, schema: ClassSchema) -> None:
        adapter: Any = self.adapter
        coll = adapter._coll(schema.class_name)
        if not self._polygons(schema) or await coll.estimated_document_count():
            return
        for name, info in (await coll.index_information()).items():
            if any(kind == "2dsphere" for _, kind in info.get("key", [])):
                await coll.drop_index(name)

    async def end_class(self, schema: ClassSchema) -> None:
        adapter: Any = self.adapter
        for name in self._polygons(schema):
            await adapter._field_indexes(schema.class_name, name, schema.fields[name])

    @staticmethod
    def _polygons(schema: ClassSchema) -> list[str]:
        return [name for name, ftype in schema.fields.items() if ftype["type"] == "Polygon"]


def writer_for(adapter: StorageAdapter) -> BulkWriter:
    from parsectl.storage.postgres import PostgresAdapter
    from parsectl.storage.sqlite import SQLiteAdapter

    if isinstance(adapter, SQLiteAdapter):
        return SQLiteWriter(adapter)
    if isinstance(adapter, PostgresAdapter):
        return PostgresWriter(adapter)
    with contextlib.suppress(ImportError):
        from parsectl.storage.mongo import MongoAdapter

        if isinstance(adapter, MongoAdapter):
            return MongoWriter(adapter)
    return BulkWriter(adapter)
