"""Plan and run a migration: schemas, objects in checkpointed batches, relations, files.

Every write is idempotent (objects are inserted only if their objectId is new, relation rows only
if absent) and a checkpoint is saved after each committed batch, so a run that is interrupted at any
point (Ctrl-C, ``kill -9``, a lost connection) continues where it stopped when started again, and the
result equals one uninterrupted run.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson

from parsectl.migrate.source import Batch, Problem, Source, SourceSchema, file_names
from parsectl.migrate.writers import writer_for
from parsectl.model import codec
from parsectl.model.query import Compare, In, MatchAll, RelatedTo, SortKey
from parsectl.model.schema import VOLATILE_CLASSES, ClassSchema, default_clp
from parsectl.storage import adapter_for
from parsectl.storage.base import StorageAdapter, StoredObject
from parsectl.storage.sql import join_table
from parsectl.uri import redact

FOLLOW_INTERVAL = 2.0  # seconds between two passes over the source's changes
FOLLOW_CLOCK_MARGIN = 60.0  # seconds of overlap between passes, against clock skew between machines

# problems that only inform: the data is still valid Parse data
WARNING_KINDS = frozenset(("dangling-pointer",))
MONGO_MAX_BYTES = 16 * 1024 * 1024
_T = TypeVar("_T")
RELATION_BATCH = 20_000  # relation rows per write (two short ids each)

# suggested when the source had no class-level permissions (hosted exports never carry them)
SUGGESTED_CLPS: dict[str, dict[str, Any]] = {
    "_User": {**default_clp(), "find": {}, "count": {}, "addField": {}, "protectedFields": {"*": ["email"]}},
    "_Session": {k: {} for k in ("find", "count", "get", "create", "update", "delete", "addField")}
    | {"protectedFields": {}},
    "_Installation": {**default_clp(), "find": {}, "count": {}, "get": {}, "delete": {}, "addField": {}},
}


class MigrationError(Exception):
    """A migration that cannot start or go on; the message says what to do."""


class BlockedByProblems(MigrationError):
    """Problems in the source stop the migration under its policy, before anything is written; the
    migration's report holds the plan and the problems."""


@dataclass
class Options:
    mode: str | None = None  # None (refuse a non-empty destination), "fresh" or "merge"
    dry_run: bool = False
    batch_size: int = 2000
    on_problem: str = "fail"  # fail | skip | fix
    files: bool = False
    files_adapter: dict[str, Any] | None = None
    secure_clps: bool = False
    state_dir: Path = Path(".parsectl-migrate")
    classes: list[str] | None = None


@dataclass
class ClassReport:
    source_count: int | None
    copied: int = 0
    already_there: int = 0
    skipped: int = 0
    relations: dict[str, int] = field(default_factory=dict)


@dataclass
class Report:
    source: str
    destination: str
    dry_run: bool
    classes: dict[str, ClassReport] = field(default_factory=dict)
    schema_notes: dict[str, dict[str, str]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    suggested_clps: dict[str, Any] = field(default_factory=dict)
    clps_applied: bool = False  # the suggested CLPs were set (--secure-clps)
    files_copied: int = 0
    files_missing: list[str] = field(default_factory=list)
    files_location: str | None = None  # where --files put them
    resumed: bool = False
    seconds: float = 0.0
    followed: int = 0
    deleted: int = 0
    follow_mode: str | None = None  # "change stream" or "polling"
    blocking: int = 0  # problems that stop the migration under its --on-problem policy

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source, "destination": self.destination, "dryRun": self.dry_run,
            "resumed": self.resumed, "seconds": round(self.seconds, 3), "blockingProblems": self.blocking,
            "classes": {name: {"sourceCount": c.source_count, "copied": c.copied, "alreadyThere": c.already_there,
                               "skipped": c.skipped, "relations": c.relations}
                        for name, c in self.classes.items()},
            "schemaNotes": self.schema_notes,
            "problems": [p.to_json() for p in self.problems],
            "warnings": self.warnings,
            "suggestedClassLevelPermissions": self.suggested_clps, "suggestedClpsApplied": self.clps_applied,
            "files": {"copied": self.files_copied, "missing": self.files_missing, "location": self.files_location},
            "follow": {"changesApplied": self.followed, "deletionsApplied": self.deleted, "mode": self.follow_mode},
        }


