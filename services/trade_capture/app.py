"""The trade capture process: a database pool, the servicer and the reconciler."""

from __future__ import annotations

import asyncio

import asyncpg
import grpc

from brokermesh.mesh import database
from brokermesh.services.registry import clients_for
from brokermesh.services.trade_capture.manifest import MANIFEST
from brokermesh.services.trade_capture.reconciler import Reconciler
from brokermesh.services.trade_capture.service import TradeCapture
from brokermesh.services.trade_capture.settings import TradeCaptureSettings
from brokermesh.trading.v1 import trade_capture_pb2_grpc, venue_pb2_grpc


class TradeCaptureApp:
    """Implements :class:`brokermesh.mesh.server.App` for trade capture."""

    def __init__(self, settings: TradeCaptureSettings) -> None:
        self._settings = settings
        self._clients = clients_for(MANIFEST, settings)
        self._pool: asyncpg.Pool | None = None
        self._reconciler: Reconciler | None = None
        self._reconciling: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._pool = await database.create_pool(self._settings.database_url, min_size=2, max_size=8)
        self._reconciler = Reconciler(
            self._pool,
            self._clients.stub("venue-gateway", venue_pb2_grpc.VenueGatewayServiceStub),
            after_s=self._settings.reconcile_after_s,
            interval_s=self._settings.reconcile_interval_s,
            lookback_s=self._settings.reconcile_lookback_s,
        )
        self._reconciling = asyncio.create_task(self._reconciler.run(), name="reconciler")

    def register(self, server: grpc.aio.Server) -> None:
        if self._pool is None:
            raise RuntimeError("trade capture registers only after start()")
        trade_capture_pb2_grpc.add_TradeCaptureServiceServicer_to_server(
            TradeCapture(self._pool), server
        )

    async def stop(self) -> None:
        try:
            if self._reconciler is not None and self._reconciling is not None:
                # Every step of a pass has a timeout, so asking it to stop is enough.
                self._reconciler.stop()
                await self._reconciling
        finally:
            await self._clients.close()
            if self._pool is not None:
                await self._pool.close()
