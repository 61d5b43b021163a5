"""Runs the gateway: uvicorn for HTTP and the gRPC health server in one asyncio loop.

The gRPC side is the platform's standard bootstrap (``mesh.server.start`` and
``stop``), which also drives :class:`GatewayApp`'s lifecycle. On SIGINT or
SIGTERM health turns NOT_SERVING first, then uvicorn stops accepting and
drains in-flight requests, then the gRPC server and the app stop, each
within ``shutdown_grace_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import uvicorn
import uvloop
from prometheus_client import start_http_server

from brokermesh.mesh import logging as mesh_logging
from brokermesh.mesh import server as mesh_server
from brokermesh.mesh import telemetry
from brokermesh.services.gateway.app import GatewayApp
from brokermesh.services.gateway.manifest import MANIFEST
from brokermesh.services.gateway.settings import GatewaySettings

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunningGateway:
    """A started gateway: its ports and its app."""

    app: GatewayApp
    http_port: int
    grpc_port: int


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without signal handling of its own: the gateway's loop owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def run(settings: GatewaySettings) -> None:
    """Process entry point: logging, tracing and metrics, then serve until a signal."""
    mesh_logging.configure(MANIFEST.name, settings.log_level)
    provider = telemetry.configure_tracing(
        MANIFEST.name, data_dir=settings.data_dir, otlp_endpoint=settings.otlp_endpoint
    )
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.host)
    try:
        uvloop.run(serve(settings))
    finally:
        provider.shutdown()


async def serve(settings: GatewaySettings) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)

    async with running(settings):
        await stopping.wait()
        _LOGGER.info("gateway shutting down")


@contextlib.asynccontextmanager
async def running(settings: GatewaySettings) -> AsyncIterator[RunningGateway]:
    """Start the gRPC health server, the app and the HTTP server; stop them on exit."""
    app = GatewayApp(settings)
    grpc_running = await mesh_server.start(MANIFEST, settings, app)
    try:
        sock = _bind(settings.http_host, settings.http_port)
        http = _EmbeddedServer(_uvicorn_config(app, settings))
        task = asyncio.create_task(http.serve(sockets=[sock]), name="gateway-http")
        try:
            await _until_started(http, task)
            port = int(sock.getsockname()[1])
            _LOGGER.info("gateway HTTP on %s:%d", settings.http_host, port)
            yield RunningGateway(app=app, http_port=port, grpc_port=grpc_running.port)
        finally:
            await grpc_running.health.enter_graceful_shutdown()
            http.should_exit = True
            await task
    finally:
        await mesh_server.stop(grpc_running, app, grace_s=settings.shutdown_grace_s)


def _uvicorn_config(app: GatewayApp, settings: GatewaySettings) -> uvicorn.Config:
    return uvicorn.Config(
        app.http_app(),
        http="httptools",
        loop="none",
        ws="none",
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_s)),
    )


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket, bound here so a taken port fails loudly and port 0 can be read."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)


async def _until_started(http: uvicorn.Server, task: asyncio.Task[None]) -> None:
    while not http.started:
        if task.done():
            task.result()
            raise OSError("the gateway's HTTP server stopped while starting")
        await asyncio.sleep(0.01)
