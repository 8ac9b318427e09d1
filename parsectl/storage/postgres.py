"""PostgreSQL in parse-server's exact on-disk format (psycopg 3, a connection pool).

Tables as parse-server 9.10 creates them: ``"_SCHEMA"`` (className, schema jsonb, isParseClass) with the
schema in parse-server's adapter form (``_rperm``/``_wperm`` fields, ``_hashed_password`` on ``_User``,
no ACL); one table per class with parse-server's column types; ``"_Join:<field>:<Class>"`` tables; the
system classes and the unique and case-insensitive indexes parse-server creates at start-up. Node
parse-server and ``parsectl serve`` can run on the same database.

Updates are single SQL statements (Increment, Add, AddUnique and Remove are computed by PostgreSQL),
so they are atomic under any concurrency. Schema changes are announced with
``NOTIFY "schema.change"`` as parse-server does, and other processes' announcements reload the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import orjson
import psycopg
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from parsectl.model import codec, errors
from parsectl.model.codec import FieldType
from parsectl.model.errors import ParseError
from parsectl.model.ops import Add, AddUnique, Delete, Increment, Op, RelationOp, Remove
from parsectl.model.query import And, Compare, Node, SortKey
from parsectl.model.schema import DEFAULT_FIELDS, USER_INTERNAL_FIELDS, ClassSchema, default_clp
from parsectl.storage import pg_types, transactions
from parsectl.storage.base import StoredObject
from parsectl.storage.pg_pool import ConnectionPool
from parsectl.storage.postgres_query import PostgresCompiler, point_sql, polygon_sql, text_array, to_datetime
from parsectl.storage.sql import SYSTEM_COLUMNS, join_table, quote
from parsectl.uri import redact

log = logging.getLogger("parsectl.storage.postgres")
IDLE_CHECK_SECONDS = 2.0

_PG_TYPES = {
    "String": "text", "Date": "timestamp with time zone", "Object": "jsonb", "File": "text",
    "Boolean": "boolean", "Pointer": "text", "Number": "double precision", "GeoPoint": "point",
    "Bytes": "jsonb", "Polygon": "polygon", "Array": "jsonb",
}
_CASTS = {"GeoPoint": "::point", "Polygon": "::polygon"}
_PERM_FIELD = {"type": "Array", "contents": {"type": "String"}}
_USER_INTERNAL = USER_INTERNAL_FIELDS
# Classes parse-server creates at start-up, with its indexes.
_STARTUP_INDEXES = [
    ("_User", 'CREATE UNIQUE INDEX IF NOT EXISTS "_User_unique_username" ON "_User" ("username")'),
    ("_User", 'CREATE UNIQUE INDEX IF NOT EXISTS "_User_unique_email" ON "_User" ("email")'),
    ("_User", 'CREATE INDEX IF NOT EXISTS "case_insensitive_username" ON "_User" (lower("username") varchar_pattern_ops)'),
    ("_User", 'CREATE INDEX IF NOT EXISTS "case_insensitive_email" ON "_User" (lower("email") varchar_pattern_ops)'),
    ("_User", 'CREATE UNIQUE INDEX IF NOT EXISTS "_User_unique_authData_anonymous_id" ON "_User" '
              "((\"authData\" -> 'anonymous' ->> 'id')) WHERE (\"authData\" -> 'anonymous' ->> 'id') IS NOT NULL"),
    ("_User", 'CREATE INDEX IF NOT EXISTS "_email_verify_token" ON "_User" ("_email_verify_token")'),
    ("_User", 'CREATE INDEX IF NOT EXISTS "_perishable_token" ON "_User" ("_perishable_token")'),
    ("_Role", 'CREATE UNIQUE INDEX IF NOT EXISTS "_Role_unique_name" ON "_Role" ("name")'),
    ("_Idempotency", 'CREATE UNIQUE INDEX IF NOT EXISTS "_Idempotency_unique_reqId" ON "_Idempotency" ("reqId")'),
    ("_Idempotency", 'CREATE INDEX IF NOT EXISTS "ttl" ON "_Idempotency" ("expire")'),
]
_STARTUP_CLASSES: dict[str, dict[str, FieldType]] = {
    "_User": {},
    "_Role": {},
    "_Idempotency": {"reqId": {"type": "String"}, "expire": {"type": "Date"}},
}


def _int_if_integral(value: float) -> float | int:
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _number(value: Any) -> Any:
    """double precision comes back as float; JavaScript prints integral values without a fraction."""
    if type(value) is float and value.is_integer() and -2**53 < value < 2**53:
        return int(value)
    return value


def _parse_point(text: str) -> dict[str, Any]:
    x, y = text.strip("()").split(",")
    return {"__type": "GeoPoint", "latitude": _int_if_integral(float(y)),
            "longitude": _int_if_integral(float(x))}


def _parse_polygon(text: str) -> dict[str, Any]:
    inner = text[2:-2]
    coords = []
    for pair in inner.split("),("):
        x, y = pair.split(",")
        coords.append([_int_if_integral(float(y)), _int_if_integral(float(x))])
    return {"__type": "Polygon", "coordinates": coords}


def to_postgres_schema(schema: ClassSchema) -> dict[str, Any]:
    """The ``_SCHEMA.schema`` document parse-server writes for a class."""
    fields: dict[str, Any] = {}
    for name, ftype in schema.fields.items():
        if ftype["type"] == "ACL" or (schema.class_name == "_User" and name == "password"):
            continue
        fields[name] = ftype
    fields["_rperm"] = _PERM_FIELD
    fields["_wperm"] = _PERM_FIELD
    if schema.class_name == "_User":
        fields["_hashed_password"] = {"type": "String"}
    doc: dict[str, Any] = {"fields": fields, "className": schema.class_name}
    if schema.clp and schema.clp != default_clp():
        doc["classLevelPermissions"] = schema.clp
    if schema.indexes:
        doc["indexes"] = schema.indexes
    return doc


def from_postgres_schema(class_name: str, doc: dict[str, Any]) -> ClassSchema:
    stored = {name: t for name, t in (doc.get("fields") or {}).items()
              if name not in ("_rperm", "_wperm") and not name.startswith("_")}
    schema = ClassSchema.new(class_name, stored)
    clp = doc.get("classLevelPermissions")
    if clp:
        schema.clp = {**{k: {} for k in default_clp()}, **clp}
        schema.clp.setdefault("protectedFields", {})
    schema.indexes = doc.get("indexes") or {}
    return schema


class PostgresAdapter:
    """A :class:`parsectl.storage.base.StorageAdapter` on PostgreSQL in parse-server's format."""

    OPTIONS = ("maxPoolSize", "max", "minPoolSize", "min", "connectionTimeoutMillis")

    def __init__(self, uri: str, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            raise ValueError(f"unknown databaseOptions for PostgreSQL: {', '.join(unknown)} "
                             f"(known: {', '.join(self.OPTIONS)})")
        max_size = int(options.get("maxPoolSize", options.get("max", 10)))
        min_size = min(max_size, int(options.get("minPoolSize", options.get("min", 2))))
        timeout = float(options.get("connectionTimeoutMillis", 10000)) / 1000
        self.uri = uri
        self.pool = ConnectionPool(uri, min_size=min_size, max_size=max_size, timeout=timeout,
                                   idle_check_seconds=IDLE_CHECK_SECONDS,
                                   kwargs={"autocommit": True, "options": pg_types.SESSION_OPTIONS},
                                   configure=pg_types.configure)
        self._sender = str(uuid.uuid4())
        self._version = 0
        self._listener: asyncio.Task[None] | None = None
        self._layouts: dict[int, tuple[ClassSchema, str, _Layout]] = {}

    # --- connection ----------------------------------------------------------------------------------
    async def open(self) -> None:
        try:
            probe = await psycopg.AsyncConnection.connect(self.uri, connect_timeout=max(1, int(self.pool.timeout)))
            await probe.close()
        except psycopg.Error as exc:
            raise ConnectionError(f"cannot connect to PostgreSQL at {redact(self.uri)}: "
                                  f"{str(exc).strip().splitlines()[0]}") from None
        try:
            await asyncio.wait_for(self.pool.open(), self.pool.timeout)
        except Exception as exc:  # noqa: BLE001 - reported as a clear start-up error
            await self.pool.close()
            raise ConnectionError(f"cannot connect to PostgreSQL at {redact(self.uri)}: {exc}") from None
        async with self.pool.connection() as conn:
            await conn.execute(
                'CREATE TABLE IF NOT EXISTS "_SCHEMA" ("className" varchar(120), "schema" jsonb,'
                ' "isParseClass" bool, PRIMARY KEY ("className"))'
            )
        for class_name, fields in _STARTUP_CLASSES.items():
            await self.ensure_class(ClassSchema.new(class_name, fields))
        async with self.pool.connection() as conn:
            for _, statement in _STARTUP_INDEXES:
                with contextlib.suppress(pg_errors.UniqueViolation, pg_errors.DuplicateTable):
                    await conn.execute(statement)
        self._listener = asyncio.create_task(self._listen())

    def transaction(self) -> Any:
        """All storage calls of this task in one transaction (parsectl.storage.transactions)."""
        return transactions.postgres_transaction(self)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        await self.pool.close()

    async def _listen(self) -> None:
        """Follow other servers' schema changes (parse-server's ``schema.change`` notifications)."""
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.uri, autocommit=True)
                async with conn:
                    await conn.execute('LISTEN "schema.change"')
                    self._version += 1
                    async for note in conn.notifies():
                        with contextlib.suppress(ValueError, TypeError):
                            if orjson.loads(note.payload).get("senderId") == self._sender:
                                continue
                        self._version += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep listening across database restarts
                log.warning("schema listener reconnecting after: %s", exc)
                self._version += 1
                await asyncio.sleep(1)

    async def _notify(self, conn: psycopg.AsyncConnection[Any]) -> None:
        payload = orjson.dumps({"senderId": self._sender}).decode()
        await conn.execute("SELECT pg_notify('schema.change', %s)", (payload,))

    # --- schema -----------------------------------------------------------------------------------
    async def schema_version(self) -> int:
        return self._version

    async def load_schemas(self) -> dict[str, ClassSchema]:
        async with self.pool.connection() as conn:
            cur = await conn.execute('SELECT "className", "schema" FROM "_SCHEMA"')
            rows = await cur.fetchall()
        return {name: from_postgres_schema(name, doc or {}) for name, doc in rows}

    async def _read_schema(self, conn: psycopg.AsyncConnection[Any], class_name: str,
                           lock: bool = False) -> ClassSchema | None:
        sql = 'SELECT "schema" FROM "_SCHEMA" WHERE "className" = %s' + (" FOR UPDATE" if lock else "")
        row = await (await conn.execute(sql, (class_name,))).fetchone()
        return from_postgres_schema(class_name, row[0] or {}) if row else None

    @staticmethod
    def _join_ddl(field: str, owner: str) -> str:
        return (f'CREATE TABLE IF NOT EXISTS {quote(join_table(field, owner))} ("relatedId" varchar(120),'
                ' "owningId" varchar(120), PRIMARY KEY ("relatedId", "owningId"))')

    async def ensure_class(self, schema: ClassSchema) -> ClassSchema:
        async with self.pool.connection() as conn, conn.transaction():
            stored = await self._read_schema(conn, schema.class_name)
            if stored is not None:
                return stored
            doc = to_postgres_schema(schema)
            columns = []
            table_fields = dict(doc["fields"])
            if schema.class_name == "_User":
                table_fields.update(_USER_INTERNAL)
            for name, ftype in table_fields.items():
                if ftype["type"] == "Relation":
                    continue
                pg_type = "text[]" if name in ("_rperm", "_wperm") else _PG_TYPES[ftype["type"]]
                columns.append(f"{quote(name)} {pg_type}")
            columns.append('PRIMARY KEY ("objectId")')
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {quote(schema.class_name)} ({', '.join(columns)})")
            for name in schema.relation_fields():
                await conn.execute(self._join_ddl(name, schema.class_name))
            cur = await conn.execute(
                'INSERT INTO "_SCHEMA" ("className", "schema", "isParseClass") VALUES (%s, %s, true)'
                ' ON CONFLICT ("className") DO NOTHING',
                (schema.class_name, Jsonb(doc)),
            )
            if cur.rowcount == 0:
                stored = await self._read_schema(conn, schema.class_name)
                assert stored is not None
                return stored
            await self._notify(conn)
        self._version += 1
        return from_postgres_schema(schema.class_name, doc)

    async def add_fields(self, class_name: str, fields: dict[str, FieldType]) -> ClassSchema:
        async with self.pool.connection() as conn, conn.transaction():
            stored = await self._read_schema(conn, class_name, lock=True)
            if stored is None:
                raise ParseError(errors.INVALID_CLASS_NAME, f"Class {class_name} does not exist.")
            changed = False
            for name, ftype in fields.items():
                if not stored.check_value_type(name, ftype):
                    continue
                stored.fields[name] = ftype
                changed = True
                if ftype["type"] == "Relation":
                    await conn.execute(self._join_ddl(name, class_name))
                else:
                    try:
                        await conn.execute(f"ALTER TABLE {quote(class_name)} ADD COLUMN IF NOT EXISTS {quote(name)}"
                                           f" {_PG_TYPES[ftype['type']]}")
                    except pg_errors.TooManyColumns:
                        raise ParseError(errors.INVALID_JSON, f"Could not add field {name}") from None
            if changed:
                await conn.execute('UPDATE "_SCHEMA" SET "schema" = %s WHERE "className" = %s',
                                   (Jsonb(to_postgres_schema(stored)), class_name))
                await self._notify(conn)
        if changed:
            self._version += 1
        return stored

    async def _rewrite_schema(self, class_name: str, change: Any) -> ClassSchema:
        """Lock the class's _SCHEMA row, apply ``change(conn, schema)``, store and announce it."""
        async with self.pool.connection() as conn, conn.transaction():
            stored = await self._read_schema(conn, class_name, lock=True)
            if stored is None:
                raise ParseError(errors.INVALID_CLASS_NAME, f"Class {class_name} does not exist.")
            await change(conn, stored)
            await conn.execute('UPDATE "_SCHEMA" SET "schema" = %s WHERE "className" = %s',
                               (Jsonb(to_postgres_schema(stored)), class_name))
            await self._notify(conn)
        self._version += 1
        return stored

    async def set_class_level_permissions(self, class_name: str, clp: dict[str, Any]) -> ClassSchema:
        async def change(conn: psycopg.AsyncConnection[Any], stored: ClassSchema) -> None:
            stored.clp = clp

        return await self._rewrite_schema(class_name, change)

    async def set_indexes(self, class_name: str, indexes: dict[str, Any], create: list[tuple[str, dict[str, Any]]],
                          drop: list[str]) -> ClassSchema:
        # parse-server's createIndexes/dropIndexes: plain indexes on the named columns, key values unused.
        async def change(conn: psycopg.AsyncConnection[Any], stored: ClassSchema) -> None:
            for name in drop:
                await conn.execute(f"DROP INDEX IF EXISTS {quote(name)}")
            for name, keys in create:
                await conn.execute(f"CREATE INDEX IF NOT EXISTS {quote(name)} ON {quote(class_name)} "
                                   f"({', '.join(quote(key) for key in keys)})")
            stored.indexes = indexes

        return await self._rewrite_schema(class_name, change)

    async def delete_fields(self, class_name: str, names: list[str]) -> ClassSchema:
        async def change(conn: psycopg.AsyncConnection[Any], stored: ClassSchema) -> None:
            for name in names:
                ftype = stored.fields.pop(name, None)
                if ftype is None:
                    continue
                if ftype["type"] == "Relation":
                    await conn.execute(f"DROP TABLE IF EXISTS {quote(join_table(name, class_name))}")
                else:
                    await conn.execute(f"ALTER TABLE {quote(class_name)} DROP COLUMN IF EXISTS {quote(name)}")

        return await self._rewrite_schema(class_name, change)

    async def delete_class(self, schema: ClassSchema) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            for name in schema.relation_fields():
                await conn.execute(f"DROP TABLE IF EXISTS {quote(join_table(name, schema.class_name))}")
            await conn.execute(f"DROP TABLE IF EXISTS {quote(schema.class_name)}")
            await conn.execute('DELETE FROM "_SCHEMA" WHERE "className" = %s', (schema.class_name,))
            await self._notify(conn)
        self._version += 1

    # --- rows -------------------------------------------------------------------------------------------
    def _layout(self, schema: ClassSchema) -> tuple[str, _Layout]:
        cached = self._layouts.get(id(schema))
        if cached is not None and cached[0] is schema and cached[2].width == len(schema.fields):
            return cached[1], cached[2]
        fields = dict(schema.fields)
        if schema.class_name == "_User":
            fields.update(_USER_INTERNAL)
        columns: list[tuple[str, str, Any]] = [
            ("objectId", '"objectId"', None), ("createdAt", '"createdAt"', None),
            ("updatedAt", '"updatedAt"', None), ("_rperm", '"_rperm"', None), ("_wperm", '"_wperm"', None)]
        for name, ftype in fields.items():
            if name in SYSTEM_COLUMNS or ftype["type"] in ("ACL", "Relation") or name == "password":
                continue
            columns.append((name, quote(name), _decoder(ftype)))
        layout = _Layout(columns, len(schema.fields))
        select = f"SELECT {layout.select_list} FROM {quote(schema.class_name)}"
        if len(self._layouts) > 1024:  # every schema reload brings new objects: keep the cache bounded
            self._layouts.clear()
        self._layouts[id(schema)] = (schema, select, layout)
        return select, layout

    async def _fetch(self, sql: str, params: list[Any], layout: _Layout | _Scored) -> list[StoredObject]:
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(sql, params)
                rows = await cur.fetchall()
        except (pg_errors.UndefinedTable, pg_errors.UndefinedColumn):
            return []
        except pg_errors.DataError as exc:
            raise ParseError(errors.INVALID_QUERY,
                             f"Invalid query value: {exc.diag.message_primary or str(exc)}") from None
        return layout.decode_rows(rows)

    async def find(self, schema: ClassSchema, where: Node, *, skip: int = 0, limit: int | None = None,
                   order: list[SortKey] | None = None) -> list[StoredObject]:
        version = self._version
        rows = await self._find(schema, where, skip, limit, order)
        if self._version != version and rows:
            # The class's schema changed while this read was on its way: a write that added a field may
            # have landed before the SELECT ran, whose column list came from the older schema. Read the
            # class's schema as stored now and read again, so no stored field is left out.
            async with self.pool.connection() as conn:
                fresh = await self._read_schema(conn, schema.class_name)
            if fresh is not None and not fresh.fields.keys() <= schema.fields.keys():
                fresh.fields = {**fresh.fields, **schema.fields}
                rows = await self._find(fresh, where, skip, limit, order)
        return rows

    async def _find(self, schema: ClassSchema, where: Node, skip: int, limit: int | None,
                    order: list[SortKey] | None) -> list[StoredObject]:
        select, layout = self._layout(schema)
        compiler = PostgresCompiler(schema)
        condition = compiler.compile(where)
        score, score_params = compiler.score_select()  # $text: the score as a "$score" column
        if score:
            select = f"SELECT {layout.select_list}{score} FROM {quote(schema.class_name)}"
        sql = f"{select} WHERE {condition}{compiler.order_by(order or [])}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        if skip:
            sql += f" OFFSET {int(skip)}"
        return await self._fetch(sql, score_params + compiler.params, _Scored(layout) if score else layout)

    async def explain(self, schema: ClassSchema, where: Node, *, skip: int = 0, limit: int | None = None,
                      order: list[SortKey] | None = None) -> Any:
        select, _ = self._layout(schema)
        compiler = PostgresCompiler(schema)
        sql = f"EXPLAIN (FORMAT JSON) {select} WHERE {compiler.compile(where)}{compiler.order_by(order or [])}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        try:
            async with self.pool.connection() as conn:
                row = await (await conn.execute(sql, compiler.params)).fetchone()
        except (pg_errors.UndefinedTable, pg_errors.UndefinedColumn):
            return []
        return row[0] if row else []

    async def count(self, schema: ClassSchema, where: Node) -> int:
        compiler = PostgresCompiler(schema)
        sql = f"SELECT count(*) FROM {quote(schema.class_name)} WHERE {compiler.compile(where)}"
        try:
            async with self.pool.connection() as conn:
                row = await (await conn.execute(sql, compiler.params)).fetchone()
        except (pg_errors.UndefinedTable, pg_errors.UndefinedColumn):
            return 0
        return int(row[0]) if row else 0

    # --- writes -----------------------------------------------------------------------------------------
    def _field_type(self, schema: ClassSchema, name: str) -> FieldType | None:
        if name in ("_rperm", "_wperm"):
            return {"type": "Perm"}
        if name in ("createdAt", "updatedAt"):
            return {"type": "Date"}
        if name == "objectId":
            return {"type": "String"}
        if schema.class_name == "_User" and name in _USER_INTERNAL:
            return _USER_INTERNAL[name]
        return schema.fields.get(name)

    def _value(self, ftype: FieldType, value: Any) -> tuple[str, Any]:
        """(placeholder with cast, parameter) for a storage-form value in a column of ``ftype``."""
        kind = ftype["type"]
        if value is None:
            return "%s", None
        if kind == "Perm":
            return "%s::text[]", list(value)
        if kind == "Date":
            iso = value if type(value) is str else value.get("iso") if type(value) is dict else None
            if iso is not None and codec.is_canonical_iso(iso):
                return "%s::timestamptz", iso  # PostgreSQL parses the ISO string itself
            return "%s", to_datetime(value)
        if kind == "Pointer":
            return "%s", value["objectId"]
        if kind == "File":
            return "%s", value["name"]
        if kind == "GeoPoint":
            return "%s::point", point_sql(value)
        if kind == "Polygon":
            return "%s::polygon", polygon_sql(value)
        if kind in ("Object", "Array", "Bytes"):
            return "%s", Jsonb(value)
        return "%s", value

    async def insert(self, schema: ClassSchema, obj: StoredObject,
                     relations: dict[str, list[str]] | None = None) -> None:
        names, marks, params = [], [], []
        for name, value in obj.items():
            ftype = self._field_type(schema, name)
            if ftype is None or ftype["type"] in ("Relation", "ACL") or value is None:
                continue
            mark, param = self._value(ftype, value)
            names.append(quote(name))
            marks.append(mark)
            params.append(param)
        sql = f"INSERT INTO {quote(schema.class_name)} ({', '.join(names)}) VALUES ({', '.join(marks)})"
        async with self.pool.connection() as conn, _transaction(conn, bool(relations)):
            try:
                await conn.execute(sql, params)
            except pg_errors.UniqueViolation:
                raise ParseError(errors.DUPLICATE_VALUE,
                                 "A duplicate value for a field with unique values was provided") from None
            except (pg_errors.UntranslatableCharacter, pg_errors.CharacterNotInRepertoire, psycopg.DataError):
                raise _nul_error() from None
            for field, ids in (relations or {}).items():
                await self._relation_rows(conn, schema.class_name, obj["objectId"], field, ids, [])

    async def insert_batch(self, schema: ClassSchema, objects: list[StoredObject]) -> list[ParseError | None]:
        """One multi-row INSERT; if any row is refused, each row is retried alone to find which."""
        rows: list[dict[str, tuple[str, Any]]] = []
        for obj in objects:
            row = {}
            for name, value in obj.items():
                ftype = self._field_type(schema, name)
                if ftype is None or ftype["type"] in ("Relation", "ACL") or value is None:
                    continue
                row[name] = self._value(ftype, value)
            rows.append(row)
        names = list(dict.fromkeys(name for row in rows for name in row))
        params: list[Any] = []
        tuples = []
        for row in rows:
            marks = []
            for name in names:
                mark, param = row.get(name, ("%s", None))
                params.append(param)
                marks.append(mark.replace("%s", f"${len(params)}", 1))
            tuples.append("(" + ", ".join(marks) + ")")
        sql = (f"INSERT INTO {quote(schema.class_name)} ({', '.join(quote(n) for n in names)}) "
               f"VALUES {', '.join(tuples)}")
        try:
            # $n placeholders through a raw cursor: psycopg would re-parse a query of this many parameters
            # for %s on every call (its parse cache stops at 50 parameters)
            async with self.pool.connection() as conn, psycopg.AsyncRawCursor(conn) as cur:
                await cur.execute(sql, params)
            return [None] * len(objects)
        except (pg_errors.UniqueViolation, pg_errors.UntranslatableCharacter, pg_errors.CharacterNotInRepertoire,
                psycopg.DataError):
            pass
        results: list[ParseError | None] = []
        for obj in objects:
            try:
                await self.insert(schema, obj)
                results.append(None)
            except ParseError as exc:
                results.append(exc)
        return results

    async def _relation_rows(self, conn: psycopg.AsyncConnection[Any], class_name: str, owner_id: str,
                             field: str, adds: list[str], removes: list[str]) -> None:
        table = quote(join_table(field, class_name))
        async with conn.cursor() as cur:
            if adds:
                await cur.executemany(
                    f'INSERT INTO {table} ("relatedId", "owningId") VALUES (%s, %s) ON CONFLICT DO NOTHING',
                    [(rid, owner_id) for rid in adds])
            if removes:
                await cur.executemany(f'DELETE FROM {table} WHERE "relatedId" = %s AND "owningId" = %s',
                                      [(rid, owner_id) for rid in removes])

    def _assignment(self, schema: ClassSchema, name: str, change: Any, params: list[Any]) -> str:
        col = quote(name)
        if isinstance(change, Delete) or change is None:
            return f"{col} = NULL"
        if isinstance(change, Increment):
            params.append(change.amount)
            return f"{col} = COALESCE({col}, 0) + %s"
        if isinstance(change, AddUnique):
            params.append(Jsonb(change.initial_value()))
            # aliases start with "_" so they never meet a user column of the same name
            return (f"{col} = COALESCE({col}, '[]'::jsonb) || COALESCE((SELECT jsonb_agg(_new._v ORDER BY _new._i)"
                    f" FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS _new(_v, _i) WHERE NOT EXISTS ("
                    f"SELECT 1 FROM jsonb_array_elements(COALESCE({col}, '[]'::jsonb)) AS _old(_v)"
                    f" WHERE _old._v = _new._v)), '[]'::jsonb)")
        if isinstance(change, Remove):
            params.append(Jsonb(change.objects))
            return (f"{col} = COALESCE((SELECT jsonb_agg(_old._v ORDER BY _old._i) FROM jsonb_array_elements("
                    f"COALESCE({col}, '[]'::jsonb)) WITH ORDINALITY AS _old(_v, _i) WHERE NOT EXISTS (SELECT 1 FROM "
                    f"jsonb_array_elements(%s::jsonb) AS _gone(_v) WHERE _gone._v = _old._v)), '[]'::jsonb)")
        if isinstance(change, Add):
            params.append(Jsonb(change.objects))
            return f"{col} = COALESCE({col}, '[]'::jsonb) || %s::jsonb"
        if isinstance(change, Op):
            raise ParseError(errors.COMMAND_UNAVAILABLE, f"The {type(change).__name__} operator is not supported yet.")
        ftype = self._field_type(schema, name)
        if ftype is None:
            raise ParseError(errors.INCORRECT_TYPE, f"field {name} is not in the schema of {schema.class_name}")
        mark, param = self._value(ftype, change)
        params.append(param)
        return f"{col} = {mark}"

    async def update(self, schema: ClassSchema, where: Node, changes: dict[str, Any], *,
                     many: bool = False) -> list[StoredObject]:
        select, layout = self._layout(schema)
        params: list[Any] = []
        relation_ops = {n: c for n, c in changes.items() if isinstance(c, RelationOp)}
        assignments = [self._assignment(schema, n, c, params) for n, c in changes.items()
                       if not isinstance(c, RelationOp) and (n in SYSTEM_COLUMNS or self._field_type(schema, n))]
        compiler = PostgresCompiler(schema)
        condition = compiler.compile(where)
        table = quote(schema.class_name)
        target = condition if many or _by_object_id(where) else (
            f'"objectId" = (SELECT "objectId" FROM {table} WHERE {condition} LIMIT 1 FOR UPDATE)')
        returning = layout.select_list
        if not assignments:
            assignments = ['"objectId" = "objectId"']
        sql = f"UPDATE {table} SET {', '.join(assignments)} WHERE {target} RETURNING {returning}"
        async with self.pool.connection() as conn, _transaction(conn, bool(relation_ops)):
            try:
                cur = await conn.execute(sql, params + compiler.params)
                rows = await cur.fetchall()
            except (pg_errors.UndefinedTable, pg_errors.UndefinedColumn):
                return []
            except pg_errors.UniqueViolation:
                raise ParseError(errors.DUPLICATE_VALUE,
                                 "A duplicate value for a field with unique values was provided") from None
            except (pg_errors.UntranslatableCharacter, pg_errors.CharacterNotInRepertoire, psycopg.DataError):
                raise _nul_error() from None
            objects = layout.decode_rows(rows)
            for obj in objects:
                for name, op in relation_ops.items():
                    await self._relation_rows(conn, schema.class_name, obj["objectId"], name,
                                              [p["objectId"] for p in op.adds], [p["objectId"] for p in op.removes])
        return objects

    async def delete(self, schema: ClassSchema, where: Node, *, many: bool = False) -> int:
        compiler = PostgresCompiler(schema)
        condition = compiler.compile(where)
        table = quote(schema.class_name)
        target = condition if many or _by_object_id(where) else (
            f'"objectId" = (SELECT "objectId" FROM {table} WHERE {condition} LIMIT 1)')
        async with self.pool.connection() as conn, _transaction(conn, bool(schema.relation_fields())):
            try:
                cur = await conn.execute(f'DELETE FROM {table} WHERE {target} RETURNING "objectId"', compiler.params)
                ids = [r[0] for r in await cur.fetchall()]
            except (pg_errors.UndefinedTable, pg_errors.UndefinedColumn):
                return 0
            for field in schema.relation_fields():
                with contextlib.suppress(pg_errors.UndefinedTable):
                    async with conn.transaction():
                        await conn.execute(f'DELETE FROM {quote(join_table(field, schema.class_name))}'
                                           ' WHERE "owningId" = ANY(%s)', (ids,))
        return len(ids)


    # --- bulk paths ---------------------------------------------------------------------------------------
    async def insert_many(self, schema: ClassSchema, objects: list[StoredObject]) -> int:
        """COPY into a temporary table, then one INSERT ... ON CONFLICT DO NOTHING (idempotent)."""
        if not objects:
            return 0
        rows: list[dict[str, Any]] = []
        for obj in objects:
            row = {}
            for name, value in obj.items():
                ftype = self._field_type(schema, name)
                if ftype is None or ftype["type"] in ("Relation", "ACL") or value is None:
                    continue
                row[name] = self._value(ftype, value)[1]
            rows.append(row)
        names = list(dict.fromkeys(name for row in rows for name in row))
        cols = ", ".join(quote(n) for n in names)
        table = quote(schema.class_name)
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(f'CREATE TEMP TABLE "_parsectl_load" (LIKE {table}) ON COMMIT DROP')
            try:
                async with conn.cursor() as cur:
                    async with cur.copy(f'COPY "_parsectl_load" ({cols}) FROM STDIN') as copy:
                        for row in rows:
                            await copy.write_row([_copy_value(row.get(n)) for n in names])
                    await cur.execute(f'INSERT INTO {table} ({cols}) SELECT {cols} FROM "_parsectl_load"'
                                      " ON CONFLICT DO NOTHING")
                    return cur.rowcount
            except (pg_errors.UntranslatableCharacter, pg_errors.CharacterNotInRepertoire, psycopg.DataError):
                raise _nul_error() from None

    async def upsert_many(self, schema: ClassSchema, objects: list[StoredObject]) -> None:
        if not objects:
            return
        _, layout = self._layout(schema)
        names = layout.names
        params: list[Any] = []
        tuples = []
        for obj in objects:
            marks = []
            for name in names:
                ftype = self._field_type(schema, name)
                mark, param = self._value(ftype, obj.get(name)) if ftype else ("%s", None)
                marks.append(mark)
                params.append(param)
            tuples.append("(" + ", ".join(marks) + ")")
        updates = ", ".join(f"{quote(n)} = EXCLUDED.{quote(n)}" for n in names if n != "objectId")
        sql = (f"INSERT INTO {quote(schema.class_name)} ({', '.join(quote(n) for n in names)}) VALUES "
               f"{', '.join(tuples)} ON CONFLICT (\"objectId\") DO UPDATE SET {updates}")
        async with self.pool.connection() as conn:
            await conn.execute(sql, params)

    async def remove_relation_rows(self, class_name: str, field: str, pairs: list[tuple[str, str]]) -> None:
        async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(f'DELETE FROM {quote(join_table(field, class_name))}'
                                  ' WHERE "owningId" = %s AND "relatedId" = %s', pairs)

    async def add_relation_rows(self, class_name: str, field: str, pairs: list[tuple[str, str]]) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(self._join_ddl(field, class_name))
            async with conn.cursor() as cur:
                await cur.executemany(
                    f'INSERT INTO {quote(join_table(field, class_name))} ("owningId", "relatedId") VALUES (%s, %s)'
                    " ON CONFLICT DO NOTHING", pairs)

    async def relation_rows(self, class_name: str, field: str, *, after: tuple[str, str] | None = None,
                            limit: int = 5000) -> list[tuple[str, str]]:
        table = quote(join_table(field, class_name))
        where, params = ("", []) if after is None else (' WHERE ("owningId", "relatedId") > (%s, %s)', list(after))
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(f'SELECT "owningId", "relatedId" FROM {table}{where}'
                                         f' ORDER BY "owningId", "relatedId" LIMIT {int(limit)}', params)
                return [(a, b) for a, b in await cur.fetchall()]
        except pg_errors.UndefinedTable:
            return []

    async def analyze(self, tables: list[str] | None = None) -> None:
        if tables == []:
            return
        async with self.pool.connection() as conn:
            if tables:
                cur = await conn.execute("SELECT t FROM unnest(%s::text[]) AS t WHERE to_regclass(quote_ident(t)) "
                                         "IS NOT NULL", (tables,))
                tables = [row[0] for row in await cur.fetchall()]
                if not tables:
                    return
            await conn.execute("ANALYZE " + ", ".join(quote(t) for t in tables) if tables else "ANALYZE")


