"""The embedded SQLite store (the zero-setup default of ``parsectl serve``).

Layout, modelled on parse-server's PostgreSQL format: a ``_SCHEMA`` table (className, schema JSON,
isParseClass); one table per class with ``objectId`` primary key, ``createdAt``/``updatedAt`` (ISO
text), ``_rperm``/``_wperm`` (JSON arrays, NULL for no ACL) and one column per field; relations in
``"_Join:<field>:<Class>"`` tables (relatedId, owningId).

The database runs in WAL mode. Every write happens in a ``BEGIN IMMEDIATE`` transaction, so
read-modify-write updates (Increment, Add, ...) are atomic across threads and worker processes.
Statements are short and run inline on the event loop: a local SQLite read or write takes
microseconds, far less than a hop to a thread pool would.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote as url_quote

import orjson

from parsectl.model import codec, errors
from parsectl.model.codec import FieldType
from parsectl.model.errors import ParseError
from parsectl.model.ops import Op, RelationOp
from parsectl.model.query import Node, SortKey
from parsectl.model.schema import STARTUP_CLASSES, USER_INTERNAL_FIELDS, ClassSchema
from parsectl.storage import geo_math, transactions
from parsectl.storage.base import StoredObject
from parsectl.storage.sql import JSON_TYPES, SYSTEM_COLUMNS, canonical_json, join_table, quote
from parsectl.storage.sqlite_query import Compiler, regex_match, start_regex_budget

_COLUMN_SQL = {"Number": "NUMERIC", "Boolean": "INTEGER"}



# parse-server's unique indexes (same names as on PostgreSQL)
_UNIQUE = {
    "_User": (("_User_unique_username", "username"), ("_User_unique_email", "email")),
    "_Role": (("_Role_unique_name", "name"),),
}


def _table_fields(schema: ClassSchema) -> dict[str, FieldType]:
    """The schema's fields plus the internal columns parse-server keeps on ``_User``."""
    if schema.class_name == "_User":
        return {**schema.fields, **USER_INTERNAL_FIELDS}
    return schema.fields


def _column_type(field_type: FieldType) -> str:
    return _COLUMN_SQL.get(field_type["type"], "TEXT")


def _encode(field_type: FieldType | None, value: Any) -> Any:
    """A storage-form value as an SQLite column value."""
    if value is None:
        return None
    kind = field_type["type"] if field_type else None
    if kind == "Date":
        return value["iso"] if isinstance(value, dict) else value
    if kind == "Pointer":
        return value["objectId"]
    if kind == "File":
        return value["name"]
    if kind == "Boolean":
        return int(value)
    if kind in JSON_TYPES or isinstance(value, dict | list):
        return canonical_json(value)
    return value


def _date_column(value: Any) -> Any:
    return value["iso"] if isinstance(value, dict) else value


def _json_column(value: Any) -> Any:
    return canonical_json(value)


def _plain_column(value: Any) -> Any:
    return canonical_json(value) if isinstance(value, dict | list) else value


_COLUMN_ENCODERS: dict[str, Any] = {
    "Date": _date_column, "Pointer": lambda v: v["objectId"], "File": lambda v: v["name"], "Boolean": int,
    **{kind: _json_column for kind in JSON_TYPES},
}


def column_encoder(field_type: FieldType) -> Any:
    """:func:`_encode` for one column type, as a function of a non-null value (bulk loads plan it once)."""
    return _COLUMN_ENCODERS.get(field_type["type"], _plain_column)


def _decoder(name: str, field_type: FieldType):  # noqa: ANN202 - small closure factory
    kind = field_type["type"]
    if kind == "Date":
        return lambda v: codec.date(v)
    if kind == "Pointer":
        target = field_type["targetClass"]
        return lambda v: codec.pointer(target, v)
    if kind == "File":
        return lambda v: {"__type": "File", "name": v}
    if kind == "Boolean":
        return bool
    if kind in JSON_TYPES:
        return orjson.loads
    return None


def join_owning_index(field: str, owner: str) -> str:
    """The (quoted) name of a join table's index on ``owningId`` (its primary key leads with relatedId)."""
    return quote(f"_Join_owning:{field}:{owner}")


