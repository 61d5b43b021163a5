"""Concentration over everything the account has in flight: the risk process over gRPC counts
open orders, today's fills and its own holds, so a large buy split into small ones is
blocked once together they would cross the cap.

Each test runs its own risk service on a fresh database, following a JetStream stream of its
own. The account is ACC-987655: 2,000.00 cash and nothing else, so the firm's 3,000 bps cap
allows 600.00 of any one symbol.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest
import pytest_asyncio
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from brokermesh.common.v1 import common_pb2
from brokermesh.domain import events as order_events
from brokermesh.domain import states
from brokermesh.events.v1 import order_events_pb2
from brokermesh.platform.migrate import apply_migrations
from brokermesh.trading.v1 import order_pb2, risk_pb2, risk_pb2_grpc
from tests.processes import ServiceProcess, eventually

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

Stub = risk_pb2_grpc.PreTradeRiskServiceStub
ACCOUNT = "ACC-987655"
SYSTEM = common_pb2.Actor(type=common_pb2.ACTOR_TYPE_SYSTEM, id="risk-tests")


def buy(order_id: str, quantity: int) -> order_pb2.Order:
    """A limit buy of ``quantity`` AAPL at 189.50, AAPL's reference price."""
    return order_pb2.Order(
        order_id=order_id,
        client_order_id=f"CO-{order_id}",
        account_id=ACCOUNT,
        advisor_id="ADV-1207",
        symbol="AAPL",
        side=common_pb2.SIDE_BUY,
        quantity=quantity,
        order_type=common_pb2.ORDER_TYPE_LIMIT,
        limit_price="189.50",
        time_in_force=common_pb2.TIME_IN_FORCE_DAY,
    )


async def evaluate(stub: Stub, order: order_pb2.Order) -> risk_pb2.EvaluateOrderResponse:
    return await stub.EvaluateOrder(risk_pb2.EvaluateOrderRequest(order=order), timeout=5)


def concentration(response: risk_pb2.EvaluateOrderResponse) -> str:
    return next(d.reason for d in response.decisions if d.policy == "concentration")


def lifecycle(order: order_pb2.Order, *steps: int) -> list[order_events_pb2.OrderEvent]:
    """The order's events moving it through ``steps``, versions from 1, details filled."""
    events = []
    for version, state in enumerate(steps, start=1):
        event = order_events.new_event(order, state, version=version, actor=SYSTEM)
        getattr(event, order_events.detail_field(state)).SetInParent()
        events.append(event)
    return events


def fill(
    order: order_pb2.Order, version: int, quantity: int, price: str, cumulative: int
) -> order_events_pb2.OrderEvent:
    state = states.FILLED if cumulative == order.quantity else states.PARTIALLY_FILLED
    event = order_events.new_event(order, state, version=version, actor=SYSTEM)
    event.filled.fill.exec_id = f"E-{uuid.uuid4().hex[:8]}"
    event.filled.fill.quantity = quantity
    event.filled.fill.price = price
    event.filled.cumulative_quantity = cumulative
    event.filled.leaves_quantity = order.quantity - cumulative
    return event


@dataclass
class Risk:
    """A risk service of the test's own, and the stream it follows."""

    stub: Stub
    js: JetStreamContext
    prefix: str

    async def publish(self, *events: order_events_pb2.OrderEvent) -> None:
        for event in events:
            await self.js.publish(
                f"{self.prefix}.orders.{order_events.detail_field(event.state)}",
                event.SerializeToString(),
            )


