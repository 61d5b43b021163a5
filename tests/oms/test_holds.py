"""Provisional holds: the OMS process over gRPC reserves what a passing order needs at once.

Each test runs its own OMS on a fresh database, following a JetStream stream of its own, so
the holds and events of one test reach no other.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
import pytest_asyncio

from brokermesh.common.v1 import common_pb2
from brokermesh.domain import eventstore, states
from brokermesh.platform.migrate import apply_migrations
from brokermesh.trading.v1 import order_pb2, validation_pb2, validation_pb2_grpc
from tests.orderstream import OrderStream, fill, lifecycle, limit_buy, order_stream
from tests.processes import ServiceProcess, eventually

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

Stub = validation_pb2_grpc.OrderValidationServiceStub
SMALL_ACCOUNT = "ACC-987655"  # 2,000.00 cash, no positions
LARGE_ACCOUNT = "ACC-987654"  # holds 1,500 AAPL


def buy(order_id: str, quantity: int) -> order_pb2.Order:
    """A limit buy of ``quantity`` AAPL at 189.50 by the account with 2,000.00 cash."""
    return limit_buy(order_id, quantity, SMALL_ACCOUNT)


def sell(order_id: str, quantity: int) -> order_pb2.Order:
    """A limit sell of ``quantity`` AAPL at 189.50 by the account that holds 1,500."""
    order = limit_buy(order_id, quantity, LARGE_ACCOUNT)
    order.side = common_pb2.SIDE_SELL
    return order


async def validate(stub: Stub, order: order_pb2.Order) -> validation_pb2.ValidateOrderResponse:
    return await stub.ValidateOrder(validation_pb2.ValidateOrderRequest(order=order), timeout=5)


def buying_power(response: validation_pb2.ValidateOrderResponse) -> str:
    return next(d.reason for d in response.decisions if d.policy == "buying_power")


@dataclass
class Oms:
    """An OMS of the test's own: its stub, the stream it follows, and its database."""

    stub: Stub
    orders: OrderStream
    database: Any


