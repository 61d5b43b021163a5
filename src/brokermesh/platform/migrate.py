"""Apply the SQL migrations in order, once each, then load the shipped reference data.

Migrations are the files ``NNNN_<name>.sql`` of ``brokermesh/migrations`` (or
a directory given explicitly). Each runs in its own transaction together with
its row in ``schema_migrations`` (version, file name, sha256, applied_at), so a
failed migration leaves nothing behind. An applied migration is immutable:
when its file no longer matches the recorded sha256 the runner stops and names
the file, before applying anything. The runner connects as the schema owner.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable

import asyncpg

from brokermesh.mesh.refdata import load_securities
from brokermesh.platform import PlatformError

_LOGGER = logging.getLogger(__name__)

_FILE_NAME = re.compile(r"^(?P<version>\d{4})_[A-Za-z0-9_]+\.sql$")
#: Advisory lock key ("bmmigrat" in ASCII), so two runners never interleave.
_LOCK_KEY = 0x626D6D6967726174

_CREATE_TRACKING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer     PRIMARY KEY,
    name        text        NOT NULL,
    sha256      text        NOT NULL CHECK (length(sha256) = 64),
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""

_UPSERT_SECURITY = """
INSERT INTO securities (symbol, name, reference_price, average_daily_volume, eligible)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (symbol) DO UPDATE SET
    name = EXCLUDED.name,
    reference_price = EXCLUDED.reference_price,
    average_daily_volume = EXCLUDED.average_daily_volume,
    eligible = EXCLUDED.eligible
WHERE (securities.name, securities.reference_price, securities.average_daily_volume,
       securities.eligible)
   IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.reference_price, EXCLUDED.average_daily_volume,
                     EXCLUDED.eligible)
"""


class MigrationError(PlatformError):
    """The migrations cannot be applied as they are (changed, duplicated or failing)."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: its version, file name, SQL text and content hash."""

    version: int
    name: str
    sql: str
    sha256: str


@dataclass(slots=True)
class MigrationReport:
    """What a run did: migrations applied now, those already applied, securities loaded."""

    applied: list[str] = field(default_factory=list)
    already_applied: list[str] = field(default_factory=list)
    securities: int = 0


def default_directory() -> Traversable:
    """The migrations shipped in the ``brokermesh.migrations`` package."""
    return resources.files("brokermesh.migrations")


def discover(directory: Traversable | None = None) -> list[Migration]:
    """The migrations in ``directory``, ordered by version; duplicates are an error."""
    folder = directory if directory is not None else default_directory()
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if not match or not entry.is_file():
            continue
        data = entry.read_bytes()
        migration = Migration(
            version=int(match["version"]),
            name=entry.name,
            sql=data.decode("utf-8"),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        if migration.version in found:
            raise MigrationError(
                f"migrations {found[migration.version].name} and "
                f"{migration.name} share version {migration.version:04d}"
            )
        found[migration.version] = migration
    return [found[version] for version in sorted(found)]


async def apply_migrations(
    dsn: str, directory: Traversable | None = None, *, load_reference_data: bool = True
) -> MigrationReport:
    """Connect to ``dsn`` as the schema owner and bring the schema up to date."""
    migrations = discover(directory)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await apply_on(conn, migrations, load_reference_data=load_reference_data)
    finally:
        await conn.close()


async def apply_on(
    conn: asyncpg.Connection, migrations: list[Migration], *, load_reference_data: bool = True
) -> MigrationReport:
    """Apply ``migrations`` over an open owner connection."""
    report = MigrationReport()
    # A session lock, not a transaction one: each migration commits on its own.
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(_CREATE_TRACKING)
        recorded = {
            row["version"]: row
            for row in await conn.fetch("SELECT version, name, sha256 FROM schema_migrations")
        }
        _check_unchanged(migrations, recorded)

        for migration in migrations:
            if migration.version in recorded:
                report.already_applied.append(migration.name)
                continue
            await _apply_one(conn, migration)
            report.applied.append(migration.name)

        if load_reference_data:
            report.securities = await _load_securities(conn)
    finally:
        # Closing the session releases the lock too; an unlock failure must not mask
        # the error that brought us here.
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError):
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return report


def _check_unchanged(migrations: list[Migration], recorded: dict[int, asyncpg.Record]) -> None:
    """Refuse to run when an applied migration's file was edited or renamed."""
    for migration in migrations:
        row = recorded.get(migration.version)
        if row is None:
            continue
        if row["sha256"] != migration.sha256:
            raise MigrationError(
                f"migration {migration.name} was changed after it was applied "
                f"(recorded sha256 {row['sha256']}, file has {migration.sha256}); "
                "add a new migration instead of editing an applied one"
            )
        if row["name"] != migration.name:
            raise MigrationError(
                f"migration {migration.version:04d} was applied as "
                f"{row['name']} but the file is now {migration.name}"
            )
    missing = sorted(set(recorded) - {m.version for m in migrations})
    for version in missing:
        _LOGGER.warning("applied migration %s has no file any more", recorded[version]["name"])


async def _apply_one(conn: asyncpg.Connection, migration: Migration) -> None:
    # The migration and its tracking row commit together or not at all.
    try:
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, sha256) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.sha256,
            )
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"migration {migration.name} failed: {exc}") from exc
    _LOGGER.info("applied migration %s", migration.name)


async def _load_securities(conn: asyncpg.Connection) -> int:
    """Upsert the securities of ``brokermesh/data/securities.csv``; returns how many."""
    securities = load_securities()
    async with conn.transaction():
        await conn.executemany(
            _UPSERT_SECURITY,
            [
                (s.symbol, s.name, s.reference_price, s.average_daily_volume, s.eligible)
                for s in securities
            ],
        )
    return len(securities)
