"""The local PostgreSQL cluster: the binaries it finds, and a cluster run from pgserver's copy."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from brokermesh.platform.layout import OWNER_ROLE
from brokermesh.platform.postgres import LocalPostgres, bundled_bin_dir, find_bin_dir
from tests.processes import free_port


@pytest.fixture
def cluster_dir() -> Iterator[Path]:
    # Outside pytest's root-only tmp tree: PostgreSQL runs as an unprivileged user under root.
    path = Path(tempfile.mkdtemp(prefix="brokermesh-pg-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_the_bundled_binaries_are_installed_with_the_platform() -> None:
    bin_dir = bundled_bin_dir()

    assert bin_dir is not None
    assert (bin_dir / "initdb").is_file()
    assert (bin_dir / "pg_ctl").is_file()


def test_a_system_installation_is_preferred_over_the_bundled_copy() -> None:
    found = find_bin_dir()

    system = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "pg_ctl").is_file()]
    assert found == (max(system, key=lambda p: int(p.parent.name)) if system else bundled_bin_dir())


def test_a_cluster_runs_from_the_bundled_binaries(cluster_dir: Path) -> None:
    bin_dir = bundled_bin_dir()
    assert bin_dir is not None
    cluster = LocalPostgres(cluster_dir / "data", port=free_port(), bin_dir=bin_dir)

    try:
        assert cluster.start(timeout_s=120)
        version = asyncio.run(_server_version(cluster))
    finally:
        cluster.stop()

    assert version.startswith("16.")
    assert not cluster.is_running()


async def _server_version(cluster: LocalPostgres) -> str:
    conn = await asyncpg.connect(cluster.dsn(OWNER_ROLE, "postgres"), timeout=10)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()
