"""Builders for the trade capture tests: routed orders in the event store, and venue reports."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import asyncpg

from brokermesh.common.v1.common_pb2 import (
    ACTOR_TYPE_SYSTEM,
    ORDER_TYPE_LIMIT,
    SIDE_BUY,
    TIME_IN_FORCE_DAY,
    Actor,
)
from brokermesh.domain import events, eventstore, states
from brokermesh.trading.v1 import trade_capture_pb2
from brokermesh.trading.v1.order_pb2 import Fill, Order
from brokermesh.trading.v1.order_query_pb2 import OrderView
from brokermesh.trading.v1.trade_capture_pb2 import ExecutionKind, VenueOrderStatus

PLATFORM = Actor(type=ACTOR_TYPE_SYSTEM, id="order-entry")
TO_ROUTED = (states.NEW, states.VALIDATED, states.RISK_APPROVED, states.ROUTED)


def new_order(*, quantity: int = 100, limit_price: str = "189.50") -> Order:
    """A limit buy with a fresh order id."""
    order = Order(
        order_id=f"ORD-20260316-{secrets.randbelow(10**8):08d}",
        client_order_id=f"C-{secrets.token_hex(6)}",
        account_id="ACC-987654",
        advisor_id="ADV-1207",
        symbol="AAPL",
        side=SIDE_BUY,
        quantity=quantity,
        order_type=ORDER_TYPE_LIMIT,
        limit_price=limit_price,
        time_in_force=TIME_IN_FORCE_DAY,
        trace_id=secrets.token_hex(16),
    )
    order.accepted_at.GetCurrentTime()
    return order


async def record_routed(
    conn: asyncpg.Connection, order: Order, *, venue: str = "XNAS", path: Sequence[int] = TO_ROUTED
) -> None:
    """Record ``order``'s stream up to ROUTED (to ``venue``) as order entry does before hand-off."""
    built = []
    for version, state in enumerate(path, start=1):
        event = events.new_event(order, state, version=version, actor=PLATFORM)
        detail = getattr(event, events.detail_field(state))
        detail.SetInParent()
        if state == states.NEW:
            event.accepted.client_order_id = order.client_order_id
            event.accepted.advisor_id = order.advisor_id
            event.accepted.time_in_force = order.time_in_force
        elif state == states.ROUTED:
            event.routed.venue, event.routed.reason = venue, "best price"
        elif state == states.REJECTED:
            event.rejected.reason = f"venue {venue} did not get the order"
        built.append(event)
    await eventstore.open_stream(
        conn, built, account_id=order.account_id, client_order_id=order.client_order_id
    )


async def view_of(conn: asyncpg.Connection, order_id: str) -> OrderView:
    """The order as its stream folds."""
    stored = await eventstore.read_stream(conn, order_id)
    return events.fold(record.event() for record in stored)


def report(
    order: Order,
    kind: int,
    exec_id: str,
    *,
    venue: str = "XNAS",
    cumulative: int = 0,
    leaves: int | None = None,
    status: int = VenueOrderStatus.VENUE_ORDER_STATUS_NEW,
    average_price: str = "0.000000",
    text: str = "",
) -> trade_capture_pb2.RecordExecutionRequest:
    """A report as the venue gateway forwards it, without a fill."""
    return trade_capture_pb2.RecordExecutionRequest(
        order_id=order.order_id,
        kind=kind,  # type: ignore[arg-type]
        cumulative_quantity=cumulative,
        leaves_quantity=order.quantity - cumulative if leaves is None else leaves,
        venue=venue,
        venue_order_id=f"{venue}-O1",
        text=text,
        exec_id=f"{venue}:{exec_id}",
        venue_status=status,  # type: ignore[arg-type]
        average_price=average_price,
    )


def fill(
    order: Order,
    exec_id: str,
    quantity: int,
    price: str,
    *,
    cumulative: int,
    average_price: str | None = None,
    venue: str = "XNAS",
) -> trade_capture_pb2.RecordExecutionRequest:
    """A fill report: ``quantity`` at ``price``, the venue's cumulative quantity after it."""
    done = cumulative >= order.quantity
    request = report(
        order,
        ExecutionKind.EXECUTION_KIND_FILL,
        exec_id,
        venue=venue,
        cumulative=cumulative,
        leaves=max(0, order.quantity - cumulative),
        status=(
            VenueOrderStatus.VENUE_ORDER_STATUS_FILLED
            if done
            else VenueOrderStatus.VENUE_ORDER_STATUS_PARTIALLY_FILLED
        ),
        average_price=average_price or price,
    )
    request.fill.CopyFrom(Fill(exec_id=exec_id, venue=venue, quantity=quantity, price=price))
    request.fill.executed_at.GetCurrentTime()
    return request
