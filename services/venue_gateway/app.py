"""The venue gateway process: FIX sessions, the execution journal, its forwarder, the servicer."""

from __future__ import annotations

import asyncio
import logging

import grpc

from brokermesh.mesh.config import parse_upstreams
from brokermesh.mesh.controls import ControlsWatcher
from brokermesh.mesh.fix.engine import FixNotLoggedOnError, FixSessionConfig
from brokermesh.mesh.fix.initiator import FixInitiator
from brokermesh.mesh.fix.journal import ExecutionJournal
from brokermesh.mesh.tasks import cancel_and_wait
from brokermesh.services.registry import clients_for
from brokermesh.services.venue_gateway.manifest import MANIFEST
from brokermesh.services.venue_gateway.reports import ReportForwarder
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
            {venue_code(service): service for service in endpoints}, self._controls
        )
        self._journal = ExecutionJournal(settings.journal_path)
        self._forwarder = ReportForwarder(
            self._journal,
            self._clients.stub("trade-capture", trade_capture_pb2_grpc.TradeCaptureServiceStub),
        )
        self._initiator = FixInitiator(
            self._sessions, journal=self._journal, on_report=self._forwarder.wake
        )
        self._worker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self._journal.open)
        # The forwarder starts before the sessions do, so reports a previous run journaled
        # but never forwarded reach trade capture ahead of anything new.
        self._worker = asyncio.create_task(self._forwarder.run(), name="report-forwarder")
        await self._controls.start()
        await self._initiator.start()
        self._gateway.initiator = self._initiator
        await self._await_logons()

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
        worker, self._worker = self._worker, None
        try:
            if worker is not None:
                await cancel_and_wait(worker)
        finally:
            # The engine must be stopped whatever happened: exiting with it
            # running can crash the process. The journal closes after it, once
            # nothing can append to it any more.
            try:
                await self._initiator.stop()
            finally:
                self._journal.close()
                await self._controls.stop()
                await self._clients.close()
