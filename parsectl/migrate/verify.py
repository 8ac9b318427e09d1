"""``parsectl migrate verify``: compare a source with a destination, object by object.

Counts per class, a checksum of every object's canonical form (ids, timestamps to the millisecond,
every value, ACL, password hashes), relation rows (role membership included) and, optionally, that
every referenced file exists in the destination's file storage.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from parsectl.migrate.engine import MigrationError, decide
from parsectl.migrate.source import Source, file_names
from parsectl.migrate.sources.database import sqlite_path
from parsectl.model import query
from parsectl.model.objects import canonical
from parsectl.model.schema import VOLATILE_CLASSES
from parsectl.storage import adapter_for
from parsectl.uri import redact

SAMPLES = 10


@dataclass
class ClassCheck:
    source_count: int = 0
    destination_count: int = 0
    missing: list[str] = field(default_factory=list)
    different: list[dict[str, Any]] = field(default_factory=list)
    missing_total: int = 0
    different_total: int = 0
    relations: dict[str, dict[str, Any]] = field(default_factory=dict)
    # source records the migration does not store (records that are no valid object, objects a problem
    # leaves out under --on-problem skip or fix): a mismatch unless they were left out on purpose
    not_stored: list[dict[str, Any]] = field(default_factory=list)
    not_stored_total: int = 0
    left_out_ok: bool = False

    @property
    def ok(self) -> bool:
        left_out = self.not_stored_total if self.left_out_ok else 0
        return (not self.missing_total and not self.different_total
                and (self.left_out_ok or not self.not_stored_total)
                and self.source_count - left_out == self.destination_count
                and all(r["missing"] == 0 and r["extra"] == 0 for r in self.relations.values()))


@dataclass
class VerifyReport:
    source: str
    destination: str
    classes: dict[str, ClassCheck] = field(default_factory=dict)
    files_checked: int = 0
    files_missing: list[str] = field(default_factory=list)
    files_compared: int = 0  # of the files checked, those whose source bytes could be read and compared
    files_different: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.classes.values()) and not self.files_missing and not self.files_different

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "source": self.source, "destination": self.destination,
            "classes": {name: {"ok": c.ok, "sourceCount": c.source_count, "destinationCount": c.destination_count,
                               "missing": c.missing_total, "missingSample": c.missing,
                               "different": c.different_total, "differentSample": c.different,
                               "notStored": c.not_stored_total, "notStoredSample": c.not_stored,
                               "leftOutAccepted": c.left_out_ok, "relations": c.relations}
                        for name, c in self.classes.items()},
            "files": {"checked": self.files_checked, "missing": self.files_missing,
                      "compared": self.files_compared, "different": self.files_different},
        }


def _diff(expected: dict[str, Any], actual: dict[str, Any], ignore: tuple[str, ...]) -> dict[str, Any]:
    keys = sorted((set(expected) | set(actual)) - set(ignore))
    return {k: {"source": expected.get(k), "destination": actual.get(k)} for k in keys
            if canonical({k: expected.get(k)}) != canonical({k: actual.get(k)})}


async def verify(source: Source, destination_uri: str, *, classes: list[str] | None = None,
                 files: bool = False, files_adapter: dict[str, Any] | None = None,
                 batch_size: int = 1000, on_problem: str = "fail") -> VerifyReport:
    """``on_problem`` skip or fix (the migration's): the source records it does not store (records that are
    no valid object, objects a problem leaves out) are listed but are no mismatch."""
    left_out_ok = on_problem != "fail"
    report = VerifyReport(source.description, redact(destination_uri))
    if destination_uri.startswith("sqlite:") and not sqlite_path(destination_uri).is_file():
        # opening it would create an empty store (a mistyped path "verified" as a missing everything)
        raise MigrationError(f"no SQLite database at {sqlite_path(destination_uri)}")
    dest = adapter_for(destination_uri)
    if files and hasattr(source, "collect_files"):  # an export's batches carry the URLs of its Files
        source.collect_files = True
    await source.open()
    await dest.open()
    names: dict[str, str | None] = {}
    # only parse-server's MongoDB format has a place for hosted Parse's legacy session tokens
    ignore = () if destination_uri.startswith("mongodb") else ("_session_token",)
    try:
        plan = await source.schema()
        stored = await dest.load_schemas()
        left_out: dict[tuple[str, str | None], str] = {}  # what the plan leaves out under the policy: why
        if left_out_ok:
            _, skip = decide(plan.problems, on_problem, destination_uri.startswith("mongodb"))
            left_out = {(p.class_name, p.object_id): p.message for p in plan.problems
                        if (p.class_name, p.object_id) in skip}
        for name, wanted in plan.classes.items():
            if name in VOLATILE_CLASSES or (classes and name not in classes):
                continue
            check = report.classes[name] = ClassCheck(left_out_ok=left_out_ok)
            schema = stored.get(name)
            skipped: list[Any] = getattr(source, "skipped", [])  # an export's records it could not convert
            seen = len(skipped)
            async for batch in source.objects(name, batch_size=batch_size):
                check.source_count += len(batch.objects)
                for file_name, url in batch.files.items():
                    if url or file_name not in names:
                        names[file_name] = url
                found: dict[str, dict[str, Any]] = {}
                if schema is not None:
                    ids = [o["objectId"] for o in batch.objects]
                    for obj in await dest.find(schema, query.In("objectId", ids)):
                        found[obj["objectId"]] = obj
                for obj in batch.objects:
                    if files:
                        file_names(obj, names)
                    other = found.get(obj["objectId"])
                    why = left_out.get((name, obj["objectId"])) if other is None else None
                    if why is not None:
                        _not_stored(check, obj["objectId"], why)
                    elif other is None:
                        check.missing_total += 1
                        if len(check.missing) < SAMPLES:
                            check.missing.append(obj["objectId"])
                    elif canonical(obj, ignore=ignore) != canonical(other, ignore=ignore):
                        check.different_total += 1
                        if len(check.different) < SAMPLES:
                            check.different.append({"objectId": obj["objectId"],
                                                    "fields": _diff(obj, other, ignore)})
            for problem in skipped[seen:]:
                _not_stored(check, problem.object_id, problem.message)
                check.source_count += 1
            check.destination_count = await dest.count(schema, query.MatchAll()) if schema is not None else 0
            for field_name in wanted.relation_fields():
                expected: set[tuple[str, str]] = set()
                async for pairs in source.relations(name, field_name):
                    expected.update(pairs)
                actual: set[tuple[str, str]] = set()
                after = None
                while True:
                    rows = await dest.relation_rows(name, field_name, after=after)
                    if not rows:
                        break
                    actual.update(rows)
                    after = rows[-1]
                check.relations[field_name] = {
                    "source": len(expected), "destination": len(actual),
                    "missing": len(expected - actual), "extra": len(actual - expected),
                    "missingSample": sorted(expected - actual)[:SAMPLES],
                }
        if files:
            await _check_files(report, names, destination_uri, files_adapter, source)
    finally:
        await source.close()
        await dest.close()
    return report


def _not_stored(check: ClassCheck, object_id: str | None, why: str) -> None:
    check.not_stored_total += 1
    if len(check.not_stored) < SAMPLES:
        check.not_stored.append({"objectId": object_id, "reason": why})


async def _check_files(report: VerifyReport, names: dict[str, str | None], destination_uri: str,
                       files_adapter: dict[str, Any] | None, source: Source) -> None:
    """Every file is in the destination's storage, with the source's bytes where the source can give them
    (an export's --files-from folder or its URLs, a server's or database's files)."""
    from parsectl.files import FileNotFound
    from parsectl.files import adapter_for as files_adapter_for
    from parsectl.server.config import ServerOptions

    adapter = files_adapter_for(ServerOptions(app_id="parsectl-migrate", master_key="-",
                                              database_uri=destination_uri, files_adapter=files_adapter))
    try:
        for name in names:
            report.files_checked += 1
            try:
                stored = await adapter.get_file_data(name)
            except FileNotFound:
                report.files_missing.append(name)
                continue
            expected = await source.file_bytes(name, names[name])
            if expected is not None:
                report.files_compared += 1
                if hashlib.sha256(expected).digest() != hashlib.sha256(stored).digest():
                    report.files_different.append(name)
    finally:
        await adapter.close()
