"""Trade capture: records venues' execution reports on the order's stream, or as breaks.

A report is recorded once: its exec_id goes into ``executions`` in the same transaction as
whatever it causes, so a venue's resend (or the gateway's retry) is acknowledged without a
second fill. Fills carry the order's running cumulative quantity and volume-weighted average
price, computed from the stream itself; the venue's own CumQty is checked against them.

A report the order cannot take (an over-fill, news after a final state, a report about an
order the platform does not know, a venue quantity that disagrees with the stream) is never
dropped and never holds up the reports after it: it becomes an execution break, an
append-only row for the operations desk, logged at ERROR and counted, and the report is
acknowledged. Every report that shows the venue holds an order (an acknowledgement, a fill,
a status answer) is noted in ``venue_acknowledgements``, where the reconciler looks.

An answer to a status request (ORDER_STATUS) brings the order to the venue's state: a
rejection of an unknown order rejects it, fills the platform never received are recorded
from the venue's cumulative quantity and average price, and a cancellation cancels it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import asyncpg
import grpc
from prometheus_client import Counter

from brokermesh.common.v1.common_pb2 import ACTOR_TYPE_VENUE, Actor
from brokermesh.domain import events as order_events
from brokermesh.domain import eventstore, states
from brokermesh.events.v1.order_events_pb2 import OrderEvent
from brokermesh.mesh.errors import Unavailable
from brokermesh.mesh.logging import annotate, order_id_var
from brokermesh.trading.v1 import trade_capture_pb2, trade_capture_pb2_grpc
from brokermesh.trading.v1.order_pb2 import Fill
from brokermesh.trading.v1.order_query_pb2 import OrderView
from brokermesh.trading.v1.trade_capture_pb2 import ExecutionKind, VenueOrderStatus

_LOGGER = logging.getLogger(__name__)

#: Business counters: executions recorded, and the states they moved orders to.
FILLS = Counter("brokermesh_fills", "Fills recorded, by venue.", ["venue"])
FILLED_SHARES = Counter("brokermesh_filled_shares", "Shares filled, by venue.", ["venue"])
ORDER_STATE_CHANGES = Counter(
    "brokermesh_order_state_changes", "Post-routing state changes recorded, by state.", ["state"]
)
EXECUTION_BREAKS = Counter(
    "brokermesh_execution_breaks",
    "Execution reports that could not be applied to their order, by venue and kind.",
    ["venue", "kind"],
)

#: Attempts when another writer appends to the same order concurrently.
_ATTEMPTS = 5

#: Errors that mean the database cannot be reached right now, not that the report is bad:
#: the gateway retries those instead of parking the report.
_DATABASE_DOWN = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.TooManyConnectionsError,
)

_PRICE_QUANTUM = Decimal("0.000001")

_INSERT_EXECUTION = """
INSERT INTO executions (exec_id, order_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true
"""
_INSERT_ACKNOWLEDGEMENT = """
INSERT INTO venue_acknowledgements (order_id, venue, venue_order_id, exec_id)
VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING
"""
_INSERT_BREAK = """
INSERT INTO execution_breaks (exec_id, order_id, venue, kind, order_state, detail, report)
VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING
"""

_FILL = ExecutionKind.EXECUTION_KIND_FILL
_REJECTED = ExecutionKind.EXECUTION_KIND_REJECTED
_CANCELLED = ExecutionKind.EXECUTION_KIND_CANCELLED
_ACKNOWLEDGED = ExecutionKind.EXECUTION_KIND_ACKNOWLEDGED
_STATUS = ExecutionKind.EXECUTION_KIND_ORDER_STATUS
_LIVE = frozenset({states.ROUTED, states.PARTIALLY_FILLED})


@dataclass(frozen=True, slots=True)
class Break:
    """Why a report could not be applied: a kind (a column value) and a sentence."""

    kind: str
    detail: str


@dataclass(slots=True)
class Outcome:
    """What one report does: events to append, and at most one break to record."""

    events: list[OrderEvent] = field(default_factory=list)
    broken: Break | None = None


class TradeCapture(trade_capture_pb2_grpc.TradeCaptureServiceServicer):
    """The TradeCaptureService servicer."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def RecordExecution(
        self,
        request: trade_capture_pb2.RecordExecutionRequest,
        context: grpc.aio.ServicerContext,
    ) -> trade_capture_pb2.RecordExecutionResponse:
        order_id_var.set(request.order_id)
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return await self._record(request)
            except eventstore.ConcurrencyConflict:
                if attempt == _ATTEMPTS:
                    raise
            except _DATABASE_DOWN as exc:
                raise Unavailable(f"trade capture cannot reach its database: {exc}") from exc
        raise AssertionError("unreachable")

    async def _record(
        self, request: trade_capture_pb2.RecordExecutionRequest
    ) -> trade_capture_pb2.RecordExecutionResponse:
        async with self._pool.acquire() as conn, conn.transaction():
            fresh = await conn.fetchval(_INSERT_EXECUTION, request.exec_id, request.order_id)
            stored = await eventstore.read_stream(conn, request.order_id)
            view = order_events.fold(record.event() for record in stored)
            if not fresh:
                return trade_capture_pb2.RecordExecutionResponse(state=view.state)

            if not stored:
                outcome = Outcome(broken=Break("UNKNOWN_ORDER", "no such order on the platform"))
            else:
                outcome = decide(view, request)
                if _shows_venue_holds_order(request):
                    await conn.execute(
                        _INSERT_ACKNOWLEDGEMENT,
                        request.order_id,
                        request.venue,
                        request.venue_order_id,
                        request.exec_id,
                    )
            if outcome.events:
                await eventstore.append(conn, eventstore.head_of(stored), outcome.events)
            if outcome.broken is not None:
                await conn.execute(
                    _INSERT_BREAK,
                    request.exec_id,
                    request.order_id,
                    request.venue,
                    outcome.broken.kind,
                    states.name(view.state),
                    outcome.broken.detail,
                    request.SerializeToString(deterministic=True),
                )

        self._report(request, view, outcome)
        state = outcome.events[-1].state if outcome.events else view.state
        return trade_capture_pb2.RecordExecutionResponse(
            state=state, recorded=bool(outcome.events), break_recorded=outcome.broken is not None
        )

    def _report(
        self, request: trade_capture_pb2.RecordExecutionRequest, view: OrderView, outcome: Outcome
    ) -> None:
        extra = {"order_id": request.order_id, "exec_id": request.exec_id}
        annotate(exec_id=request.exec_id, events=[event.event_type for event in outcome.events])
        for event in outcome.events:
            ORDER_STATE_CHANGES.labels(states.name(event.state)).inc()
            if event.HasField("filled"):
                FILLS.labels(request.venue).inc()
                FILLED_SHARES.labels(request.venue).inc(event.filled.fill.quantity)
        if outcome.broken is not None:
            EXECUTION_BREAKS.labels(request.venue, outcome.broken.kind).inc()
            _LOGGER.error(
                "execution break %s on order %s (%s) from %s, report %s: %s",
                outcome.broken.kind,
                request.order_id,
                states.name(view.state),
                request.venue,
                request.exec_id,
                outcome.broken.detail,
                extra={**extra, "break": outcome.broken.kind},
            )


