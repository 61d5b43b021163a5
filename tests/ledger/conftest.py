"""Connections for the ledger tests, on the real PostgreSQL and NATS the harness starts.

The audit tests that read whole JetStream streams back get a NATS server of their own
(``bus``), its streams recreated empty for every test: on the shared server every test's
events and checkpoints would meet in one chain.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import nats
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.js.client import JetStreamContext

from brokermesh.mesh.jetstream import STREAMS, ensure_jetstream
from brokermesh.platform.migrate import apply_migrations
from brokermesh.platform.nats import LocalNats
from brokermesh.services.ledger import checkpoints
from brokermesh.services.ledger.checkpoints import Checkpointer
from tests.processes import free_port


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


@pytest.fixture(scope="module")
def private_nats() -> Iterator[LocalNats]:
    """A nats-server with JetStream for one test module alone."""
    folder = Path(tempfile.mkdtemp(prefix="brokermesh-ledger-js-"))
    server = LocalNats(folder, port=free_port(), monitor_port=free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest_asyncio.fixture
async def bus_client(private_nats: LocalNats) -> AsyncIterator[nats.NATS]:
    """A client of :func:`private_nats` whose streams were just recreated empty."""
    client = await nats.connect(private_nats.url)
    try:
        context = client.jetstream(timeout=5)
        existing = {info.config.name for info in await context.streams_info()}
        # Deny-delete and deny-purge guard messages, not streams: a test server can start over.
        for stream in STREAMS:
            if stream.name in existing:
                await context.delete_stream(stream.name)
        await ensure_jetstream(context)
        yield client
    finally:
        await client.close()


@pytest_asyncio.fixture
async def bus(bus_client: nats.NATS) -> JetStreamContext:
    """JetStream on :func:`private_nats`, every stream empty."""
    return bus_client.jetstream(timeout=5)


@pytest.fixture
def key(tmp_path: Path) -> Ed25519PrivateKey:
    """A checkpoint signing key of the test's own, generated as the ledger does."""
    return checkpoints.ensure_signing_key(tmp_path / "keys" / checkpoints.PRIVATE_KEY_FILE)


@pytest.fixture
def public_key(key: Ed25519PrivateKey, tmp_path: Path) -> Path:
    """The PEM file of :func:`key`'s public half, as ``audit verify`` reads it."""
    return checkpoints.public_key_path(tmp_path / "keys" / checkpoints.PRIVATE_KEY_FILE)


@pytest_asyncio.fixture
async def own_pool(own_db: Any) -> AsyncIterator[asyncpg.Pool]:
    """A small application-role pool on :func:`own_db`, as the ledger holds one."""
    pool = await asyncpg.create_pool(own_db.app_dsn, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def checkpointer(
    own_pool: asyncpg.Pool, bus: JetStreamContext, key: Ed25519PrivateKey
) -> Checkpointer:
    """A checkpointer of the test's own database on the test's own JetStream; it checkpoints
    when a test asks, never by itself."""
    return Checkpointer(own_pool, bus, key, interval_s=3600)
