"""The service bootstrap: start-up order, health across start and shutdown, and reflection."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from brokermesh.mesh import server as mesh_server
from brokermesh.mesh.config import ServiceSettings
from brokermesh.trading.v1 import order_query_pb2
from brokermesh.trading.v1.order_query_pb2_grpc import OrderQueryServiceStub

from .support import MANIFEST, QUERY, VENUES, ProbeApp, get_order, serving

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _sleeping(seconds: float) -> Any:
    async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await asyncio.sleep(seconds)
        return order_query_pb2.GetOrderResponse()

    return behaviour


async def _list_services(channel: grpc.aio.Channel) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    call = stub.ServerReflectionInfo(iter([request]), timeout=5)
    response = await call.read()
    call.cancel()
    return [service.name for service in response.list_services_response.service]


async def _start(app: ProbeApp, **settings: Any) -> tuple[mesh_server.Running, grpc.aio.Channel]:
    running = await mesh_server.start(MANIFEST, ServiceSettings(**settings), app)
    return running, grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")


# -- health ----------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["", QUERY, VENUES])
async def test_health_reports_serving_for_the_server_and_each_service_once_started(
    service: str,
) -> None:
    async with serving(ProbeApp()) as served:
        health = health_pb2_grpc.HealthStub(served.channel)
        response = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)

    assert response.status == SERVING


async def test_graceful_shutdown_turns_a_watched_health_to_not_serving() -> None:
    app = ProbeApp()
    running, channel = await _start(app)
    watch = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=QUERY), timeout=5
    )
    first = await watch.read()

    stopping = asyncio.create_task(mesh_server.stop(running, app, grace_s=1.0))
    second = await watch.read()
    watch.cancel()  # the open stream would otherwise hold the server for the whole grace period
    await stopping
    await channel.close()

    assert (first.status, second.status) == (SERVING, NOT_SERVING)


async def test_a_call_in_flight_at_shutdown_finishes_within_the_grace_period() -> None:
    app = ProbeApp(GetOrder=_sleeping(0.3))
    running, channel = await _start(app)
    call = asyncio.ensure_future(OrderQueryServiceStub(channel).GetOrder(get_order(), timeout=5))
    await app.arrived.wait()

    await mesh_server.stop(running, app, grace_s=5.0)
    response = await call
    await channel.close()

    assert response == order_query_pb2.GetOrderResponse()
    assert app.stopped


async def test_a_call_outliving_the_grace_period_is_cut_off() -> None:
    app = ProbeApp(GetOrder=_sleeping(30))
    running, channel = await _start(app, max_deadline_ms=60_000)
    call = asyncio.ensure_future(OrderQueryServiceStub(channel).GetOrder(get_order(), timeout=60))
    await app.arrived.wait()
    started = time.monotonic()

    await mesh_server.stop(running, app, grace_s=0.2)
    with pytest.raises(grpc.aio.AioRpcError):
        await call
    await channel.close()

    assert time.monotonic() - started < 3
    assert app.stopped


# -- reflection ------------------------------------------------------------------------------


async def test_reflection_is_off_by_default() -> None:
    async with serving(ProbeApp()) as served:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _list_services(served.channel)

    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_reflection_when_enabled_lists_the_served_services_health_and_itself() -> None:
    async with serving(ProbeApp(), reflection=True) as served:
        names = await _list_services(served.channel)

    assert sorted(names) == sorted(
        [*MANIFEST.serves, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"]
    )


# -- failing to start ------------------------------------------------------------------------


async def test_a_port_that_is_taken_fails_before_the_app_starts() -> None:
    app = ProbeApp()

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"probe: cannot bind 127.0.0.1:{port}"):
            await mesh_server.start(MANIFEST, ServiceSettings(port=port), app)

    assert not app.started


class _UnregistrableApp(ProbeApp):
    def register(self, server: grpc.aio.Server) -> None:
        raise RuntimeError("servicer wiring failed")


async def test_an_app_that_started_is_stopped_when_serving_then_fails() -> None:
    app = _UnregistrableApp()

    with pytest.raises(RuntimeError, match="servicer wiring failed"):
        await mesh_server.start(MANIFEST, ServiceSettings(), app)

    assert app.started
    assert app.stopped