def _transaction(conn: psycopg.AsyncConnection[Any], needed: bool) -> Any:
    """A transaction when a write spans statements; a single statement commits on its own."""
    return conn.transaction() if needed else contextlib.nullcontext()


def _by_object_id(where: Node) -> bool:
    """The query names one objectId (alone or ANDed with other conditions), so it matches at most one row."""
    nodes = where.children if isinstance(where, And) else [where]
    return any(isinstance(n, Compare) and n.field == "objectId" and n.op == "eq" and isinstance(n.value, str)
               for n in nodes)


def _copy_value(value: Any) -> Any:
    """COPY takes text for the geometric types and JSON; psycopg adapts the rest."""
    if isinstance(value, Jsonb):
        return orjson.dumps(value.obj).decode()
    return value


class _Layout:
    """The columns read for a class and a row decoder generated for them.

    ``decode_rows`` is compiled once per layout: straight-line code per column, skipping NULLs and applying
    each column's decoder, with no per-value loop or tuple unpacking. Column names are checked field names
    (``[A-Za-z][A-Za-z0-9_]*`` or the system columns) and are embedded with ``repr``.
    """

    __slots__ = ("decode_rows", "names", "select_list", "width")

    def __init__(self, columns: list[tuple[str, str, Any]], width: int) -> None:
        self.names = [name for name, _, _ in columns]
        self.select_list = ", ".join(expr for _, expr, _ in columns)
        self.width = width
        namespace: dict[str, Any] = {}
        body = ["def decode_rows(rows):", "    out = []", "    for row in rows:", "        obj = {}"]
        for i, (name, _, decoder) in enumerate(columns):
            body.append(f"        v = row[{i}]")
            if decoder is None:
                body.append(f"        if v is not None: obj[{name!r}] = v")
            else:
                namespace[f"d{i}"] = decoder
                body.append(f"        if v is not None: obj[{name!r}] = d{i}(v)")
        body += ["        out.append(obj)", "    return out"]
        exec("\n".join(body), namespace)  # noqa: S102 - generated from checked column names only
        self.decode_rows = namespace["decode_rows"]


