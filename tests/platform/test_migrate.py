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

from brokermesh.domain import states
from brokermesh.events.v1.order_events_pb2 import OrderEvent
from brokermesh.mesh.refdata import load_securities
from brokermesh.platform.migrate import (
    MigrationError,
    apply_migrations,
    default_directory,
    discover,
)

SHIPPED = [m.name for m in discover()]
#: The version a test's extra migration takes: the one after the last shipped.
NEXT = f"{discover()[-1].version + 1:04d}"


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
@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO outbox (event_id) SELECT event_id FROM order_events WHERE stream_id = $1",
        "UPDATE outbox SET published_at = now() WHERE event_id IN "
        "(SELECT event_id FROM order_events WHERE stream_id = $1)",
    ],
    ids=["insert", "update"],
)
async def test_app_role_cannot_write_the_outbox(postgres: Any, statement: str) -> None:
    stream = f"ORD-TEST-{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(postgres.app_dsn)
    try:
        await _append_event(conn, stream)

        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.execute(statement, stream)

        published = await conn.fetchval(
            "SELECT count(*) FROM outbox JOIN order_events USING (event_id) "
            "WHERE stream_id = $1 AND published_at IS NOT NULL",
            stream,
        )
    finally:
        await conn.close()
    assert published == 0


@pytest.mark.asyncio
async def test_an_event_the_app_role_inserts_by_hand_gets_exactly_one_outbox_row(
    postgres: Any,
) -> None:
    stream = f"ORD-TEST-{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(postgres.app_dsn)
    try:
        await _append_event(conn, stream)

        rows = await conn.fetch(
            "SELECT o.published_at FROM outbox o JOIN order_events e USING (event_id) "
            "WHERE e.stream_id = $1",
            stream,
        )
    finally:
        await conn.close()
    assert [row["published_at"] for row in rows] == [None]


@pytest.mark.asyncio
async def test_mark_published_sets_published_at_once_and_never_moves_it(postgres: Any) -> None:
    # Arrange: one unpublished event.
    stream = f"ORD-TEST-{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(postgres.app_dsn)
    try:
        await _append_event(conn, stream)
        position = await conn.fetchval(
            "SELECT o.position FROM outbox o JOIN order_events e USING (event_id) "
            "WHERE e.stream_id = $1",
            stream,
        )

        # Act: mark it, then mark it again in a later transaction.
        async with conn.transaction():
            first = await conn.fetchval("SELECT mark_published($1::bigint[])", [position])
            first_at = await conn.fetchval("SELECT now()")
        again = await conn.fetchval("SELECT mark_published($1::bigint[])", [position])
        published_at = await conn.fetchval(
            "SELECT published_at FROM outbox WHERE position = $1", position
        )
    finally:
        await conn.close()

    # Assert: NULL -> the first transaction's now(); the second call changed nothing.
    assert (first, again) == (1, 0)
    assert published_at == first_at


@pytest.mark.asyncio
async def test_mark_published_is_refused_to_roles_other_than_the_app_role(
    postgres: Any,
) -> None:
    outsider = f"brokermesh_test_{uuid.uuid4().hex[:8]}"
    owner = await asyncpg.connect(postgres.owner_dsn)
    try:
        await owner.execute(f"CREATE ROLE {outsider} NOLOGIN")
        try:
            await owner.execute(f"SET ROLE {outsider}")
            with pytest.raises(
                asyncpg.InsufficientPrivilegeError,
                match="permission denied for function mark_published",
            ):
                await owner.execute("SELECT mark_published(ARRAY[]::bigint[])")
        finally:
            await owner.execute("RESET ROLE")
            await owner.execute(f"DROP ROLE {outsider}")
    finally:
        await owner.close()


@pytest.mark.asyncio
async def test_changed_applied_migration_is_refused_by_name(
    fresh_database: Any, tmp_path: Path
) -> None:
    folder = _copy_migrations(tmp_path)
    await apply_migrations(fresh_database.owner_dsn, folder)
    edited = folder / "0002_reference_data.sql"
    edited.write_text(edited.read_text() + "\n-- an innocent-looking edit\n")
    (folder / f"{NEXT}_later.sql").write_text("CREATE TABLE later (id integer);\n")

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
    (folder / f"{NEXT}_broken.sql").write_text(
        "CREATE TABLE half_done (id integer);\nSELECT 1 / 0;\n"
    )

    with pytest.raises(MigrationError, match=rf"{NEXT}_broken\.sql"):
        await apply_migrations(fresh_database.owner_dsn, folder)

    conn = await asyncpg.connect(fresh_database.owner_dsn)
    try:
        half_done = await conn.fetchval("SELECT to_regclass('half_done')")
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
    finally:
        await conn.close()
    assert half_done is None
    assert sorted(versions) == [m.version for m in discover()]


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
    # A decodable event: these rows stay in the session's event store, where a relay
    # test may read them later.
    prev_hash = bytes(32)
    payload = OrderEvent(
        event_type="OrderAccepted", order_id=stream, stream_version=1, state=states.NEW
    ).SerializeToString()
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
