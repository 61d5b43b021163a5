"""Order entry: accepts an order and drives it through validation, risk, routing and the venue.

The service owns each order's stream until the order reaches a venue. It
asks OMS validation, pre-trade risk and the router at once (all idempotent;
the holds OMS and risk place are released by the refusal events recorded
here, and a route is used only once risk approved), then records every
state change so far in one statement that also claims the idempotency key
(one round trip, one fsync),
and only then hands the order to the venue gateway: an order is never at a
venue without its ROUTED event on disk. Refusals (rejected, blocked) are
events too, recorded the same way, and answered normally rather than as
errors. A repeated (account, client order id) returns the original order.

A failed hand-off rejects the order only when the order certainly did not
reach the venue. Otherwise it stays ROUTED, the answer says so, and trade
capture's reconciler asks the venue what became of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import asyncpg
import grpc
from prometheus_client import Counter

from brokermesh.common.v1.common_pb2 import (
    ACTOR_TYPE_ADVISOR,
    ACTOR_TYPE_SYSTEM,
    DECISION_RESULT_FAIL,
    Actor,
    PolicyDecision,
)
from brokermesh.domain import events as order_events
from brokermesh.domain import eventstore, states
from brokermesh.domain.exposure import ACCOUNT_HEADER
from brokermesh.events.v1.order_events_pb2 import OrderEvent
from brokermesh.mesh.clients import ClientFactory
from brokermesh.mesh.controls import ControlsWatcher
from brokermesh.mesh.logging import annotate, order_id_var
from brokermesh.mesh.telemetry import PREVENUE_SEGMENT_SECONDS, current_trace_id
from brokermesh.services.order_entry.ids import OrderIds, format_order_id
from brokermesh.trading.v1 import (
    order_entry_pb2,
    order_entry_pb2_grpc,
    risk_pb2,
    risk_pb2_grpc,
    routing_pb2,
    routing_pb2_grpc,
    validation_pb2,
    validation_pb2_grpc,
    venue_pb2,
    venue_pb2_grpc,
)
from brokermesh.trading.v1.order_pb2 import Order
from brokermesh.trading.v1.order_query_pb2 import OrderView

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

PLATFORM = Actor(type=ACTOR_TYPE_SYSTEM, id="order-entry")

#: Business counters: where submissions end up, and which policies stop orders.
ORDERS_BY_STATE = Counter(
    "brokermesh_orders", "Submissions by the state order entry left them in.", ["state"]
)
RISK_BLOCKS = Counter(
    "brokermesh_risk_blocks", "Orders blocked by pre-trade risk, by failing policy.", ["policy"]
)
VALIDATION_REJECTS = Counter(
    "brokermesh_validation_rejects",
    "Orders rejected by OMS validation, by failing check.",
    ["policy"],
)

_SEGMENTS = {
    name: PREVENUE_SEGMENT_SECONDS.labels(name)
    for name in ("oms_validation", "pre_trade_risk", "routing", "venue_handoff")
}

#: Hand-off failures after which the order certainly is not at the venue: the
#: venue gateway could not be reached, or it refused the order before sending
#: it (halted, unknown venue, session not logged on, an unsendable order).
_NOT_SENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.INVALID_ARGUMENT,
    }
)

_FIND_REQUEST = """
SELECT order_id FROM order_requests WHERE account_id = $1 AND client_order_id = $2
"""


class OrderEntry(order_entry_pb2_grpc.OrderEntryServiceServicer):
    """The OrderEntryService servicer."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        clients: ClientFactory,
        controls: ControlsWatcher,
        *,
        recent_requests: int,
    ) -> None:
        self._pool = pool
        self._ids = OrderIds(pool)
        self._controls = controls
        self._oms = clients.stub("oms", validation_pb2_grpc.OrderValidationServiceStub)
        self._risk = clients.stub("risk", risk_pb2_grpc.PreTradeRiskServiceStub)
        self._router = clients.stub("router", routing_pb2_grpc.SmartOrderRouterServiceStub)
        self._venues = clients.stub("venue-gateway", venue_pb2_grpc.VenueGatewayServiceStub)
        self._recent: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._recent_limit = recent_requests

    async def SubmitOrder(
        self, request: order_entry_pb2.SubmitOrderRequest, context: grpc.aio.ServicerContext
    ) -> order_entry_pb2.SubmitOrderResponse:
        key = (request.account_id, request.client_order_id)
        known = self._recent.get(key)
        if known is not None:
            return await self._duplicate(known)

        order = await self._accept(request)
        order_id_var.set(order.order_id)
        trail = _Trail(order, Actor(type=ACTOR_TYPE_ADVISOR, id=request.advisor_id))
        trail.add(states.NEW)

        venue = await self._decide(trail)
        try:
            await self._record(trail)
        except _Duplicate as duplicate:
            self._remember(key, duplicate.order_id)
            return await self._duplicate(duplicate.order_id)
        self._remember(key, order.order_id)

        if venue:
            await self._hand_to_venue(trail, venue)
        ORDERS_BY_STATE.labels(states.name(trail.state)).inc()
        annotate(state=states.name(trail.state))
        return trail.response()

    async def _accept(self, request: order_entry_pb2.SubmitOrderRequest) -> Order:
        now = datetime.now(UTC)
        order = Order(
            order_id=format_order_id(now.date(), await self._ids.next_number()),
            client_order_id=request.client_order_id,
            account_id=request.account_id,
            advisor_id=request.advisor_id,
            symbol=request.symbol,
            side=request.side,
            quantity=request.quantity,
            order_type=request.order_type,
            limit_price=request.limit_price,
            time_in_force=request.time_in_force,
            trace_id=current_trace_id(),
        )
        order.accepted_at.FromDatetime(now)
        return order

    async def _decide(self, trail: _Trail) -> str:
        """Run the controls in order; return the chosen venue, or "" once refused."""
        if self._controls.halted:
            reason = self._controls.current.reason or "no reason given"
            trail.add(
                states.REJECTED,
                actor=PLATFORM,
                reason=f"trading is halted by the control plane: {reason}",
            )
            return ""

        # Validation, risk and routing run at once. Routing is side-effect free,
        # so its answer is simply unused when the order is refused; a hold OMS or
        # risk places for an order the other refuses is released by the REJECTED
        # or BLOCKED event recorded below. The verdicts are still applied (and
        # recorded) in the lifecycle's order: risk's counts only once validation
        # passed, the route only once risk approved. OMS and risk keep an
        # account's holds in one replica's memory, so their calls name the
        # account for the mesh to route on.
        account = ((ACCOUNT_HEADER, trail.order.account_id),)
        calls = (
            asyncio.ensure_future(
                _timed(
                    "oms_validation",
                    self._oms.ValidateOrder(
                        validation_pb2.ValidateOrderRequest(order=trail.order), metadata=account
                    ),
                )
            ),
            asyncio.ensure_future(
                _timed(
                    "pre_trade_risk",
                    self._risk.EvaluateOrder(
                        risk_pb2.EvaluateOrderRequest(order=trail.order), metadata=account
                    ),
                )
            ),
            asyncio.ensure_future(self._route(trail.order)),
        )
        try:
            validation, risk, route = await asyncio.gather(*calls)
        except BaseException:
            # One call failed (or we were cancelled): nobody awaits the others any more.
            for call in calls:
                call.cancel()
            raise

        if not validation.passed:
            _count_failures(VALIDATION_REJECTS, validation.decisions)
            trail.add(
                states.REJECTED,
                decisions=validation.decisions,
                actor=PLATFORM,
                reason=_failures(validation.decisions),
            )
            return ""
        trail.add(states.VALIDATED, decisions=validation.decisions, actor=PLATFORM)

        if not risk.approved:
            _count_failures(RISK_BLOCKS, risk.decisions)
            trail.add(
                states.BLOCKED,
                decisions=risk.decisions,
                actor=PLATFORM,
                reason=_failures(risk.decisions),
            )
            return ""
        trail.add(states.RISK_APPROVED, decisions=risk.decisions, actor=PLATFORM)

        if isinstance(route, grpc.aio.AioRpcError):
            if route.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise route
            trail.add(states.REJECTED, actor=PLATFORM, reason=f"not routable: {route.details()}")
            return ""
        trail.add(states.ROUTED, actor=PLATFORM, venue=route.venue, reason=route.reason)
        return route.venue

    async def _route(self, order: Order) -> routing_pb2.RouteOrderResponse | grpc.aio.AioRpcError:
        """The router's answer, or its error: either is acted on only once risk approved."""
        started = time.perf_counter()
        try:
            return await self._router.RouteOrder(routing_pb2.RouteOrderRequest(order=order))
        except grpc.aio.AioRpcError as exc:
            return exc
        finally:
            _SEGMENTS["routing"].observe(time.perf_counter() - started)

    async def _record(self, trail: _Trail) -> None:
        order = trail.order
        head = await eventstore.open_stream(
            self._pool,
            trail.pending,
            account_id=order.account_id,
            client_order_id=order.client_order_id,
        )
        if head is None:
            raise _Duplicate(
                await self._pool.fetchval(_FIND_REQUEST, order.account_id, order.client_order_id)
            )
        trail.head = head
        trail.pending.clear()

    async def _hand_to_venue(self, trail: _Trail, venue: str) -> None:
        started = time.perf_counter()
        try:
            await self._venues.SendOrder(venue_pb2.SendOrderRequest(order=trail.order, venue=venue))
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _NOT_SENT:
                _LOGGER.warning("venue hand-off refused: %s", exc.details())
                reason = f"venue {venue} did not get the order: {exc.code().name}: {exc.details()}"
                await self._reject_after_routing(trail, reason)
            else:
                # The venue may hold the order: rejecting it here could contradict
                # fills to come. It stays ROUTED until the venue's reports, or the
                # reconciler's question to the venue, settle it.
                _LOGGER.warning(
                    "venue hand-off outcome unknown (%s: %s); order left ROUTED",
                    exc.code().name,
                    exc.details(),
                )
        finally:
            _SEGMENTS["venue_handoff"].observe(time.perf_counter() - started)

    async def _reject_after_routing(self, trail: _Trail, reason: str) -> None:
        """Record REJECTED after ROUTED; when the stream moved on first, answer with its state."""
        trail.add(states.REJECTED, actor=PLATFORM, reason=reason)
        try:
            await self._record_more(trail)
        except (eventstore.ConcurrencyConflict, states.IllegalTransition):
            # Reports from the venue got to the stream first; they win, and the
            # answer must say where they took the order, not what was attempted.
            stored = await eventstore.read_stream(self._pool, trail.order.order_id)
            trail.adopt(order_events.fold(record.event() for record in stored), stored)
            _LOGGER.warning(
                "order %s was %s before the rejection could be recorded",
                trail.order.order_id,
                states.name(trail.state),
            )

    async def _record_more(self, trail: _Trail) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            trail.head = await eventstore.append(conn, trail.head, trail.pending)
        trail.pending.clear()

    async def _duplicate(self, order_id: str) -> order_entry_pb2.SubmitOrderResponse:
        stored = await eventstore.read_stream(self._pool, order_id)
        view = order_events.fold(record.event() for record in stored)
        return order_entry_pb2.SubmitOrderResponse(
            order_id=order_id,
            status=view.state,
            accepted_at=view.order.accepted_at,
            trace_id=view.order.trace_id,
            risk_decisions=view.policy_decisions,
            duplicate=True,
        )

    def _remember(self, key: tuple[str, str], order_id: str) -> None:
        self._recent[key] = order_id
        if len(self._recent) > self._recent_limit:
            self._recent.popitem(last=False)


