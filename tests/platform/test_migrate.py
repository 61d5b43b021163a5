"""Migrations against a real PostgreSQL: tracking, idempotence, immutability and privileges."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from brokermesh.mesh.refdata import load_securities
from brokermesh.platform.migrate import (
    MigrationError,
    apply_migrations,
    default_directory,
    discover,
)

SHIPPED = [m.name for m in discover()]


@pytest.mark.asyncio
async def test_session_database_is_fully_migrated_and_a_rerun_applies_nothing(
    postgres: Any,
) -> None:
    report = await apply_migrations(postgres.owner_dsn)

    assert report.applied == []
    assert report.already_applied == SHIPPED
    assert report.securities == len(load_securities())
    conn = await asyncpg.connect(postgres.owner_dsn)
    try:
        rows = await conn.fetch(
            "SELECT version, name, sha256, applied_at FROM schema_migrations ORDER BY version"
        )
        securities = await conn.fetchval("SELECT count(*) FROM securities")
    finally:
        await conn.close()
    assert [row["name"] for row in rows] == SHIPPED
    assert [row["sha256"] for row in rows] == [m.sha256 for m in discover()]
    assert all(row["applied_at"] is not None for row in rows)
    assert securities == len(load_securities())


@pytest.mark.asyncio
async def test_fresh_database_gets_every_migration_once(fresh_database: Any) -> None:
    first = await apply_migrations(fresh_database.owner_dsn)
    second = await apply_migrations(fresh_database.owner_dsn)

    assert first.applied == SHIPPED
    assert second.applied == []
    assert second.already_applied == SHIPPED


@pytest.mark.asyncio
async def test_app_role_appends_events_but_cannot_rewrite_or_delete_them(postgres: Any) -> None:
    stream = f"ORD-TEST-{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(postgres.app_dsn)
    try:
        await _append_event(conn, stream)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.execute(
                "UPDATE order_events SET event_type = 'X' WHERE stream_id = $1", stream
            )
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.execute("DELETE FROM order_events WHERE stream_id = $1", stream)
        count = await conn.fetchval(
            "SELECT count(*) FROM order_events WHERE stream_id = $1", stream
        )
    finally:
        await conn.close()
    assert count == 1


@pytest.mark.asyncio
async def test_trigger_refuses_update_and_delete_even_for_the_owner(postgres: Any) -> None:
    stream = f"ORD-TEST-{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(postgres.owner_dsn)
    try:
        await _append_event(conn, stream)
        for statement in (
            "UPDATE order_events SET event_type = 'X' WHERE stream_id = $1",
            "DELETE FROM order_events WHERE stream_id = $1",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(statement, stream)
        event_type = await conn.fetchval(
            "SELECT event_type FROM order_events WHERE stream_id = $1", stream
        )
    finally:
        await conn.close()
    assert event_type == "OrderAccepted"


@pytest.mark.asyncio
async def test_trigger_refuses_truncate_for_the_owner(fresh_database: Any) -> None:
    # In a database of its own: a broken trigger must not wipe the shared event store.
    await apply_migrations(fresh_database.owner_dsn)
    conn = await asyncpg.connect(fresh_database.owner_dsn)
    try:
        await _append_event(conn, "ORD-TEST-TRUNCATE")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("TRUNCATE order_events CASCADE")
        count = await conn.fetchval("SELECT count(*) FROM order_events")
    finally:
        await conn.close()
    assert count == 1


@pytest.mark.asyncio
async def test_changed_applied_migration_is_refused_by_name(
    fresh_database: Any, tmp_path: Path
) -> None:
    folder = _copy_migrations(tmp_path)
    await apply_migrations(fresh_database.owner_dsn, folder)
    edited = folder / "0002_reference_data.sql"
    edited.write_text(edited.read_text() + "\n-- an innocent-looking edit\n")
    (folder / "0005_later.sql").write_text("CREATE TABLE later (id integer);\n")

    with pytest.raises(MigrationError, match=r"0002_reference_data\.sql"):
        await apply_migrations(fresh_database.owner_dsn, folder)

    # The check runs before anything is applied: the new migration did not run.
    conn = await asyncpg.connect(fresh_database.owner_dsn)
    try:
        later = await conn.fetchval("SELECT to_regclass('later')")
        versions = await conn.fetchval("SELECT max(version) FROM schema_migrations")
    finally:
        await conn.close()
    assert later is None
    assert versions == discover()[-1].version


@pytest.mark.asyncio
async def test_failing_migration_leaves_no_trace(fresh_database: Any, tmp_path: Path) -> None:
    folder = _copy_migrations(tmp_path)
    (folder / "0005_broken.sql").write_text("CREATE TABLE half_done (id integer);\nSELECT 1 / 0;\n")

    with pytest.raises(MigrationError, match=r"0005_broken\.sql"):
        await apply_migrations(fresh_database.owner_dsn, folder)

    conn = await asyncpg.connect(fresh_database.owner_dsn)
    try:
        half_done = await conn.fetchval("SELECT to_regclass('half_done')")
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
    finally:
        await conn.close()
    assert half_done is None
    assert sorted(versions) == [1, 2, 3, 4]


def test_duplicate_versions_are_refused(tmp_path: Path) -> None:
    folder = _copy_migrations(tmp_path)
    (folder / "0004_another.sql").write_text("SELECT 1;\n")

    with pytest.raises(MigrationError, match="share version 0004"):
        discover(folder)


def test_migrate_command_applies_to_a_given_dsn(fresh_database: Any) -> None:
    result = subprocess.run(
        [_console_script(), "migrate", "--dsn", fresh_database.owner_dsn],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )

    assert result.returncode == 0, result.stderr
    assert f"{len(SHIPPED)} applied, 0 already applied" in result.stdout
    assert f"{len(load_securities())} securities loaded" in result.stdout


async def _append_event(conn: asyncpg.Connection, stream: str) -> None:
    prev_hash = bytes(32)
    payload = b"test"
    digest = hashlib.sha256(prev_hash + payload).digest()
    await conn.execute(
        "INSERT INTO order_events (event_id, stream_id, stream_version, event_type, "
        "event_version, payload, prev_hash, hash) VALUES ($1, $2, 1, 'OrderAccepted', 'v1', "
        "$3, $4, $5)",
        uuid.uuid4(),
        stream,
        payload,
        prev_hash,
        digest,
    )


def _copy_migrations(tmp_path: Path) -> Path:
    source = Path(str(default_directory()))
    folder = tmp_path / "migrations"
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return folder


def _console_script() -> str:
    return str(Path(sys.executable).parent / "brokermesh")
