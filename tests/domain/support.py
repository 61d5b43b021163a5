"""Builders for the domain tests: one order, and the events that move it along a path."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from brokermesh.common.v1.common_pb2 import Actor, ActorType, OrderType, Side, TimeInForce
from brokermesh.domain import events, states
from brokermesh.events.v1.order_events_pb2 import OrderEvent
from brokermesh.trading.v1.order_pb2 import Fill, Order

SYSTEM = Actor(type=ActorType.ACTOR_TYPE_SYSTEM, id="oms")
ACCEPTED_AT = datetime(2026, 3, 16, 14, 30, tzinfo=UTC)
FILLED_PATH = (
    states.NEW,
    states.VALIDATED,
    states.RISK_APPROVED,
    states.ROUTED,
    states.PARTIALLY_FILLED,
    states.FILLED,
)
#: Price of each of the two 50-share fills on FILLED_PATH.
FILL_PRICES = ("189.50", "189.40")


def new_order(*, account_id: str = "ACC-DOMAIN") -> Order:
    """A 100-share limit buy with a fresh order id and client order id."""
    return Order(
        order_id=f"ORD-20260316-{secrets.randbelow(10**8):08d}",
        client_order_id=f"C-{secrets.token_hex(6)}",
        account_id=account_id,
        advisor_id="ADV-1207",
        symbol="AAPL",
        side=Side.SIDE_BUY,
        quantity=100,
        order_type=OrderType.ORDER_TYPE_LIMIT,
        limit_price="189.50",
        time_in_force=TimeInForce.TIME_IN_FORCE_DAY,
        trace_id=secrets.token_hex(16),
    )


def lifecycle(order: Order, path: Sequence[int], *, first_version: int = 1) -> list[OrderEvent]:
    """Events moving ``order`` along ``path``, a millisecond apart, details filled in."""
    built: list[OrderEvent] = []
    for offset, state in enumerate(path):
        at = ACCEPTED_AT + timedelta(milliseconds=offset)
        event = events.new_event(order, state, version=first_version + offset, actor=SYSTEM, at=at)
        _detail(event, order, state, fills=sum(e.HasField("filled") for e in built))
        built.append(event)
    return built


def _detail(event: OrderEvent, order: Order, state: int, *, fills: int) -> None:
    if state == states.NEW:
        event.accepted.client_order_id = order.client_order_id
        event.accepted.advisor_id = order.advisor_id
        event.accepted.time_in_force = order.time_in_force
    elif state == states.ROUTED:
        event.routed.venue = "SIMX"
        event.routed.reason = "best price"
    elif state == states.REJECTED:
        event.rejected.reason = "trading halted"
    elif state == states.BLOCKED:
        event.blocked.reason = "max_notional"
    elif state == states.CANCELLED:
        event.cancelled.reason = "IOC remainder"
    elif state in (states.PARTIALLY_FILLED, states.FILLED):
        _fill(event, fills)
    else:
        getattr(event, events.detail_field(state)).SetInParent()


def _fill(event: OrderEvent, earlier_fills: int) -> None:
    price = FILL_PRICES[earlier_fills]
    cumulative = 50 * (earlier_fills + 1)
    event.filled.fill.CopyFrom(
        Fill(exec_id=f"E-{earlier_fills}", venue="SIMX", quantity=50, price=price)
    )
    event.filled.cumulative_quantity = cumulative
    event.filled.leaves_quantity = 100 - cumulative
    event.filled.average_price = price if earlier_fills == 0 else "189.450000"
