"""A hosted Parse.com data export (the ``.zip`` or its unpacked folder) as a migration source.

The export holds one ``<Class>.json`` per class, ``{"results": [...]}`` in REST encoding, and one
``_Join:<field>:<Owner>.json`` per relation field holding ``{"owningId", "relatedId"}`` rows. It has no
schema: field types, pointer targets and relation targets are inferred from the data (one streaming
pass, :meth:`ExportSource.schema`), unless a ``/schemas`` dump states them (``schema_file``).

Memory stays bounded whatever the export's size: every file is parsed incrementally with ``ijson``
straight from the zip member or file, and what the checks need across the whole export (which class
holds each objectId, pointers, relation rows, usernames, emails and role names) goes to a temporary
SQLite file, not to Python structures.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import re
import sqlite3
import tempfile
import threading
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import ijson
import orjson

from parsectl.files.base import encode_uri_component
from parsectl.migrate.rest_rows import RowMaker, row_maker
from parsectl.migrate.source import Batch, Problem, SourceSchema, file_names, relation_rows
from parsectl.model import codec, errors
from parsectl.model.errors import ParseError
from parsectl.model.objects import rest_to_storage
from parsectl.model.schema import (
    BASE_FIELDS,
    DEFAULT_FIELDS,
    ClassSchema,
    class_name_is_valid,
    default_clp,
    field_name_is_valid,
)
from parsectl.storage.base import StoredObject

if TYPE_CHECKING:
    import httpx

MONGO_MAX_BYTES = 16 * 1024 * 1024
# exports made by back4app's ExportRouter replace the colons of join file names with U+A789
_JOIN_FILE = re.compile(r"^_Join[:\uA789]([^:\uA789]+)[:\uA789]([^:\uA789]+)\.json$")
# keys of an exported object that are not schema fields
_NOT_FIELDS = frozenset(("objectId", "createdAt", "updatedAt", "ACL", "className", "__type"))
_USER_EXPORT_KEYS = frozenset(("bcryptPassword", "sessionToken", "password"))
_FLUSH_ROWS = 4_000


def _parallel_min_bytes(default: int = 8 * 1024 * 1024) -> int:
    """From this size (all class and join files together for the schema pass, one class file for the copy)
    an export is read by worker processes: PARSECTL_MIGRATE_PARALLEL_MIN_BYTES (0: always), when it is a
    whole number of bytes."""
    value = os.environ.get("PARSECTL_MIGRATE_PARALLEL_MIN_BYTES", "").strip()
    return int(value) if value.isdigit() else default


PARALLEL_MIN_BYTES = _parallel_min_bytes()
MAX_SCAN_WORKERS = 4  # schema pass: files scanned at once, one worker process each (at most one per core)
SINK_ROWS = 2000  # rows a worker writes to its spool file at once
SPOOL_RECORDS = 20_000  # records per spool file (the batches two workers take turns on)
MAX_READERS = 2  # copy: worker processes converting one class file's batches (beyond 2, the writer is the limit)

TypeKey = tuple[str, str | None]


@dataclass
class _Entry:
    """One class or join file of the export: its zip member name or path relative to the folder."""

    name: str
    size: int
    # True once a full read found one record per line (then readers can split the file by lines)
    lines: bool | None = None


@dataclass
class _FieldStats:
    """What one pass saw of a field: how many values of each type (their objectIds, up to a cap, go to
    the index's ``typed`` table, to name the objects of a type conflict)."""

    types: dict[TypeKey, int] = field(default_factory=dict)
    nulls: int = 0


def _type_label(key: TypeKey) -> str:
    return f"{key[0]}<{key[1]}>" if key[1] else key[0]


def _field_type(key: TypeKey) -> dict[str, str]:
    return {"type": key[0], "targetClass": key[1]} if key[1] else {"type": key[0]}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class _Index:
    """The on-disk tables one schema pass fills: objectIds by class, pointers, relation rows, unique keys."""

    def __init__(self, directory: str | None) -> None:
        fd, self.path = _temp_file("export", directory)
        os.close(fd)
        self.db = sqlite3.connect(self.path)
        self.db.executescript(
            """
            PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA temp_store=FILE; PRAGMA cache_size=-8000; PRAGMA threads=2;
            CREATE TABLE ids(id TEXT, cls INTEGER);
            CREATE TABLE ptr(cls INTEGER, oid TEXT, field TEXT, tcls INTEGER, tid TEXT);
            CREATE TABLE rel(j INTEGER, oid TEXT, rid TEXT);
            CREATE TABLE uniq(kind TEXT, key TEXT, oid TEXT, raw TEXT);
            CREATE TABLE typed(cls INTEGER, field TEXT, type TEXT, oid TEXT);
            """
        )
        self.classes: dict[str, int] = {}
        self._rows: dict[str, list[tuple[Any, ...]]] = {"ids": [], "ptr": [], "rel": [], "uniq": [], "typed": []}

    def class_no(self, name: str) -> int:
        return self.classes.setdefault(name, len(self.classes))

    def class_name(self, number: int) -> str:
        for name, n in self.classes.items():
            if n == number:
                return name
        raise KeyError(number)

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        rows = self._rows[table]
        rows.append(row)
        if len(rows) >= _FLUSH_ROWS:
            self._flush(table)

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        """The pending rows of a table, to append to directly in hot loops (then call :meth:`maybe_flush`)."""
        return self._rows[table]

    def maybe_flush(self) -> None:
        for table, rows in self._rows.items():
            if len(rows) >= _FLUSH_ROWS:
                self._flush(table)

    def _flush(self, table: str) -> None:
        rows = self._rows[table]
        if rows:
            marks = ",".join("?" * len(rows[0]))
            self.db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
            rows.clear()

    def flush_all(self) -> None:
        for table in self._rows:
            self._flush(table)
        self.db.commit()

    def detach(self) -> str:
        """Close the database, keeping its file (a scan worker's index, for the parent to :meth:`merge`)."""
        self.flush_all()
        self.db.close()
        return self.path

    def merge(self, path: str, classes: dict[str, int]) -> None:
        """Add the rows of another index (a scan worker's, whose class numbers are ``classes``), then delete
        its file. Rows keep their order, so "the first occurrence" means the same as in one pass."""
        self.flush_all()
        self.db.execute("ATTACH DATABASE ? AS w", (path,))
        try:
            self.db.execute("CREATE TEMP TABLE IF NOT EXISTS cmap(w INTEGER PRIMARY KEY, n INTEGER)")
            self.db.execute("DELETE FROM cmap")
            self.db.executemany("INSERT INTO cmap VALUES (?, ?)",
                                [(number, self.class_no(name)) for name, number in classes.items()])
            self.db.executescript(
                """
                INSERT INTO ids SELECT i.id, m.n FROM w.ids i JOIN cmap m ON m.w = i.cls ORDER BY i.rowid;
                INSERT INTO ptr SELECT m.n, p.oid, p.field, t.n, p.tid FROM w.ptr p
                    JOIN cmap m ON m.w = p.cls JOIN cmap t ON t.w = p.tcls ORDER BY p.rowid;
                INSERT INTO rel SELECT * FROM w.rel ORDER BY rowid;
                INSERT INTO uniq SELECT * FROM w.uniq ORDER BY rowid;
                INSERT INTO typed SELECT m.n, t.field, t.type, t.oid FROM w.typed t
                    JOIN cmap m ON m.w = t.cls ORDER BY t.rowid;
                """
            )
            self.db.commit()
        finally:
            self.db.execute("DETACH DATABASE w")
            with contextlib.suppress(OSError):
                os.unlink(path)

    def finish(self) -> None:
        self.flush_all()
        self.db.executescript(
            """
            CREATE INDEX ids_id ON ids(id, cls);
            CREATE INDEX uniq_key ON uniq(kind, key);
            CREATE INDEX typed_key ON typed(cls, field, type);
            """
        )

    def close(self) -> None:
        self.db.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class ExportSource:
    """``Source`` over a hosted Parse export: ``path`` is the ``.zip`` or the folder it unpacks to.

    ``schema_file``: a ``GET /schemas`` dump (``{"results": [...]}`` or a list) whose types, CLPs and
    indexes win over inference. ``files_from``: a folder holding the bytes of the export's files by name
    (then URLs are not used). ``url_rewrite``: ``(old_prefix, new_prefix)`` applied to file URLs, for
    legacy hosts that no longer answer (``http://files.parsetfss.com/``). ``max_problems``: per class,
    field and kind, how many problems are listed one by one; the rest are summed up in one more.
    ``validate``: also convert every object during :meth:`schema` (as :meth:`objects` will), so objects
    that cannot be stored (bad dates, ACLs, GeoPoints, ...) are problems of the plan, not surprises of
    the copy; False makes the schema pass about twice as fast. ``check_size``: measure every object
    against MongoDB's 16 MB (only a MongoDB destination needs it).
    """

    has_password_hashes = True
    makes_rows = True  # objects(rows=...): its worker processes make the writer's rows

    def __init__(self, path: str | Path, *, schema_file: str | Path | None = None,
                 files_from: str | Path | None = None, url_rewrite: tuple[str, str] | None = None,
                 timeout: float = 60.0, tmp_dir: str | Path | None = None, max_problems: int = 1000,
                 validate: bool = True, fix: bool = False, parallel: bool | None = False,
                 check_size: bool = True, include_sessions: bool = False, nested_files_url: str | None = None
                 ) -> None:
        self.path = Path(path)
        self.include_sessions = include_sessions  # else an export's _Session.json is left out
        # a File inside an object or array gets this + its name as its url (where the new server serves it)
        self.nested_files_url = nested_files_url or None
        self.schema_file = Path(schema_file) if schema_file else None
        self.files_from = Path(files_from) if files_from else None
        self.url_rewrite = url_rewrite
        self.timeout = timeout
        self.tmp_dir = str(tmp_dir) if tmp_dir else None
        self.max_problems = max_problems
        self.validate = validate
        self.fix = fix
        # objects over MongoDB's 16 MB are problems of the plan (schema pass); False for other destinations
        self.checks_size = check_size
        # True: a worker process reads the class files; None: for files over PARALLEL_MIN_BYTES when a core
        # is spare (what `parsectl migrate` asks for); False: a thread
        self.parallel = parallel
        self._readers: list[Any] = []  # export_worker.ObjectReader, started on first use
        # --on-problem fix: per class, invalid field name -> its new name, and field -> {type label: sibling}
        self.renames: dict[str, dict[str, str]] = {}
        self.moves: dict[str, dict[str, dict[str, str]]] = {}
        self._fixes: sqlite3.Connection | None = None  # (class, objectId) -> field fixes, on disk
        self._fixes_path: str | None = None
        # the plan's index, kept after the schema pass for its relation rows (join file -> number j)
        self._index_path: str | None = None
        self._join_numbers: dict[tuple[str, str], int] = {}
        # set by a migration with --files: batches carry the File names they reference, with the URLs of
        # the records (storage form keeps only the names, and without --files-from the URL is the way to them)
        self.collect_files = False
        self.description = f"Parse export {self.path}"
        self.skipped: list[Problem] = []
        self._is_zip = self.path.is_file()
        self._classes: dict[str, _Entry] | None = None
        self._joins: dict[tuple[str, str], _Entry] = {}
        self._bad_class_files: list[str] = []
        self._schema: SourceSchema | None = None
        self._client: httpx.AsyncClient | None = None

    # --- lifecycle ------------------------------------------------------------------------------------
    async def open(self) -> None:
        await asyncio.to_thread(self._scan)

    def _stop_readers(self) -> None:
        for reader in self._readers:
            reader.stop()
        self._readers = []

    async def close(self) -> None:
        self._stop_readers()
        if self._fixes is not None:
            self._fixes.close()
            self._fixes = None
            with contextlib.suppress(OSError):
                os.unlink(self._fixes_path or "")
        self._drop_index()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def worker_options(self) -> dict[str, Any]:
        """What a worker process's copy of this source is made with (besides the path)."""
        return {"fix": self.fix, "include_sessions": self.include_sessions,
                "nested_files_url": self.nested_files_url}

    # --- the export's files -----------------------------------------------------------------------------
    def _scan(self) -> None:
        """Find the class and join files (once); 0-byte files and non-JSON files are ignored."""
        if self._classes is not None:
            return
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path} does not exist")
        entries: list[_Entry] = []
        if self._is_zip:
            with zipfile.ZipFile(self.path) as zf:
                entries = [_Entry(i.filename, i.file_size) for i in zf.infolist() if not i.is_dir()]
        else:
            for root, _dirs, files in os.walk(self.path):
                for name in files:
                    full = Path(root) / name
                    entries.append(_Entry(str(full.relative_to(self.path)), full.stat().st_size))
        classes: dict[str, _Entry] = {}
        for entry in sorted(entries, key=lambda e: e.name):
            base = entry.name.replace("\\", "/").rsplit("/", 1)[-1]
            if entry.size == 0 or not base.endswith(".json") or base.startswith("._") or "__MACOSX" in entry.name:
                continue
            join = _JOIN_FILE.match(base)
            if join:
                self._joins.setdefault((join.group(2), join.group(1)), entry)
                continue
            class_name = base[: -len(".json")]
            if class_name == "_Session" and not self.include_sessions:
                continue
            if not class_name_is_valid(class_name) or class_name.startswith("_Join"):
                self._bad_class_files.append(class_name)
            classes.setdefault(class_name, entry)
        self._classes = classes

    @property
    def class_files(self) -> dict[str, _Entry]:
        self._scan()
        assert self._classes is not None
        return self._classes

    @contextlib.contextmanager
    def _open_entry(self, entry: _Entry) -> Iterator[IO[bytes]]:
        if self._is_zip:
            with zipfile.ZipFile(self.path) as zf, zf.open(entry.name) as raw:
                yield raw
        else:
            with open(self.path / entry.name, "rb") as raw:
                yield raw

    def _iter_records(self, entry: _Entry) -> Iterator[Any]:
        """The records of a class or join file, one at a time, with bounded memory.

        Exports hold one record per line (``{"results": [`` then ``{...},`` lines, then ``]}``); those
        lines are parsed with orjson, about twice as fast as a streaming parser. At the first line that
        is not like that, the rest of the file is read with ijson (after the records already given), so
        any valid JSON layout gives the same records."""
        given = 0
        with self._open_entry(entry) as raw:
            first = raw.readline()
            header = first.removeprefix(b"\xef\xbb\xbf").strip().replace(b" ", b"")
            closing = {b'{"results":[': b"]}", b"[": b"]"}.get(header)
            if closing is not None:
                for line in raw:
                    text = _line_text(line)
                    if not text:
                        continue
                    if text[:1] != b"{":
                        if text == closing:
                            entry.lines = True
                            return
                        break
                    try:
                        record = orjson.loads(text)
                    except orjson.JSONDecodeError:
                        break
                    given += 1
                    yield record
        entry.lines = False
        with self._open_entry(entry) as raw:
            records = self._records(raw)
            if _skip(records, given) == given:
                yield from records

    def _iter_lines(self, entry: _Entry) -> Iterator[bytes]:
        """The records of a file a full read found to hold one per line, unparsed (see ``_Entry.lines``)."""
        with self._open_entry(entry) as raw:
            raw.readline()
            for line in raw:
                text = _line_text(line)
                if not text:
                    continue
                if text[:1] != b"{":
                    if text in (b"]}", b"]"):
                        return
                    raise ValueError(f"{entry.name} changed since it was read: not one record per line any more")
                yield text

    @staticmethod
    def _records(raw: IO[bytes]) -> Iterator[Any]:
        """The items of ``{"results": [...]}`` (or of a bare JSON array), one at a time."""
        head = raw.peek(64)[:64] if hasattr(raw, "peek") else b""
        if head.startswith(b"\xef\xbb\xbf"):
            raw.read(3)
            head = head[3:]
        prefix = "item" if head.lstrip()[:1] == b"[" else "results.item"
        return ijson.items(raw, prefix, use_float=True)

    # --- schema -----------------------------------------------------------------------------------------
    async def schema(self) -> SourceSchema:
        if self._schema is None:
            self._schema = await asyncio.to_thread(self._build_schema)
        return self._schema

    def _load_schema_file(self) -> dict[str, dict[str, Any]]:
        if self.schema_file is None:
            return {}
        data = orjson.loads(self.schema_file.read_bytes())
        items = data.get("results", []) if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ValueError(f"{self.schema_file}: expected a /schemas dump ({{'results': [...]}} or a list)")
        return {item["className"]: item for item in items if isinstance(item, dict) and item.get("className")}

    def _drop_index(self) -> None:
        if self._index_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._index_path)
            self._index_path, self._join_numbers = None, {}

    def _build_schema(self) -> SourceSchema:
        self._scan()
        self._drop_index()
        _remove_stale_temp_files(self.tmp_dir)
        stated = self._load_schema_file()
        out = SourceSchema(classes={})
        problems = _Problems(self.max_problems)
        index = _Index(self.tmp_dir)
        stats: dict[str, dict[str, _FieldStats]] = {}
        kept = False
        try:
            join_numbers = {key: number for number, key in enumerate(sorted(self._joins))}
            scanned = self._scan_files(join_numbers)
            join_rows: dict[tuple[str, str], int] = {}
            for class_name, entry in self.class_files.items():
                done = scanned.get(("class", class_name))
                if done is None:
                    stats[class_name] = {}
                    out.counts[class_name] = self._scan_class(class_name, entry, index, stats[class_name], problems)
                else:
                    out.counts[class_name], stats[class_name], found, classes, entry.lines, path = done
                    problems.merge(found)
                    index.merge(path, classes)
            for key, number in join_numbers.items():
                done = scanned.get(("join", key))
                if done is None:
                    join_rows[key] = self._scan_join(number, self._joins[key], index)
                else:
                    join_rows[key], _, _, classes, _, path = done
                    index.merge(path, classes)
            index.finish()
            if self.fix:
                self._plan_renames(stats, index, problems)
                index.db.commit()
            # lookups that run in SQLite (without the GIL) on other connections, on another core, meanwhile
            dangling = _halves(index, "ptr", _DANGLING_POINTERS)
            for class_name in self.class_files:
                if class_name in self._bad_class_files:
                    problems.add(Problem("invalid-class-name", class_name,
                                         f"{class_name!r} is not a valid Parse class name; its file is left out"))
                    continue
                out.classes[class_name], out.notes[class_name] = self._class_schema(
                    class_name, stats[class_name], stated.get(class_name), problems, index)
            for class_name, item in stated.items():  # classes the dump states but the export has no file for
                if class_name not in out.classes and class_name_is_valid(class_name):
                    out.classes[class_name], out.notes[class_name] = self._class_schema(
                        class_name, {}, item, problems, index)
                    out.counts[class_name] = 0
            self._relation_fields(out, index, join_numbers, join_rows, stated, problems)
            if self.fix:
                self._open_fixes()
            self._dangling_pointers(index, [row for half in dangling for row in half()], problems)
            self._duplicates(index, problems)
            if self._fixes is not None:
                self._fixes.execute("CREATE INDEX fix_key ON fix(cls, oid)")
                self._fixes.commit()
            if join_numbers:  # the copy reads the relation rows from it, parsed already
                index.db.commit()
                index.db.close()
                self._index_path, self._join_numbers, kept = index.path, join_numbers, True
        finally:
            if not kept:
                index.close()
        out.problems = problems.finish()
        return out

    def _scan_files(self, join_numbers: dict[tuple[str, str], int]) -> dict[tuple[Any, ...], Any]:
        """Scan the class and join files in worker processes, several at a time (largest first), when that
        pays: ``{("class", name) | ("join", (owner, field)): (count, field stats, problems, class numbers,
        index file)}``. A file missing from the answer (no worker could start) is scanned in this process."""
        tasks: list[tuple[int, tuple[Any, ...]]] = [(e.size, ("class", n)) for n, e in self.class_files.items()
                                                    if n not in self._bad_class_files]
        tasks += [(self._joins[key].size, ("join", key)) for key in join_numbers]
        total = sum(size for size, _ in tasks)
        parallel = self.parallel if self.parallel is not None else (total >= PARALLEL_MIN_BYTES and _cores() > 1)
        if not parallel or not tasks:
            return {}
        from parsectl.migrate.sources.export_worker import ObjectReader, scan_in_workers

        requests = [("scan", task[1], self.checks_size, self.validate, self.max_problems, self.tmp_dir)
                    if task[0] == "class"
                    else ("scan_join", task[1], join_numbers[task[1]], False, 0, self.tmp_dir)
                    for _, task in sorted(tasks, key=lambda t: -t[0])]
        workers = max(1, min(_cores(), MAX_SCAN_WORKERS, len(requests)))
        while len(self._readers) < workers:
            self._readers.append(ObjectReader(self))
        try:
            return scan_in_workers(self._readers[:workers], requests)
        finally:  # the copy reuses up to MAX_READERS of them
            for reader in self._readers[MAX_READERS:]:
                reader.stop()
            self._readers = [reader for reader in self._readers[:MAX_READERS] if reader.running]

    def scan_one(self, request: tuple[Any, ...]) -> tuple[Any, ...]:
        """One file of :meth:`_scan_files`, in a worker: its count, field stats, problems, class numbers
        and the path of the index it filled."""
        kind, key, check_size, validate, max_problems, tmp_dir = request
        self._scan()
        index = _Index(tmp_dir)
        try:
            if kind == "scan":
                self.checks_size, self.validate, self.max_problems = check_size, validate, max_problems
                fields: dict[str, _FieldStats] = {}
                problems = _Problems(max_problems)
                entry = self.class_files[key]
                count = self._scan_class(key, entry, index, fields, problems)
                return count, fields, problems, index.classes, entry.lines, index.detach()
            count = self._scan_join(request[2], self._joins[tuple(key)], index)
            return count, None, None, index.classes, None, index.detach()
        except BaseException:
            index.close()
            raise

    def _scan_class(self, class_name: str, entry: _Entry, index: _Index, fields: dict[str, _FieldStats],
                    problems: _Problems) -> int:
        cls = index.class_no(class_name)
        is_user, is_role, is_installation = class_name == "_User", class_name == "_Role", class_name == "_Installation"
        cap, validate, check_size = self.max_problems, self.validate, self.checks_size
        ignored: set[str] = set()
        bad_keys: set[str] = set()
        ids_rows, ptr_rows, class_no = index.rows("ids"), index.rows("ptr"), index.class_no
        simple, pointer_keys = _SIMPLE, {}  # a Pointer's type key per target class: one tuple, not one per value
        count = 0
        with contextlib.closing(self._iter_records(entry)) as records:
            for obj in records:
                count += 1
                if not count & 1023:
                    index.maybe_flush()
                if not isinstance(obj, dict):
                    problems.add(Problem("invalid-object", class_name, f"record #{count} is not a JSON object"))
                    continue
                oid = obj.get("objectId")
                if not isinstance(oid, str) or not oid:
                    problems.add(Problem("missing-object-id", class_name, f"record #{count} has no objectId"))
                    oid = None
                else:
                    ids_rows.append((oid, cls))
                size = _json_size(obj) if check_size else 0
                if size > MONGO_MAX_BYTES:
                    problems.add(Problem("too-large", class_name,
                                         f"{size} bytes, over MongoDB's 16 MB document limit", oid))
                bad_field = renamed = False
                for key, value in obj.items():
                    stats = fields.get(key)
                    if stats is None:
                        if key in ignored:
                            continue
                        if key in _NOT_FIELDS or key[0] == "_" or (is_user and key in _USER_EXPORT_KEYS):
                            ignored.add(key)
                            continue
                        if not field_name_is_valid(key):
                            if not self.fix:
                                bad_field = True
                                problems.add(Problem("invalid-field-name", class_name,
                                                     f"{key!r} is not a valid field name; the object cannot be "
                                                     "stored", oid, key))
                                continue
                            bad_keys.add(key)  # renamed under --on-problem fix
                        stats = fields[key] = _FieldStats()
                    if bad_keys and key in bad_keys:
                        renamed = True
                    tkey = simple.get(type(value))
                    if tkey is None:
                        if type(value) is dict and value.get("__type") == "Pointer" and codec.is_pointer(value):
                            target = value["className"]
                            tkey = pointer_keys.get(target) or pointer_keys.setdefault(target, ("Pointer", target))
                        else:
                            tkey = _type_key(value)
                            if tkey is None:
                                stats.nulls += 1
                                continue
                    types = stats.types
                    seen = types.get(tkey, 0)
                    types[tkey] = seen + 1
                    if oid is not None:
                        if seen < cap:
                            index.add("typed", (cls, key, _type_label(tkey), oid))
                        if tkey[0] == "Pointer":
                            ptr_rows.append((cls, oid, key, class_no(tkey[1]), value["objectId"]))
                        elif tkey is _ARRAY or tkey is _OBJECT:
                            _pointers(value, key, cls, oid, index, 0)
                if oid is not None:
                    if is_user:
                        for kind_name, value in (("username", obj.get("username")), ("email", obj.get("email"))):
                            if isinstance(value, str) and value:
                                index.add("uniq", (kind_name, value.lower(), oid, value))
                    elif is_role and isinstance(obj.get("name"), str):
                        index.add("uniq", ("role-name", obj["name"], oid, obj["name"]))
                    elif is_installation and isinstance(obj.get("installationId"), str):  # stored lower-cased
                        value = obj["installationId"]
                        index.add("uniq", ("installation-id", value.lower(), oid, value))
                if validate and not bad_field and oid is not None:
                    if renamed:  # as --on-problem fix will store it (the final names are chosen after the pass)
                        obj = {k if k in _NOT_FIELDS or k[0] == "_" or field_name_is_valid(k)
                               else _valid_field_name(k): v for k, v in obj.items()}
                    try:
                        rest_to_storage(class_name, obj)
                    except ParseError as exc:
                        problems.add(Problem("invalid-object", class_name, exc.message, oid))
        return count

    def _scan_join(self, number: int, entry: _Entry, index: _Index) -> int:
        count = 0
        with contextlib.closing(self._iter_records(entry)) as records:
            for row in records:
                if isinstance(row, dict) and isinstance(row.get("owningId"), str) \
                        and isinstance(row.get("relatedId"), str):
                    index.add("rel", (number, row["owningId"], row["relatedId"]))
                    count += 1
        return count

    def _class_schema(self, class_name: str, fields: dict[str, _FieldStats], stated: dict[str, Any] | None,
                      problems: _Problems, index: _Index) -> tuple[ClassSchema, dict[str, str]]:
        stated_fields: dict[str, dict[str, str]] = dict((stated or {}).get("fields") or {})
        defaults = {**BASE_FIELDS, **DEFAULT_FIELDS.get(class_name, {})}
        chosen: dict[str, dict[str, str]] = {}
        notes: dict[str, str] = {}
        for name, stats in fields.items():
            if not stats.types:
                if name not in stated_fields and name not in defaults:
                    notes[name] = f"only null values ({stats.nulls}): type unknown, left out of the schema"
                continue
            ranked = sorted(stats.types.items(), key=lambda kv: -kv[1])
            total = sum(stats.types.values())
            if name in stated_fields:
                want = stated_fields[name]
                keep: TypeKey = (want.get("type", ""), want.get("targetClass"))
                why = "--schema says"
            elif name in defaults:
                want = defaults[name]
                keep = (want["type"], want.get("targetClass"))
                why = "parse-server requires"
            else:
                keep = ranked[0][0]
                why = "keeping the majority type"
            others = [(k, n) for k, n in ranked if k != keep]
            if others:
                listed = ", ".join(f"{_type_label(k)} ({_plural(n, 'value')})" for k, n in ranked)
                label = _type_label(keep)
                message = f"{class_name}.{name} holds {listed}; {why} {label}"
                suppressed = 0
                for other, n in others:
                    fix = None
                    if self.fix:
                        taken = set(fields) | set(chosen) | set(stated_fields) | set(defaults)
                        sibling = _free_name(f"{name}_{re.sub('[^A-Za-z0-9]', '', _type_label(other))}", taken)
                        chosen[sibling] = _field_type(other)
                        notes[sibling] = f"--on-problem fix: the {_plural(n, 'value')} of {name} of type " \
                                         f"{_type_label(other)}"
                        self.moves.setdefault(class_name, {}).setdefault(name, {})[_type_label(other)] = sibling
                        fix = f"value moved to the new field {sibling}"
                    ids = [r[0] for r in index.db.execute(
                        "SELECT oid FROM typed WHERE cls = ? AND field = ? AND type = ?",
                        (index.class_no(class_name), name, _type_label(other)))]
                    for oid in ids:
                        problems.add(Problem("type-conflict", class_name,
                                             f"{message}: this object's value is {_type_label(other)}", oid, name,
                                             fix))
                    suppressed += n - len(ids)
                if suppressed:
                    problems.add(Problem("type-conflict", class_name,
                                         f"{message} ({suppressed} more conflicting values not listed)", None, name,
                                         "values moved to the new fields" if self.fix else None))
            if name in stated_fields:
                notes[name] = "stated by --schema"
            elif name in defaults:
                notes[name] = f"parse-server default field; {_plural(total, 'value')} in the export"
            else:
                chosen[name] = _field_type(keep)
                notes[name] = f"inferred from {_plural(stats.types[keep], 'value')}" + (
                    f" ({total - stats.types[keep]} of other types)" if total != stats.types[keep] else "")
        for name, ftype in stated_fields.items():
            if name in BASE_FIELDS or not isinstance(ftype, dict) or "type" not in ftype:
                continue
            chosen[name] = {k: v for k, v in ftype.items() if k in ("type", "targetClass")}
            notes.setdefault(name, "stated by --schema")
        schema = ClassSchema.new(class_name, {k: v for k, v in chosen.items() if k not in defaults})
        if stated:
            if isinstance(stated.get("classLevelPermissions"), dict):
                schema.clp = {**default_clp(), **stated["classLevelPermissions"]}
            if isinstance(stated.get("indexes"), dict):
                schema.indexes = stated["indexes"]
        return schema, notes

    def _relation_fields(self, out: SourceSchema, index: _Index, join_numbers: dict[tuple[str, str], int],
                         join_rows: dict[tuple[str, str], int], stated: dict[str, dict[str, Any]],
                         problems: _Problems) -> None:
        """Make each join file a Relation field on its owner, with its target class decided (stated, or the
        class holding most of the related ids), and report its rows whose owner or related object is not in
        the export."""
        for (owner, field_name), j in sorted(join_numbers.items(), key=lambda kv: kv[1]):
            rows = join_rows[(owner, field_name)]
            schema = out.classes.get(owner)
            if schema is None:
                if owner in self._bad_class_files:
                    continue
                # relation rows for a class the export has no file for (every object was deleted)
                schema = out.classes[owner] = ClassSchema.new(owner)
                out.notes[owner] = {}
                out.counts.setdefault(owner, 0)
            notes = out.notes.setdefault(owner, {})
            if not field_name_is_valid(field_name):
                problems.add(Problem("invalid-field-name", owner,
                                     f"relation file for {field_name!r}, not a valid field name; left out",
                                     None, field_name))
                continue
            stated_type = ((stated.get(owner) or {}).get("fields") or {}).get(field_name)
            current = schema.fields.get(field_name)
            if isinstance(stated_type, dict) and stated_type.get("type") == "Relation":
                target = stated_type.get("targetClass")
                note = f"stated by --schema; relation file with {_plural(rows, 'row')}"
            elif current is not None and current["type"] == "Relation":
                target = current.get("targetClass")
                note = (f"{notes.get(field_name) or 'parse-server default field'}; "
                        f"relation file with {_plural(rows, 'row')}")
            elif current is not None:
                problems.add(Problem("type-conflict", owner,
                                     f"{owner}.{field_name} has a relation file, but its values are "
                                     f"{_type_label((current['type'], current.get('targetClass')))}; "
                                     "keeping that type and leaving the relation rows out", None, field_name,
                                     "relation rows left out" if self.fix else None))
                continue
            else:
                target = note = None
            found, target, dangling = self._relation_lookups(index, owner, j, rows, target,
                                                             infer=note is None)
            if note is None:
                if target is None:
                    problems.add(Problem(
                        "relation-target-unknown", owner,
                        f"{owner}.{field_name}: the relation file's {_plural(rows, 'row')} name no object of the "
                        "export, so its target class is unknown; state it with --schema", None, field_name,
                        "relation rows left out" if self.fix else None))
                    notes[field_name] = f"relation file with {_plural(rows, 'row')}, target unknown: left out"
                    continue
                note = f"relation file, target inferred from {_plural(found[0][0], 'id')}"
            if len(found) > 1:
                listed = ", ".join(f"{index.class_name(c)} ({_plural(n, 'id')})" for n, c in found)
                problems.add(Problem("type-conflict", owner,
                                     f"{owner}.{field_name}: the relation file names objects of several "
                                     f"classes: {listed}; the target is {target}", None, field_name,
                                     f"target {target}; all rows copied" if self.fix else None))
            schema.fields[field_name] = {"type": "Relation", "targetClass": target}
            notes[field_name] = note
            for oid, rid, has_owner, _ in dangling:
                if not has_owner:
                    problems.add(Problem("dangling-pointer", owner, f"relation row ({oid}, {rid}): no {owner} "
                                         f"{oid} in the export", oid, field_name))
                else:
                    problems.add(Problem("dangling-pointer", owner, f"relation row ({oid}, {rid}): no {target} "
                                         f"{rid} in the export", oid, field_name))

    def _relation_lookups(self, index: _Index, owner: str, j: int, count: int, target: str | None, *,
                          infer: bool) -> tuple[list[tuple[int, int]], str | None, list[tuple[Any, ...]]]:
        """For join file ``j`` (``count`` rows): how many of its related ids each class holds, as ``[(ids,
        class number)]``, most first; its target (``target``, or with ``infer`` the class holding most
        of them); and its rows whose owner or related object (in the target) is not in the export.

        Only the rows missing from the target are looked up in the other classes, so a related id is
        looked up once: a target is first guessed from the file's first rows, and checked against the
        counts that follow (another class holding more of the ids becomes the target)."""
        if target is None:
            target = self._guess_target(index, j, _GUESS_ROWS)
            if target is None:  # no related id among the first rows: count over them all
                target = self._guess_target(index, j, None)
            if target is None:
                return [], None, []
        for _ in range(2):
            dangling = self._dangling_relation_rows(index, owner, j, target, count)
            missing = [row[1] for row in dangling if not row[3]]
            found = self._classes_of_missing(index, missing)
            held = count - len(missing)
            if held:
                found.append((held, index.class_no(target)))
            found.sort(reverse=True)
            if not infer or not found or index.class_name(found[0][1]) == target:
                break
            target = index.class_name(found[0][1])  # the first rows misled the guess
        return found, target, dangling

    @staticmethod
    def _guess_target(index: _Index, j: int, limit: int | None) -> str | None:
        """The class holding most of the related ids of join file ``j``'s first ``limit`` rows (all: None)."""
        row = index.db.execute(
            "SELECT i.cls, count(*) AS n FROM (SELECT rid FROM rel WHERE j = ? ORDER BY rowid LIMIT ?) r "
            "JOIN ids i ON i.id = r.rid GROUP BY i.cls ORDER BY n DESC, i.cls DESC LIMIT 1",
            (j, -1 if limit is None else limit)).fetchone()
        return None if row is None else index.class_name(row[0])

    @staticmethod
    def _classes_of_missing(index: _Index, rids: list[str]) -> list[tuple[int, int]]:
        """``[(rows, class number)]``: how many of ``rids`` (related ids not in the target) each class holds."""
        if not rids:
            return []
        db = index.db
        db.execute("CREATE TEMP TABLE IF NOT EXISTS missing(rid TEXT)")
        db.execute("DELETE FROM missing")
        db.executemany("INSERT INTO missing VALUES (?)", ((rid,) for rid in rids))
        return [(n, cls) for cls, n in db.execute(
            "SELECT i.cls, count(*) FROM missing m JOIN ids i ON i.id = m.rid GROUP BY i.cls")]

    @staticmethod
    def _dangling_relation_rows(index: _Index, owner: str, j: int, target: str, count: int
                                ) -> list[tuple[Any, ...]]:
        """The rows ``(owningId, relatedId, has owner, has target)`` of join file ``j`` (``count`` rows) whose
        owner or target is not in the export; a big file's rows are looked up in two halves at once."""
        params = (index.class_no(owner), index.class_no(target), j)
        if count >= SPLIT_LOOKUPS_FROM:
            halves = _halves(index, "rel", _DANGLING_RELATION_ROWS, params, "j = ?", (j,))
            return [row for half in halves for row in half()]
        return index.db.execute(_DANGLING_RELATION_ROWS, (*params, 0, 2**62)).fetchall()

    def _dangling_pointers(self, index: _Index, rows: list[tuple[Any, ...]], problems: _Problems) -> None:
        names = {n: name for name, n in index.classes.items()}
        fix = "pointer unset (or removed from the array holding it)" if self.fix else None
        for cls, oid, field_name, tcls, tid in rows:
            problems.add(Problem("dangling-pointer", names[cls],
                                 f"points to {names[tcls]} {tid}, which is not in the export", oid, field_name, fix))
            if self._fixes is not None:
                self._fixes.execute("INSERT INTO fix VALUES (?, ?, ?, 'unset-pointer', ?)",
                                    (names[cls], oid, field_name, f"{names[tcls]}${tid}"))

    def _duplicates(self, index: _Index, problems: _Problems) -> None:
        what = {"username": ("_User", "duplicate-username", "username"),
                "email": ("_User", "duplicate-email", "email"),
                "role-name": ("_Role", "duplicate-role-name", "name"),
                "installation-id": ("_Installation", "duplicate-installation-id", "installationId")}
        rows = index.db.execute(
            "SELECT u.kind, u.oid, u.raw, f.oid, f.raw FROM uniq u JOIN "
            "(SELECT kind, key, min(rowid) AS first FROM uniq GROUP BY kind, key HAVING count(*) > 1) g "
            "ON u.kind = g.kind AND u.key = g.key AND u.rowid != g.first JOIN uniq f ON f.rowid = g.first "
            "ORDER BY u.rowid")
        for kind, oid, raw, first_oid, first_raw in rows:
            class_name, problem_kind, field_name = what[kind]
            same = "the same" if raw == first_raw else f"{first_raw!r}, the same except for case,"
            fix = None
            if self._fixes is not None and kind != "installation-id":  # a device's second record: left out
                renamed = _renamed_value(kind, raw, oid)
                self._fixes.execute("INSERT INTO fix VALUES (?, ?, ?, 'set', ?)", (class_name, oid, field_name, renamed))
                fix = f"renamed to {renamed!r}"
            problems.add(Problem(problem_kind, class_name,
                                 f"{field_name} {raw!r}: {same} as object {first_oid}", oid, field_name, fix))
        names = {n: name for name, n in index.classes.items()}
        for cls, oid, n in index.db.execute(
                "SELECT cls, id, count(*) FROM ids GROUP BY id, cls HAVING count(*) > 1"):
            problems.add(Problem("duplicate-object-id", names[cls], f"objectId {oid} appears {n} times", oid, None,
                                 "the first occurrence is kept" if self.fix else None))

    # --- --on-problem fix -------------------------------------------------------------------------------
    def _open_fixes(self) -> None:
        fd, self._fixes_path = _temp_file("fixes", self.tmp_dir)
        os.close(fd)
        self._fixes = sqlite3.connect(self._fixes_path, check_same_thread=False)
        self._fixes.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
                                  "CREATE TABLE fix(cls TEXT, oid TEXT, field TEXT, action TEXT, detail TEXT);")

    def _plan_renames(self, stats: dict[str, dict[str, _FieldStats]], index: _Index, problems: _Problems) -> None:
        """Give every invalid field name a valid one (its value types counted under the new name)."""
        for class_name, fields in stats.items():
            bad = [key for key in fields if not field_name_is_valid(key)]
            if not bad:
                continue
            taken = set(fields) | set(BASE_FIELDS) | set(DEFAULT_FIELDS.get(class_name, {}))
            renames = self.renames.setdefault(class_name, {})
            cls = index.class_no(class_name)
            for key in bad:
                new = renames[key] = _free_name(_valid_field_name(key), taken)
                taken.add(new)
                fields[new] = fields.pop(key)
                n = sum(fields[new].types.values()) + fields[new].nulls
                for table in ("typed", "ptr"):
                    index.db.execute(f"UPDATE {table} SET field = ? WHERE cls = ? AND field = ?", (new, cls, key))
                problems.add(Problem("invalid-field-name", class_name,
                                     f"{key!r} is not a valid field name ({_plural(n, 'object')})", None, key,
                                     f"renamed to {new!r}"))

    def _fix_batch(self, class_name: str, raw: list[Any]) -> None:
        """Rename invalid field names in the exported records, before they are converted."""
        renames = self.renames.get(class_name)
        if not renames:
            return
        for obj in raw:
            if isinstance(obj, dict) and not renames.keys().isdisjoint(obj):
                for old, new in renames.items():
                    if old in obj:
                        obj[new] = obj.pop(old)

    def _fix_objects(self, class_name: str, objects: list[StoredObject]) -> None:
        """Apply the planned repairs to converted objects: moved type conflicts, unset dangling pointers,
        renamed duplicates."""
        moves = self.moves.get(class_name)
        if moves:
            for obj in objects:
                for name, by_type in moves.items():
                    value = obj.get(name)
                    if value is not None:
                        tkey = _type_key(value)
                        sibling = by_type.get(_type_label(tkey)) if tkey else None
                        if sibling is not None:
                            obj[sibling] = obj.pop(name)
        if self._fixes is None or not objects:
            return
        by_id = {obj["objectId"]: obj for obj in objects}
        ids = list(by_id)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = self._fixes.execute(
                f"SELECT oid, field, action, detail FROM fix WHERE cls = ? AND oid IN ({','.join('?' * len(chunk))})",
                [class_name, *chunk]).fetchall()
            for oid, field_name, action, detail in rows:
                obj = by_id[oid]
                field_name = (self.renames.get(class_name) or {}).get(field_name, field_name)
                if action == "set":
                    obj[field_name] = detail
                elif action == "unset-pointer":
                    target_class, _, target_id = detail.partition("$")
                    value = obj.get(field_name)
                    if _points_to(value, target_class, target_id):
                        del obj[field_name]
                    elif isinstance(value, list):
                        obj[field_name] = [v for v in value if not _points_to(v, target_class, target_id)]

    # --- objects and relations --------------------------------------------------------------------------
    async def objects(self, class_name: str, *, after: str | None = None, batch_size: int = 1000,
                      rows: tuple[Any, ...] | None = None) -> AsyncIterator[Batch]:
        """Batches of storage-form objects in file order; the checkpoint counts the records consumed.

        A big class file is read and converted by worker processes (:mod:`.export_worker`), so parsing
        the export and writing the destination use several cores: one worker per spare core when the
        file holds one record per line (each converts every other batch), else one; small files are read
        in a thread. ``rows`` (``(BulkWriter.row_kind, schema)``): the workers also make the
        writer's rows (see :class:`Batch`); ``(row_kind, schema, True)``: two or more workers write them to
        spool files, :data:`SPOOL_RECORDS` records' worth each (a writer with ``write_spool``)."""
        entry = self.class_files.get(class_name)
        if entry is None:
            return
        parallel = self.parallel if self.parallel is not None else (
            entry.size >= PARALLEL_MIN_BYTES and _cores() > 1)
        if parallel:
            from parsectl.migrate.sources.export_worker import ObjectReader, ReaderUnavailable, interleaved

            wanted = max(1, min(_cores(), MAX_READERS)) if entry.lines else 1
            while len(self._readers) < wanted:
                self._readers.append(ObjectReader(self))
            spool = rows is not None and len(rows) > 2 and wanted > 1 and not self.fix  # repairs: objects
            if rows is not None:
                rows = (*rows[:2], self.tmp_dir) if spool else rows[:2]
            try:
                if wanted > 1:
                    size = max(batch_size, SPOOL_RECORDS) if spool else batch_size
                    async for batch in interleaved(self._readers[:wanted], class_name, after, size, rows):
                        yield batch
                else:
                    async for batch in self._readers[0].batches(class_name, after, batch_size, rows):
                        yield batch
                return
            except ReaderUnavailable:
                self.parallel = False  # nothing was read: read in this process from now on
                self._stop_readers()
        batches = self.iter_batches(class_name, after, batch_size)
        try:
            while True:
                batch = await asyncio.to_thread(next, batches, None)
                if batch is None:
                    return
                yield batch
        finally:
            batches.close()

    def iter_batches(self, class_name: str, after: str | None, batch_size: int, stride: int = 1, offset: int = 0,
                     plan: Any = None, sink: Callable[[list[list[Any]]], None] | None = None) -> Iterator[Batch]:
        """:meth:`objects`, synchronously, in this thread. With ``stride`` > 1 (a file of one record per
        line), the batches are ``batch_size`` records each and only every ``stride``-th one from the
        ``offset``-th is made; the lines of the others are skipped unparsed. With a writer's row ``plan``
        (:func:`parsectl.migrate.writers.row_plan`), the batches hold its ``rows`` and ``ids`` instead of
        objects, made straight from the records where :mod:`parsectl.migrate.rest_rows` can; with a ``sink``
        too, the rows go to it as they are made (a few thousand at a time) and a batch only counts them."""
        entry = self.class_files.get(class_name)
        if entry is None:
            return
        take = self._take if plan is None else functools.partial(
            self._take_rows, plan=plan, maker=None if self.fix else row_maker(plan), sink=sink)
        consumed = int(after or 0)
        if stride > 1:
            lines = self._iter_lines(entry)
            with contextlib.closing(lines):
                if _skip(lines, consumed) < consumed:
                    return
                for number in itertools.count():
                    if number % stride != offset:
                        read = _skip(lines, batch_size)
                    else:  # the lines are parsed as they are read (a batch of big records is not held)
                        counted = [0]
                        batch, _, _ = take(class_name, map(orjson.loads, _counting(lines, batch_size, counted)),
                                           batch_size + 1, consumed)
                        read = counted[0]
                        if read:
                            batch.checkpoint = str(consumed + read)
                            yield batch
                    if not read:
                        return
                    consumed += read
        with contextlib.closing(self._iter_records(entry)) as records:
            if _skip(records, consumed) < consumed:
                return
            last = consumed
            while True:
                batch, n, done = take(class_name, records, batch_size, consumed)
                consumed += n
                if batch.objects or batch.ids or consumed > last:
                    batch.checkpoint = str(consumed)
                    yield batch
                    last = consumed
                if done:
                    return

    def _take_rows(self, class_name: str, records: Iterator[Any], batch_size: int, position: int, plan: Any,
                   maker: RowMaker | None, sink: Callable[[list[list[Any]]], None] | None = None
                   ) -> tuple[Batch, int, bool]:
        """:meth:`_take` as a batch of the plan's rows, in record order: each record through the row ``maker``,
        or the general path where it declines. Without a maker (repairs to apply), the batch holds objects
        as :meth:`_take` makes them. A ``sink`` takes the rows instead, :data:`SINK_ROWS` at a time."""
        if maker is None:
            if sink is not None:
                raise ValueError("rows made from objects are not spooled")
            return self._take(class_name, records, batch_size, position)  # objects, made into rows by the caller
        rows: list[list[Any]] = []
        ids: list[str] = []
        files: dict[str, str | None] = {}
        users = class_name == "_User"
        n = tokens = sunk = 0
        relink = self.nested_files_url
        for obj in records:
            n += 1
            if relink and type(obj) is dict:
                if self.collect_files:  # fetched from where the export says they are
                    file_names(obj, files)
                obj = _nested_file_urls(obj, relink)
            row = maker(obj) if type(obj) is dict else None
            if row is None:
                taken, _, _ = self._take(class_name, iter((obj,)), 1, position + n - 1)
                row = plan.rows(taken.objects)[0] if taken.objects else None
                for name, url in taken.files.items():
                    files.setdefault(name, url)
                tokens += users and row is not None and "_session_token" in taken.objects[0]
            else:
                if self.collect_files and not relink:
                    file_names(obj, files)
                if users:  # a hosted-Parse session token (rest_to_storage's _session_token)
                    token = obj.get("sessionToken")
                    tokens += isinstance(token, str) and token != ""
            if row is not None:
                rows.append(row)
                if sink is None:
                    ids.append(row[0])
                elif len(rows) >= SINK_ROWS:
                    sink(rows)
                    sunk += len(rows)
                    rows = []
            if n >= batch_size:
                break
        if sink is not None:
            if rows:
                sink(rows)
            return Batch([], "", [], [], files, tokens, spooled=sunk + len(rows)), n, n < batch_size
        return Batch([], "", rows, ids, files, tokens), n, n < batch_size

    def _take(self, class_name: str, records: Iterator[Any], batch_size: int, position: int
              ) -> tuple[Batch, int, bool]:
        out: list[StoredObject] = []
        files: dict[str, str | None] = {}
        n = 0
        renames = self.renames.get(class_name)
        done = True
        relink = self.nested_files_url
        for obj in records:
            n += 1
            try:
                if not isinstance(obj, dict):
                    raise ParseError(errors.INVALID_JSON, "not a JSON object")
                if renames:
                    self._fix_batch(class_name, [obj])
                stored = rest_to_storage(class_name, _nested_file_urls(obj, relink) if relink else obj)
                out.append(stored)
                if self.collect_files:  # fetched from where the export says they are
                    file_names(obj, files)
            except ParseError as exc:
                self.skipped.append(_skip_problem(class_name, obj, exc, position + n))
            if n >= batch_size:  # batches of batch_size records (fewer objects when some cannot be stored)
                done = False
                break
        if self.fix:
            self._fix_objects(class_name, out)
        return Batch(out, "", files=files), n, done

    async def relations(self, class_name: str, field_name: str, *, batch_size: int = 5000
                        ) -> AsyncIterator[list[tuple[str, str]]]:
        found = self.relation_rows_sql(class_name, field_name)
        if found is not None:  # the schema pass has them: read from its index, not parsed again
            path, select, params = found
            with relation_rows(path, f"{select} ORDER BY rowid", params) as cursor:
                while pairs := await asyncio.to_thread(cursor.fetchmany, batch_size):
                    yield pairs
            return
        self._scan()
        entry = self._joins.get((class_name, field_name))
        if entry is None:
            return
        with contextlib.closing(self._iter_records(entry)) as rows:
            while True:
                pairs = await asyncio.to_thread(_take_pairs, rows, batch_size)
                if pairs:
                    yield pairs
                if len(pairs) < batch_size:
                    return

    def relation_rows_sql(self, class_name: str, field_name: str) -> tuple[str, str, tuple[Any, ...]] | None:
        """Where the relation's rows are once :meth:`schema` has run: an SQLite file, and a query of their
        (owningId, relatedId) in file order on it attached as ``src``, with its parameters. None: read
        them with :meth:`relations`."""
        j = self._join_numbers.get((class_name, field_name))
        if self._index_path is None or j is None:
            return None
        return self._index_path, 'SELECT oid AS "owningId", rid AS "relatedId" FROM src.rel WHERE j = ?', (j,)

    # --- files ------------------------------------------------------------------------------------------
    async def file_bytes(self, name: str, url: str | None) -> bytes | None:
        if self.files_from is not None:
            if not name or "/" in name or "\\" in name or name in (".", ".."):
                return None
            path = self.files_from / name
            try:
                return await asyncio.to_thread(path.read_bytes)
            except OSError:
                return None
        if not url:
            return None
        if self.url_rewrite and url.startswith(self.url_rewrite[0]):
            url = self.url_rewrite[1] + url[len(self.url_rewrite[0]):]
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=True)
        try:
            response = await self._client.get(url)
        except httpx.HTTPError:
            return None
        return response.content if response.status_code == 200 else None