def _shows_venue_holds_order(request: trade_capture_pb2.RecordExecutionRequest) -> bool:
    if request.kind == _REJECTED:
        return False
    return not (
        request.kind == _STATUS
        and request.venue_status == VenueOrderStatus.VENUE_ORDER_STATUS_REJECTED
    )


def decide(view: OrderView, request: trade_capture_pb2.RecordExecutionRequest) -> Outcome:
    """What ``request`` does to the order ``view`` shows; pure, so every rule is testable."""
    try:
        if request.kind == _FILL:
            return _on_fill(view, request)
        if request.kind == _STATUS:
            return _on_status(view, request)
        if view.state in states.TERMINAL:
            return _after_final(view, request)
        if request.kind == _REJECTED:
            if view.state != states.ROUTED:
                return _illegal(view, "a rejection")
            return Outcome(events=[_rejected(view, request)])
        if request.kind == _CANCELLED:
            return _on_cancel(view, request)
        return Outcome()
    except states.IllegalTransition as exc:
        return Outcome(broken=Break("ILLEGAL_TRANSITION", exc.message))


def _on_fill(view: OrderView, request: trade_capture_pb2.RecordExecutionRequest) -> Outcome:
    if view.state in states.TERMINAL:
        return _after_final(view, request)
    if view.state not in _LIVE:
        return _illegal(view, "a fill")
    cumulative = view.cumulative_quantity + request.fill.quantity
    if cumulative > view.order.quantity:
        return _over_fill(view, request)
    event = fill_event(view, request.fill, _venue(request))
    return Outcome(events=[event], broken=_mismatch(request, cumulative))