class _Scored:
    """A layout whose rows carry one more column, a ``$text`` query's score, kept as ``"$score"``."""

    __slots__ = ("layout",)

    def __init__(self, layout: _Layout) -> None:
        self.layout = layout

    def decode_rows(self, rows: list[Any]) -> list[StoredObject]:
        objects = self.layout.decode_rows(rows)
        for obj, row in zip(objects, rows, strict=True):
            obj["$score"] = row[-1]
        return objects


def _copy_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _copy_date(value: Any) -> Any:
    return codec.date_iso(value) or value


_COPY_ENCODERS: dict[str, Any] = {
    "Perm": text_array, "Date": _copy_date, "Pointer": lambda v: v["objectId"], "File": lambda v: v["name"],
    "GeoPoint": point_sql, "Polygon": polygon_sql, "Object": _copy_json, "Array": _copy_json, "Bytes": _copy_json,
}


def copy_encoder(ftype: FieldType) -> Any:
    """A non-null storage-form value as ``COPY`` takes it for a column of ``ftype`` (what :meth:`_value`
    binds, with JSON and geometry as text); None: the value as it is. For bulk loads (``parsectl migrate``)."""
    return _COPY_ENCODERS.get(ftype["type"])


def _decoder(ftype: FieldType) -> Any:
    kind = ftype["type"]
    if kind == "Date":
        return codec.date  # loaded as the ISO string (pg_types.IsoTimestampLoader)
    if kind == "Pointer":
        target = ftype["targetClass"]
        return lambda v: codec.pointer(target, v)
    if kind == "File":
        return lambda v: {"__type": "File", "name": v}
    if kind == "Number":
        return _number
    if kind == "GeoPoint":
        return _parse_point
    if kind == "Polygon":
        return _parse_polygon
    return None


def _nul_error() -> ParseError:
    return ParseError(errors.INVALID_JSON, "Strings cannot contain the \\u0000 character on PostgreSQL")



__all__ = ["DEFAULT_FIELDS", "PostgresAdapter", "from_postgres_schema", "to_postgres_schema"]
