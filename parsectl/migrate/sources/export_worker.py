"""Read and convert an export's class files in a worker process, so a migration uses two cores.

Parsing the export (``ijson``) and converting each record to storage form take about as long as
writing the rows, and both hold Python's GIL; a thread cannot overlap them, a process can. The worker
(one per source, started on first use) runs :meth:`ExportSource.iter_batches` with the same repairs
(``--on-problem fix``) and sends each batch back as orjson bytes through a pipe. A pipe holds little,
so the worker is never more than about one batch ahead: memory stays bounded.

If the migration stops reading a class midway, the worker is stopped and a new one serves the next
request. If the migration process dies (``kill -9``), the worker sees its pipe close and exits.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import sqlite3
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection
from typing import Any

import orjson

from parsectl.migrate.source import Batch


class ObjectReader:
    """The parent's end: requests a class's batches and yields them as :class:`Batch` objects."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self._proc: Any = None
        self._conn: Connection | None = None
        self._busy = False

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=serve, name="parsectl-migrate-reader", daemon=True,
                                 args=(child, str(self.source.path), self.source.fix, self.source._fixes_path))
        self._proc.start()
        child.close()
        self._conn = parent

    def stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            self._proc.terminate()
            self._proc.join(5)
            self._proc = None
        self._busy = False

    async def batches(self, class_name: str, after: str | None, batch_size: int) -> AsyncIterator[Batch]:
        if self._busy:  # the previous class was not read to its end: its batches are still coming
            self.stop()
        if self._proc is None:
            self._start()
        conn = self._conn
        assert conn is not None
        conn.send(("objects", class_name, after, batch_size, self.source.renames, self.source.moves))
        self._busy = True
        while True:
            try:
                message = await asyncio.to_thread(conn.recv)
            except EOFError:
                self.stop()
                raise RuntimeError("the export reader process ended unexpectedly") from None
            kind = message[0]
            if kind == "end":
                self._busy = False
                return
            if kind == "error":
                self.stop()
                raise RuntimeError(f"reading {class_name} from the export failed: {message[1]}")
            _, payload, checkpoint, skipped = message
            self.source.skipped.extend(skipped)
            yield Batch(orjson.loads(payload) if isinstance(payload, bytes) else payload, checkpoint)


def serve(conn: Connection, path: str, fix: bool, fixes_path: str | None) -> None:
    """The worker's loop: one request at a time, batches back until ``("end",)``."""
    from parsectl.migrate.sources.export import ExportSource

    gc.set_threshold(100_000, *gc.get_threshold()[1:])  # short-lived acyclic dicts, as in the migration
    source = ExportSource(path, fix=fix, parallel=False)
    if fixes_path:
        source._fixes = sqlite3.connect(f"file:{fixes_path}?mode=ro", uri=True, check_same_thread=False)
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        _, class_name, after, batch_size, source.renames, source.moves = request
        try:
            for batch in source.iter_batches(class_name, after, batch_size):
                try:
                    payload: Any = orjson.dumps(batch.objects)
                except TypeError:  # a value orjson cannot write (pickled instead)
                    payload = batch.objects
                conn.send(("batch", payload, batch.checkpoint, list(source.skipped)))
                source.skipped.clear()
            conn.send(("end",))
        except (BrokenPipeError, EOFError, OSError):
            return
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
