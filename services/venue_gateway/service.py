"""Venue gateway: NewOrderSingles and OrderStatusRequests out over FIX to the venues.

Execution reports travel the other way without passing through here: the FIX initiator
journals them and :mod:`brokermesh.services.venue_gateway.reports` forwards them to trade
capture. A SendOrder that fails with FAILED_PRECONDITION certainly put nothing on the wire,
so the caller may record the order as rejected; after any other failure the venue may have it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal

import grpc
import quickfix

from brokermesh.common.v1.common_pb2 import (
    ORDER_TYPE_LIMIT,
    SIDE_BUY,
    TIME_IN_FORCE_DAY,
    TIME_IN_FORCE_GTC,
)
from brokermesh.mesh.controls import ControlsWatcher
from brokermesh.mesh.errors import FailedPrecondition, InvalidArgument
from brokermesh.mesh.fix.engine import FixNotLoggedOnError, FixSessionError
from brokermesh.mesh.fix.initiator import FixInitiator
from brokermesh.mesh.fix.messages import (
    FixMessageError,
    NewOrder,
    OrderStatusQuery,
    OrderType,
    Side,
    TimeInForce,
    new_order_single,
    order_status_request,
)
from brokermesh.mesh.logging import annotate, order_id_var
from brokermesh.trading.v1 import venue_pb2, venue_pb2_grpc
from brokermesh.trading.v1.order_pb2 import Order

_LOGGER = logging.getLogger(__name__)

_TIME_IN_FORCE = {
    TIME_IN_FORCE_DAY: TimeInForce.DAY,
    TIME_IN_FORCE_GTC: TimeInForce.GTC,
}


def to_new_order(order: Order) -> NewOrder:
    """The NewOrderSingle for a platform order; ClOrdID is the platform order id."""
    limit = order.order_type == ORDER_TYPE_LIMIT
    return NewOrder(
        cl_ord_id=order.order_id,
        account=order.account_id,
        symbol=order.symbol,
        side=Side.BUY if order.side == SIDE_BUY else Side.SELL,
        quantity=order.quantity,
        order_type=OrderType.LIMIT if limit else OrderType.MARKET,
        limit_price=Decimal(order.limit_price) if limit else None,
        time_in_force=_TIME_IN_FORCE.get(order.time_in_force, TimeInForce.IOC),
        transact_time=datetime.now(UTC),
    )


class VenueGateway(venue_pb2_grpc.VenueGatewayServiceServicer):
    """The VenueGatewayService servicer, over one FIX initiator holding every venue session."""

    def __init__(self, venues: dict[str, str], controls: ControlsWatcher) -> None:
        # venue code (the session's TargetCompID) -> venue service name
        self._venues = venues
        self._controls = controls
        self.initiator: FixInitiator | None = None

    async def SendOrder(
        self, request: venue_pb2.SendOrderRequest, context: grpc.aio.ServicerContext
    ) -> venue_pb2.SendOrderResponse:
        order_id_var.set(request.order.order_id)
        annotate(venue=request.venue)
        # Defence in depth: order entry checks the kill switch too.
        if self._controls.halted:
            raise FailedPrecondition("trading is halted by the control plane", code="HALTED")
        initiator = self._initiator_for(request.venue)
        try:
            message = new_order_single(to_new_order(request.order))
        except FixMessageError as exc:
            raise InvalidArgument(f"the order cannot be sent: {exc}", field="order") from exc
        await _send(initiator, request.venue, message)
        response = venue_pb2.SendOrderResponse()
        response.sent_at.GetCurrentTime()
        return response

    async def QueryOrderStatus(
        self, request: venue_pb2.QueryOrderStatusRequest, context: grpc.aio.ServicerContext
    ) -> venue_pb2.QueryOrderStatusResponse:
        order_id_var.set(request.order_id)
        # Allowed while trading is halted: asking is not trading, and a halt is exactly
        # when the state of the orders out there matters most.
        initiator = self._initiator_for(request.venue)
        query = OrderStatusQuery(
            cl_ord_id=request.order_id,
            symbol=request.symbol,
            side=Side.BUY if request.side == SIDE_BUY else Side.SELL,
        )
        await _send(initiator, request.venue, order_status_request(query))
        annotate(venue=request.venue)
        response = venue_pb2.QueryOrderStatusResponse()
        response.sent_at.GetCurrentTime()
        return response

    async def ListVenues(
        self, request: venue_pb2.ListVenuesRequest, context: grpc.aio.ServicerContext
    ) -> venue_pb2.ListVenuesResponse:
        initiator = self.initiator
        return venue_pb2.ListVenuesResponse(
            venues=[
                venue_pb2.VenueStatus(
                    venue=venue, logged_on=bool(initiator and initiator.is_logged_on(venue))
                )
                for venue in sorted(self._venues)
            ]
        )

    def _initiator_for(self, venue: str) -> FixInitiator:
        if venue not in self._venues or self.initiator is None:
            raise FailedPrecondition(f"unknown venue {venue}", field="venue")
        return self.initiator


async def _send(initiator: FixInitiator, venue: str, message: quickfix.Message) -> None:
    """Send ``message`` to ``venue``; FAILED_PRECONDITION when it certainly was not sent."""
    try:
        await initiator.send(venue, message)
    except FixNotLoggedOnError as exc:
        raise FailedPrecondition(
            f"venue {venue} is not logged on", field="venue", code="NOT_LOGGED_ON"
        ) from exc
    except FixSessionError as exc:
        # QuickFIX refuses only before anything reaches the socket.
        raise FailedPrecondition(f"venue {venue}: {exc}", code="NOT_SENT") from exc
