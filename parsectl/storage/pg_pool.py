"""A small asyncio connection pool for psycopg 3, built for the request hot path.

psycopg_pool's AsyncConnectionPool takes several locks, a ``wait_for`` and the check/reset callbacks on every
checkout; on a one-query request that was a sixth of the server's CPU. This pool hands an idle connection
over with no await at all, queues callers only when every connection is busy, and keeps the guarantees the
server relies on: at most ``max_size`` connections, a clear error after ``timeout`` seconds of waiting, a
ping before reusing a connection that sat idle (it may have died with a database restart), and broken
connections dropped and replaced, so the pool heals after the database comes back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus


class PoolTimeout(psycopg.OperationalError):
    """No connection became free within the pool's timeout."""


class ConnectionPool:
    def __init__(self, uri: str, *, min_size: int, max_size: int, timeout: float, idle_check_seconds: float,
                 kwargs: dict[str, Any], configure: Callable[[psycopg.AsyncConnection[Any]], None] | None = None
                 ) -> None:
        if max_size < 1:
            raise ValueError("the pool's max size must be at least 1")
        self.uri = uri
        self.min_size = min(min_size, max_size)
        self.max_size = max_size
        self.timeout = timeout
        self.idle_check_seconds = idle_check_seconds
        self.kwargs = kwargs
        self.configure = configure
        self._idle: list[tuple[psycopg.AsyncConnection[Any], float]] = []
        self._waiters: collections.deque[asyncio.Future[psycopg.AsyncConnection[Any]]] = collections.deque()
        self._size = 0  # connections open or being opened
        self._closed = True
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- life cycle -----------------------------------------------------------------------------------
    async def open(self) -> None:
        self._closed = False
        for _ in range(self.min_size - self._size):
            self._size += 1
            try:
                conn = await self._connect()
            except BaseException:
                self._size -= 1
                raise
            self._idle.append((conn, time.monotonic()))

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(PoolTimeout("the connection pool is closed"))
        self._waiters.clear()
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            with contextlib.suppress(Exception):
                await conn.close()
        self._size -= len(idle)

    def connection(self) -> _Lease:
        """``async with pool.connection() as conn:`` — a connection for the block, returned afterwards."""
        return _Lease(self)

    # --- checkout ---------------------------------------------------------------------------------------
    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self.uri, connect_timeout=max(1, int(self.timeout)),
                                                     **self.kwargs)
        if self.configure is not None:
            self.configure(conn)
        return conn

    async def acquire(self) -> psycopg.AsyncConnection[Any]:
        if self._closed:
            raise PoolTimeout("the connection pool is closed")
        while self._idle:
            conn, last_used = self._idle.pop()
            if conn.closed:
                self._size -= 1
                continue
            if time.monotonic() - last_used > self.idle_check_seconds and not await self._alive(conn):
                continue
            return conn
        if self._size < self.max_size:
            self._size += 1
            try:
                return await self._connect()
            except BaseException:
                self._size -= 1
                raise
        waiter: asyncio.Future[psycopg.AsyncConnection[Any]] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(waiter, self.timeout)
        except (TimeoutError, asyncio.CancelledError) as exc:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release(waiter.result())  # handed over just as the wait ended: give it back
            if isinstance(exc, TimeoutError):
                raise PoolTimeout(f"no PostgreSQL connection became free within {self.timeout:g} s "
                                  f"(pool size {self.max_size}; raise databaseOptions.maxPoolSize)") from None
            raise

    async def _alive(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        """Ping an idle connection; drop it (and count it out) when the ping fails."""
        try:
            await conn.execute("")
            return True
        except psycopg.Error:
            self._discard(conn)
            return False

    def release(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if self._closed or conn.closed or conn.broken or conn.info.transaction_status != TransactionStatus.IDLE:
            self._discard(conn)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append((conn, time.monotonic()))

    def _discard(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._size -= 1
        self._spawn(self._close_quietly(conn))
        if self._waiters and not self._closed:
            self._size += 1  # someone is waiting: open a replacement for them
            self._spawn(self._replace())

    async def _replace(self) -> None:
        try:
            conn = await self._connect()
        except Exception as exc:  # noqa: BLE001 - the first waiter gets the reason
            self._size -= 1
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(exc)
                    break
            return
        self.release(conn)

    @staticmethod
    async def _close_quietly(conn: psycopg.AsyncConnection[Any]) -> None:
        with contextlib.suppress(Exception):
            await conn.close()

    def _spawn(self, coro: Any) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:  # no running loop (shutdown): nothing to do
            coro.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _Lease:
    __slots__ = ("_conn", "_pool")

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def __aenter__(self) -> psycopg.AsyncConnection[Any]:
        self._conn = await self._pool.acquire()
        return self._conn

    async def __aexit__(self, *exc: object) -> None:
        if self._conn is not None:
            self._pool.release(self._conn)
            self._conn = None
