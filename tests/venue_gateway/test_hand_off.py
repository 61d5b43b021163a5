"""Order entry's hand-off to a real venue gateway: what a failed hand-off means for the order.

Order entry records the order up to ROUTED and then hands it over. These tests build that
trail with order entry's own servicer on the rig's database and drive the last step against
the venue gateway process, the simulated venue and trade capture with its reconciler.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import pytest
import pytest_asyncio

from brokermesh.common.v1.common_pb2 import ACTOR_TYPE_ADVISOR, Actor
from brokermesh.domain import states
from brokermesh.mesh.config import ServiceSettings
from brokermesh.mesh.controls import ControlsWatcher
from brokermesh.services.order_entry.manifest import MANIFEST as ORDER_ENTRY
from brokermesh.services.order_entry.service import PLATFORM, OrderEntry, _Trail
from brokermesh.services.registry import clients_for
from brokermesh.trading.v1 import trade_capture_pb2_grpc
from tests.processes import eventually
from tests.trade_capture.support import fill, new_order, view_of

from .conftest import Rig

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(240)]


@pytest_asyncio.fixture
async def entry(rig: Rig, tmp_path: Path) -> AsyncIterator[OrderEntry]:
    """Order entry's servicer on the rig's database, its venue gateway the rig's."""
    pool = await asyncpg.create_pool(rig.dsn, min_size=1, max_size=4)
    settings = ServiceSettings(upstreams=f"venue-gateway={rig.gateway.address}")
    clients = clients_for(ORDER_ENTRY, settings)
    # Never started: the hand-off does not consult the controls.
    controls = ControlsWatcher("nats://127.0.0.1:9", data_dir=tmp_path, service="order-entry")
    try:
        yield OrderEntry(pool, clients, controls, recent_requests=10)
    finally:
        await clients.close()
        await pool.close()


async def routed(entry: OrderEntry, venue: str = "XNAS", limit_price: str = "190.00") -> _Trail:
    """An order recorded up to ROUTED to ``venue``, the way SubmitOrder records it."""
    order = new_order(limit_price=limit_price)
    trail = _Trail(order, Actor(type=ACTOR_TYPE_ADVISOR, id=order.advisor_id))
    trail.add(states.NEW)
    trail.add(states.VALIDATED, actor=PLATFORM)
    trail.add(states.RISK_APPROVED, actor=PLATFORM)
    trail.add(states.ROUTED, actor=PLATFORM, venue=venue, reason="best price")
    await entry._record(trail)
    return trail


async def test_a_hand_off_the_gateway_refuses_rejects_the_order_naming_the_venue(
    rig: Rig, entry: OrderEntry
) -> None:
    # Arrange
    await rig.gateway.start()
    trail = await routed(entry, venue="BATS")

    # Act
    await entry._hand_to_venue(trail, "BATS")

    # Assert
    assert trail.response().status == states.REJECTED
    view = await view_of(rig.conn, trail.order.order_id)
    assert view.state == states.REJECTED
    assert view.history[-1].reason == (
        "venue BATS did not get the order: FAILED_PRECONDITION: unknown venue BATS"
    )


async def test_a_hand_off_to_a_gateway_nobody_answers_at_rejects_the_order(
    rig: Rig, entry: OrderEntry
) -> None:
    # Arrange: the gateway is not running, so nothing can have reached the venue.
    trail = await routed(entry)

    # Act
    await entry._hand_to_venue(trail, "XNAS")

    # Assert
    assert trail.response().status == states.REJECTED
    reason = (await view_of(rig.conn, trail.order.order_id)).history[-1].reason
    assert reason.startswith("venue XNAS did not get the order: UNAVAILABLE"), reason


async def test_a_hand_off_with_an_unknown_outcome_answers_routed_and_the_venue_settles_it(
    rig: Rig, entry: OrderEntry
) -> None:
    # Arrange: the gateway hangs mid-call, then dies with the order unsent.
    await rig.trade_capture.start()
    await rig.gateway.start()
    trail = await routed(entry)
    rig.gateway.pause()

    # Act
    try:
        await entry._hand_to_venue(trail, "XNAS")
        answered = trail.response().status
        right_after = (await view_of(rig.conn, trail.order.order_id)).state
    finally:
        await rig.gateway.kill()
    await rig.gateway.start()
    view = await eventually(
        lambda: view_of(rig.conn, trail.order.order_id),
        lambda found: found.state != states.ROUTED,
        timeout_s=30,
    )

    # Assert
    assert (answered, right_after) == (states.ROUTED, states.ROUTED)
    assert view.state == states.REJECTED, rig.gateway.log_tail()
    assert view.history[-1].reason.startswith("venue XNAS rejected: unknown order")


async def test_a_rejection_that_loses_the_race_to_a_fill_answers_with_the_fill(
    rig: Rig, entry: OrderEntry
) -> None:
    # Arrange: the venue's fill reaches the stream between ROUTED and the failed hand-off.
    await rig.trade_capture.start()
    await rig.gateway.start()
    trail = await routed(entry, venue="BATS")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{rig.trade_capture.port}") as channel:
        trade_capture = trade_capture_pb2_grpc.TradeCaptureServiceStub(channel)
        await trade_capture.RecordExecution(
            fill(trail.order, "E1", 100, "189.50", cumulative=100, venue="BATS"), timeout=5
        )

    # Act
    await entry._hand_to_venue(trail, "BATS")

    # Assert
    assert trail.response().status == states.FILLED
    view = await view_of(rig.conn, trail.order.order_id)
    assert view.state == states.FILLED
    assert "OrderRejected" not in [step.event_type for step in view.history]