# --- progress --------------------------------------------------------------------------------------------


class Progress:
    """Progress callbacks; the CLI renders them (rich bars on a terminal, lines otherwise)."""

    def start_class(self, class_name: str, total: int | None) -> None: ...

    def advance(self, class_name: str, count: int) -> None: ...

    def end_class(self, class_name: str) -> None: ...

    def note(self, message: str) -> None: ...


# --- checkpoints ------------------------------------------------------------------------------------------


class State:
    """The checkpoint file of one (source, destination) pair, rewritten atomically after each batch."""

    def __init__(self, directory: Path, source: str, destination: str) -> None:
        key = hashlib.sha256(f"{source}\n{destination}".encode()).hexdigest()[:16]
        self.path = directory / f"{key}.json"
        self.data: dict[str, Any] = {"source": source, "destination": destination, "classes": {},
                                     "relations": {}, "files": {}}
        self.resumed = False
        self._synced = -1.0  # time.monotonic() of the last fsync

    def load(self) -> None:
        if self.path.exists():
            with contextlib.suppress(ValueError, OSError):
                self.data = orjson.loads(self.path.read_bytes())
                self.resumed = True

    def save(self) -> None:
        """Replace the file atomically. It is flushed to disk at most once a second: a checkpoint that a
        power loss takes back only makes the resumed run write some batches again, which writes skip."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as handle:
            handle.write(orjson.dumps(self.data))
            now = time.monotonic()
            if now - self._synced >= 1.0:
                handle.flush()
                os.fsync(handle.fileno())
                self._synced = now
        os.replace(tmp, self.path)

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def klass(self, name: str) -> dict[str, Any]:
        return self.data["classes"].setdefault(name, {"checkpoint": None, "done": False, "copied": 0,
                                                      "alreadyThere": 0, "skipped": 0})


async def _prefetch(batches: AsyncIterator[_T]) -> AsyncIterator[_T]:
    """The source's batches, reading the next one while the caller writes the current one (the source
    parses in a thread and the database works in its own process, so both make progress at once)."""
    iterator = aiter(batches)

    async def next_batch() -> _T | None:
        return await anext(iterator, None)

    pending: asyncio.Task[_T | None] = asyncio.ensure_future(next_batch())
    try:
        while True:
            batch = await pending
            if batch is None:
                return
            pending = asyncio.ensure_future(next_batch())
            yield batch
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(RuntimeError):
                await aclose()


# --- the run ------------------------------------------------------------------------------------------------


def _file_urls(files: dict[str, str | None], batch: Batch) -> None:
    """Give the files collected from a batch's objects (storage form names a File, nothing more) the URL the
    source read with them (``batch.files``), where it has one."""
    for name, url in batch.files.items():
        if url and name in files and files[name] is None:
            files[name] = url


def _count(progress: dict[str, Any], batch: Batch, written: int, inserted: int) -> None:
    """A class's progress after a batch: ``written`` objects sent, ``inserted`` of them new."""
    progress["copied"] += inserted
    progress["alreadyThere"] += written - inserted
    progress["checkpoint"] = batch.checkpoint


def _minus_seconds(iso: str, seconds: float) -> str:
    from datetime import timedelta

    return codec.format_iso(codec.parse_iso(iso) - timedelta(seconds=seconds))


# problems a source resolves itself under --on-problem skip (the record or the class is left out)
SKIPPED_BY_SOURCE = frozenset(("missing-object-id", "invalid-class-name", "invalid-object"))


def decide(problems: list[Problem], on_problem: str, mongo: bool) -> tuple[list[Problem], set[tuple[str, str]]]:
    """(blocking problems, objects to skip) under the policy."""
    warnings = WARNING_KINDS if mongo else WARNING_KINDS | {"too-large"}  # 16 MB is MongoDB's limit only
    blocking = [p for p in problems if p.kind not in warnings]
    if on_problem == "fix":  # what has a repair is repaired; the rest is left out as under skip
        blocking = [p for p in blocking if not p.fix]
    if on_problem in ("skip", "fix"):
        return ([p for p in blocking if not p.object_id and p.kind not in SKIPPED_BY_SOURCE],
                {(p.class_name, p.object_id) for p in blocking if p.object_id})
    return blocking, set()


