"""Service connection pools on a real PostgreSQL: no reset round trip, no leaked transaction."""

from __future__ import annotations

import asyncpg
import pytest

from brokermesh.mesh import database
from tests.conftest import PostgresServer

pytestmark = pytest.mark.asyncio


async def test_a_released_connection_is_not_reset_by_a_query(postgres: PostgresServer) -> None:
    pool = await database.create_pool(postgres.app_dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("SET application_name = 'probe'")

        async with pool.acquire() as conn:
            name = await conn.fetchval("SHOW application_name")
    finally:
        await pool.close()

    # Nothing ran between the two uses: asyncpg's RESET ALL would have cleared it.
    assert name == "probe"


async def test_a_transaction_left_open_on_release_is_rolled_back(
    postgres: PostgresServer,
) -> None:
    pool = await database.create_pool(postgres.app_dsn, min_size=1, max_size=1)
    try:
        conn = await pool.acquire()
        await conn.execute("BEGIN")
        await conn.execute("CREATE TEMPORARY TABLE scratch (n int)")
        await pool.release(conn)

        async with pool.acquire() as conn:
            in_transaction = conn.is_in_transaction()
            with pytest.raises(asyncpg.UndefinedTableError):
                await conn.fetchval("SELECT count(*) FROM scratch")
    finally:
        await pool.close()

    assert not in_transaction
