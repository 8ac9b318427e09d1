"""Read and convert an export's class files in a worker process, so a migration uses two cores.

Parsing the export (``ijson``) and converting each record to storage form take about as long as
writing the rows, and both hold Python's GIL; a thread cannot overlap them, a process can. The worker
(one per source, started on first use) runs :meth:`ExportSource.iter_batches` with the same repairs
(``--on-problem fix``) and sends each batch back through a pipe: objects as orjson bytes, or the
writer's rows marshalled, or (into SQLite) the path of a spool file holding them. A pipe holds little and
a worker waits while two of its spool files are not loaded yet, so it is never far ahead: memory (and
the temporary folder) stay bounded.

The worker is ``python -m parsectl.migrate.sources.export_worker`` with its stdin/stdout as the pipe
(so it works whatever the parent's ``__main__`` is). If the migration stops reading a class midway, the
worker is stopped and a new one serves the next request. If the migration process dies (``kill -9``), the
worker sees its pipe close and exits. If a worker cannot start, the export is read in a thread instead.
"""

from __future__ import annotations

import signal

if __name__ == "__main__":  # a worker: the terminal's Ctrl-C is the migration's to handle (it stops its workers)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

import asyncio  # noqa: E402 - after the worker's SIGINT is ignored
import contextlib
import gc
import marshal
import os
import pickle
import sqlite3
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection
from typing import Any

import orjson

from parsectl.migrate.source import Batch
from parsectl.model.errors import ParseError

CHUNK = 100  # objects per orjson message: parsing a message costs a few times its size, briefly
SPOOL_AHEAD = 2  # spool files a worker may have written that the migration has not loaded yet


def _receive_chunks(recv: Connection, n: int) -> list[Any]:
    objects: list[Any] = []
    for _ in range(n):
        objects.extend(orjson.loads(recv.recv_bytes()))
    return objects


def _receive_rows(recv: Connection, pickled: bool) -> tuple[Any, ...]:
    payload = recv.recv_bytes()
    return pickle.loads(payload) if pickled else marshal.loads(payload)


def _send_rows(send: Connection, plan: Any, batch: Batch, skipped: list[Any]) -> None:
    """A batch as the writer's rows (marshal: several times faster to read back than objects)."""
    objects, checkpoint = batch.objects, batch.checkpoint
    if batch.rows is not None:
        rows, ids, tokens = batch.rows, batch.ids, batch.legacy_tokens  # made from the records
    else:
        rows, ids = plan.rows(objects), [obj["objectId"] for obj in objects]
        tokens = sum("_session_token" in obj for obj in objects)
    payload = (rows, ids, batch.files, tokens)
    try:
        data, pickled = marshal.dumps(payload), False
    except ValueError:  # a value marshal cannot write
        data, pickled = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL), True
    send.send(("rows", pickled, checkpoint, skipped, None))  # the files come with the rows
    send.send_bytes(data)


