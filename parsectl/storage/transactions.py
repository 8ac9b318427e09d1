"""Multi-statement transactions for ``POST /batch`` with ``"transaction": true`` (all or nothing).

Each adapter's ``transaction()`` runs the storage calls of the current task (and only those) in one
database transaction, committed when the block ends and rolled back when it raises:

* PostgreSQL: one pooled connection is pinned to the task; the adapter's own ``conn.transaction()`` blocks
  inside become savepoints. Other requests use other connections (normal isolation).
* SQLite: the adapter's connection runs ``BEGIN IMMEDIATE``; the task's writes become savepoints. Other
  tasks read what is committed, on a read-only connection of their own (WAL lets it run beside the
  transaction: a Cloud Code webhook that queries the server during a transactional batch gets its answer),
  and their writes wait until the transaction ends (none writes into it). One transaction at a time.
* MongoDB: a client session with a transaction; collection calls of the task carry ``session=``. A
  deployment without transactions (a standalone server) refuses, as it refuses parse-server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import Any

from parsectl.model.errors import ParseError

INTERNAL_SERVER_ERROR = 1


class _Pin:
    """What a task has pinned (a connection or session), and whether the transaction is still open."""

    def __init__(self, owner: Any, handle: Any) -> None:
        self.owner = owner
        self.handle = handle
        self.active = True


_pinned: ContextVar[_Pin | None] = ContextVar("parsectl_storage_transaction", default=None)


def current(owner: Any) -> Any:
    """The handle ``owner`` pinned for this task's open transaction, else None."""
    pin = _pinned.get()
    if pin is not None and pin.active and pin.owner is owner:
        return pin.handle
    return None


@contextlib.contextmanager
def _pin(owner: Any, handle: Any) -> Any:
    pin = _Pin(owner, handle)
    token = _pinned.set(pin)
    try:
        yield pin
    finally:
        pin.active = False  # tasks started inside keep a copy of the context: they must not use it after
        _pinned.reset(token)


# --- PostgreSQL ---------------------------------------------------------------------------------------


class _Borrowed:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def __aenter__(self) -> Any:
        return self.conn

    async def __aexit__(self, *exc: Any) -> None:
        return None


class PinnablePool:
    """A psycopg pool whose ``connection()`` gives a task its pinned connection during a transaction."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def connection(self, *args: Any, **kwargs: Any) -> Any:
        conn = current(self)
        if conn is not None:
            return _Borrowed(conn)
        return self._pool.connection(*args, **kwargs)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        async with self._pool.connection() as conn, conn.transaction():
            with _pin(self, conn):
                yield


def postgres_transaction(adapter: Any) -> Any:
    if not isinstance(adapter.pool, PinnablePool):
        adapter.pool = PinnablePool(adapter.pool)
    return adapter.pool.transaction()


# --- SQLite -------------------------------------------------------------------------------------------


class SQLiteTransactions:
    """The state of the one open SQLite transaction of an adapter."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.open: _Pin | None = None
        self.ended = asyncio.Event()
        self.savepoints = 0

    def owned(self, adapter: Any) -> bool:
        return self.open is not None and current(adapter) is self.open.handle

    async def wait_turn(self, adapter: Any) -> None:
        """Wait while another task's transaction is open."""
        while self.open is not None and not self.owned(adapter):
            await self.ended.wait()


def sqlite_state(adapter: Any) -> SQLiteTransactions:
    state = adapter.__dict__.get("_transactions")
    if state is None:
        state = adapter.__dict__["_transactions"] = SQLiteTransactions()
    return state


@contextlib.asynccontextmanager
async def sqlite_transaction(adapter: Any) -> AsyncIterator[None]:
    state = sqlite_state(adapter)
    async with state.lock:
        await state.wait_turn(adapter)
        db = adapter.db
        db.execute("BEGIN IMMEDIATE")
        marker = object()
        state.ended.clear()
        try:
            with _pin(adapter, marker) as pin:
                state.open = pin
                try:
                    yield
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                else:
                    db.execute("COMMIT")
        finally:
            state.open = None
            state.ended.set()


