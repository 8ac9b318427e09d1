"""The simplest loader of an export, as a yardstick for `parsectl migrate` (bench.migrate).

One process reads each class file of the export line by line, parses the record (orjson), makes its row
with parsectl's own row maker (the layout `parsectl migrate` writes: parse-server's format) and inserts
the rows (SQLite ``executemany`` in batches, one transaction per class; PostgreSQL one ``COPY`` per class).
Nothing else: no plan (schema inference, duplicates, dangling pointers), no checks, no relations, no
checkpoints, no second core. Tables and schemas are taken from the database the migration made, so both
load the same tables.

What it measures: how close a Python loader that does only the unavoidable work (parse, convert,
insert) gets to the raw insert rate of prebuilt rows — the floor under any migration written in Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from parsectl.migrate.rest_rows import row_maker
from parsectl.migrate.writers import row_plan
from parsectl.model.objects import rest_to_storage
from parsectl.model.schema import ClassSchema
from parsectl.storage import adapter_for
from parsectl.storage.sql import quote

BATCH = 2000
METHOD = ("one process: each line parsed with orjson, parsectl's row maker, {insert}; no plan, checks, "
          "relations or checkpoints")


def _schemas(uri: str) -> dict[str, ClassSchema]:
    async def load() -> dict[str, ClassSchema]:
        adapter = adapter_for(uri)
        await adapter.open()
        try:
            return await adapter.load_schemas()
        finally:
            await adapter.close()

    return asyncio.run(load())


def _records(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a one-record-per-line export file (as the benchmark's exports are)."""
    with open(path, "rb") as raw:
        raw.readline()
        for line in raw:
            text = line.strip()
            if text[:1] != b"{":
                continue
            yield orjson.loads(text[:-1] if text.endswith(b",") else text)


def _rows(kind: str, schema: ClassSchema, path: Path) -> Iterator[list[Any]]:
    plan = row_plan(kind, schema)
    make = row_maker(plan)
    for record in _records(path):
        row = make(record) if make is not None else None
        if row is None:  # what the row maker leaves to the general path
            row = plan.rows([rest_to_storage(schema.class_name, record)])[0]
        yield row


def _classes(export: Path, schemas: dict[str, ClassSchema]) -> list[tuple[ClassSchema, Path]]:
    return [(schemas[p.stem], p) for p in sorted(export.glob("*.json")) if p.stem in schemas]


def _result(insert: str, rows: int, seconds: float) -> dict[str, Any]:
    return {"method": METHOD.format(insert=insert), "rows": rows, "seconds": round(seconds, 3),
            "rows_per_s": round(rows / seconds) if seconds else None}


def naive_sqlite(export: Path, migrated: Path, dest: Path, connect: Any) -> dict[str, Any]:
    """Load ``export`` into a new SQLite file ``dest`` with the class tables (and indexes) of ``migrated``;
    ``connect`` opens it as the raw load does (bench.migrate.sqlite_connect)."""
    schemas = _schemas(f"sqlite:///{migrated}")
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(str(dest) + suffix).unlink()
    source = sqlite3.connect(migrated)
    try:
        ddl = [sql for (sql,) in source.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
            "AND tbl_name NOT LIKE '\\_Join:%' ESCAPE '\\' ORDER BY type DESC")]  # tables before indexes
    finally:
        source.close()
    db = connect(dest)
    try:
        for sql in ddl:
            db.execute(sql)
        total, started = 0, time.monotonic()
        for schema, path in _classes(export, schemas):
            columns = row_plan("sqlite", schema).columns
            sql = (f"INSERT INTO {quote(schema.class_name)} ({', '.join(quote(c) for c in columns)}) "
                   f"VALUES ({', '.join('?' * len(columns))})")
            db.execute("BEGIN")
            batch: list[list[Any]] = []
            for row in _rows("sqlite", schema, path):
                batch.append(row)
                if len(batch) >= BATCH:
                    db.executemany(sql, batch)
                    total += len(batch)
                    batch = []
            db.executemany(sql, batch)
            total += len(batch)
            db.execute("COMMIT")
        seconds = time.monotonic() - started
    finally:
        db.close()
    return _result(f"sqlite3 executemany in batches of {BATCH}, a transaction per class", total, seconds)


def naive_postgres(export: Path, migrated_uri: str, dest_dsn: str) -> dict[str, Any]:
    """Load ``export`` into the database ``dest_dsn``, a copy of the migrated one (``CREATE DATABASE ...
    TEMPLATE``) whose class tables this empties first."""
    import psycopg

    schemas = _schemas(migrated_uri)
    classes = _classes(export, schemas)
    with psycopg.connect(dest_dsn) as conn:
        conn.execute(f"TRUNCATE {', '.join(quote(schema.class_name) for schema, _ in classes)}")
        conn.commit()
        total, started = 0, time.monotonic()
        for schema, path in classes:
            columns = ", ".join(quote(c) for c in row_plan("postgres", schema).columns)
            with conn.cursor() as cur, cur.copy(f"COPY {quote(schema.class_name)} ({columns}) FROM STDIN") as copy:
                for row in _rows("postgres", schema, path):
                    copy.write_row(row)
                    total += 1
            conn.commit()
        seconds = time.monotonic() - started
    return _result("psycopg 3 COPY FROM STDIN (write_row), a transaction per class", total, seconds)