class _Spool:
    """A worker's spool files: one per batch, a SQLite database with one table ``r`` of the writer's rows,
    which the migration's SQLite writer loads with one ``INSERT … SELECT`` (no row passes through its
    Python) and then deletes. The worker waits while :data:`SPOOL_AHEAD` of its files are still there, so
    it never runs far ahead; it exits if the migration process is gone (it would wait forever)."""

    def __init__(self, directory: str | None, width: int) -> None:
        self.directory, self.width = directory, width
        self.parent = os.getppid()
        self.written: deque[str] = deque()
        self._db: sqlite3.Connection | None = None
        self._path: str | None = None

    def add(self, rows: list[list[Any]]) -> None:
        if self._db is None:
            self._open()
        assert self._db is not None
        self._db.executemany(f"INSERT INTO r VALUES ({','.join('?' * self.width)})", rows)

    def _open(self) -> None:
        from parsectl.migrate.sources.export import _temp_file

        while True:
            while self.written and not os.path.exists(self.written[0]):  # loaded (and deleted) by now
                self.written.popleft()
            if len(self.written) < SPOOL_AHEAD:
                break
            if os.getppid() != self.parent:
                os._exit(1)
            time.sleep(0.002)
        fd, path = _temp_file("spool", self.directory)
        os.close(fd)
        db = sqlite3.connect(path)
        db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; "
                         f"CREATE TABLE r({', '.join(f'c{i}' for i in range(self.width))});")
        self._db, self._path = db, path

    def close(self) -> str | None:
        """The finished file (None: no row was added since the last one)."""
        db, path = self._db, self._path
        if db is None or path is None:
            return None
        db.commit()
        db.close()
        self._db = self._path = None
        self.written.append(path)
        return path

    def discard(self) -> None:
        if self._db is not None:
            self._db.close()
        for path in [*self.written, *([self._path] if self._path else [])]:
            with contextlib.suppress(OSError):
                os.unlink(path)
        self._db = self._path = None
        self.written.clear()


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

    @property
    def running(self) -> bool:
        return self._proc is not None

    def _start(self) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-m", "parsectl.migrate.sources.export_worker", str(self.source.path),
             orjson.dumps(self.source.worker_options()).decode()],
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
            from parsectl.migrate.sources.export import _remove_stale_temp_files

            _remove_stale_temp_files(self.source.tmp_dir)  # its spool files that were not loaded
            self._proc = None
        self._busy = False

    def _ready(self) -> None:
        """A worker with nothing in flight: started if needed, restarted if the previous class was not read
        to its end (its batches would still be coming)."""
        if self._busy:
            self.stop()
        if self._proc is None:
            self._start()

    def _lost(self) -> Exception:
        """The error for a worker whose pipe closed: stopped; ReaderUnavailable if it never answered."""
        self.stop()
        if not self.answered:
            return ReaderUnavailable("the export reader process could not start")
        return RuntimeError("the export reader process ended unexpectedly")

    def call(self, request: tuple[Any, ...]) -> Any:
        """Send one request that has one answer (a schema-pass scan) and wait for it."""
        self._ready()
        assert self._send is not None and self._recv is not None
        try:
            self._send.send(request)
            message = self._recv.recv()
        except (EOFError, OSError):
            raise self._lost() from None
        self.answered = True
        if message[0] == "error":
            raise RuntimeError(f"scanning the export failed: {message[1]}")
        return message[1]

    def request(self, class_name: str, after: str | None, batch_size: int, rows: tuple[Any, ...] | None = None,
                stride: int = 1, offset: int = 0) -> None:
        """Ask for a class's batches (then read them with :meth:`receive`): with ``stride`` > 1, only every
        ``stride``-th batch of ``batch_size`` records from the ``offset``-th (other readers make the rest);
        with ``rows`` (``(row kind, ClassSchema)``), batches come as the writer's rows."""
        self._ready()
        assert self._send is not None
        try:
            self._send.send(("objects", class_name, after, batch_size, self.source.renames, self.source.moves,
                             self.source._fixes_path, rows, stride, offset, self.source.collect_files))
        except OSError:
            self.stop()
            raise ReaderUnavailable("the export reader process is not running") from None
        self._busy = True

    async def receive(self, class_name: str) -> AsyncIterator[Batch]:
        """The batches asked for by :meth:`request`, in order."""
        assert self._recv is not None
        recv = self._recv
        while True:
            try:
                message = await asyncio.to_thread(recv.recv)
            except (EOFError, OSError):
                raise self._lost() from None
            self.answered = True
            kind = message[0]
            if kind == "end":
                self._busy = False
                return
            if kind == "error":
                self.stop()
                raise RuntimeError(f"reading {class_name} from the export failed: {message[1]}")
            if kind == "parse-error":
                self.stop()
                raise ParseError(message[1], message[2])
            if kind == "spool":
                _, path, checkpoint, skipped, files, count, legacy = message
                self.source.skipped.extend(skipped)
                yield Batch([], checkpoint, files=files, legacy_tokens=legacy, spool=path, spooled=count)
                continue
            _, chunks, checkpoint, skipped, files = message
            self.source.skipped.extend(skipped)
            try:
                if kind == "rows":
                    rows, ids, files, legacy = await asyncio.to_thread(_receive_rows, recv, chunks)
                    yield Batch([], checkpoint, rows=rows, ids=ids, files=files, legacy_tokens=legacy)
                    continue
                if isinstance(chunks, int):  # the objects follow as orjson chunks (parsing one at a time is lean)
                    objects = await asyncio.to_thread(_receive_chunks, recv, chunks)
                else:
                    objects = chunks
            except (EOFError, OSError):
                self.stop()
                raise RuntimeError("the export reader process ended unexpectedly") from None
            yield Batch(objects, checkpoint, files=files)

    async def batches(self, class_name: str, after: str | None, batch_size: int,
                      rows: tuple[Any, ...] | None = None) -> AsyncIterator[Batch]:
        self.request(class_name, after, batch_size, rows)
        async for batch in self.receive(class_name):
            yield batch


async def interleaved(readers: list[ObjectReader], class_name: str, after: str | None, batch_size: int,
                      rows: tuple[Any, ...] | None = None) -> AsyncIterator[Batch]:
    """A class's batches made by several readers at once, each converting every ``len(readers)``-th batch
    of ``batch_size`` records (skipping the others' lines unparsed), given back in file order: the same
    batches and checkpoints as one reader of fixed-size batches."""
    for offset, reader in enumerate(readers):
        reader.request(class_name, after, batch_size, rows, len(readers), offset)
    streams = [reader.receive(class_name) for reader in readers]
    try:
        turn = 0
        while True:
            batch = await anext(streams[turn], None)
            if batch is None:
                break
            yield batch
            turn = (turn + 1) % len(streams)
        for stream in streams:  # the others have reached the end too
            if await anext(stream, None) is not None:
                raise RuntimeError(f"the export readers of {class_name} are out of step")
    finally:
        for stream in streams:
            await stream.aclose()


