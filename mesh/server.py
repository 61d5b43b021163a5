"""Bootstrap for every service: a grpc.aio server with health, graceful shutdown and telemetry.

A service provides an :class:`App` (start, register servicers, stop);
:func:`run` does the rest: logging, tracing, metrics endpoint, the pipeline
interceptor, the standard health service (SERVING only once the app has
started, NOT_SERVING as soon as shutdown begins), reflection when enabled,
and a shutdown that gives in-flight calls a grace period before cancelling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from brokermesh.mesh import logging as mesh_logging
from brokermesh.mesh import telemetry
from brokermesh.mesh.config import ServiceSettings
from brokermesh.mesh.manifest import ServiceManifest
from brokermesh.mesh.pipeline import ServerPipeline

_LOGGER = logging.getLogger(__name__)

#: Options every server and channel shares: keepalive so dead peers are noticed.
GRPC_OPTIONS = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.so_reuseport", 0),
)


class App(Protocol):
    """What a service hands to :func:`run`."""

    async def start(self) -> None:
        """Open connections and load state; called once before serving."""

    def register(self, server: grpc.aio.Server) -> None:
        """Add the service's servicers to ``server``; called once, after ``start``."""

    async def stop(self) -> None:
        """Release what ``start`` acquired; called once after the server stopped."""


class Running:
    """A started server: its bound port and a way to stop it."""

    def __init__(
        self, server: grpc.aio.Server, health_servicer: health.aio.HealthServicer, port: int
    ) -> None:
        self.server = server
        self.health = health_servicer
        self.port = port


async def start(manifest: ServiceManifest, settings: ServiceSettings, app: App) -> Running:
    """Start ``app`` and its gRPC server; the caller stops it with :func:`stop`.

    The port is bound before ``app.start``, so a taken port fails with nothing
    to undo; if anything fails once the app has started, ``app.stop`` runs
    before the error propagates.
    """
    pipeline = ServerPipeline(
        manifest.name,
        max_deadline_s=settings.max_deadline_ms / 1000,
        max_in_flight=settings.max_in_flight,
    )
    server = grpc.aio.server(interceptors=[pipeline], options=GRPC_OPTIONS)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"{settings.host}:{settings.port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"{manifest.name}: cannot bind {address}") from exc
    if port == 0:
        raise OSError(f"{manifest.name}: cannot bind {address}")

    await app.start()
    try:
        app.register(server)
        if settings.reflection:
            names = (
                *manifest.serves,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            )
            reflection.enable_server_reflection(names, server)
        await server.start()
        for name in ("", *manifest.serves):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    except BaseException:
        await server.stop(None)
        await app.stop()
        raise
    _LOGGER.info("%s serving on %s:%d", manifest.name, settings.host, port)
    return Running(server, health_servicer, port)


async def stop(running: Running, app: App, *, grace_s: float) -> None:
    """Stop serving: report NOT_SERVING, drain for ``grace_s``, then stop the app."""
    await running.health.enter_graceful_shutdown()
    try:
        await running.server.stop(grace_s)
    finally:
        await app.stop()


async def serve(manifest: ServiceManifest, settings: ServiceSettings, app: App) -> None:
    """Run ``app`` until SIGINT or SIGTERM, then shut down gracefully."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)

    running = await start(manifest, settings, app)
    try:
        await stopping.wait()
        _LOGGER.info("%s shutting down", manifest.name)
    finally:
        await stop(running, app, grace_s=settings.shutdown_grace_s)


def run(
    manifest: ServiceManifest, settings: ServiceSettings, build: Callable[[], App | Awaitable[App]]
) -> None:
    """Process entry point: configure logging and telemetry, then serve ``build()``."""
    mesh_logging.configure(manifest.name, settings.log_level)
    provider = telemetry.configure_tracing(
        manifest.name, data_dir=settings.data_dir, otlp_endpoint=settings.otlp_endpoint
    )
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.host)

    async def main() -> None:
        built = build()
        app = await built if isinstance(built, Awaitable) else built
        await serve(manifest, settings, app)

    try:
        _event_loop_runner()(main())
    finally:
        provider.shutdown()


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """uvloop's runner where it is installed, asyncio's otherwise."""
    if os.environ.get("BROKERMESH_EVENT_LOOP", "uvloop") == "asyncio":
        return asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.run
    return asyncio.run
