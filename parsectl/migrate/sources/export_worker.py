"""Read and convert an export's class files in a worker process, so a migration uses two cores.

Parsing the export (``ijson``) and converting each record to storage form take about as long as
writing the rows, and both hold Python's GIL; a thread cannot overlap them, a process can. The worker
(one per source, started on first use) runs :meth:`ExportSource.iter_batches` with the same repairs
(``--on-problem fix``) and sends each batch back as orjson bytes through a pipe. A pipe holds little,
so the worker is never more than about one batch ahead: memory stays bounded.

The worker is ``python -m parsectl.migrate.sources.export_worker`` with its stdin/stdout as the pipe
(so it works whatever the parent's ``__main__`` is). If the migration stops reading a class midway, the
worker is stopped and a new one serves the next request. If the migration process dies (``kill -9``), the
worker sees its pipe close and exits. If a worker cannot start, the export is read in a thread instead.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection
from typing import Any

import orjson

from parsectl.migrate.source import Batch

CHUNK = 100  # objects per orjson message: parsing a message costs a few times its size, briefly


def _receive_chunks(recv: Connection, n: int) -> list[Any]:
    objects: list[Any] = []
    for _ in range(n):
        objects.extend(orjson.loads(recv.recv_bytes()))
    return objects


class ReaderUnavailable(RuntimeError):
    """The worker ended before answering anything (it could not start): read in this process instead."""


class ObjectReader:
    """The parent's end: requests a class's batches and yields them as :class:`Batch` objects."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self._proc: subprocess.Popen[bytes] | None = None
        self._send: Connection | None = None
        self._recv: Connection | None = None
        self._busy = False
        self.answered = False

    def _start(self) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-m", "parsectl.migrate.sources.export_worker", str(self.source.path),
             "1" if self.source.fix else "0", self.source._fixes_path or ""],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        assert proc.stdin is not None and proc.stdout is not None
        self._proc = proc
        self._send = Connection(os.dup(proc.stdin.fileno()), readable=False)
        self._recv = Connection(os.dup(proc.stdout.fileno()), writable=False)
        proc.stdin.close()
        proc.stdout.close()

    def stop(self) -> None:
        for conn in (self._send, self._recv):
            if conn is not None:
                conn.close()
        self._send = self._recv = None
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(5)
            self._proc = None
        self._busy = False

    async def batches(self, class_name: str, after: str | None, batch_size: int) -> AsyncIterator[Batch]:
        if self._busy:  # the previous class was not read to its end: its batches are still coming
            self.stop()
        if self._proc is None:
            self._start()
        assert self._send is not None and self._recv is not None
        recv = self._recv
        try:
            self._send.send(("objects", class_name, after, batch_size, self.source.renames, self.source.moves))
        except OSError:
            self.stop()
            raise ReaderUnavailable("the export reader process is not running") from None
        self._busy = True
        while True:
            try:
                message = await asyncio.to_thread(recv.recv)
            except (EOFError, OSError):
                self.stop()
                if not self.answered:
                    raise ReaderUnavailable("the export reader process could not start") from None
                raise RuntimeError("the export reader process ended unexpectedly") from None
            self.answered = True
            kind = message[0]
            if kind == "end":
                self._busy = False
                return
            if kind == "error":
                self.stop()
                raise RuntimeError(f"reading {class_name} from the export failed: {message[1]}")
            _, chunks, checkpoint, skipped = message
            self.source.skipped.extend(skipped)
            if isinstance(chunks, int):  # the objects follow as orjson chunks (parsing one at a time is lean)
                try:
                    objects = await asyncio.to_thread(_receive_chunks, recv, chunks)
                except (EOFError, OSError):
                    self.stop()
                    raise RuntimeError("the export reader process ended unexpectedly") from None
            else:
                objects = chunks
            yield Batch(objects, checkpoint)


def serve(recv: Connection, send: Connection, path: str, fix: bool, fixes_path: str | None) -> None:
    """The worker's loop: one request at a time, batches back until ``("end",)``."""
    from parsectl.migrate.sources.export import ExportSource

    gc.set_threshold(100_000, *gc.get_threshold()[1:])  # short-lived acyclic dicts, as in the migration
    source = ExportSource(path, fix=fix, parallel=False)
    if fixes_path:
        source._fixes = sqlite3.connect(f"file:{fixes_path}?mode=ro", uri=True, check_same_thread=False)
    while True:
        try:
            request = recv.recv()
        except (EOFError, OSError):
            return
        _, class_name, after, batch_size, source.renames, source.moves = request
        try:
            for batch in source.iter_batches(class_name, after, batch_size):
                objects = batch.objects
                try:
                    chunks = [orjson.dumps(objects[i:i + CHUNK]) for i in range(0, len(objects), CHUNK)]
                except TypeError:  # a value orjson cannot write: the objects go pickled instead
                    send.send(("batch", objects, batch.checkpoint, list(source.skipped)))
                else:
                    send.send(("batch", len(chunks), batch.checkpoint, list(source.skipped)))
                    for chunk in chunks:
                        send.send_bytes(chunk)
                source.skipped.clear()
            send.send(("end",))
        except (BrokenPipeError, EOFError, OSError):
            return
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
            send.send(("error", f"{type(exc).__name__}: {exc}"))


def main() -> None:
    path, fix, fixes_path = sys.argv[1], sys.argv[2] == "1", sys.argv[3] or None
    out = os.dup(1)
    os.dup2(2, 1)  # anything printed goes to stderr, never into the pipe
    serve(Connection(0, writable=False), Connection(out, readable=False), path, fix, fixes_path)


if __name__ == "__main__":
    main()