def scan_in_workers(readers: list[ObjectReader], requests: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], Any]:
    """Run schema-pass scans (``ExportSource.scan_one`` requests, largest first) on the readers' worker
    processes at once, each taking the next file when it is done. Returns the answers by
    ``("class", name)`` / ``("join", (owner, field))``; files no worker could take (none started) are
    left out, for the caller to scan itself. Workers stay up for the copy (a failed one is stopped)."""
    pending = deque(requests)
    results: dict[tuple[Any, ...], Any] = {}
    failures: list[BaseException] = []
    lock = threading.Lock()

    def key(request: tuple[Any, ...]) -> tuple[Any, ...]:
        return ("class", request[1]) if request[0] == "scan" else ("join", tuple(request[1]))

    def run(reader: ObjectReader) -> None:
        try:
            while True:
                with lock:
                    if not pending or failures:
                        return
                    request = pending.popleft()
                try:
                    answer = reader.call(request)
                except ReaderUnavailable:
                    with lock:
                        pending.appendleft(request)
                    return
                except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
                    reader.stop()
                    with lock:
                        failures.append(exc)
                    return
                with lock:
                    results[key(request)] = answer
        except BaseException:
            reader.stop()
            raise

    threads = [threading.Thread(target=run, args=(reader,), daemon=True) for reader in readers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        for answer in results.values():
            with contextlib.suppress(OSError):
                os.unlink(answer[-1])
        raise failures[0]
    return results


def serve(recv: Connection, send: Connection, path: str, options: dict[str, Any]) -> None:
    """The worker's loop: one request at a time: a scan's answer, or batches back until ``("end",)``."""
    from parsectl.migrate.sources.export import ExportSource

    gc.set_threshold(100_000, *gc.get_threshold()[1:])  # short-lived acyclic dicts, as in the migration
    source = ExportSource(path, parallel=False, **options)
    while True:
        try:
            request = recv.recv()
        except (EOFError, OSError):
            return
        if request[0] in ("scan", "scan_join"):
            try:
                answer: tuple[Any, ...] = ("scanned", source.scan_one(request))
            except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
                answer = ("error", f"{type(exc).__name__}: {exc}")
            try:
                send.send(answer)
            except (BrokenPipeError, OSError):
                return
            continue
        (_, class_name, after, batch_size, source.renames, source.moves, fixes_path, rows, stride, offset,
         source.collect_files) = request
        if fixes_path and source._fixes_path != fixes_path:  # --on-problem fix: the repairs the plan chose
            if source._fixes is not None:
                source._fixes.close()
            source._fixes = sqlite3.connect(f"file:{fixes_path}?mode=ro", uri=True, check_same_thread=False)
            source._fixes_path = fixes_path
        plan = spool = None
        if rows is not None:
            from parsectl.migrate.writers import row_plan

            plan = row_plan(rows[0], rows[1])
            if len(rows) > 2:
                spool = _Spool(rows[2], len(plan.columns))
        try:
            for batch in source.iter_batches(class_name, after, batch_size, stride, offset, plan=plan,
                                             sink=spool.add if spool is not None else None):
                objects = batch.objects
                if spool is not None:
                    send.send(("spool", spool.close(), batch.checkpoint, list(source.skipped), batch.files,
                               batch.spooled, batch.legacy_tokens))
                    source.skipped.clear()
                    continue
                if plan is not None:
                    _send_rows(send, plan, batch, list(source.skipped))
                    source.skipped.clear()
                    continue
                try:
                    chunks = [orjson.dumps(objects[i:i + CHUNK]) for i in range(0, len(objects), CHUNK)]
                except TypeError:  # a value orjson cannot write: the objects go pickled instead
                    send.send(("batch", objects, batch.checkpoint, list(source.skipped), batch.files))
                else:
                    send.send(("batch", len(chunks), batch.checkpoint, list(source.skipped), batch.files))
                    for chunk in chunks:
                        send.send_bytes(chunk)
                source.skipped.clear()
            send.send(("end",))
        except (BrokenPipeError, EOFError, OSError):
            if spool is not None:
                spool.discard()
            return
        except ParseError as exc:  # a row the schema does not allow: the migration reports it as it would
            send.send(("parse-error", exc.code, exc.message))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
            send.send(("error", f"{type(exc).__name__}: {exc}"))


def main() -> None:
    path, options = sys.argv[1], orjson.loads(sys.argv[2])
    out = os.dup(1)
    os.dup2(2, 1)  # anything printed goes to stderr, never into the pipe
    serve(Connection(0, writable=False), Connection(out, readable=False), path, options)


if __name__ == "__main__":
    main()
