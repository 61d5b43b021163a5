"""Connections for the ledger tests, on the real PostgreSQL and NATS the harness starts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import nats
import pytest_asyncio
from nats.js.client import JetStreamContext

from brokermesh.mesh.jetstream import ensure_jetstream
from brokermesh.platform.migrate import apply_migrations


@pytest_asyncio.fixture
async def conn(postgres: Any) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the application role, the one the ledger uses."""
    connection = await asyncpg.connect(postgres.app_dsn, timeout=10)
    try:
        yield connection
    finally:
        await connection.close()


@pytest_asyncio.fixture
async def nc(nats_server: Any) -> AsyncIterator[nats.NATS]:
    client = await nats.connect(nats_server.url, max_reconnect_attempts=-1)
    try:
        yield client
    finally:
        await client.close()


@pytest_asyncio.fixture
async def js(nc: nats.NATS) -> JetStreamContext:
    """JetStream with the ORDERS stream in place, as the ledger ensures it at start."""
    context = nc.jetstream(timeout=5)
    await ensure_jetstream(context)
    return context


@pytest_asyncio.fixture
async def own_db(fresh_database: Any) -> Any:
    """A migrated database of this test's own, for tests that read or rebuild the whole
    store (replay, audit) or leave a stream no other test should meet."""
    await apply_migrations(fresh_database.owner_dsn, load_reference_data=False)
    return fresh_database


@pytest_asyncio.fixture
async def own_conn(own_db: Any) -> AsyncIterator[asyncpg.Connection]:
    """An application-role connection to :func:`own_db`."""
    connection = await asyncpg.connect(own_db.app_dsn, timeout=10)
    try:
        yield connection
    finally:
        await connection.close()
