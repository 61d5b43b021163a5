"""Trade capture: records venues' execution reports as events on the order's stream.

A report is recorded once: its exec_id goes into ``executions`` in the same
transaction as the event, so a venue's resend (or the gateway's retry) is
acknowledged without a second fill. Fills carry the order's running
cumulative quantity and volume-weighted average price, computed from the
stream itself rather than trusted from the venue.
"""

from __future__ import annotations

import logging
from decimal import Decimal

import asyncpg
import grpc
from prometheus_client import Counter

from brokermesh.common.v1.common_pb2 import ACTOR_TYPE_VENUE, Actor
from brokermesh.domain import events as order_events
from brokermesh.domain import eventstore, states
from brokermesh.events.v1.order_events_pb2 import OrderEvent
from brokermesh.mesh.errors import NotFound
from brokermesh.trading.v1 import trade_capture_pb2, trade_capture_pb2_grpc
from brokermesh.trading.v1.order_query_pb2 import OrderView
from brokermesh.trading.v1.trade_capture_pb2 import ExecutionKind

_LOGGER = logging.getLogger(__name__)

#: Business counters: executions recorded, and the states they moved orders to.
FILLS = Counter("brokermesh_fills", "Fills recorded, by venue.", ["venue"])
FILLED_SHARES = Counter("brokermesh_filled_shares", "Shares filled, by venue.", ["venue"])
ORDER_STATE_CHANGES = Counter(
    "brokermesh_order_state_changes", "Post-routing state changes recorded, by state.", ["state"]
)

#: Attempts when another writer appends to the same order concurrently.
_ATTEMPTS = 5


class TradeCapture(trade_capture_pb2_grpc.TradeCaptureServiceServicer):
    """The TradeCaptureService servicer."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def RecordExecution(
        self,
        request: trade_capture_pb2.RecordExecutionRequest,
        context: grpc.aio.ServicerContext,
    ) -> trade_capture_pb2.RecordExecutionResponse:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return await self._record(request)
            except eventstore.ConcurrencyConflict:
                if attempt == _ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    async def _record(
        self, request: trade_capture_pb2.RecordExecutionRequest
    ) -> trade_capture_pb2.RecordExecutionResponse:
        async with self._pool.acquire() as conn, conn.transaction():
            fresh = await conn.fetchval(
                "INSERT INTO executions (exec_id, order_id) VALUES ($1, $2) "
                "ON CONFLICT DO NOTHING RETURNING true",
                request.exec_id,
                request.order_id,
            )
            stored = await eventstore.read_stream(conn, request.order_id)
            if not stored:
                raise NotFound(f"no order {request.order_id}", field="order_id")
            view = order_events.fold(record.event() for record in stored)
            if not fresh or request.kind == ExecutionKind.EXECUTION_KIND_ACKNOWLEDGED:
                return trade_capture_pb2.RecordExecutionResponse(state=view.state, recorded=False)

            event = _event_for(view, request)
            await eventstore.append(conn, eventstore.head_of(stored), [event])
        ORDER_STATE_CHANGES.labels(states.name(event.state)).inc()
        if request.kind == ExecutionKind.EXECUTION_KIND_FILL:
            FILLS.labels(request.venue).inc()
            FILLED_SHARES.labels(request.venue).inc(request.fill.quantity)
        _LOGGER.info(
            "order %s %s",
            request.order_id,
            event.event_type,
            extra={"order_id": request.order_id, "exec_id": request.exec_id},
        )
        return trade_capture_pb2.RecordExecutionResponse(state=event.state, recorded=True)


def _event_for(view: OrderView, request: trade_capture_pb2.RecordExecutionRequest) -> OrderEvent:
    actor = Actor(type=ACTOR_TYPE_VENUE, id=request.venue)
    version = view.stream_version + 1

    if request.kind == ExecutionKind.EXECUTION_KIND_FILL:
        cumulative = view.cumulative_quantity + request.fill.quantity
        target = states.FILLED if cumulative >= view.order.quantity else states.PARTIALLY_FILLED
        states.check(view.order.order_id, view.state, target)
        event = order_events.new_event(view.order, target, version=version, actor=actor)
        fills = [(f.quantity, Decimal(f.price)) for f in (*view.fills, request.fill)]
        event.filled.fill.CopyFrom(request.fill)
        event.filled.cumulative_quantity = cumulative
        event.filled.leaves_quantity = max(0, view.order.quantity - cumulative)
        event.filled.average_price = str(order_events.average_price(fills))
        return event

    if request.kind == ExecutionKind.EXECUTION_KIND_REJECTED:
        states.check(view.order.order_id, view.state, states.REJECTED)
        event = order_events.new_event(view.order, states.REJECTED, version=version, actor=actor)
        event.rejected.reason = f"venue {request.venue} rejected: {request.text or 'no reason'}"
        return event

    states.check(view.order.order_id, view.state, states.CANCELLED)
    event = order_events.new_event(view.order, states.CANCELLED, version=version, actor=actor)
    event.cancelled.reason = f"venue {request.venue} cancelled: {request.text or 'no reason'}"
    event.cancelled.cancelled_quantity = view.leaves_quantity
    return event