@pytest_asyncio.fixture
async def risk(fresh_database: Any, nats_server: Any, tmp_path: Path) -> AsyncIterator[Risk]:
    """A risk service on a fresh database, following a stream of its own."""
    await apply_migrations(fresh_database.owner_dsn)
    prefix = f"riskholds{uuid.uuid4().hex[:8]}"
    stream = prefix.upper()
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream(timeout=5)
    await js.add_stream(name=stream, subjects=[f"{prefix}.orders.>"])
    process = ServiceProcess(
        "brokermesh.services.risk",
        tmp_path,
        {
            "BROKERMESH_DATABASE_URL": fresh_database.app_dsn,
            "BROKERMESH_NATS_URL": nats_server.url,
            "BROKERMESH_RISK_ORDERS_STREAM": stream,
            "BROKERMESH_RISK_ORDERS_SUBJECT": f"{prefix}.orders.>",
        },
    )
    try:
        await asyncio.to_thread(process.start)
        async with grpc.aio.insecure_channel(process.address) as channel:
            yield Risk(Stub(channel), js, prefix)
    finally:
        process.stop()
        try:
            await js.delete_stream(stream)
        except NotFoundError:
            pass
        await nc.close()


async def test_concurrent_split_buys_are_approved_only_up_to_the_cap(risk: Risk) -> None:
    # 3 x 189.50 = 568.50 each: one fits under 600.00, two do not.
    orders = [buy(f"ORD-20260316-0000080{n}", 3) for n in range(3)]

    responses = await asyncio.gather(*(evaluate(risk.stub, o) for o in orders))

    assert sum(r.approved for r in responses) == 1
    blocked = [concentration(r) for r in responses if not r.approved]
    assert (
        blocked
        == [
            "AAPL would be $1,137.00 of account value $2,000.00 (5685.00 bps), "
            "above the 3000 bps cap"
        ]
        * 2
    )


async def test_evaluating_the_same_order_again_replaces_its_hold(risk: Risk) -> None:
    first = buy("ORD-20260316-00000901", 3)

    repeats = [await evaluate(risk.stub, first) for _ in range(3)]
    other = await evaluate(risk.stub, buy("ORD-20260316-00000902", 1))

    assert all(r.approved for r in repeats)
    assert concentration(other) == (
        "AAPL would be $758.00 of account value $2,000.00 (3790.00 bps), above the 3000 bps cap"
    )


async def test_refused_order_releases_its_risk_hold(risk: Risk) -> None:
    held = buy("ORD-20260316-00001001", 3)
    other = buy("ORD-20260316-00001002", 3)
    await evaluate(risk.stub, held)
    before = await evaluate(risk.stub, other)

    # Validation refused the order that risk had approved.
    await risk.publish(*lifecycle(held, states.NEW, states.REJECTED))
    after = await eventually(lambda: evaluate(risk.stub, other), lambda r: r.approved)

    assert not before.approved
    assert concentration(after) == (
        "AAPL would be $568.50 of account value $2,000.00 (2842.50 bps), within the 3000 bps cap"
    )


async def test_open_buy_order_on_the_feed_counts_towards_concentration(risk: Risk) -> None:
    open_order = buy("ORD-20260316-00001101", 2)
    probe = buy("ORD-20260316-00001102", 2)
    alone = await evaluate(risk.stub, probe)

    await risk.publish(
        *lifecycle(open_order, states.NEW, states.VALIDATED, states.RISK_APPROVED, states.ROUTED)
    )
    beside = await eventually(lambda: evaluate(risk.stub, probe), lambda r: not r.approved)

    assert alone.approved
    assert concentration(beside) == (
        "AAPL would be $758.00 of account value $2,000.00 (3790.00 bps), above the 3000 bps cap"
    )


async def test_todays_fills_count_towards_concentration_after_the_order_is_done(
    risk: Risk,
) -> None:
    done = buy("ORD-20260316-00001201", 2)
    probe = buy("ORD-20260316-00001202", 2)
    await risk.publish(
        *lifecycle(done, states.NEW, states.VALIDATED, states.RISK_APPROVED, states.ROUTED),
        fill(done, 5, 1, "189.00", cumulative=1),
        fill(done, 6, 1, "189.00", cumulative=2),
    )

    after = await eventually(
        lambda: evaluate(risk.stub, probe), lambda r: "$2,001.00" in concentration(r)
    )

    # 2 bought at 189.00 are worth 379.00 at 189.50; cash is 2,000.00 less 378.00 spent.
    assert concentration(after) == (
        "AAPL would be $758.00 of account value $2,001.00 (3788.11 bps), above the 3000 bps cap"
    )
