"""A venue, trade capture and a venue gateway process, wired together on a database of their own.

``rig`` starts the simulated venue XNAS and prepares (without starting) trade
capture and the gateway, so each test decides what runs when. NATS is a
server of this package's own: the gateway watches the trading controls, and
no other test's halt must reach it.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
import pytest_asyncio

from brokermesh.platform.migrate import apply_migrations
from brokermesh.platform.nats import LocalNats
from brokermesh.trading.v1 import venue_pb2_grpc
from tests.processes import free_port

from .support import TradeCaptureServer, VenueGatewayProcess, a_venue


@dataclass
class Rig:
    """Everything a test drives: the gateway, trade capture, the venue and the database."""

    gateway: VenueGatewayProcess
    trade_capture: TradeCaptureServer
    venue_port: int
    dsn: str
    conn: asyncpg.Connection
    venues: venue_pb2_grpc.VenueGatewayServiceStub


@pytest.fixture(scope="package")
def nats_url() -> Iterator[str]:
    """A nats-server with JetStream and the platform's assets, for this package only."""
    base = Path(tempfile.mkdtemp(prefix="brokermesh-venue-gateway-nats-"))
    nats = LocalNats(base / "nats", port=free_port(), monitor_port=free_port())
    try:
        nats.start()
        asyncio.run(nats.ensure_assets())
        yield nats.url
    finally:
        nats.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest_asyncio.fixture
async def rig(fresh_database: Any, nats_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    await apply_migrations(fresh_database.owner_dsn, load_reference_data=False)
    gateway_port = free_port()
    trade_capture = TradeCaptureServer(
        database_url=fresh_database.app_dsn,
        venue_gateway_port=gateway_port,
        data_dir=tmp_path / "trade-capture",
    )
    async with a_venue(tmp_path / "venues") as venue_port:
        gateway = VenueGatewayProcess(
            tmp_path / "venue-gateway",
            port=gateway_port,
            nats_url=nats_url,
            trade_capture_port=trade_capture.port,
            venue_ports={"XNAS": venue_port},
        )
        conn = await asyncpg.connect(fresh_database.app_dsn, timeout=10)
        channel = grpc.aio.insecure_channel(gateway.address)
        try:
            yield Rig(
                gateway=gateway,
                trade_capture=trade_capture,
                venue_port=venue_port,
                dsn=fresh_database.app_dsn,
                conn=conn,
                venues=venue_pb2_grpc.VenueGatewayServiceStub(channel),
            )
        finally:
            await channel.close()
            await gateway.stop()
            await trade_capture.stop()
            await conn.close()