def _files_location(adapter: Any) -> str:
    """Where a files adapter keeps files, for the report."""
    if getattr(adapter, "directory", None) is not None:
        return f"folder {Path(adapter.directory).resolve()}"
    if getattr(adapter, "bucket", None) is not None:
        return f"S3 bucket {adapter.bucket}" + (f", prefix {adapter.bucket_prefix}" if adapter.bucket_prefix else "")
    return f"GridFS bucket {getattr(adapter, 'bucket_name', 'fs')} of {redact(getattr(adapter, 'database_uri', ''))}"


class Migration:
    def __init__(self, source: Source, destination_uri: str, options: Options,
                 progress: Progress | None = None, confirm: Callable[[str], bool] | None = None) -> None:
        self.source = source
        self.destination_uri = destination_uri
        self.options = options
        self.progress = progress or Progress()
        self.confirm = confirm or (lambda message: False)
        self.dest: StorageAdapter = adapter_for(destination_uri)
        self.writer = writer_for(self.dest)
        self.report = Report(source.description, redact(destination_uri), options.dry_run)
        self.legacy_tokens = 0
        self.follow: asyncio.Event | None = None  # set: keep following changes until this event is set
        self.started_iso = codec.now_iso()

    async def run(self) -> Report:
        started = time.monotonic()
        # a copy allocates millions of short-lived, acyclic dicts: collecting cycles that rarely costs
        # a sizeable share of the run for nothing (memory stays bounded: batches are freed by refcount)
        thresholds = gc.get_threshold()
        gc.set_threshold(max(thresholds[0], 100_000), *thresholds[1:])
        try:
            return await self._run_all(started)
        finally:
            gc.set_threshold(*thresholds)

    async def _run_all(self, started: float) -> Report:
        if self.options.files and hasattr(self.source, "collect_files"):
            self.source.collect_files = True  # its batches name the files with the URLs the records give
        await self.source.open()
        writes = not self.options.dry_run  # opening a destination creates parse-server's start-up classes
        try:
            if writes:
                await self.dest.open()
        except Exception:
            await self.source.close()
            raise
        try:
            await self._run()
        finally:
            await self.source.close()
            if writes:
                await self.dest.close()
            self.report.seconds = time.monotonic() - started
        return self.report

    async def _run(self) -> None:
        plan = await self.source.schema()
        classes = self._classes(plan)
        self.report.schema_notes = plan.notes
        self.report.problems = plan.problems
        if not self.source.has_password_hashes:
            self.report.warnings.append(
                "this source cannot export password hashes (parse-server never returns them over REST): "
                "migrated users must reset their passwords, or migrate from the database instead")
        blocking, skip = decide(plan.problems, self.options.on_problem, self.destination_uri.startswith("mongodb"))
        self.report.blocking = len(blocking)
        for name in classes:
            self.report.classes[name] = ClassReport(plan.counts.get(name))
            if name in SUGGESTED_CLPS and plan.classes[name].clp in ({}, default_clp()):
                self.report.suggested_clps[name] = SUGGESTED_CLPS[name]
        if self.options.dry_run:
            return
        if blocking:
            raise BlockedByProblems(
                f"{len(blocking)} problem(s) in the source stop the migration before anything is written (listed "
                "in the report); --on-problem skip leaves the offending objects out, --on-problem fix repairs what "
                "can be repaired")
        state = State(self.options.state_dir, self.source.description, self.destination_uri)
        state.load()
        self.report.resumed = state.resumed
        if not state.resumed:
            await self._check_destination(classes)
        await self._create_schemas(plan, classes)
        files: dict[str, str | None] = {}
        for name in classes:
            await self._copy_class(plan.classes[name], state, skip, files)
        # the class tables' statistics are refreshed (by the database) while the relation rows load
        analyzing = asyncio.ensure_future(self.dest.analyze(classes)) if self.follow is None else None
        relations = [(name, field_name) for name in classes for field_name in plan.classes[name].relation_fields()]
        try:
            for name, field_name in relations:
                await self._copy_relation(name, field_name, state)
        except BaseException:
            if analyzing is not None:
                analyzing.cancel()
                with contextlib.suppress(BaseException):
                    await analyzing
            raise
        if analyzing is not None:
            await analyzing
        if self.options.files:
            await self._copy_files(files, state)
        unreadable = list(getattr(self.source, "skipped", []))
        for problem in unreadable:
            self.report.problems.append(problem)
            if problem.class_name in self.report.classes:
                self.report.classes[problem.class_name].skipped += 1
        if unreadable and self.options.on_problem == "fail":
            raise MigrationError(
                f"{len(unreadable)} object(s) could not be stored and were left out (everything else was copied): "
                f"first {unreadable[0].class_name} {unreadable[0].object_id}: {unreadable[0].message}. "
                "Run with --dry-run to list them all; --on-problem skip accepts leaving them out")
        if self.follow is not None:
            await self._follow(plan, classes, self.follow, state)
        # counted with the checkpoints: a resumed run reports the users copied before it too
        self.legacy_tokens = sum(state.klass(name).get("legacyTokens", 0) for name in classes)
        if self.legacy_tokens:
            self.report.warnings.append(
                f"{self.legacy_tokens} user(s) carry a legacy hosted-Parse session token; only parse-server's MongoDB "
                "format keeps those, so these users sign in again on this destination")
        if analyzing is None:  # followed changes came after the copy: everything
            await self.dest.analyze()
        else:
            await self.dest.analyze([join_table(field_name, name) for name, field_name in relations])
        state.clear()

    def _classes(self, plan: SourceSchema) -> list[str]:
        names = [n for n in plan.classes if n not in VOLATILE_CLASSES]
        if self.options.classes:
            unknown = sorted(set(self.options.classes) - set(plan.classes))
            if unknown:
                raise MigrationError(f"the source has no class {unknown[0]!r}")
            names = [n for n in names if n in self.options.classes]
        # users and roles first, so pointers and relations to them land after their targets
        order = {"_User": 0, "_Role": 1, "_Installation": 2}
        return sorted(names, key=lambda n: (order.get(n, 3), n))

    async def _check_destination(self, classes: list[str]) -> None:
        existing = await self.dest.load_schemas()
        non_empty = []
        for name in classes:
            schema = existing.get(name)
            if schema is not None and await self.dest.count(schema, MatchAll()):
                non_empty.append(name)
        if not non_empty:
            return
        if self.options.mode == "merge":
            return
        listed = ", ".join(non_empty[:5]) + (" ..." if len(non_empty) > 5 else "")
        if self.options.mode == "fresh":
            if not self.confirm(f"Delete every object of {len(non_empty)} class(es) in the destination ({listed})?"):
                raise MigrationError("not confirmed; nothing was changed (use --yes to skip the question)")
            for name in non_empty:
                await self.dest.delete(existing[name], MatchAll(), many=True)
            return
        raise MigrationError(
            f"the destination already holds objects in {listed}; choose --mode merge (keep them, add what is "
            "missing) or --mode fresh (delete them first)")

    async def _create_schemas(self, plan: SourceSchema, classes: list[str]) -> None:
        for name in classes:
            wanted = plan.classes[name]
            stored = await self.dest.ensure_class(ClassSchema.new(name))
            extra = {f: t for f, t in wanted.fields.items() if f not in stored.fields and t["type"] != "ACL"}
            if extra:
                stored = await self.dest.add_fields(name, extra)
            clp = wanted.clp
            if self.options.secure_clps and name in self.report.suggested_clps:
                clp = SUGGESTED_CLPS[name]
                self.report.clps_applied = True
            if clp and clp != stored.clp:
                await self.dest.set_class_level_permissions(name, clp)

    async def _copy_class(self, wanted: ClassSchema, state: State, skip: set[tuple[str, str]],
                          files: dict[str, str | None]) -> None:
        name = wanted.class_name
        progress = state.klass(name)
        report = self.report.classes[name]
        schemas = await self.dest.load_schemas()
        schema = schemas[name]
        self.progress.start_class(name, report.source_count)
        mongo = self.destination_uri.startswith("mongodb")
        if progress["done"]:
            if self.options.files:
                async for batch in self.source.objects(name, batch_size=self.options.batch_size):
                    for obj in batch.objects:
                        file_names(obj, files)
                    _file_urls(files, batch)
        else:
            await self.writer.begin_class(schema)
            checks_size = getattr(self.source, "checks_size", False)  # too-large objects are plan problems
            rows_spec = None
            if getattr(self.source, "makes_rows", False) and self.writer.row_kind is not None:
                rows_spec = (self.writer.row_kind, schema)
                if self.writer.spools and not any(class_name == name for class_name, _ in skip):
                    rows_spec = (*rows_spec, True)  # the workers may spool them (none to leave out)
            batches = _prefetch(self.source.objects(name, after=progress["checkpoint"],
                                                    batch_size=self.options.batch_size,
                                                    **({"rows": rows_spec} if rows_spec else {})))
            async for batch in batches:
                if batch.rows is not None or batch.spool is not None:
                    await self._write_rows(schema, batch, progress, skip, files)
                    await self._checkpoint(state)
                    self.progress.advance(name, len(batch.ids) or batch.spooled)
                    continue
                keep: list[StoredObject] = []
                for obj in batch.objects:
                    if skip and (name, obj["objectId"]) in skip:
                        progress["skipped"] += 1
                        continue
                    if mongo and not checks_size and len(orjson.dumps(obj)) > MONGO_MAX_BYTES:
                        self.report.problems.append(Problem("too-large", name, "object over MongoDB's 16 MB",
                                                            obj["objectId"]))
                        progress["skipped"] += 1
                        continue
                    if self.options.files:
                        file_names(obj, files)
                    if not mongo and "_session_token" in obj:
                        progress["legacyTokens"] = progress.get("legacyTokens", 0) + 1
                    keep.append(obj)
                if self.options.files:
                    _file_urls(files, batch)
                _count(progress, batch, len(keep), await self.writer.write(schema, keep))
                await self._checkpoint(state)
                self.progress.advance(name, len(batch.objects))
            await self._checkpoint(state, final=True)
        await self.writer.end_class(schema)  # what a writer builds after the load (MongoDB: 2dsphere indexes)
        if not progress["done"]:  # interrupted before this, a resumed run finds nothing left but ends the class
            progress["done"] = True
            state.save()
        report.copied, report.already_there, report.skipped = (progress["copied"], progress["alreadyThere"],
                                                               progress["skipped"])
        self.progress.end_class(name)

    async def _checkpoint(self, state: State, *, final: bool = False) -> None:
        """Save the checkpoint once what it counts is committed: after every batch, or, for a writer that
        keeps its transaction open over several batches, when it commits (then a crash takes back at most
        that transaction, which the resumed run writes again)."""
        if final or self.writer.should_commit():
            await self.writer.commit()
            state.save()

    async def _write_rows(self, schema: ClassSchema, batch: Batch, progress: dict[str, Any],
                          skip: set[tuple[str, str]], files: dict[str, str | None]) -> None:
        """Write a batch the source made into rows (what the objects loop does, from the batch's facts)."""
        files.update((k, v) for k, v in batch.files.items() if k not in files)
        progress["legacyTokens"] = progress.get("legacyTokens", 0) + batch.legacy_tokens
        if batch.spool is not None:  # no object of the class is left out (see _copy_class)
            _count(progress, batch, batch.spooled, await self.writer.write_spool(schema, batch.spool))
            return
        rows = batch.rows or []
        if skip:
            name = schema.class_name
            kept = [i for i, oid in enumerate(batch.ids) if (name, oid) not in skip]
            progress["skipped"] += len(rows) - len(kept)
            rows = [rows[i] for i in kept]
        _count(progress, batch, len(rows), await self.writer.write_rows(schema, rows))

    async def _copy_relation(self, class_name: str, field_name: str, state: State) -> None:
        key = f"{class_name}.{field_name}"
        if state.data["relations"].get(key) is not None:
            self.report.classes[class_name].relations[field_name] = state.data["relations"][key]
            return
        where = getattr(self.source, "relation_rows_sql", lambda *_: None)(class_name, field_name)
        total = await self.writer.load_relation_sql(class_name, field_name, *where) if where else None
        if total is None:
            total = 0
            await self.writer.begin_relation(class_name, field_name)
            async for pairs in _prefetch(self.source.relations(class_name, field_name, batch_size=RELATION_BATCH)):
                await self.writer.add_relation_rows(class_name, field_name, pairs)
                total += len(pairs)
            await self.writer.end_relation(class_name, field_name)
        state.data["relations"][key] = total
        state.save()
        self.report.classes[class_name].relations[field_name] = total

    # --- --follow: copy, then sync, then finalise (the hosted migration's copy-sync-finalise) -------------
    async def _follow(self, plan: SourceSchema, classes: list[str], stop: asyncio.Event, state: State) -> None:
        if not hasattr(self.source, "changed"):
            raise MigrationError("--follow needs a live source (a database or a Parse Server URL)")
        # objects changed while the copy ran are picked up by the first pass (updatedAt >= its start)
        watermark = _minus_seconds(self.started_iso, FOLLOW_CLOCK_MARGIN)
        # a MongoDB replica set: its change stream, opened before the catch-up pass so nothing slips between
        feed = await self.source.change_feed() if hasattr(self.source, "change_feed") else None
        self.report.follow_mode = "change stream" if feed is not None else "polling"
        self.progress.note("following changes" + (" (change stream)" if feed else "")
                           + "; press Ctrl-C (or send SIGTERM) to finalise")
        if feed is not None:
            try:
                classes = await self._follow_feed(feed, watermark, stop, state)
            finally:
                await feed.close()
        else:
            while True:
                cycle_started = codec.now_iso()
                classes = await self._catch_up(watermark, state)
                watermark = _minus_seconds(cycle_started, FOLLOW_CLOCK_MARGIN)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=FOLLOW_INTERVAL)
                    break
                except TimeoutError:
                    continue
        for name in classes:
            await self._remove_deleted(name)

    async def _catch_up(self, watermark: str, state: State) -> list[str]:
        """One polling pass: every object updated at or after ``watermark``; classes and fields the app added
        since the copy began come along. Returns the classes followed."""
        live = SourceSchema(await self.source.live_schemas())
        classes = self._classes(live)
        await self._create_schemas(live, classes)
        stored = await self.dest.load_schemas()
        for name in classes:
            async for objects in self.source.changed(name, watermark):
                await self.dest.upsert_many(stored[name], objects)
                await self._sync_relations(live.classes[name], [o["objectId"] for o in objects])
                await self._follow_files(objects, state)
                self.report.followed += len(objects)
        return classes

    async def _follow_feed(self, feed: Any, watermark: str, stop: asyncio.Event, state: State) -> list[str]:
        """Apply the change stream's events until ``stop``; relations whose rows were deleted are
        reconciled in full at the end (a delete event names only the row's internal id)."""
        classes = await self._catch_up(watermark, state)
        stored = await self.dest.load_schemas()
        live = await self.source.live_schemas()
        dirty: set[tuple[str, str]] = set()
        while not stop.is_set():
            batch = await feed.next_batch()
            if any(c.kind == "schema" for c in batch):  # a new class or field comes with a _SCHEMA event
                classes = await self._catch_up(_minus_seconds(codec.now_iso(), FOLLOW_CLOCK_MARGIN), state)
                stored, live = await self.dest.load_schemas(), await self.source.live_schemas()
            for change in batch:
                if change.class_name not in classes:
                    continue
                if change.kind == "upsert" and change.document is not None:
                    obj = self.source.decode_document(live[change.class_name], change.document)
                    await self.dest.upsert_many(stored[change.class_name], [obj])
                    await self._follow_files([obj], state)
                    self.report.followed += 1
                elif change.kind == "delete":
                    self.report.deleted += await self.dest.delete(
                        stored[change.class_name], Compare("objectId", "eq", change.object_id))
                elif change.kind == "relation_add" and change.pair is not None:
                    await self.dest.add_relation_rows(change.class_name, change.field, [change.pair])
                elif change.kind == "relation_dirty":
                    dirty.add((change.class_name, change.field))
            if not batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=0.05)
        for class_name, field_name in sorted(dirty):
            await self._reconcile_relation(class_name, field_name)
        return classes

    async def _follow_files(self, objects: list[StoredObject], state: State) -> None:
        """With --files: copy the files that objects changed while following reference, if not copied yet."""
        if not self.options.files:
            return
        names: dict[str, str | None] = {}
        for obj in objects:
            file_names(obj, names)
        done, missing = state.data["files"], set(self.report.files_missing)
        new = {name: url for name, url in names.items() if not done.get(name) and name not in missing}
        if new:
            await self._copy_files(new, state)

    async def _reconcile_relation(self, class_name: str, field_name: str) -> None:
        """Make the destination's rows of one relation field equal the source's."""
        want: set[tuple[str, str]] = set()
        async for rows in self.source.relations(class_name, field_name):
            want.update(rows)
        have: set[tuple[str, str]] = set()
        after: tuple[str, str] | None = None
        while True:
            rows = await self.dest.relation_rows(class_name, field_name, after=after, limit=5000)
            have.update(rows)
            if len(rows) < 5000:
                break
            after = rows[-1]
        if want - have:
            await self.dest.add_relation_rows(class_name, field_name, sorted(want - have))
        if have - want:
            await self.dest.remove_relation_rows(class_name, field_name, sorted(have - want))

    async def _sync_relations(self, wanted: ClassSchema, owner_ids: list[str]) -> None:
        schemas = await self.dest.load_schemas()
        for field_name, target in wanted.relation_fields().items():
            target_schema = schemas.get(target)
            for owner in owner_ids:
                expected = set(await self.source.related_ids(wanted.class_name, field_name, owner))
                owner_ptr = {"__type": "Pointer", "className": wanted.class_name, "objectId": owner}
                have = set() if target_schema is None else {
                    o["objectId"] for o in await self.dest.find(target_schema, RelatedTo(owner_ptr, field_name))}
                if expected - have:
                    await self.dest.add_relation_rows(wanted.class_name, field_name,
                                                      [(owner, r) for r in sorted(expected - have)])
                if have - expected:
                    await self.dest.remove_relation_rows(wanted.class_name, field_name,
                                                         [(owner, r) for r in sorted(have - expected)])

    async def _remove_deleted(self, class_name: str) -> None:
        """Finalise: delete from the destination what the source no longer has (both walked in objectId order)."""
        schema = (await self.dest.load_schemas())[class_name]
        source_ids = self._source_ids(class_name)
        pending: str | None = await anext(source_ids, None)
        after: str | None = None
        gone: list[str] = []
        while True:
            where: Any = Compare("objectId", "gt", after) if after is not None else MatchAll()
            page = await self.dest.find(schema, where, limit=5000, order=[SortKey("objectId")])
            if not page:
                break
            for obj in page:
                oid = obj["objectId"]
                while pending is not None and pending < oid:
                    pending = await anext(source_ids, None)
                if pending != oid:
                    gone.append(oid)
            after = page[-1]["objectId"]
        for start in range(0, len(gone), 1000):
            chunk = gone[start:start + 1000]
            await self.dest.delete(schema, In("objectId", chunk), many=True)
        self.report.deleted += len(gone)

    async def _source_ids(self, class_name: str) -> Any:
        async for batch in self.source.objects(class_name, batch_size=self.options.batch_size):
            for obj in batch.objects:
                yield obj["objectId"]

    async def _copy_files(self, names: dict[str, str | None], state: State) -> None:
        from parsectl.files import adapter_for as files_adapter_for
        from parsectl.server.config import ServerOptions

        options = ServerOptions(app_id="parsectl-migrate", master_key="-", database_uri=self.destination_uri,
                                files_adapter=self.options.files_adapter)
        adapter = files_adapter_for(options)
        self.report.files_location = _files_location(adapter)
        done: dict[str, bool] = state.data["files"]
        try:
            for name, url in names.items():
                if done.get(name):
                    self.report.files_copied += 1
                    continue
                data = await self.source.file_bytes(name, url)
                if data is None:
                    self.report.files_missing.append(name)
                    continue
                await adapter.create_file(name, data, None)
                done[name] = True
                self.report.files_copied += 1
                if self.report.files_copied % 100 == 0:
                    state.save()
            state.save()
        finally:
            await adapter.close()
