"""No execution is lost and no order stays ROUTED unnoticed: a real venue, gateway and database.

Each test records an order's stream up to ROUTED the way order entry does, right before the
hand-off (the reconciler here asks about orders unacknowledged after one second), then lets the
venue gateway, the simulated venue and trade capture (with its reconciler) take it from there.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from brokermesh.domain import states
from brokermesh.mesh.fix.journal import ExecutionJournal
from brokermesh.trading.v1 import venue_pb2, venue_pb2_grpc
from brokermesh.trading.v1.order_pb2 import Order
from brokermesh.trading.v1.order_query_pb2 import OrderView
from tests.processes import eventually, free_port
from tests.trade_capture.support import new_order, record_routed, view_of

from .conftest import Rig
from .support import VenueGatewayProcess

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(240)]


async def send(rig: Rig, order: Order) -> None:
    """Hand ``order`` to XNAS through the gateway, as order entry does."""
    await rig.venues.SendOrder(venue_pb2.SendOrderRequest(order=order, venue="XNAS"), timeout=5)


async def settled(rig: Rig, order_id: str, wanted: set[int]) -> OrderView:
    return await eventually(
        lambda: view_of(rig.conn, order_id), lambda view: view.state in wanted, timeout_s=30
    )


def journaled(rig: Rig) -> int:
    with ExecutionJournal(rig.gateway.journal_path) as journal:
        return len(journal.pending())


async def wait_journaled(rig: Rig, count: int) -> int:
    async def pending() -> int:
        return journaled(rig)

    return await eventually(pending, lambda found: found >= count, timeout_s=15)


async def test_reports_journaled_before_a_gateway_crash_reach_trade_capture_after_restart(
    rig: Rig,
) -> None:
    # Arrange: trade capture is down, so the venue's ack and fill can only wait in the journal.
    order = new_order(quantity=100, limit_price="190.00")
    await record_routed(rig.conn, order)
    await rig.gateway.start()
    await send(rig, order)
    assert await wait_journaled(rig, 2) >= 2, rig.gateway.log_tail()

    # Act: the gateway dies without a chance to do anything, then everything comes back.
    await rig.gateway.kill()
    await rig.trade_capture.start()
    await rig.gateway.start()
    view = await settled(rig, order.order_id, {states.FILLED})

    # Assert
    assert view.state == states.FILLED, rig.gateway.log_tail()
    assert (view.cumulative_quantity, view.leaves_quantity) == (100, 0)
    assert journaled(rig) == 0


async def test_an_over_fill_becomes_a_break_and_the_reports_after_it_still_flow(
    rig: Rig,
) -> None:
    # Arrange: the platform's order is for 100 shares, the venue is sent 200 under its id.
    order, later = new_order(quantity=100, limit_price="190.00"), new_order(limit_price="190.00")
    await rig.trade_capture.start()
    await rig.gateway.start()
    await record_routed(rig.conn, order)
    await record_routed(rig.conn, later)
    oversized = Order()
    oversized.CopyFrom(order)
    oversized.quantity = 200

    # Act
    await send(rig, oversized)
    await send(rig, later)
    view = await settled(rig, later.order_id, {states.FILLED})

    # Assert
    assert view.state == states.FILLED, rig.gateway.log_tail()
    over = await view_of(rig.conn, order.order_id)
    assert (over.state, over.cumulative_quantity) == (states.FILLED, 100)
    kinds = await rig.conn.fetch(
        "SELECT kind FROM execution_breaks WHERE order_id = $1 ORDER BY break_id",
        order.order_id,
    )
    assert [row["kind"] for row in kinds][:1] == ["OVER_FILL"]
    assert {row["kind"] for row in kinds} <= {"OVER_FILL", "AFTER_FINAL_STATE"}
    with ExecutionJournal(rig.gateway.journal_path) as journal:
        assert journal.parked() == []


async def test_an_order_the_venue_never_received_is_rejected_by_the_reconciler(
    rig: Rig,
) -> None:
    # Arrange: routed, but the hand-off never happened (order entry stopped in between).
    order = new_order()
    await record_routed(rig.conn, order)

    # Act
    await rig.trade_capture.start()
    await rig.gateway.start()
    view = await settled(rig, order.order_id, {states.REJECTED})

    # Assert
    assert view.state == states.REJECTED, rig.gateway.log_tail()
    reason = view.history[-1].reason
    assert reason.startswith("venue XNAS rejected:"), reason
    assert "unknown order" in reason


async def test_orders_the_venue_holds_are_settled_by_the_reconciler_in_their_true_state(
    rig: Rig,
) -> None:
    # Arrange: the venue fills one order and rests the other, while trade capture is down;
    # their reports are then parked (as reports trade capture refused are), so nothing
    # but the reconciler can tell the platform what happened.
    filled, resting = new_order(limit_price="190.00"), new_order(limit_price="100.00")
    for order in (filled, resting):
        await record_routed(rig.conn, order)
    await rig.gateway.start()
    for order in (filled, resting):
        await send(rig, order)
    await wait_journaled(rig, 3)
    await rig.gateway.stop()
    with ExecutionJournal(rig.gateway.journal_path) as journal:
        for entry in journal.pending():
            journal.park(entry.seq, "refused before the order's stream was readable")

    # Act
    await rig.trade_capture.start()
    await rig.gateway.start()
    view = await settled(rig, filled.order_id, {states.FILLED})
    acknowledged = await eventually(
        lambda: rig.conn.fetchval(
            "SELECT count(*) FROM venue_acknowledgements WHERE order_id = $1", resting.order_id
        ),
        lambda count: count == 1,
        timeout_s=20,
    )

    # Assert
    assert view.state == states.FILLED, rig.gateway.log_tail()
    assert (view.cumulative_quantity, view.leaves_quantity) == (100, 0)
    assert view.average_price and view.fills[-1].price
    assert acknowledged == 1
    assert (await view_of(rig.conn, resting.order_id)).state == states.ROUTED


async def test_a_venue_that_is_not_logged_on_is_a_failed_precondition_for_both_calls(
    rig: Rig, nats_url: str, tmp_path: Path
) -> None:
    # Arrange: a gateway that also knows ARCA, which is not running.
    gateway = VenueGatewayProcess(
        tmp_path / "two-venue-gateway",
        port=free_port(),
        nats_url=nats_url,
        trade_capture_port=rig.trade_capture.port,
        venue_ports={"XNAS": rig.venue_port, "ARCA": free_port()},
        logon_timeout_s=1.0,
    )
    order = new_order()
    await gateway.start()
    try:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            venues = venue_pb2_grpc.VenueGatewayServiceStub(channel)

            # Act
            with pytest.raises(grpc.aio.AioRpcError) as sending:
                await venues.SendOrder(
                    venue_pb2.SendOrderRequest(order=order, venue="ARCA"), timeout=5
                )
            with pytest.raises(grpc.aio.AioRpcError) as asking:
                await venues.QueryOrderStatus(
                    venue_pb2.QueryOrderStatusRequest(
                        order_id=order.order_id, venue="ARCA", symbol="AAPL", side=order.side
                    ),
                    timeout=5,
                )
    finally:
        await gateway.stop()

    # Assert
    for refused in (sending.value, asking.value):
        assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert refused.details() == "venue ARCA is not logged on"
