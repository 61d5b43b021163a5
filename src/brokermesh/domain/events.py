"""Order events: building them from the order, and folding them into the order view.

The fold in :func:`apply` is the one definition of what an event means for
the read model; the ledger's live projection, ``brokermesh replay`` and
trade capture all use it, so they cannot disagree.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal

from brokermesh.common.v1.common_pb2 import Actor, PolicyDecision
from brokermesh.domain import states
from brokermesh.events.v1.order_events_pb2 import OrderEvent
from brokermesh.trading.v1.order_pb2 import Order
from brokermesh.trading.v1.order_query_pb2 import OrderView

#: Schema version of the event payloads this code writes.
EVENT_VERSION = "1.0"

#: Event type written for each target state, and the detail field it fills.
EVENT_TYPES: dict[int, tuple[str, str]] = {
    states.NEW: ("OrderAccepted", "accepted"),
    states.VALIDATED: ("OrderValidated", "validated"),
    states.REJECTED: ("OrderRejected", "rejected"),
    states.RISK_APPROVED: ("OrderRiskApproved", "risk_approved"),
    states.BLOCKED: ("OrderBlocked", "blocked"),
    states.ROUTED: ("OrderRouted", "routed"),
    states.PARTIALLY_FILLED: ("OrderPartiallyFilled", "filled"),
    states.FILLED: ("OrderFilled", "filled"),
    states.CANCELLED: ("OrderCancelled", "cancelled"),
}


def new_event(
    order: Order,
    state: int,
    *,
    version: int,
    actor: Actor,
    decisions: Sequence[PolicyDecision] = (),
    at: datetime | None = None,
) -> OrderEvent:
    """An event moving ``order`` to ``state``, envelope filled; the caller sets the detail."""
    event_type, _ = EVENT_TYPES[state]
    event = OrderEvent(
        event_type=event_type,
        event_version=EVENT_VERSION,
        event_id=str(uuid.uuid4()),
        trace_id=order.trace_id,
        order_id=order.order_id,
        account_id=order.account_id,
        symbol=order.symbol,
        side=order.side,
        quantity=order.quantity,
        order_type=order.order_type,
        limit_price=order.limit_price,
        policy_decisions=decisions,
        actor=actor,
        stream_version=version,
        state=state,  # type: ignore[arg-type]
    )
    event.timestamp_utc.FromDatetime(at or datetime.now(UTC))
    return event


def detail_field(state: int) -> str:
    """Name of the ``detail`` oneof member an event into ``state`` carries."""
    return EVENT_TYPES[state][1]


def apply(view: OrderView, event: OrderEvent) -> None:
    """Fold ``event`` into ``view`` in place, refusing a move the table forbids."""
    states.check(event.order_id, view.state, event.state)
    if event.state == states.NEW:
        _accept(view, event)

    view.state = event.state
    view.stream_version = event.stream_version
    view.policy_decisions.extend(event.policy_decisions)
    view.history.add(
        state=event.state,
        event_type=event.event_type,
        at=event.timestamp_utc,
        reason=_reason(event),
    )

    detail = event.WhichOneof("detail")
    if detail == "routed":
        view.venue = event.routed.venue
    elif detail == "filled":
        view.fills.append(event.filled.fill)
        view.cumulative_quantity = event.filled.cumulative_quantity
        view.leaves_quantity = event.filled.leaves_quantity
        view.average_price = event.filled.average_price
    elif detail in ("rejected", "blocked", "cancelled"):
        view.leaves_quantity = 0


def fold(events: Iterable[OrderEvent]) -> OrderView:
    """The view of an order built from its whole stream."""
    view = OrderView()
    for event in events:
        apply(view, event)
    return view


def average_price(fills: Iterable[tuple[int, Decimal]]) -> Decimal:
    """Volume-weighted average of (quantity, price) fills, to six decimal places."""
    quantity = Decimal(0)
    notional = Decimal(0)
    for filled, price in fills:
        quantity += filled
        notional += filled * price
    if not quantity:
        return Decimal(0)
    return (notional / quantity).quantize(Decimal("0.000001"))


def _accept(view: OrderView, event: OrderEvent) -> None:
    order = view.order
    order.order_id = event.order_id
    order.client_order_id = event.accepted.client_order_id
    order.account_id = event.account_id
    order.advisor_id = event.accepted.advisor_id
    order.symbol = event.symbol
    order.side = event.side
    order.quantity = event.quantity
    order.order_type = event.order_type
    order.limit_price = event.limit_price
    order.time_in_force = event.accepted.time_in_force
    order.accepted_at.CopyFrom(event.timestamp_utc)
    order.trace_id = event.trace_id
    view.leaves_quantity = event.quantity


def _reason(event: OrderEvent) -> str:
    detail = event.WhichOneof("detail")
    if detail == "rejected":
        return event.rejected.reason
    if detail == "blocked":
        return event.blocked.reason
    if detail == "routed":
        return event.routed.reason
    if detail == "cancelled":
        return event.cancelled.reason
    return ""