@contextlib.contextmanager
def sqlite_savepoint(adapter: Any, db: Any) -> Any:
    """What the adapter's ``_write()`` does inside the task's own transaction: a savepoint."""
    state = sqlite_state(adapter)
    state.savepoints += 1
    name = f"parsectl_sp{state.savepoints}"
    db.execute(f"SAVEPOINT {name}")
    try:
        yield db
    except BaseException:
        db.execute(f"ROLLBACK TO {name}")
        db.execute(f"RELEASE {name}")
        raise
    else:
        db.execute(f"RELEASE {name}")


def sqlite_in_own_transaction(adapter: Any) -> bool:
    state = adapter.__dict__.get("_transactions")
    return state is not None and state.owned(adapter)


def sqlite_gated(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an async adapter method (a write) so it waits while another task's transaction is open."""

    @functools.wraps(fn)
    async def gated(self: Any, *args: Any, **kwargs: Any) -> Any:
        state = self.__dict__.get("_transactions")
        if state is not None and state.open is not None:
            await state.wait_turn(self)
        return await fn(self, *args, **kwargs)

    return gated


# the adapter whose calls in this task read from its read-only connection (another task's transaction is open)
_committed_reads: ContextVar[Any] = ContextVar("parsectl_sqlite_committed_reads", default=None)


def sqlite_reads_committed(adapter: Any) -> bool:
    """Whether this task's calls to ``adapter`` go to its read-only connection (see :func:`sqlite_read`)."""
    return _committed_reads.get() is adapter


def sqlite_read(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an async adapter method that only reads: while another task's transaction is open, it reads
    what is committed on the adapter's read-only connection, without waiting (the method's statements
    run without an ``await`` between them, so tasks do not interleave on that connection)."""

    @functools.wraps(fn)
    async def read(self: Any, *args: Any, **kwargs: Any) -> Any:
        state = self.__dict__.get("_transactions")
        if state is None or state.open is None or state.owned(self) or not self.can_read_beside:
            return await fn(self, *args, **kwargs)
        token = _committed_reads.set(self)
        try:
            return await fn(self, *args, **kwargs)
        finally:
            _committed_reads.reset(token)

    return read


# --- MongoDB ------------------------------------------------------------------------------------------


class SessionCollection:
    """A collection whose calls carry the task's transaction session."""

    def __init__(self, collection: Any, session: Any) -> None:
        self._collection = collection
        self._session = session

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._collection, name)
        if not callable(attr) or name.startswith("_") or name in ("with_options", "get_collection"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("session", self._session)
            return attr(*args, **kwargs)

        return call

    def __getitem__(self, name: str) -> Any:
        return SessionCollection(self._collection[name], self._session)


def mongo_collection(adapter: Any, collection: Any) -> Any:
    session = current(adapter)
    return collection if session is None else SessionCollection(collection, session)


@contextlib.asynccontextmanager
async def mongo_transaction(adapter: Any) -> AsyncIterator[None]:
    from pymongo.errors import OperationFailure

    hello = await adapter.client.admin.command("hello")
    if not hello.get("setName") and hello.get("msg") != "isdbgrid":
        raise ParseError(INTERNAL_SERVER_ERROR, "this MongoDB deployment cannot run transactions: a transaction "
                                                "needs a replica set or a sharded cluster")
    async with adapter.client.start_session() as session:
        try:
            await session.start_transaction()
        except (OperationFailure, Exception) as exc:  # noqa: BLE001 - e.g. a standalone server
            raise ParseError(INTERNAL_SERVER_ERROR, f"this MongoDB deployment cannot run transactions: {exc}") \
                from None
        with _pin(adapter, session):
            try:
                yield
            except BaseException:
                with contextlib.suppress(Exception):
                    await session.abort_transaction()
                raise
        try:
            await session.commit_transaction()
        except OperationFailure as exc:
            raise ParseError(INTERNAL_SERVER_ERROR, f"the transaction could not be committed: {exc}") from None
