"""The trade capture process: a database pool and the servicer."""

from __future__ import annotations

import asyncpg
import grpc

from brokermesh.mesh.config import ServiceSettings
from brokermesh.services.trade_capture.service import TradeCapture
from brokermesh.trading.v1 import trade_capture_pb2_grpc


class TradeCaptureApp:
    """Implements :class:`brokermesh.mesh.server.App` for trade capture."""

    def __init__(self, settings: ServiceSettings) -> None:
        self._settings = settings
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        self._pool = await asyncpg.create_pool(self._settings.database_url, min_size=2, max_size=8)

    def register(self, server: grpc.aio.Server) -> None:
        if self._pool is None:
            raise RuntimeError("trade capture registers only after start()")
        trade_capture_pb2_grpc.add_TradeCaptureServiceServicer_to_server(
            TradeCapture(self._pool), server
        )

    async def stop(self) -> None:
        if self._pool is not None:
            await self._pool.close()