def _register_functions(db: sqlite3.Connection) -> None:
    """The SQL functions the query compiler's SQL calls (regex, geo, text score), on a connection."""
    db.create_function("parse_regex", 3, regex_match, deterministic=True)
    geo_math.register(db)


class SQLiteAdapter:
    """A :class:`parsectl.storage.base.StorageAdapter` on one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None  # reads beside another task's transaction
        self._decoders: dict[int, tuple[ClassSchema, list[tuple[str, Any]]]] = {}

    # --- connection ---------------------------------------------------------------------------------
    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=10000")
        db.execute("PRAGMA foreign_keys=OFF")
        _register_functions(db)
        db.execute(
            'CREATE TABLE IF NOT EXISTS "_SCHEMA" ("className" TEXT PRIMARY KEY, "schema" TEXT NOT NULL,'
            ' "isParseClass" INTEGER NOT NULL DEFAULT 1)'
        )
        self._db = db
        for class_name in STARTUP_CLASSES:  # as parse-server creates them when it starts
            await self.ensure_class(ClassSchema.new(class_name))

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("SQLite adapter is not open")
        if transactions.sqlite_reads_committed(self):  # another task's transaction is open
            return self._reading()
        return self._db

    @property
    def can_read_beside(self) -> bool:
        """Whether a second connection sees this database (not an in-memory one)."""
        return str(self.path) not in (":memory:", "") and not str(self.path).startswith("file::memory:")

    def _reading(self) -> sqlite3.Connection:
        """A read-only connection to the same file: it reads what is committed while the main connection's
        transaction is open (WAL)."""
        if self._reader is None:
            path = url_quote(str(self.path.resolve()))
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            db.execute("PRAGMA busy_timeout=10000")
            _register_functions(db)
            self._reader = db
        return self._reader

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self.db
        if transactions.sqlite_in_own_transaction(self):  # inside POST /batch's transaction: a savepoint
            with transactions.sqlite_savepoint(self, db):
                yield db
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")

    def transaction(self) -> Any:
        """All storage calls of this task in one transaction (parsectl.storage.transactions)."""
        return transactions.sqlite_transaction(self)

    # --- schema ---------------------------------------------------------------------------------------
    @staticmethod
    def _schema_from_row(class_name: str, text: str) -> ClassSchema:
        data = orjson.loads(text)
        return ClassSchema(
            class_name,
            data.get("fields", {}),
            data.get("classLevelPermissions") or {},
            data.get("indexes") or {},
        )

    def _read_schema(self, class_name: str) -> ClassSchema | None:
        row = self.db.execute('SELECT "schema" FROM "_SCHEMA" WHERE "className" = ?', (class_name,)).fetchone()
        return self._schema_from_row(class_name, row[0]) if row else None

    def _write_schema(self, schema: ClassSchema) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        self.db.execute(f"PRAGMA user_version = {(int(version) + 1) % 2**31}")
        self.db.execute(
            'INSERT INTO "_SCHEMA" ("className", "schema", "isParseClass") VALUES (?, ?, 1)'
            ' ON CONFLICT ("className") DO UPDATE SET "schema" = excluded."schema"',
            (schema.class_name, orjson.dumps(schema.to_json()).decode()),
        )

    async def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    async def load_schemas(self) -> dict[str, ClassSchema]:
        rows = self.db.execute('SELECT "className", "schema" FROM "_SCHEMA"').fetchall()
        return {name: self._schema_from_row(name, text) for name, text in rows}

    def _create_join_table(self, field: str, owner: str) -> None:
        table = quote(join_table(field, owner))
        self.db.execute(
            f'CREATE TABLE IF NOT EXISTS {table} ("relatedId" TEXT NOT NULL, "owningId" TEXT NOT NULL,'
            ' PRIMARY KEY ("relatedId", "owningId"))'
        )
        self.db.execute(f'CREATE INDEX IF NOT EXISTS {join_owning_index(field, owner)} ON {table} ("owningId")')

    async def ensure_class(self, schema: ClassSchema) -> ClassSchema:
        with self._write() as db:
            stored = self._read_schema(schema.class_name)
            if stored is not None:
                return stored
            columns = ['"objectId" TEXT PRIMARY KEY', '"createdAt" TEXT', '"updatedAt" TEXT', '"_rperm" TEXT',
                       '"_wperm" TEXT']
            for name, ftype in _table_fields(schema).items():
                if name in SYSTEM_COLUMNS or ftype["type"] in ("ACL", "Relation"):
                    continue
                columns.append(f"{quote(name)} {_column_type(ftype)}")
            db.execute(f"CREATE TABLE IF NOT EXISTS {quote(schema.class_name)} ({', '.join(columns)})")
            for name, column in _UNIQUE.get(schema.class_name, ()):
                db.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {quote(name)} ON {quote(schema.class_name)}"
                           f" ({quote(column)})")
            for name, target in schema.relation_fields().items():
                del target
                self._create_join_table(name, schema.class_name)
            self._write_schema(schema)
            return schema

    async def add_fields(self, class_name: str, fields: dict[str, FieldType]) -> ClassSchema:
        with self._write() as db:
            stored = self._read_schema(class_name)
            if stored is None:
                raise ParseError(errors.INVALID_CLASS_NAME, f"Class {class_name} does not exist.")
            existing = {row[1] for row in db.execute(f"PRAGMA table_info({quote(class_name)})")}
            for name, ftype in fields.items():
                if stored.check_value_type(name, ftype) is False:
                    continue
                stored.fields[name] = ftype
                if ftype["type"] == "Relation":
                    self._create_join_table(name, class_name)
                elif name not in existing:
                    try:
                        db.execute(f"ALTER TABLE {quote(class_name)} ADD COLUMN {quote(name)} {_column_type(ftype)}")
                    except sqlite3.OperationalError as exc:
                        if "too many columns" in str(exc):
                            raise ParseError(errors.INVALID_JSON, f"Could not add field {name}") from None
                        raise
            self._write_schema(stored)
            return stored

    async def set_class_level_permissions(self, class_name: str, clp: dict[str, Any]) -> ClassSchema:
        with self._write():
            stored = self._read_schema(class_name)
            if stored is None:
                raise ParseError(errors.INVALID_CLASS_NAME, f"Class {class_name} does not exist.")
            stored.clp = clp
            self._write_schema(stored)
            return stored

    async def set_indexes(self, class_name: str, indexes: dict[str, Any], create: list[tuple[str, dict[str, Any]]],
                          drop: list[str]) -> ClassSchema:
        # As parse-server on PostgreSQL: plain indexes on the named columns (the key values are not used).
        with self._write() as db:
            stored = self._read_schema(class_name)
            if stored is None:
                raise ParseError(errors.INVALID_CLASS_NAME, f"Class {class_name} does not exist.")
            for name in drop:
                db.execute(f"DROP INDEX IF EXISTS {quote(name)}")
            for name, keys in create:
                db.execute(f"CREATE INDEX IF NOT EXISTS {quote(name)} ON {quote(class_name)} "
                           f"({', '.join(quote(key) for key in keys)})")
            stored.indexes = indexes
            self._write_schema(stored)
            return stored

    async def delete_fields(self, class_name: str, names: list[str]) -> ClassSchema:
        with self._write() as db:
            stored = self._read_schema(class_name)
            if stored is None:
                raise ParseError(errors.INVALID_CLASS_NAME, f"Class {class_name} does not exist.")
            for name in names:
                ftype = stored.fields.pop(name, None)
                if ftype is None:
                    continue
                if ftype["type"] == "Relation":
                    db.execute(f"DROP TABLE IF EXISTS {quote(join_table(name, class_name))}")
                else:
                    # SQLite cannot drop an indexed column: its /schemas indexes go first, with the column
                    for index, keys in list(stored.indexes.items()):
                        if isinstance(keys, dict) and name in keys:
                            db.execute(f"DROP INDEX IF EXISTS {quote(index)}")
                            del stored.indexes[index]
                    db.execute(f"ALTER TABLE {quote(class_name)} DROP COLUMN {quote(name)}")
            self._write_schema(stored)
            return stored

    async def delete_class(self, schema: ClassSchema) -> None:
        with self._write() as db:
            for name in schema.relation_fields():
                db.execute(f"DROP TABLE IF EXISTS {quote(join_table(name, schema.class_name))}")
            db.execute(f"DROP TABLE IF EXISTS {quote(schema.class_name)}")
            db.execute('DELETE FROM "_SCHEMA" WHERE "className" = ?', (schema.class_name,))
            version = db.execute("PRAGMA user_version").fetchone()[0]
            db.execute(f"PRAGMA user_version = {(int(version) + 1) % 2**31}")

    # --- rows ---------------------------------------------------------------------------------------------
    def _row_decoders(self, schema: ClassSchema) -> list[tuple[str, Any]]:
        cached = self._decoders.get(id(schema))
        if cached is not None and cached[0] is schema:
            return cached[1]
        decoders: list[tuple[str, Any]] = [
            ("objectId", None), ("createdAt", None), ("updatedAt", None), ("_rperm", orjson.loads),
            ("_wperm", orjson.loads),
        ]
        for name, ftype in _table_fields(schema).items():
            if name not in SYSTEM_COLUMNS:
                decoders.append((name, _decoder(name, ftype)))
        self._decoders[id(schema)] = (schema, decoders)
        return decoders

    def _columns(self, schema: ClassSchema) -> list[str]:
        return list(SYSTEM_COLUMNS) + [
            name for name, t in _table_fields(schema).items()
            if name not in SYSTEM_COLUMNS and t["type"] not in ("ACL", "Relation") and name != "password"
        ]

    def _select(self, schema: ClassSchema) -> tuple[str, list[tuple[str, Any]]]:
        decoders = {name: dec for name, dec in self._row_decoders(schema)}
        columns = self._columns(schema)
        sql = "SELECT " + ", ".join(quote(c) for c in columns) + f" FROM {quote(schema.class_name)}"
        return sql, [(c, decoders.get(c)) for c in columns]

    @staticmethod
    def _decode_row(row: tuple[Any, ...], layout: list[tuple[str, Any]]) -> StoredObject:
        obj: StoredObject = {}
        for (name, decode), value in zip(layout, row, strict=True):
            if value is None:
                continue
            obj[name] = decode(value) if decode is not None else value
        return obj

    def _missing_table(self, exc: sqlite3.OperationalError) -> bool:
        text = str(exc)
        if "user-defined function raised exception" in text:
            raise ParseError(errors.INVALID_QUERY, "The $regex took too long; simplify it") from None
        return "no such table" in text or "no such column" in text

    async def find(self, schema: ClassSchema, where: Node, *, skip: int = 0, limit: int | None = None,
                   order: list[SortKey] | None = None) -> list[StoredObject]:
        select, layout = self._select(schema)
        compiler = Compiler(schema)
        condition = compiler.compile(where)
        score, score_params = compiler.score_select()  # $text: the score as a "$score" column
        if score:
            columns, _, table = select.partition(" FROM ")
            select, layout = f"{columns}{score} FROM {table}", [*layout, ("$score", None)]
        sql = f"{select} WHERE {condition}{compiler.order_by(order or [])}"
        if limit is not None or skip:
            sql += f" LIMIT {int(limit) if limit is not None else -1} OFFSET {int(skip)}"
        try:
            start_regex_budget()
            rows = self.db.execute(sql, score_params + compiler.params).fetchall()
        except sqlite3.OperationalError as exc:
            if self._missing_table(exc):
                return []
            raise
        return [self._decode_row(row, layout) for row in rows]

    async def explain(self, schema: ClassSchema, where: Node, *, skip: int = 0, limit: int | None = None,
                      order: list[SortKey] | None = None) -> Any:
        select, _ = self._select(schema)
        compiler = Compiler(schema)
        sql = f"EXPLAIN QUERY PLAN {select} WHERE {compiler.compile(where)}{compiler.order_by(order or [])}"
        try:
            start_regex_budget()
            rows = self.db.execute(sql, compiler.params).fetchall()
        except sqlite3.OperationalError as exc:
            if self._missing_table(exc):
                return []
            raise
        return [{"id": r[0], "parent": r[1], "detail": r[3]} for r in rows]

    async def count(self, schema: ClassSchema, where: Node) -> int:
        compiler = Compiler(schema)
        sql = f"SELECT COUNT(*) FROM {quote(schema.class_name)} WHERE {compiler.compile(where)}"
        try:
            start_regex_budget()
            return int(self.db.execute(sql, compiler.params).fetchone()[0])
        except sqlite3.OperationalError as exc:
            if self._missing_table(exc):
                return 0
            raise

    # --- writes -------------------------------------------------------------------------------------------
    def _row_values(self, schema: ClassSchema, obj: StoredObject) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, value in obj.items():
            if name in ("_rperm", "_wperm"):
                values[name] = None if value is None else orjson.dumps(value).decode()
            elif name in ("objectId", "createdAt", "updatedAt"):
                values[name] = value
            else:
                ftype = _table_fields(schema).get(name)
                if name.startswith("_") and ftype is None:
                    continue  # an internal field this class has no column for (e.g. a legacy _session_token)
                if ftype is None or ftype["type"] in ("Relation", "ACL"):
                    if ftype is None and value is not None:
                        raise ParseError(errors.INCORRECT_TYPE, f"field {name} is not in the schema of "
                                                               f"{schema.class_name}")
                    continue
                values[name] = _encode(ftype, value)
        return values

    def _relation_rows(self, class_name: str, owner_id: str, field: str, adds: list[str],
                       removes: list[str]) -> None:
        table = quote(join_table(field, class_name))
        if adds:
            self.db.executemany(
                f'INSERT OR IGNORE INTO {table} ("relatedId", "owningId") VALUES (?, ?)',
                [(rid, owner_id) for rid in adds],
            )
        if removes:
            self.db.executemany(
                f'DELETE FROM {table} WHERE "relatedId" = ? AND "owningId" = ?',
                [(rid, owner_id) for rid in removes],
            )

    async def insert(self, schema: ClassSchema, obj: StoredObject,
                     relations: dict[str, list[str]] | None = None) -> None:
        values = self._row_values(schema, obj)
        names = ", ".join(quote(n) for n in values)
        marks = ", ".join("?" for _ in values)
        with self._write() as db:
            try:
                db.execute(f"INSERT INTO {quote(schema.class_name)} ({names}) VALUES ({marks})",
                           list(values.values()))
            except sqlite3.IntegrityError:
                raise ParseError(errors.DUPLICATE_VALUE,
                                 "A duplicate value for a field with unique values was provided") from None
            for field, ids in (relations or {}).items():
                self._relation_rows(schema.class_name, obj["objectId"], field, ids, [])

    async def insert_batch(self, schema: ClassSchema, objects: list[StoredObject]) -> list[ParseError | None]:
        results: list[ParseError | None] = []
        for obj in objects:  # a local insert is microseconds: one by one keeps each error its own
            try:
                await self.insert(schema, obj)
                results.append(None)
            except ParseError as exc:
                results.append(exc)
        return results

    async def update(self, schema: ClassSchema, where: Node, changes: dict[str, Any], *,
                     many: bool = False) -> list[StoredObject]:
        select, layout = self._select(schema)
        compiler = Compiler(schema)
        sql = f"{select} WHERE {compiler.compile(where)}" + ("" if many else " LIMIT 1")
        updated: list[StoredObject] = []
        with self._write() as db:
            try:
                start_regex_budget()
                rows = db.execute(sql, compiler.params).fetchall()
            except sqlite3.OperationalError as exc:
                if self._missing_table(exc):
                    return []
                raise
            for row in rows:
                obj = self._decode_row(row, layout)
                new_values: dict[str, Any] = {}
                for name, change in changes.items():
                    if isinstance(change, RelationOp):
                        self._relation_rows(schema.class_name, obj["objectId"], name,
                                            [p["objectId"] for p in change.adds],
                                            [p["objectId"] for p in change.removes])
                        continue
                    value = change.apply(obj.get(name)) if isinstance(change, Op) else change
                    new_values[name] = value
                    if value is None:
                        obj.pop(name, None)
                    else:
                        obj[name] = value
                columns = self._row_values(schema, new_values)
                if columns:
                    assignments = ", ".join(f"{quote(n)} = ?" for n in columns)
                    db.execute(f'UPDATE {quote(schema.class_name)} SET {assignments} WHERE "objectId" = ?',
                               [*columns.values(), obj["objectId"]])
                updated.append(obj)
        return updated

    async def delete(self, schema: ClassSchema, where: Node, *, many: bool = False) -> int:
        compiler = Compiler(schema)
        condition = compiler.compile(where)
        table = quote(schema.class_name)
        with self._write() as db:
            try:
                start_regex_budget()
                ids = [r[0] for r in db.execute(
                    f'SELECT "objectId" FROM {table} WHERE {condition}' + ("" if many else " LIMIT 1"),
                    compiler.params,
                ).fetchall()]
            except sqlite3.OperationalError as exc:
                if self._missing_table(exc):
                    return 0
                raise
            for oid in ids:
                db.execute(f'DELETE FROM {table} WHERE "objectId" = ?', (oid,))
                for field in schema.relation_fields():
                    db.execute(f'DELETE FROM {quote(join_table(field, schema.class_name))} WHERE "owningId" = ?',
                               (oid,))
            return len(ids)

    # --- bulk paths ---------------------------------------------------------------------------------------
    async def insert_many(self, schema: ClassSchema, objects: list[StoredObject]) -> int:
        if not objects:
            return 0
        rows = [self._row_values(schema, obj) for obj in objects]
        names = list(dict.fromkeys(name for row in rows for name in row))
        sql = (f"INSERT OR IGNORE INTO {quote(schema.class_name)} ({', '.join(quote(n) for n in names)}) "
               f"VALUES ({', '.join('?' for _ in names)})")
        with self._write() as db:
            before = db.total_changes
            db.executemany(sql, [[row.get(n) for n in names] for row in rows])
            return db.total_changes - before

    async def upsert_many(self, schema: ClassSchema, objects: list[StoredObject]) -> None:
        if not objects:
            return
        names = self._columns(schema)
        rows = [self._row_values(schema, obj) for obj in objects]
        sql = (f"INSERT OR REPLACE INTO {quote(schema.class_name)} ({', '.join(quote(n) for n in names)}) "
               f"VALUES ({', '.join('?' for _ in names)})")
        with self._write() as db:
            db.executemany(sql, [[row.get(n) for n in names] for row in rows])

    async def remove_relation_rows(self, class_name: str, field: str, pairs: list[tuple[str, str]]) -> None:
        with self._write() as db:
            db.executemany(f'DELETE FROM {quote(join_table(field, class_name))} WHERE "owningId" = ? AND "relatedId" = ?',
                           pairs)

    async def add_relation_rows(self, class_name: str, field: str, pairs: list[tuple[str, str]]) -> None:
        with self._write() as db:
            self._create_join_table(field, class_name)
            db.executemany(f'INSERT OR IGNORE INTO {quote(join_table(field, class_name))} ("owningId", "relatedId")'
                           " VALUES (?, ?)", pairs)

    async def relation_rows(self, class_name: str, field: str, *, after: tuple[str, str] | None = None,
                            limit: int = 5000) -> list[tuple[str, str]]:
        table = quote(join_table(field, class_name))
        where, params = ("", []) if after is None else (' WHERE ("owningId", "relatedId") > (?, ?)', list(after))
        try:
            rows = self.db.execute(f'SELECT "owningId", "relatedId" FROM {table}{where}'
                                   f' ORDER BY "owningId", "relatedId" LIMIT {int(limit)}', params).fetchall()
        except sqlite3.OperationalError as exc:
            if self._missing_table(exc):
                return []
            raise
        return [(a, b) for a, b in rows]

    async def analyze(self, tables: list[str] | None = None) -> None:
        if tables is None:
            self.db.execute("ANALYZE")
            return
        existing = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table in tables:
            if table in existing:
                self.db.execute(f"ANALYZE {quote(table)}")


# While one task's transaction is open, other tasks' writes wait for it and their reads see what is committed
# (parsectl.storage.transactions).
for _name in ("ensure_class", "add_fields", "set_class_level_permissions", "delete_fields", "delete_class",
              "insert", "insert_batch", "update", "delete", "insert_many", "upsert_many", "remove_relation_rows",
              "add_relation_rows"):
    setattr(SQLiteAdapter, _name, transactions.sqlite_gated(getattr(SQLiteAdapter, _name)))
for _name in ("schema_version", "load_schemas", "find", "explain", "count", "relation_rows"):
    setattr(SQLiteAdapter, _name, transactions.sqlite_read(getattr(SQLiteAdapter, _name)))
