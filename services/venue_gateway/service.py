"""Venue gateway: NewOrderSingles out over FIX, execution reports in to trade capture.

Execution reports arrive on the FIX engine's threads and are queued, in
arrival order, for one worker that forwards each to trade capture and
retries until it is recorded; trade capture ignores a report it has seen,
so a retry after an ambiguous failure is safe.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from decimal import Decimal

import grpc

from brokermesh.common.v1.common_pb2 import (
    ORDER_TYPE_LIMIT,
    SIDE_BUY,
    TIME_IN_FORCE_DAY,
    TIME_IN_FORCE_GTC,
)
from brokermesh.mesh.controls import ControlsWatcher
from brokermesh.mesh.errors import FailedPrecondition, Unavailable
from brokermesh.mesh.fix.engine import FixInitiator, FixNotLoggedOnError
from brokermesh.mesh.fix.messages import (
    ExecType,
    Execution,
    NewOrder,
    OrderType,
    Side,
    TimeInForce,
    new_order_single,
)
from brokermesh.trading.v1 import (
    trade_capture_pb2,
    trade_capture_pb2_grpc,
    venue_pb2,
    venue_pb2_grpc,
)
from brokermesh.trading.v1.order_pb2 import Fill, Order
from brokermesh.trading.v1.trade_capture_pb2 import ExecutionKind

_LOGGER = logging.getLogger(__name__)

_KINDS = {
    ExecType.NEW: ExecutionKind.EXECUTION_KIND_ACKNOWLEDGED,
    ExecType.PARTIAL_FILL: ExecutionKind.EXECUTION_KIND_FILL,
    ExecType.FILL: ExecutionKind.EXECUTION_KIND_FILL,
    ExecType.REJECTED: ExecutionKind.EXECUTION_KIND_REJECTED,
    ExecType.CANCELED: ExecutionKind.EXECUTION_KIND_CANCELLED,
}

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


def to_record_request(venue: str, execution: Execution) -> trade_capture_pb2.RecordExecutionRequest:
    """What trade capture needs to know of one execution report."""
    request = trade_capture_pb2.RecordExecutionRequest(
        order_id=execution.cl_ord_id,
        kind=_KINDS[execution.exec_type],
        cumulative_quantity=execution.cum_qty,
        leaves_quantity=execution.leaves_qty,
        venue=venue,
        venue_order_id=execution.venue_order_id,
        text=execution.text,
        exec_id=f"{venue}:{execution.exec_id}",
    )
    if execution.exec_type.is_trade:
        request.fill.CopyFrom(
            Fill(
                exec_id=execution.exec_id,
                venue=venue,
                quantity=execution.last_qty,
                price=str(execution.last_price),
            )
        )
        request.fill.executed_at.FromDatetime(execution.transact_time)
    return request


class VenueGateway(venue_pb2_grpc.VenueGatewayServiceServicer):
    """The VenueGatewayService servicer, over one FIX initiator holding every venue session."""

    def __init__(
        self,
        venues: dict[str, str],
        controls: ControlsWatcher,
        trade_capture: trade_capture_pb2_grpc.TradeCaptureServiceStub,
    ) -> None:
        # venue code (the session's TargetCompID) -> venue service name
        self._venues = venues
        self._controls = controls
        self._trade_capture = trade_capture
        self._reports: asyncio.Queue[trade_capture_pb2.RecordExecutionRequest] = asyncio.Queue()
        self.initiator: FixInitiator | None = None

    def on_execution(self, venue: str, execution: Execution) -> None:
        """Called on the event loop for every execution report."""
        if execution.exec_type == ExecType.NEW:
            return  # the ROUTED event already says the venue has it
        self._reports.put_nowait(to_record_request(venue, execution))

    async def SendOrder(
        self, request: venue_pb2.SendOrderRequest, context: grpc.aio.ServicerContext
    ) -> venue_pb2.SendOrderResponse:
        # Defence in depth: order entry checks the kill switch too.
        if self._controls.halted:
            raise FailedPrecondition("trading is halted by the control plane", code="HALTED")
        if request.venue not in self._venues or self.initiator is None:
            raise FailedPrecondition(f"unknown venue {request.venue}", field="venue")
        try:
            await self.initiator.send(request.venue, new_order_single(to_new_order(request.order)))
        except FixNotLoggedOnError as exc:
            raise Unavailable(f"venue {request.venue} is not logged on") from exc
        response = venue_pb2.SendOrderResponse()
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

    async def forward_reports(self) -> None:
        """Forever: hand each queued report to trade capture, in order, until recorded."""
        while True:
            report = await self._reports.get()
            delay_s = 0.05
            while True:
                try:
                    await self._trade_capture.RecordExecution(report, timeout=5.0)
                    break
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in (
                        grpc.StatusCode.INVALID_ARGUMENT,
                        grpc.StatusCode.NOT_FOUND,
                        grpc.StatusCode.FAILED_PRECONDITION,
                    ):
                        _LOGGER.error(
                            "trade capture refused report %s: %s", report.exec_id, exc.details()
                        )
                        break
                    _LOGGER.warning("trade capture unavailable (%s); retrying", exc.code().name)
                    await asyncio.sleep(delay_s)
                    delay_s = min(delay_s * 2, 2.0)
