"""The venue gateway process: FIX sessions to every venue, the servicer and the report worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc

from brokermesh.mesh.config import parse_upstreams
from brokermesh.mesh.controls import ControlsWatcher
from brokermesh.mesh.fix.engine import FixInitiator, FixNotLoggedOnError, FixSessionConfig
from brokermesh.services.registry import clients_for
from brokermesh.services.venue_gateway.manifest import MANIFEST
from brokermesh.services.venue_gateway.service import VenueGateway
from brokermesh.services.venue_gateway.settings import VenueGatewaySettings
from brokermesh.trading.v1 import trade_capture_pb2_grpc, venue_pb2_grpc

_LOGGER = logging.getLogger(__name__)


def venue_code(service: str) -> str:
    """``XNAS`` for the venue service ``venue-xnas``: the session's TargetCompID."""
    return service.removeprefix("venue-").upper()


class VenueGatewayApp:
    """Implements :class:`brokermesh.mesh.server.App` for the venue gateway."""

    def __init__(self, settings: VenueGatewaySettings) -> None:
        self._settings = settings
        self._clients = clients_for(MANIFEST, settings)
        self._controls = ControlsWatcher(
            settings.nats_url, data_dir=settings.data_dir, service=MANIFEST.name
        )
        endpoints = parse_upstreams(settings.venue_fix_ports)
        self._sessions = [
            FixSessionConfig(
                sender_comp_id=settings.sender_comp_id,
                target_comp_id=venue_code(service),
                host=address.rsplit(":", 1)[0],
                port=int(address.rsplit(":", 1)[1]),
                data_dir=settings.data_dir / "fix",
                heartbeat_s=settings.heartbeat_s,
                reconnect_interval_s=settings.reconnect_interval_s,
            )
            for service, address in endpoints.items()
        ]
        self._gateway = VenueGateway(
            {venue_code(service): service for service in endpoints},
            self._controls,
            self._clients.stub("trade-capture", trade_capture_pb2_grpc.TradeCaptureServiceStub),
        )
        self._initiator = FixInitiator(self._sessions, on_execution=self._gateway.on_execution)
        self._worker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._controls.start()
        await self._initiator.start()
        self._gateway.initiator = self._initiator
        await self._await_logons()
        self._worker = asyncio.create_task(self._gateway.forward_reports(), name="report-forwarder")

    async def _await_logons(self) -> None:
        # Report SERVING only once the venues can take orders, so that a
        # platform that says it is up can trade; a venue still down after the
        # timeout is left to reconnect in the background (the router sees it
        # unhealthy meanwhile).
        for session in self._sessions:
            try:
                await self._initiator.wait_logged_on(
                    session.target_comp_id, timeout_s=self._settings.logon_timeout_s
                )
            except FixNotLoggedOnError:
                _LOGGER.warning(
                    "venue %s not logged on yet; serving without it", session.target_comp_id
                )

    def register(self, server: grpc.aio.Server) -> None:
        venue_pb2_grpc.add_VenueGatewayServiceServicer_to_server(self._gateway, server)

    async def stop(self) -> None:
        try:
            if self._worker is not None:
                self._worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._worker
        finally:
            # The engine must be stopped whatever happened: exiting with it
            # running can crash the process.
            await self._initiator.stop()
            await self._controls.stop()
            await self._clients.close()