@pytest_asyncio.fixture
async def start_oms(
    fresh_database: Any, nats_server: Any, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    """Starts an OMS on a fresh database and a stream of its own, with extra settings."""
    await apply_migrations(fresh_database.owner_dsn)
    processes: list[ServiceProcess] = []
    channels: list[grpc.aio.Channel] = []
    async with order_stream(nats_server.url, "omsholds") as orders:

        async def start(**settings: str) -> Oms:
            process = ServiceProcess(
                "brokermesh.services.oms",
                tmp_path,
                {
                    "BROKERMESH_DATABASE_URL": fresh_database.app_dsn,
                    "BROKERMESH_NATS_URL": nats_server.url,
                    "BROKERMESH_OMS_ORDERS_STREAM": orders.name,
                    "BROKERMESH_OMS_ORDERS_SUBJECT": orders.subject,
                    **{f"BROKERMESH_OMS_{name.upper()}": value for name, value in settings.items()},
                },
            )
            processes.append(process)
            await asyncio.to_thread(process.start)
            channel = grpc.aio.insecure_channel(process.address)
            channels.append(channel)
            return Oms(Stub(channel), orders, fresh_database)

        try:
            yield start
        finally:
            for channel in channels:
                await channel.close()
            for process in processes:
                process.stop()


async def test_concurrent_buys_that_together_exceed_buying_power_pass_exactly_once(
    start_oms: Callable[..., Any],
) -> None:
    oms = await start_oms()
    # 6 x 189.50 = 1,137.00 each: one fits in 2,000.00, two do not.
    orders = [buy(f"ORD-20260316-0000010{n}", 6) for n in range(4)]

    responses = await asyncio.gather(*(validate(oms.stub, o) for o in orders))

    assert sum(r.passed for r in responses) == 1
    refused = [buying_power(r) for r in responses if not r.passed]
    assert (
        refused
        == [
            "buy notional $1,137.00 exceeds available $863.00 (cash $2,000.00 less $1,137.00 "
            "committed to open buys): shortfall $274.00"
        ]
        * 3
    )


async def test_concurrent_sells_of_the_whole_position_pass_exactly_once(
    start_oms: Callable[..., Any],
) -> None:
    oms = await start_oms()
    orders = [sell("ORD-20260316-00000201", 1500), sell("ORD-20260316-00000202", 1500)]

    responses = await asyncio.gather(*(validate(oms.stub, o) for o in orders))

    assert sum(r.passed for r in responses) == 1
    refused = next(r for r in responses if not r.passed)
    assert buying_power(refused) == (
        "sell of 1500 AAPL exceeds the 0 shares available (position 1500, 1500 committed to "
        "open sells): short selling is not allowed"
    )


async def test_validating_the_same_order_again_replaces_its_hold(
    start_oms: Callable[..., Any],
) -> None:
    oms = await start_oms()
    first = buy("ORD-20260316-00000301", 6)

    repeats = [await validate(oms.stub, first) for _ in range(3)]
    other = await validate(oms.stub, buy("ORD-20260316-00000302", 5))

    assert all(r.passed for r in repeats)
    assert buying_power(repeats[-1]) == "buy notional $1,137.00 within available $2,000.00"
    assert buying_power(other) == (
        "buy notional $947.50 exceeds available $863.00 (cash $2,000.00 less $1,137.00 "
        "committed to open buys): shortfall $84.50"
    )


@pytest.mark.parametrize(
    "refusal",
    [(states.NEW, states.VALIDATED, states.BLOCKED), (states.NEW, states.REJECTED)],
    ids=["blocked", "rejected"],
)
async def test_refusal_event_of_the_order_releases_its_hold(
    start_oms: Callable[..., Any], refusal: tuple[int, ...]
) -> None:
    oms = await start_oms()
    held = buy("ORD-20260316-00000401", 6)
    other = buy("ORD-20260316-00000402", 5)
    await validate(oms.stub, held)
    before = await validate(oms.stub, other)

    await oms.orders.publish(*lifecycle(held, *refusal))
    after = await eventually(lambda: validate(oms.stub, other), lambda r: r.passed)

    assert not before.passed
    assert after.passed
    assert buying_power(after) == "buy notional $947.50 within available $2,000.00"


async def test_order_events_take_over_from_the_hold_without_changing_buying_power(
    start_oms: Callable[..., Any],
) -> None:
    oms = await start_oms()
    held = buy("ORD-20260316-00000501", 6)
    probe = buy("ORD-20260316-00000502", 1)
    await validate(oms.stub, held)
    samples = [buying_power(await validate(oms.stub, probe))]

    # The probe watches the available cash while the order's events arrive one by one.
    for event in lifecycle(held, states.NEW, states.VALIDATED, states.RISK_APPROVED, states.ROUTED):
        await oms.orders.publish(event)
        for _ in range(5):
            samples.append(buying_power(await validate(oms.stub, probe)))
    await oms.orders.publish(fill(held, 5, 2, "189.00", cumulative=2))
    filled = await eventually(
        lambda: validate(oms.stub, probe), lambda r: "$864.00" in buying_power(r)
    )

    assert set(samples) == {"buy notional $189.50 within available $863.00"}
    # 2,000.00 less 2 x 189.00 spent, less the 4 left committed at 189.50: the hold is gone.
    assert buying_power(filled) == "buy notional $189.50 within available $864.00"


async def test_hold_of_an_order_never_recorded_expires_only_while_the_feed_is_live(
    start_oms: Callable[..., Any],
) -> None:
    oms = await start_oms(hold_ttl_s="1", feed_check_interval_s="0.2")
    held = buy("ORD-20260316-00000601", 6)
    other = buy("ORD-20260316-00000602", 5)
    # Without its stream the feed cannot be caught up: the live clock stands still.
    await oms.orders.js.delete_stream(oms.orders.name)
    await validate(oms.stub, held)

    await asyncio.sleep(4)
    while_down = await validate(oms.stub, other)
    await oms.orders.js.add_stream(name=oms.orders.name, subjects=[oms.orders.subject])
    once_live = await eventually(
        lambda: validate(oms.stub, other), lambda r: r.passed, timeout_s=30
    )

    assert not while_down.passed
    assert "less $1,137.00 committed" in buying_power(while_down)
    assert buying_power(once_live) == "buy notional $947.50 within available $2,000.00"


async def test_hold_of_an_order_recorded_but_not_yet_relayed_does_not_expire(
    start_oms: Callable[..., Any],
) -> None:
    oms = await start_oms(hold_ttl_s="1", feed_check_interval_s="0.2")
    held = buy("ORD-20260316-00000701", 6)
    other = buy("ORD-20260316-00000702", 5)
    await validate(oms.stub, held)
    # Recorded as order entry records it; no relay runs here, so the outbox keeps it.
    pool = await asyncpg.create_pool(oms.database.app_dsn, min_size=1, max_size=1)
    try:
        await eventstore.open_stream(
            pool,
            lifecycle(held, states.NEW, states.VALIDATED, states.RISK_APPROVED, states.ROUTED),
            account_id=SMALL_ACCOUNT,
            client_order_id=held.client_order_id,
        )

        await asyncio.sleep(4)
        unrelayed = await validate(oms.stub, other)
        # Relayed an hour ago: only the schema owner may move published_at like this.
        owner = await asyncpg.connect(oms.database.owner_dsn)
        try:
            await owner.execute("UPDATE outbox SET published_at = now() - interval '1 hour'")
        finally:
            await owner.close()
        relayed_long_ago = await eventually(
            lambda: validate(oms.stub, other), lambda r: r.passed, timeout_s=15
        )
    finally:
        await pool.close()

    assert "less $1,137.00 committed" in buying_power(unrelayed)
    assert relayed_long_ago.passed
