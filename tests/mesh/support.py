"""A probe service for the mesh tests: real contracts behind the platform's own server bootstrap.

The probe serves OrderQueryService, VenueGatewayService and the control
plane's read methods (whose contracts declare different timeouts). Each call records
what the handler saw (its budget, ids and deadline) and then runs the
behaviour a test scripted for that method, or answers with an empty response.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from brokermesh.control.v1 import control_pb2, control_pb2_grpc
from brokermesh.mesh import deadlines, telemetry
from brokermesh.mesh import server as mesh_server
from brokermesh.mesh.config import ServiceSettings
from brokermesh.mesh.logging import correlation_id_var
from brokermesh.mesh.manifest import Plane, ServiceManifest
from brokermesh.trading.v1 import (
    order_query_pb2,
    order_query_pb2_grpc,
    venue_pb2,
    venue_pb2_grpc,
)

QUERY = "brokermesh.trading.v1.OrderQueryService"
VENUES = "brokermesh.trading.v1.VenueGatewayService"
CONTROLS = "brokermesh.control.v1.ControlPlaneService"
MANIFEST = ServiceManifest(
    name="probe", plane=Plane.DATA, grpc_port=0, serves=(QUERY, VENUES, CONTROLS)
)
#: What a deadline may gain on the wire: the grpc-timeout header rounds up to whole units.
WIRE_SLACK_S = 0.005
#: A GetOrder request that satisfies the contract.
ORDER_ID = "ORD-20260316-00000042"

Behaviour = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Message]]


@dataclass(frozen=True, slots=True)
class Seen:
    """What one handler observed when its call arrived."""

    method: str
    remaining_s: float | None
    time_remaining_s: float | None
    correlation_id: str
    trace_id: str


class ProbeApp(
    order_query_pb2_grpc.OrderQueryServiceServicer,
    venue_pb2_grpc.VenueGatewayServiceServicer,
    control_pb2_grpc.ControlPlaneServiceServicer,
):
    """An :class:`~brokermesh.mesh.server.App` whose handlers a test scripts by method name."""

    def __init__(self, **behaviours: Behaviour) -> None:
        self.behaviours = behaviours
        self.seen: list[Seen] = []
        #: Set once the first call reached a handler.
        self.arrived = asyncio.Event()
        self.started = False
        self.stopped = False

    async def start(self) -> None:
        self.started = True
        self.stopped = False

    def register(self, server: grpc.aio.Server) -> None:
        order_query_pb2_grpc.add_OrderQueryServiceServicer_to_server(self, server)
        venue_pb2_grpc.add_VenueGatewayServiceServicer_to_server(self, server)
        control_pb2_grpc.add_ControlPlaneServiceServicer_to_server(self, server)

    async def stop(self) -> None:
        self.stopped = True

    async def GetOrder(self, request: Any, context: grpc.aio.ServicerContext) -> Message:
        return await self._handle("GetOrder", request, context, order_query_pb2.GetOrderResponse())

    async def ListOrders(self, request: Any, context: grpc.aio.ServicerContext) -> Message:
        empty = order_query_pb2.ListOrdersResponse()
        return await self._handle("ListOrders", request, context, empty)

    async def SendOrder(self, request: Any, context: grpc.aio.ServicerContext) -> Message:
        return await self._handle("SendOrder", request, context, venue_pb2.SendOrderResponse())

    async def ListVenues(self, request: Any, context: grpc.aio.ServicerContext) -> Message:
        return await self._handle("ListVenues", request, context, venue_pb2.ListVenuesResponse())

    async def GetTradingControls(self, request: Any, context: grpc.aio.ServicerContext) -> Message:
        empty = control_pb2.GetTradingControlsResponse()
        return await self._handle("GetTradingControls", request, context, empty)

    async def ListControlChanges(self, request: Any, context: grpc.aio.ServicerContext) -> Message:
        empty = control_pb2.ListControlChangesResponse()
        return await self._handle("ListControlChanges", request, context, empty)

    async def _handle(
        self, method: str, request: Any, context: grpc.aio.ServicerContext, empty: Message
    ) -> Message:
        self.seen.append(
            Seen(
                method=method,
                remaining_s=deadlines.remaining_s(),
                time_remaining_s=context.time_remaining(),
                correlation_id=correlation_id_var.get(),
                trace_id=telemetry.current_trace_id(),
            )
        )
        self.arrived.set()
        behaviour = self.behaviours.get(method)
        return empty if behaviour is None else await behaviour(request, context)


@dataclass(frozen=True, slots=True)
class Served:
    """A running probe and a plain client channel to it."""

    running: mesh_server.Running
    channel: grpc.aio.Channel

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    @property
    def query(self) -> order_query_pb2_grpc.OrderQueryServiceStub:
        return order_query_pb2_grpc.OrderQueryServiceStub(self.channel)

    @property
    def venues(self) -> venue_pb2_grpc.VenueGatewayServiceStub:
        return venue_pb2_grpc.VenueGatewayServiceStub(self.channel)

    @property
    def controls(self) -> control_pb2_grpc.ControlPlaneServiceStub:
        return control_pb2_grpc.ControlPlaneServiceStub(self.channel)


@asynccontextmanager
async def serving(
    app: ProbeApp, *, manifest: ServiceManifest = MANIFEST, **settings: Any
) -> AsyncIterator[Served]:
    """Run ``app`` through :func:`brokermesh.mesh.server.start` on a free port."""
    running = await mesh_server.start(manifest, ServiceSettings(**settings), app)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield Served(running, channel)
    finally:
        await channel.close()
        await mesh_server.stop(running, app, grace_s=0.5)


def get_order() -> order_query_pb2.GetOrderRequest:
    """A GetOrder request that satisfies its contract."""
    return order_query_pb2.GetOrderRequest(order_id=ORDER_ID)


def trailers(error: grpc.aio.AioRpcError) -> dict[str, str | bytes]:
    """The trailing metadata of a failed call as a mapping."""
    return dict(error.trailing_metadata() or ())
