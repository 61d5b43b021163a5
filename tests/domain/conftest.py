"""Connections for the event store tests, as the application role on the session's PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest_asyncio


@pytest_asyncio.fixture
async def conn(postgres: Any) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the application role, the one services write events as."""
    connection = await asyncpg.connect(postgres.app_dsn, timeout=10)
    try:
        yield connection
    finally:
        await connection.close()


@pytest_asyncio.fixture
async def rival(postgres: Any) -> AsyncIterator[asyncpg.Connection]:
    """A second application-role connection, for a writer racing the first."""
    connection = await asyncpg.connect(postgres.app_dsn, timeout=10)
    try:
        yield connection
    finally:
        await connection.close()
