"""The order entry process: database pool, controls watcher, clients and the servicer."""

from __future__ import annotations

import asyncpg
import grpc

from brokermesh.mesh import database
from brokermesh.mesh.clients import ClientFactory
from brokermesh.mesh.controls import ControlsWatcher
from brokermesh.services.order_entry.manifest import MANIFEST
from brokermesh.services.order_entry.service import OrderEntry
from brokermesh.services.order_entry.settings import OrderEntrySettings
from brokermesh.services.registry import clients_for
from brokermesh.trading.v1 import order_entry_pb2_grpc


class OrderEntryApp:
    """Implements :class:`brokermesh.mesh.server.App` for order entry."""

    def __init__(self, settings: OrderEntrySettings) -> None:
        self._settings = settings
        self._clients: ClientFactory = clients_for(MANIFEST, settings)
        self._controls = ControlsWatcher(
            settings.nats_url, data_dir=settings.data_dir, service=MANIFEST.name
        )
        self._pool: asyncpg.Pool | None = None
        self._servicer: OrderEntry | None = None

    async def start(self) -> None:
        self._pool = await database.create_pool(
            self._settings.database_url, min_size=2, max_size=self._settings.db_pool_size
        )
        await self._controls.start()
        self._servicer = OrderEntry(
            self._pool,
            self._clients,
            self._controls,
            recent_requests=self._settings.recent_requests,
        )

    def register(self, server: grpc.aio.Server) -> None:
        if self._servicer is None:
            raise RuntimeError("order entry registers only after start()")
        order_entry_pb2_grpc.add_OrderEntryServiceServicer_to_server(self._servicer, server)

    async def stop(self) -> None:
        await self._clients.close()
        await self._controls.stop()
        if self._pool is not None:
            await self._pool.close()
