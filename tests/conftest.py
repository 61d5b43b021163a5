"""Session fixtures that run real PostgreSQL and NATS servers in a temporary directory.

``postgres`` is a fresh cluster on a free port with the ``brokermesh``
database migrated (owner and application DSNs); ``nats_server`` a fresh
nats-server with JetStream on file storage (``sync_interval: always``) and the
platform's streams and buckets created. Both are torn down when the session
ends, whatever happened. ``fresh_database`` adds an empty database to the
cluster for a test that needs its own.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from brokermesh.platform.layout import APP_ROLE, OWNER_ROLE
from brokermesh.platform.migrate import apply_migrations
from brokermesh.platform.nats import LocalNats
from brokermesh.platform.postgres import LocalPostgres
from tests.processes import free_port


@dataclass(frozen=True, slots=True)
class PostgresServer:
    """The session's PostgreSQL: the cluster and its DSNs for the ``brokermesh`` database."""

    cluster: LocalPostgres
    owner_dsn: str
    app_dsn: str

    @property
    def port(self) -> int:
        return self.cluster.port


@dataclass(frozen=True, slots=True)
class NatsServer:
    """The session's nats-server: client URL and monitoring URL."""

    server: LocalNats
    url: str
    monitor_url: str


@dataclass(frozen=True, slots=True)
class FreshDatabase:
    """An empty database of its own on the session cluster."""

    name: str
    owner_dsn: str
    app_dsn: str


@pytest.fixture(scope="session")
def platform_dir() -> Iterator[Path]:
    """A private directory for the servers' data, outside pytest's root-only tmp tree
    (PostgreSQL runs as the ``postgres`` user when the tests run as root)."""
    path = Path(tempfile.mkdtemp(prefix="brokermesh-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(platform_dir: Path) -> Iterator[PostgresServer]:
    """A fresh, migrated PostgreSQL cluster for the whole session."""
    cluster = LocalPostgres(platform_dir / "postgres", port=free_port())
    try:
        cluster.start()
        asyncio.run(_prepare_postgres(cluster))
        yield PostgresServer(
            cluster=cluster, owner_dsn=cluster.dsn(OWNER_ROLE), app_dsn=cluster.dsn(APP_ROLE)
        )
    finally:
        cluster.stop()


async def _prepare_postgres(cluster: LocalPostgres) -> None:
    await cluster.ensure_database()
    await apply_migrations(cluster.dsn(OWNER_ROLE))


@pytest.fixture(scope="session")
def nats_server(platform_dir: Path) -> Iterator[NatsServer]:
    """A fresh nats-server with JetStream and the platform's assets for the whole session."""
    client_port = free_port()
    monitor_port = free_port()
    while monitor_port == client_port:
        monitor_port = free_port()
    server = LocalNats(platform_dir / "nats", port=client_port, monitor_port=monitor_port)
    try:
        server.start()
        asyncio.run(server.ensure_assets())
        yield NatsServer(server=server, url=server.url, monitor_url=server.monitor_url)
    finally:
        server.stop()


@pytest_asyncio.fixture
async def fresh_database(postgres: PostgresServer) -> AsyncIterator[FreshDatabase]:
    """An empty database, dropped (with its connections) after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres.cluster.dsn(OWNER_ROLE, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield FreshDatabase(
                name=name,
                owner_dsn=postgres.cluster.dsn(OWNER_ROLE, name),
                app_dsn=postgres.cluster.dsn(APP_ROLE, name),
            )
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