# --- helpers -----------------------------------------------------------------------------------------------


class _Problems:
    """Problems in the order found; past ``cap`` per (kind, class, field) only counted, then summed up."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.items: list[Problem] = []
        self.counts: dict[tuple[str, str, str | None], int] = {}
        self.fixes: dict[tuple[str, str, str | None], str | None] = {}  # the repair of each kind's first one

    def add(self, problem: Problem) -> None:
        key = (problem.kind, problem.class_name, problem.field)
        n = self.counts.get(key, 0) + 1
        self.counts[key] = n
        self.fixes.setdefault(key, problem.fix)
        if n <= self.cap:
            self.items.append(problem)

    def merge(self, other: _Problems) -> None:
        """Add the problems another pass found (over other classes: their keys are its own)."""
        self.items.extend(other.items)
        for key, n in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + n
        for key, fix in other.fixes.items():
            self.fixes.setdefault(key, fix)

    def finish(self) -> list[Problem]:
        for (kind, class_name, field_name), n in self.counts.items():
            if n > self.cap:
                where = f"{class_name}.{field_name}" if field_name else class_name
                fix = self.fixes.get((kind, class_name, field_name))
                self.items.append(Problem(kind, class_name, f"{n - self.cap} more {kind} problems in {where} "
                                          f"(only the first {self.cap} are listed)", None, field_name,
                                          f"each one as listed: {fix}" if fix else None))
        return self.items


def _json_size(obj: dict[str, Any]) -> int:
    try:
        return len(orjson.dumps(obj))
    except TypeError:  # integers beyond 64 bits
        import json

        return len(json.dumps(obj).encode())


_STRING, _NUMBER, _BOOLEAN = ("String", None), ("Number", None), ("Boolean", None)
_ARRAY, _OBJECT = ("Array", None), ("Object", None)
_SIMPLE = {str: _STRING, int: _NUMBER, float: _NUMBER, bool: _BOOLEAN, list: _ARRAY}


def _type_key(value: Any) -> TypeKey | None:
    """``codec.type_of`` as a tuple (fast paths first); None for null and for what is no Parse value."""
    simple = _SIMPLE.get(type(value))
    if simple is not None:
        return simple
    if isinstance(value, dict):
        kind = value.get("__type")
        if kind is None:
            return _OBJECT
        if kind == "Pointer":
            return (kind, value["className"]) if codec.is_pointer(value) else _OBJECT
        if kind == "Relation":
            target = value.get("className")
            return (kind, target) if isinstance(target, str) and target else _OBJECT
    try:
        found = codec.type_of(value)
    except (ParseError, KeyError):
        return None
    return (found["type"], found.get("targetClass")) if found else None


def _pointers(value: Any, field_name: str, cls: int, oid: str, index: _Index, depth: int) -> None:
    """Record every pointer in a field's value (top-level, in arrays, in nested objects)."""
    if isinstance(value, dict):
        if "__type" in value:
            if value.get("__type") == "Pointer" and isinstance(value.get("className"), str) \
                    and isinstance(value.get("objectId"), str):
                index.add("ptr", (cls, oid, field_name, index.class_no(value["className"]), value["objectId"]))
            return
        items = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return
    if depth < codec.MAX_NESTING:
        for item in items:
            if isinstance(item, dict | list):
                _pointers(item, field_name, cls, oid, index, depth + 1)