def _over_fill(view: OrderView, request: trade_capture_pb2.RecordExecutionRequest) -> Outcome:
    """The order takes what it has room for; the shares beyond it are the break."""
    room = view.order.quantity - view.cumulative_quantity
    excess = request.fill.quantity - room
    detail = (
        f"venue filled {request.fill.quantity} with {room} left on the order: "
        f"{room} recorded on it, {excess} beyond it"
    )
    if room <= 0:
        return Outcome(broken=Break("OVER_FILL", detail))
    within = Fill()
    within.CopyFrom(request.fill)
    within.quantity = room
    event = fill_event(view, within, _venue(request))
    return Outcome(events=[event], broken=Break("OVER_FILL", detail))


def _on_cancel(view: OrderView, request: trade_capture_pb2.RecordExecutionRequest) -> Outcome:
    event = _cancelled(view, request)
    return Outcome(events=[event], broken=_mismatch(request, view.cumulative_quantity))


def _on_status(view: OrderView, request: trade_capture_pb2.RecordExecutionRequest) -> Outcome:
    status = request.venue_status
    if status == VenueOrderStatus.VENUE_ORDER_STATUS_REJECTED:
        if view.state == states.ROUTED:
            return Outcome(events=[_rejected(view, request)])
        if view.state == states.REJECTED:
            return Outcome()
        if view.state in states.TERMINAL:
            return _after_final(view, request)
        return _illegal(view, "a rejection")

    if view.state in states.TERMINAL:
        if _terminal_matches(view, request):
            return Outcome()
        return _after_final(view, request)
    if view.state not in _LIVE:
        return _illegal(view, "a status")

    outcome = _catch_up(view, request)
    if outcome.broken is not None or status != VenueOrderStatus.VENUE_ORDER_STATUS_CANCELLED:
        return outcome
    caught_up = _folded(view, outcome.events)
    outcome.events.append(_cancelled(caught_up, request))
    return outcome


def _catch_up(view: OrderView, request: trade_capture_pb2.RecordExecutionRequest) -> Outcome:
    """Record, as one fill, what the venue reports as filled beyond the stream."""
    filled = request.venue_status == VenueOrderStatus.VENUE_ORDER_STATUS_FILLED
    if filled and request.cumulative_quantity != view.order.quantity:
        detail = (
            f"venue reports the order filled with {request.cumulative_quantity} "
            f"of {view.order.quantity}"
        )
        return Outcome(broken=Break("QUANTITY_MISMATCH", detail))
    missing = request.cumulative_quantity - view.cumulative_quantity
    if missing == 0:
        return Outcome()
    if missing < 0 or request.cumulative_quantity > view.order.quantity:
        return Outcome(broken=_mismatch(request, view.cumulative_quantity))

    price = _missing_price(view, request, missing)
    if price is None:
        detail = (
            f"venue reports {request.cumulative_quantity} filled at an average of "
            f"{request.average_price or 'nothing'}, which the recorded fills cannot explain"
        )
        return Outcome(broken=Break("QUANTITY_MISMATCH", detail))
    fill = Fill(
        exec_id=request.exec_id.partition(":")[2] or request.exec_id,
        venue=request.venue,
        quantity=missing,
        price=format(price, "f"),
    )
    # When it became known: a status answer gives no execution time.
    fill.executed_at.GetCurrentTime()
    _LOGGER.warning(
        "order %s: %d shares the venue filled were never reported; recorded from its status",
        view.order.order_id,
        missing,
        extra={"order_id": view.order.order_id},
    )
    return Outcome(events=[fill_event(view, fill, _venue(request))])


