"""parsectl's PostgreSQL connection pool against a real PostgreSQL: limits, waiting, timeouts, healing."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from parsectl.storage.pg_pool import ConnectionPool, PoolTimeout

pytestmark = pytest.mark.slow


def _pool(uri: str, *, max_size: int = 2, timeout: float = 2.0, idle_check: float = 60.0) -> ConnectionPool:
    return ConnectionPool(uri, min_size=1, max_size=max_size, timeout=timeout, idle_check_seconds=idle_check,
                          kwargs={"autocommit": True})


async def _backend_pid(conn: psycopg.AsyncConnection) -> int:
    return (await (await conn.execute("SELECT pg_backend_pid()")).fetchone())[0]


def test_callers_wait_for_a_free_connection_and_never_exceed_the_limit(pg_uri: str) -> None:
    async def main() -> None:
        pool = _pool(pg_uri, max_size=2)
        await pool.open()
        in_use = 0
        peak = 0

        async def work() -> int:
            nonlocal in_use, peak
            async with pool.connection() as conn:
                in_use += 1
                peak = max(peak, in_use)
                await conn.execute("SELECT pg_sleep(0.05)")
                in_use -= 1
                return await _backend_pid(conn)

        pids = await asyncio.gather(*(work() for _ in range(8)))
        assert peak == 2
        assert len(set(pids)) <= 2
        await pool.close()

    asyncio.run(main())


def test_waiting_longer_than_the_timeout_is_a_clear_error(pg_uri: str) -> None:
    async def main() -> None:
        pool = _pool(pg_uri, max_size=1, timeout=0.2)
        await pool.open()
        async with pool.connection():
            with pytest.raises(PoolTimeout, match="maxPoolSize"):
                async with pool.connection():
                    pass
        async with pool.connection() as conn:  # the connection went back and is usable
            await conn.execute("SELECT 1")
        await pool.close()

    asyncio.run(main())


def test_a_cancelled_waiter_does_not_leak_the_connection(pg_uri: str) -> None:
    async def main() -> None:
        pool = _pool(pg_uri, max_size=1)
        await pool.open()
        lease = pool.connection()
        await lease.__aenter__()
        waiter = asyncio.create_task(pool.acquire())
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await lease.__aexit__(None, None, None)
        async with pool.connection() as conn:  # would time out if the cancelled waiter kept it
            await conn.execute("SELECT 1")
        await pool.close()

    asyncio.run(main())


def test_a_connection_killed_by_the_server_is_replaced(pg_uri: str) -> None:
    async def main() -> None:
        pool = _pool(pg_uri, max_size=1, idle_check=0.0)
        await pool.open()
        async with pool.connection() as conn:
            victim = await _backend_pid(conn)
        async with await psycopg.AsyncConnection.connect(pg_uri, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", (victim,))
        await asyncio.sleep(0.1)
        # the idle check pings before reuse, finds it dead and opens a new one
        async with pool.connection() as conn:
            assert await _backend_pid(conn) != victim
        # a connection that breaks while in use is dropped on return, and the next caller gets a new one
        with pytest.raises(psycopg.OperationalError):
            async with pool.connection() as conn:
                pid = await _backend_pid(conn)
                async with await psycopg.AsyncConnection.connect(pg_uri, autocommit=True) as admin:
                    await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                await asyncio.sleep(0.1)
                await conn.execute("SELECT 1")
        async with pool.connection() as conn:
            assert await _backend_pid(conn) != pid
        await pool.close()

    asyncio.run(main())
