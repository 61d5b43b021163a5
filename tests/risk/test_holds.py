"""Concentration over everything the account has in flight: the risk process over gRPC counts
open orders, today's fills and its own holds, so a large buy split into small ones is
blocked once together they would cross the cap.

Each test runs its own risk service on a fresh database, following a JetStream stream of its
own. The account is ACC-987655: 2,000.00 cash and nothing else, so the firm's 3,000 bps cap
allows 600.00 of any one symbol.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from brokermesh.domain import states
from brokermesh.platform.migrate import apply_migrations
from brokermesh.trading.v1 import order_pb2, risk_pb2, risk_pb2_grpc
from tests.orderstream import OrderStream, fill, lifecycle, limit_buy, order_stream
from tests.processes import ServiceProcess, eventually

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

Stub = risk_pb2_grpc.PreTradeRiskServiceStub
ACCOUNT = "ACC-987655"


def buy(order_id: str, quantity: int) -> order_pb2.Order:
    """A limit buy of ``quantity`` AAPL at 189.50, AAPL's reference price."""
    return limit_buy(order_id, quantity, ACCOUNT)


async def evaluate(stub: Stub, order: order_pb2.Order) -> risk_pb2.EvaluateOrderResponse:
    return await stub.EvaluateOrder(risk_pb2.EvaluateOrderRequest(order=order), timeout=5)


def concentration(response: risk_pb2.EvaluateOrderResponse) -> str:
    return next(d.reason for d in response.decisions if d.policy == "concentration")


@dataclass
class Risk:
    """A risk service of the test's own, and the stream it follows."""

    stub: Stub
    orders: OrderStream


@pytest_asyncio.fixture
async def risk(fresh_database: Any, nats_server: Any, tmp_path: Path) -> AsyncIterator[Risk]:
    """A risk service on a fresh database, following a stream of its own."""
    await apply_migrations(fresh_database.owner_dsn)
    async with order_stream(nats_server.url, "riskholds") as orders:
        process = ServiceProcess(
            "brokermesh.services.risk",
            tmp_path,
            {
                "BROKERMESH_DATABASE_URL": fresh_database.app_dsn,
                "BROKERMESH_NATS_URL": nats_server.url,
                "BROKERMESH_RISK_ORDERS_STREAM": orders.name,
                "BROKERMESH_RISK_ORDERS_SUBJECT": orders.subject,
            },
        )
        try:
            await asyncio.to_thread(process.start)
            async with grpc.aio.insecure_channel(process.address) as channel:
                yield Risk(Stub(channel), orders)
        finally:
            process.stop()


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
    await risk.orders.publish(*lifecycle(held, states.NEW, states.REJECTED))
    after = await eventually(lambda: evaluate(risk.stub, other), lambda r: r.approved)

    assert not before.approved
    assert concentration(after) == (
        "AAPL would be $568.50 of account value $2,000.00 (2842.50 bps), within the 3000 bps cap"
    )


async def test_open_buy_order_on_the_feed_counts_towards_concentration(risk: Risk) -> None:
    open_order = buy("ORD-20260316-00001101", 2)
    probe = buy("ORD-20260316-00001102", 2)
    alone = await evaluate(risk.stub, probe)

    await risk.orders.publish(
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
    await risk.orders.publish(
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