def _missing_price(
    view: OrderView, request: trade_capture_pb2.RecordExecutionRequest, missing: int
) -> Decimal | None:
    """The price of the unreported fills that makes the venue's average price come out."""
    try:
        average = Decimal(request.average_price)
    except InvalidOperation:
        return None
    recorded = sum((f.quantity * Decimal(f.price) for f in view.fills), Decimal(0))
    price = ((average * request.cumulative_quantity - recorded) / missing).quantize(_PRICE_QUANTUM)
    return price if price > 0 else None


def _terminal_matches(view: OrderView, request: trade_capture_pb2.RecordExecutionRequest) -> bool:
    same = {
        states.FILLED: VenueOrderStatus.VENUE_ORDER_STATUS_FILLED,
        states.CANCELLED: VenueOrderStatus.VENUE_ORDER_STATUS_CANCELLED,
    }
    return (
        same.get(view.state) == request.venue_status
        and request.cumulative_quantity == view.cumulative_quantity
    )


def fill_event(view: OrderView, fill: Fill, actor: Actor) -> OrderEvent:
    """The event recording ``fill`` on the order ``view`` shows."""
    cumulative = view.cumulative_quantity + fill.quantity
    target = states.FILLED if cumulative >= view.order.quantity else states.PARTIALLY_FILLED
    states.check(view.order.order_id, view.state, target)
    event = order_events.new_event(view.order, target, version=view.stream_version + 1, actor=actor)
    fills = [(f.quantity, Decimal(f.price)) for f in (*view.fills, fill)]
    event.filled.fill.CopyFrom(fill)
    event.filled.cumulative_quantity = cumulative
    event.filled.leaves_quantity = max(0, view.order.quantity - cumulative)
    event.filled.average_price = str(order_events.average_price(fills))
    return event


def _rejected(view: OrderView, request: trade_capture_pb2.RecordExecutionRequest) -> OrderEvent:
    states.check(view.order.order_id, view.state, states.REJECTED)
    event = order_events.new_event(
        view.order, states.REJECTED, version=view.stream_version + 1, actor=_venue(request)
    )
    event.rejected.reason = f"venue {request.venue} rejected: {request.text or 'no reason'}"
    return event


def _cancelled(view: OrderView, request: trade_capture_pb2.RecordExecutionRequest) -> OrderEvent:
    states.check(view.order.order_id, view.state, states.CANCELLED)
    event = order_events.new_event(
        view.order, states.CANCELLED, version=view.stream_version + 1, actor=_venue(request)
    )
    event.cancelled.reason = f"venue {request.venue} cancelled: {request.text or 'no reason'}"
    event.cancelled.cancelled_quantity = view.leaves_quantity
    return event


def _folded(view: OrderView, events: list[OrderEvent]) -> OrderView:
    copy = OrderView()
    copy.CopyFrom(view)
    for event in events:
        order_events.apply(copy, event)
    return copy


def _mismatch(request: trade_capture_pb2.RecordExecutionRequest, recorded: int) -> Break | None:
    if request.cumulative_quantity == recorded:
        return None
    detail = f"venue reports {request.cumulative_quantity} filled, the order's stream {recorded}"
    return Break("QUANTITY_MISMATCH", detail)


def _after_final(view: OrderView, request: trade_capture_pb2.RecordExecutionRequest) -> Outcome:
    kind = ExecutionKind.Name(request.kind).removeprefix("EXECUTION_KIND_")
    status = VenueOrderStatus.Name(request.venue_status).removeprefix("VENUE_ORDER_STATUS_")
    detail = (
        f"{kind} report (venue status {status}, {request.cumulative_quantity} filled) "
        f"after the order became {states.name(view.state)}"
    )
    return Outcome(broken=Break("AFTER_FINAL_STATE", detail))


def _illegal(view: OrderView, what: str) -> Outcome:
    detail = f"{what} cannot apply to an order in state {states.name(view.state)}"
    return Outcome(broken=Break("ILLEGAL_TRANSITION", detail))


def _venue(request: trade_capture_pb2.RecordExecutionRequest) -> Actor:
    return Actor(type=ACTOR_TYPE_VENUE, id=request.venue)
