"""A JetStream order stream of a test's own, and the events the tests publish on it.

OMS validation and pre-trade risk follow the order events to keep their exposure books; a
test gives its service a stream nobody else writes to, then plays an order's life on it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from brokermesh.common.v1 import common_pb2
from brokermesh.domain import events as order_events
from brokermesh.domain import states
from brokermesh.events.v1 import order_events_pb2
from brokermesh.trading.v1 import order_pb2

SYSTEM = common_pb2.Actor(type=common_pb2.ACTOR_TYPE_SYSTEM, id="orderstream-tests")


def limit_buy(order_id: str, quantity: int, account_id: str) -> order_pb2.Order:
    """A day limit buy of ``quantity`` AAPL at 189.50, AAPL's reference price."""
    return order_pb2.Order(
        order_id=order_id,
        client_order_id=f"CO-{order_id}",
        account_id=account_id,
        advisor_id="ADV-1207",
        symbol="AAPL",
        side=common_pb2.SIDE_BUY,
        quantity=quantity,
        order_type=common_pb2.ORDER_TYPE_LIMIT,
        limit_price="189.50",
        time_in_force=common_pb2.TIME_IN_FORCE_DAY,
    )


def lifecycle(order: order_pb2.Order, *steps: int) -> list[order_events_pb2.OrderEvent]:
    """The order's events moving it through ``steps``, versions from 1, details filled."""
    built = []
    for version, state in enumerate(steps, start=1):
        event = order_events.new_event(order, state, version=version, actor=SYSTEM)
        getattr(event, order_events.detail_field(state)).SetInParent()
        built.append(event)
    return built


def fill(
    order: order_pb2.Order, version: int, quantity: int, price: str, cumulative: int
) -> order_events_pb2.OrderEvent:
    """A fill of ``quantity`` at ``price``; FILLED once ``cumulative`` is the whole order."""
    state = states.FILLED if cumulative == order.quantity else states.PARTIALLY_FILLED
    event = order_events.new_event(order, state, version=version, actor=SYSTEM)
    event.filled.fill.exec_id = f"E-{uuid.uuid4().hex[:8]}"
    event.filled.fill.quantity = quantity
    event.filled.fill.price = price
    event.filled.cumulative_quantity = cumulative
    event.filled.leaves_quantity = order.quantity - cumulative
    return event


@dataclass(frozen=True)
class OrderStream:
    """A stream of the test's own, ``<prefix>.orders.<event>`` as the relay names subjects."""

    js: JetStreamContext
    name: str
    prefix: str

    @property
    def subject(self) -> str:
        """The subjects a service follows to see every event of this stream."""
        return f"{self.prefix}.orders.>"

    async def publish(self, *events: order_events_pb2.OrderEvent) -> None:
        """Publish ``events`` in order, each on its event's subject."""
        for event in events:
            await self.js.publish(
                f"{self.prefix}.orders.{order_events.detail_field(event.state)}",
                event.SerializeToString(),
            )


@contextlib.asynccontextmanager
async def order_stream(nats_url: str, label: str) -> AsyncIterator[OrderStream]:
    """A fresh stream named after ``label``, deleted when the block exits."""
    prefix = f"{label}{uuid.uuid4().hex[:8]}"
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream(timeout=5)
        stream = OrderStream(js, prefix.upper(), prefix)
        await js.add_stream(name=stream.name, subjects=[stream.subject])
        try:
            yield stream
        finally:
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(stream.name)
    finally:
        await nc.close()
