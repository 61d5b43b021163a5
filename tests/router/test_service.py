"""The router process over gRPC: quotes from the real NATS, sessions from a venue gateway.

The venue gateway is a small real grpc.aio VenueGatewayService in the test process, whose
session report the test changes; the router reaches it through BROKERMESH_UPSTREAMS.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient

from brokermesh.common.v1 import common_pb2
from brokermesh.trading.v1 import (
    market_data_pb2,
    order_pb2,
    routing_pb2,
    routing_pb2_grpc,
    venue_pb2,
    venue_pb2_grpc,
)
from tests.processes import ServiceProcess, eventually, free_port

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

#: A symbol nothing else quotes, so other tests' market data cannot interfere.
SYMBOL = "RTRTEST"
QUOTE_MAX_AGE_S = 2.0
Stub = routing_pb2_grpc.SmartOrderRouterServiceStub


class VenueGateway(venue_pb2_grpc.VenueGatewayServiceServicer):
    """Reports whichever sessions the test sets; sends nothing."""

    def __init__(self) -> None:
        self.sessions = {"XNAS": True, "ARCA": True}

    async def ListVenues(
        self, request: venue_pb2.ListVenuesRequest, context: grpc.aio.ServicerContext
    ) -> venue_pb2.ListVenuesResponse:
        return venue_pb2.ListVenuesResponse(
            venues=[
                venue_pb2.VenueStatus(venue=name, logged_on=up)
                for name, up in sorted(self.sessions.items())
            ]
        )

    async def SendOrder(
        self, request: venue_pb2.SendOrderRequest, context: grpc.aio.ServicerContext
    ) -> venue_pb2.SendOrderResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the test gateway sends nothing")
        raise AssertionError("unreachable")


@dataclass
class Harness:
    stub: Stub
    gateway: VenueGateway
    nc: NatsClient

    async def quote(self, venue: str, *, bid: str, ask: str, size: int = 300) -> None:
        quote = market_data_pb2.Quote(
            venue=venue,
            symbol=SYMBOL,
            bid_price=bid,
            bid_size=size,
            ask_price=ask,
            ask_size=size,
            last_price=bid,
        )
        await self.nc.publish(f"marketdata.quotes.{venue}.{SYMBOL}", quote.SerializeToString())

    async def route(
        self,
        side: int = common_pb2.SIDE_BUY,
        limit: str = "",
    ) -> routing_pb2.RouteOrderResponse:
        order = order_pb2.Order(
            order_id="ORD-20260316-00000001",
            client_order_id="CO-1",
            account_id="ACC-987654",
            advisor_id="ADV-1207",
            symbol=SYMBOL,
            side=side,
            quantity=100,  # type: ignore[arg-type]
            order_type=common_pb2.ORDER_TYPE_LIMIT if limit else common_pb2.ORDER_TYPE_MARKET,
            limit_price=limit,
            time_in_force=common_pb2.TIME_IN_FORCE_DAY,
        )
        return await self.stub.RouteOrder(routing_pb2.RouteOrderRequest(order=order), timeout=5)


@pytest_asyncio.fixture
async def harness(nats_server: Any, tmp_path: Path) -> AsyncIterator[Harness]:
    """A venue gateway in this process and a router process pointed at it."""
    gateway = VenueGateway()
    server = grpc.aio.server()
    venue_pb2_grpc.add_VenueGatewayServiceServicer_to_server(gateway, server)
    gateway_port = server.add_insecure_port(f"127.0.0.1:{free_port()}")
    await server.start()
    nc = await nats.connect(nats_server.url)
    router = ServiceProcess(
        "brokermesh.services.router",
        tmp_path,
        {
            "BROKERMESH_NATS_URL": nats_server.url,
            "BROKERMESH_UPSTREAMS": f"venue-gateway=127.0.0.1:{gateway_port}",
            "BROKERMESH_ROUTER_QUOTE_MAX_AGE_S": str(QUOTE_MAX_AGE_S),
        },
    )
    try:
        await _start(router)
        async with grpc.aio.insecure_channel(router.address) as channel:
            yield Harness(Stub(channel), gateway, nc)
    finally:
        router.stop()
        await nc.close()
        await server.stop(None)


async def _start(router: ServiceProcess) -> None:
    # Off the event loop: the gateway above must keep answering while the router starts.
    import asyncio

    await asyncio.to_thread(router.start)


async def test_router_picks_the_venue_with_the_better_effective_price(harness: Harness) -> None:
    async def equal_asks() -> routing_pb2.RouteOrderResponse | None:
        await harness.quote("XNAS", bid="10.00", ask="10.02")
        await harness.quote("ARCA", bid="10.00", ask="10.02")
        return await _route_or_none(harness)

    async def cheaper_xnas() -> routing_pb2.RouteOrderResponse | None:
        await harness.quote("XNAS", bid="10.00", ask="10.01")
        await harness.quote("ARCA", bid="10.00", ask="10.02")
        return await _route_or_none(harness)

    by_fee = await eventually(equal_asks, _routed_to("ARCA"))
    by_price = await eventually(cheaper_xnas, _routed_to("XNAS"))

    assert by_fee is not None and by_fee.venue == "ARCA"
    assert by_fee.reason.startswith("best effective price at ARCA: ask 10.02 + fee 0.0028")
    assert by_price is not None and by_price.venue == "XNAS"
    assert [
        (c.venue, c.healthy, c.quoted_price, c.fee_per_share, c.effective_price)
        for c in by_price.candidates
    ] == [
        ("XNAS", True, "10.01", "0.0030", "10.0130"),
        ("ARCA", True, "10.02", "0.0028", "10.0228"),
    ]


async def test_router_reports_unhealthy_venues_and_refuses_when_none_is_left(
    harness: Harness,
) -> None:
    harness.gateway.sessions["XNAS"] = False

    async def xnas_cheaper_but_down() -> routing_pb2.RouteOrderResponse | None:
        await harness.quote("XNAS", bid="10.00", ask="10.01")
        await harness.quote("ARCA", bid="10.00", ask="10.02")
        return await _route_or_none(harness)

    logged_off = await eventually(xnas_cheaper_but_down, _routed_to("ARCA"))
    # No more quotes: once they are older than the limit, no venue is healthy.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await eventually(harness.route, lambda _: False, timeout_s=QUOTE_MAX_AGE_S + 3)

    assert logged_off is not None
    assert [(c.venue, c.healthy) for c in logged_off.candidates] == [
        ("ARCA", True),
        ("XNAS", False),
    ]
    assert logged_off.reason.endswith("; skipped XNAS (is not logged on)")
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.details().startswith(f"no healthy venue for {SYMBOL}: ARCA quote is ")


async def _route_or_none(harness: Harness) -> routing_pb2.RouteOrderResponse | None:
    # Until the router has the quotes and the sessions, it answers FAILED_PRECONDITION.
    try:
        return await harness.route()
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
            raise
        return None


def _routed_to(venue: str) -> Any:
    return lambda response: response is not None and response.venue == venue
