"""Entitlements read from PostgreSQL: loaded at start, refreshed, and kept through outages."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import asyncpg
import pytest

from brokermesh.services.gateway.entitlements import Entitlements

_SCHEMA = """
CREATE TABLE advisors (advisor_id text PRIMARY KEY, active boolean NOT NULL DEFAULT true);
CREATE TABLE advisor_accounts (advisor_id text NOT NULL, account_id text NOT NULL);
INSERT INTO advisors VALUES ('ADV-1', true), ('ADV-GONE', false);
INSERT INTO advisor_accounts VALUES ('ADV-1', 'ACC-1'), ('ADV-GONE', 'ACC-2');
GRANT SELECT ON advisors, advisor_accounts TO brokermesh_app;
"""


async def _owner(dsn: str) -> asyncpg.Connection:
    # Bounded waits: a lock held elsewhere fails the test quickly instead of hanging it.
    return await asyncpg.connect(
        dsn, timeout=10, server_settings={"lock_timeout": "5s", "statement_timeout": "10s"}
    )


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.asyncio
async def test_assignments_survive_a_failing_database(fresh_database: Any) -> None:
    owner = await _owner(fresh_database.owner_dsn)
    entitlements = Entitlements(fresh_database.app_dsn, refresh_s=0.05)
    try:
        await owner.execute(_SCHEMA)
        await entitlements.start()
        assert entitlements.allows("ADV-1", "ACC-1")

        await owner.execute("DROP TABLE advisor_accounts")
        await asyncio.sleep(0.3)

        assert entitlements.allows("ADV-1", "ACC-1")
        assert not entitlements.allows("ADV-1", "ACC-2")
    finally:
        await entitlements.stop()
        await owner.close()


@pytest.mark.asyncio
async def test_inactive_advisor_has_no_accounts(fresh_database: Any) -> None:
    owner = await _owner(fresh_database.owner_dsn)
    entitlements = Entitlements(fresh_database.app_dsn, refresh_s=60)
    try:
        await owner.execute(_SCHEMA)
        await entitlements.refresh()

        assert not entitlements.allows("ADV-GONE", "ACC-2")
    finally:
        await entitlements.stop()
        await owner.close()


@pytest.mark.asyncio
async def test_unreachable_database_at_start_entitles_nobody() -> None:
    dsn = f"postgresql://brokermesh_app@127.0.0.1:{_closed_port()}/brokermesh"
    entitlements = Entitlements(dsn, refresh_s=60, timeout_s=0.5)

    await entitlements.start()
    try:
        assert not entitlements.loaded
        assert not entitlements.allows("ADV-1207", "ACC-987654")
    finally:
        await entitlements.stop()