def _nested_file_urls(record: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The record with every File inside an object or array (at any depth) given the url ``prefix`` + its
    name; unchanged parts are shared. A field that is a File is left alone (it is stored by name)."""
    out: dict[str, Any] | None = None
    for key, value in record.items():
        if type(value) is list or (type(value) is dict and "__type" not in value):
            new = _relinked(value, prefix, 0)
            if new is not value:
                if out is None:
                    out = dict(record)
                out[key] = new
    return record if out is None else out


def _relinked(value: Any, prefix: str, depth: int) -> Any:
    if depth > codec.MAX_NESTING:
        return value
    if type(value) is dict:
        if "__type" in value:
            name = value.get("name")
            if value["__type"] != "File" or not isinstance(name, str) or not name:
                return value
            url = prefix + encode_uri_component(name)
            return value if value.get("url") == url else {**value, "url": url}
        changed = {k: _relinked(v, prefix, depth + 1) for k, v in value.items()}
        return value if all(changed[k] is v for k, v in value.items()) else changed
    if type(value) is list:
        items = [_relinked(v, prefix, depth + 1) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


def _temp_file(kind: str, directory: str | None) -> tuple[int, str]:
    """A new temporary SQLite file named after this process (see :func:`_remove_stale_temp_files`)."""
    return tempfile.mkstemp(prefix=f"parsectl-{kind}-{os.getpid()}-", suffix=".sqlite", dir=directory)


def _remove_stale_temp_files(directory: str | None) -> None:
    """Delete the temporary files of migrations whose process is gone (killed: ``kill -9`` leaves them,
    and a big export's index is large)."""
    folder = Path(directory or tempfile.gettempdir())
    for path in folder.glob("parsectl-*-*-*.sqlite"):
        match = re.fullmatch(r"parsectl-(?:export|fixes|spool)-(\d+)-\w+\.sqlite", path.name)
        if match is None or int(match[1]) == os.getpid():
            continue
        try:
            os.kill(int(match[1]), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                path.unlink()
        except OSError:  # alive (another user's process), or cannot tell: kept
            continue


def _line_text(line: bytes) -> bytes:
    """A line of an export file without its surrounding blanks and the comma after a record."""
    text = line.strip()
    return text[:-1] if text.endswith(b",") else text


# the pointers of the export whose target is not in it
_DANGLING_POINTERS = ("SELECT p.cls, p.oid, p.field, p.tcls, p.tid FROM ptr p WHERE p.rowid BETWEEN ? AND ? "
                      "AND NOT EXISTS (SELECT 1 FROM ids i WHERE i.id = p.tid AND i.cls = p.tcls) ORDER BY p.rowid")
_GUESS_ROWS = 1000  # a join file's target class is first guessed from this many of its rows
# the rows of a join file (owner class, target class, j, rowid range) whose owner or target is missing
_DANGLING_RELATION_ROWS = (
    "SELECT oid, rid, has_owner, has_target FROM (SELECT r.oid, r.rid, "
    "EXISTS(SELECT 1 FROM ids i WHERE i.id = r.oid AND i.cls = ?) AS has_owner, "
    "EXISTS(SELECT 1 FROM ids i WHERE i.id = r.rid AND i.cls = ?) AS has_target FROM rel r "
    "WHERE r.j = ? AND r.rowid BETWEEN ? AND ?) WHERE NOT has_owner OR NOT has_target")
SPLIT_LOOKUPS_FROM = 100_000  # relation rows: from this many, their lookups run in two threads


def _halves(index: _Index, table: str, sql: str, params: tuple[Any, ...] = (), where: str = "1",
            where_params: tuple[Any, ...] = ()) -> list[Callable[[], list[tuple[Any, ...]]]]:
    """``sql`` (``params``, then a rowid range) over the two halves of the rows of ``table`` that ``where``
    selects, each in a thread of its own (both cores, without the GIL); call the answers in order for the
    rows in table order."""
    low, high = index.db.execute(f"SELECT min(rowid), max(rowid) FROM {table} WHERE {where}", where_params).fetchone()
    if low is None:
        return []
    middle = (low + high) // 2
    return [_in_thread(_query, index.path, sql, (*params, low, middle)),
            _in_thread(_query, index.path, sql, (*params, middle + 1, high))]


def _query(index_path: str, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """A query's rows on a connection of its own to the index (so it can run in a thread)."""
    db = sqlite3.connect(index_path)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def _in_thread(function: Any, *args: Any) -> Any:
    """Start ``function(*args)`` in a thread; returns a function that waits for its result (or raises)."""
    done: dict[str, Any] = {}

    def run() -> None:
        try:
            done["result"] = function(*args)
        except BaseException as exc:  # noqa: BLE001 - raised again by the waiter
            done["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def wait() -> Any:
        thread.join()
        if "error" in done:
            raise done["error"]
        return done["result"]

    return wait


def _counting(lines: Iterator[bytes], n: int, counted: list[int]) -> Iterator[bytes]:
    """The next ``n`` lines (fewer at the end), counted in ``counted[0]`` as they are read."""
    for line in itertools.islice(lines, n):
        counted[0] += 1
        yield line


def _skip(records: Iterator[Any], n: int) -> int:
    if n <= 0:
        return 0
    done = 0
    for _ in records:
        done += 1
        if done >= n:
            break
    return done


def _take_pairs(rows: Iterator[Any], batch_size: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for row in rows:
        if isinstance(row, dict) and isinstance(row.get("owningId"), str) and isinstance(row.get("relatedId"), str):
            out.append((row["owningId"], row["relatedId"]))
            if len(out) >= batch_size:
                break
    return out


_ERROR_KINDS = {errors.MISSING_OBJECT_ID: "missing-object-id", errors.INVALID_KEY_NAME: "invalid-field-name"}


def _skip_problem(class_name: str, obj: Any, exc: ParseError, position: int) -> Problem:
    oid = obj.get("objectId") if isinstance(obj, dict) else None
    oid = oid if isinstance(oid, str) and oid else None
    bad = None
    if exc.code == errors.INVALID_KEY_NAME and isinstance(obj, dict):
        bad = next((k for k in obj if not k.startswith("_") and k not in _NOT_FIELDS
                    and not field_name_is_valid(k)), None)
    return Problem(_ERROR_KINDS.get(exc.code, "invalid-object"), class_name,
                   f"record #{position} skipped: {exc.message}", oid, bad)


def _valid_field_name(key: str) -> str:
    """A valid field name made from an invalid one: other characters become ``_``, a letter first."""
    name = re.sub("[^A-Za-z0-9_]", "_", key)
    if not name or not name[0].isalpha():
        name = "f" + name
    return name if field_name_is_valid(name) else name + "_"


def _free_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``, ... the first one no other field has."""
    if name not in taken:
        return name
    n = 2
    while f"{name}_{n}" in taken:
        n += 1
    return f"{name}_{n}"


def _renamed_value(kind: str, value: str, object_id: str) -> str:
    """A duplicate username, email or role name made unique with the object's id (deterministic)."""
    if kind == "email" and "@" in value:
        local, _, domain = value.rpartition("@")
        return f"{local}+{object_id}@{domain}"
    return f"{value}_{object_id}"


def _points_to(value: Any, class_name: str, object_id: str) -> bool:
    return (isinstance(value, dict) and value.get("__type") == "Pointer" and value.get("className") == class_name
            and value.get("objectId") == object_id)


def _cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