class _Duplicate(Exception):
    def __init__(self, order_id: str) -> None:
        super().__init__(order_id)
        self.order_id = order_id


class _Trail:
    """The events of one submission, built up step by step before they are recorded."""

    def __init__(self, order: Order, advisor: Actor) -> None:
        self.order = order
        self.advisor = advisor
        self.head = eventstore.StreamHead()
        self.pending: list[OrderEvent] = []
        self.state: int = states.UNSPECIFIED
        self.decisions: list[PolicyDecision] = []

    def add(
        self,
        state: int,
        *,
        decisions: Sequence[PolicyDecision] = (),
        actor: Actor | None = None,
        reason: str = "",
        venue: str = "",
    ) -> None:
        states.check(self.order.order_id, self.state, state)
        event = order_events.new_event(
            self.order,
            state,
            version=self.head.version + len(self.pending) + 1,
            actor=actor or self.advisor,
            decisions=decisions,
        )
        detail = getattr(event, order_events.detail_field(state))
        detail.SetInParent()
        if state == states.NEW:
            event.accepted.client_order_id = self.order.client_order_id
            event.accepted.advisor_id = self.order.advisor_id
            event.accepted.time_in_force = self.order.time_in_force
        elif state == states.ROUTED:
            event.routed.venue, event.routed.reason = venue, reason
        elif reason:
            detail.reason = reason
        self.pending.append(event)
        self.decisions.extend(decisions)
        self.state = state

    def adopt(self, view: OrderView, stored: Sequence[eventstore.StoredEvent]) -> None:
        """Drop what is pending and take the recorded stream as the truth."""
        self.pending.clear()
        self.head = eventstore.head_of(stored)
        self.state = view.state

    def response(self) -> order_entry_pb2.SubmitOrderResponse:
        return order_entry_pb2.SubmitOrderResponse(
            order_id=self.order.order_id,
            status=self.state,  # type: ignore[arg-type]
            accepted_at=self.order.accepted_at,
            trace_id=self.order.trace_id,
            risk_decisions=self.decisions,
        )


def _failures(decisions: Sequence[PolicyDecision]) -> str:
    failed = [d for d in decisions if d.result == DECISION_RESULT_FAIL]
    return "; ".join(f"{d.policy}: {d.reason}" for d in failed) or "refused"


def _count_failures(counter: Counter, decisions: Sequence[PolicyDecision]) -> None:
    for decision in decisions:
        if decision.result == DECISION_RESULT_FAIL:
            counter.labels(decision.policy).inc()


async def _timed(segment: str, call: Awaitable[T]) -> T:
    """Await ``call``, observing its duration in the pre-venue segment histogram."""
    started = time.perf_counter()
    try:
        return await call
    finally:
        _SEGMENTS[segment].observe(time.perf_counter() - started)
