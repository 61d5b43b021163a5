"""Trade capture's servicer behind the platform's server bootstrap, on a database of its own.

``trade_capture`` serves :class:`TradeCapture` with the production pipeline
(contract validation, error mapping) on a free port, against a fresh
database with every migration applied. The reconciler is not running here:
its tests live with the venue gateway it talks to.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest_asyncio

from brokermesh.mesh import server
from brokermesh.mesh.config import ServiceSettings
from brokermesh.platform.migrate import apply_migrations
from brokermesh.services.trade_capture.manifest import MANIFEST
from brokermesh.services.trade_capture.service import TradeCapture
from brokermesh.trading.v1 import trade_capture_pb2_grpc


@dataclass(frozen=True, slots=True)
class TradeCaptureUnderTest:
    """The running service: a stub to call it and a connection to its database."""

    stub: trade_capture_pb2_grpc.TradeCaptureServiceStub
    conn: asyncpg.Connection


class ServicerApp:
    """An :class:`~brokermesh.mesh.server.App` serving one TradeCapture servicer."""

    def __init__(self, servicer: TradeCapture) -> None:
        self._servicer = servicer

    async def start(self) -> None:
        return None

    def register(self, grpc_server: grpc.aio.Server) -> None:
        trade_capture_pb2_grpc.add_TradeCaptureServiceServicer_to_server(
            self._servicer, grpc_server
        )

    async def stop(self) -> None:
        return None


@pytest_asyncio.fixture
async def trade_capture(
    fresh_database: Any, tmp_path: Path
) -> AsyncIterator[TradeCaptureUnderTest]:
    await apply_migrations(fresh_database.owner_dsn, load_reference_data=False)
    pool = await asyncpg.create_pool(fresh_database.app_dsn, min_size=1, max_size=4)
    app = ServicerApp(TradeCapture(pool))
    running = await server.start(MANIFEST, ServiceSettings(port=0, data_dir=tmp_path), app)
    conn = await asyncpg.connect(fresh_database.app_dsn, timeout=10)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield TradeCaptureUnderTest(trade_capture_pb2_grpc.TradeCaptureServiceStub(channel), conn)
    finally:
        await channel.close()
        await conn.close()
        await server.stop(running, app, grace_s=1.0)
        await pool.close()
