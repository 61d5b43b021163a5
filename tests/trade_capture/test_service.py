"""RecordExecution over real gRPC on a real database: fills, breaks, acknowledgements, status."""

from __future__ import annotations

from typing import Any

import asyncpg
import grpc
import pytest

from brokermesh.domain import states
from brokermesh.mesh import server
from brokermesh.mesh.config import ServiceSettings
from brokermesh.services.trade_capture.manifest import MANIFEST
from brokermesh.services.trade_capture.service import TradeCapture
from brokermesh.trading.v1 import trade_capture_pb2_grpc
from brokermesh.trading.v1.trade_capture_pb2 import ExecutionKind, VenueOrderStatus

from .conftest import ServicerApp, TradeCaptureUnderTest
from .support import fill, new_order, record_routed, report, view_of

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

ACK = ExecutionKind.EXECUTION_KIND_ACKNOWLEDGED
STATUS = ExecutionKind.EXECUTION_KIND_ORDER_STATUS
VENUE_NEW = VenueOrderStatus.VENUE_ORDER_STATUS_NEW
VENUE_FILLED = VenueOrderStatus.VENUE_ORDER_STATUS_FILLED
VENUE_REJECTED = VenueOrderStatus.VENUE_ORDER_STATUS_REJECTED


async def breaks_of(conn: asyncpg.Connection, order_id: str) -> list[tuple[str, str, str]]:
    rows = await conn.fetch(
        "SELECT exec_id, kind, order_state FROM execution_breaks WHERE order_id = $1 "
        "ORDER BY break_id",
        order_id,
    )
    return [(row["exec_id"], row["kind"], row["order_state"]) for row in rows]


async def acknowledged(conn: asyncpg.Connection, order_id: str) -> str | None:
    found: str | None = await conn.fetchval(
        "SELECT exec_id FROM venue_acknowledgements WHERE order_id = $1", order_id
    )
    return found


async def test_a_fill_without_a_price_is_refused_naming_the_field(
    trade_capture: TradeCaptureUnderTest,
) -> None:
    # Arrange
    order = new_order()
    await record_routed(trade_capture.conn, order)
    request = fill(order, "E1", 100, "189.50", cumulative=100)
    request.fill.price = ""

    # Act
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await trade_capture.stub.RecordExecution(request, timeout=5)

    # Assert
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "fill.price" in (refused.value.details() or "")
    trailers = dict(refused.value.trailing_metadata() or ())
    assert trailers["x-error-field"] == "fill.price"
    assert (await view_of(trade_capture.conn, order.order_id)).state == states.ROUTED


async def test_a_fill_kind_without_a_fill_is_refused_naming_the_field(
    trade_capture: TradeCaptureUnderTest,
) -> None:
    # Arrange
    order = new_order()
    request = report(order, ExecutionKind.EXECUTION_KIND_FILL, "E1", cumulative=100)

    # Act
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await trade_capture.stub.RecordExecution(request, timeout=5)

    # Assert
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(refused.value.trailing_metadata() or ())["x-error-field"] == "fill"


async def test_fills_are_recorded_once_each_with_the_running_quantity_and_average(
    trade_capture: TradeCaptureUnderTest,
) -> None:
    # Arrange
    order = new_order()
    await record_routed(trade_capture.conn, order)
    first = fill(order, "E1", 40, "189.50", cumulative=40)
    second = fill(order, "E2", 60, "189.00", cumulative=100, average_price="189.20")

    # Act
    answers = [
        await trade_capture.stub.RecordExecution(request, timeout=5)
        for request in (first, first, second, second)
    ]

    # Assert
    assert [(a.state, a.recorded) for a in answers] == [
        (states.PARTIALLY_FILLED, True),
        (states.PARTIALLY_FILLED, False),
        (states.FILLED, True),
        (states.FILLED, False),
    ]
    view = await view_of(trade_capture.conn, order.order_id)
    assert (view.cumulative_quantity, view.leaves_quantity) == (100, 0)
    assert view.average_price == "189.200000"
    assert await breaks_of(trade_capture.conn, order.order_id) == []
    assert await acknowledged(trade_capture.conn, order.order_id) == "XNAS:E1"


async def test_an_over_fill_is_recorded_as_a_break_and_the_next_report_still_applies(
    trade_capture: TradeCaptureUnderTest,
) -> None:
    # Arrange
    order, other = new_order(), new_order()
    await record_routed(trade_capture.conn, order)
    await record_routed(trade_capture.conn, other)
    await trade_capture.stub.RecordExecution(fill(order, "E1", 100, "189.50", cumulative=100))

    # Act
    over = await trade_capture.stub.RecordExecution(
        fill(order, "E2", 50, "189.50", cumulative=150), timeout=5
    )
    after = await trade_capture.stub.RecordExecution(
        fill(other, "E3", 100, "189.40", cumulative=100), timeout=5
    )

    # Assert
    assert (over.state, over.recorded, over.break_recorded) == (states.FILLED, False, True)
    assert (after.state, after.recorded) == (states.FILLED, True)
    assert await breaks_of(trade_capture.conn, order.order_id) == [
        ("XNAS:E2", "AFTER_FINAL_STATE", "FILLED")
    ]
    assert (await view_of(trade_capture.conn, order.order_id)).cumulative_quantity == 100


async def test_a_fill_beyond_the_order_fills_it_and_breaks_on_the_excess(
    trade_capture: TradeCaptureUnderTest,
) -> None:
    # Arrange
    order = new_order()
    await record_routed(trade_capture.conn, order)
    await trade_capture.stub.RecordExecution(fill(order, "E1", 60, "189.50", cumulative=60))

    # Act
    over = await trade_capture.stub.RecordExecution(
        fill(order, "E2", 60, "189.40", cumulative=120), timeout=5
    )

    # Assert
    assert (over.state, over.recorded, over.break_recorded) == (states.FILLED, True, True)
    view = await view_of(trade_capture.conn, order.order_id)
    assert (view.cumulative_quantity, view.fills[-1].quantity) == (100, 40)
    assert view.average_price == "189.460000"
    assert await breaks_of(trade_capture.conn, order.order_id) == [
        ("XNAS:E2", "OVER_FILL", "PARTIALLY_FILLED")
    ]


async def test_a_fill_after_the_order_was_rejected_is_a_break_not_an_error(
    trade_capture: TradeCaptureUnderTest,
) -> None:
    # Arrange: order entry rejected the order after routing it.
    path = (states.NEW, states.VALIDATED, states.RISK_APPROVED, states.ROUTED, states.REJECTED)
    rejected = new_order()
    await record_routed(trade_capture.conn, rejected, path=path)

    # Act
    answer = await trade_capture.stub.RecordExecution(
        fill(rejected, "E1", 100, "189.50", cumulative=100), timeout=5
    )

    # Assert
    assert (answer.state, answer.recorded, answer.break_recorded) == (states.REJECTED, False, True)
    assert await breaks_of(trade_capture.conn, rejected.order_id) == [
        ("XNAS:E1", "AFTER_FINAL_STATE", "REJECTED")
    ]


async def test_a_report_for_an_order_the_platform_does_not_know_is_a_break(
    trade_capture: TradeCaptureUnderTest,
) -> None:
    # Arrange
    stranger = new_order()

    # Act
    answer = await trade_capture.stub.RecordExecution(
        fill(stranger, "E1", 100, "189.50", cumulative=100), timeout=5
    )

    # Assert
    assert (answer.state, answer.break_recorded) == (states.UNSPECIFIED, True)
    assert await breaks_of(trade_capture.conn, stranger.order_id) == [
        ("XNAS:E1", "UNKNOWN_ORDER", "UNSPECIFIED")
    ]


async def test_a_venue_quantity_that_disagrees_is_a_break_but_the_fill_still_counts(
    trade_capture: TradeCaptureUnderTest,
) -> None:
    # Arrange: the venue's first fill of 30 never arrived; its second says 70 in all.
    order = new_order()
    await record_routed(trade_capture.conn, order)

    # Act
    answer = await trade_capture.stub.RecordExecution(
        fill(order, "E2", 40, "189.50", cumulative=70), timeout=5
    )

    # Assert
    assert (answer.state, answer.recorded, answer.break_recorded) == (
        states.PARTIALLY_FILLED,
        True,
        True,
    )
    assert (await view_of(trade_capture.conn, order.order_id)).cumulative_quantity == 40
    assert await breaks_of(trade_capture.conn, order.order_id) == [
        ("XNAS:E2", "QUANTITY_MISMATCH", "ROUTED")
    ]


async def test_an_acknowledgement_records_that_the_venue_holds_the_order(
    trade_capture: TradeCaptureUnderTest,
) -> None:
    # Arrange
    order = new_order()
    await record_routed(trade_capture.conn, order)

    # Act
    answer = await trade_capture.stub.RecordExecution(report(order, ACK, "E0"), timeout=5)

    # Assert
    assert (answer.state, answer.recorded, answer.break_recorded) == (states.ROUTED, False, False)
    assert await acknowledged(trade_capture.conn, order.order_id) == "XNAS:E0"


async def test_a_venue_status_rejecting_an_unknown_order_rejects_it_naming_the_venue(
    trade_capture: TradeCaptureUnderTest,
) -> None:
    # Arrange
    order = new_order()
    await record_routed(trade_capture.conn, order, venue="ARCA")
    unknown = report(
        order,
        STATUS,
        "S1",
        venue="ARCA",
        leaves=0,
        status=VENUE_REJECTED,
        text="unknown order (OrdRejReason 5: unknown order)",
    )

    # Act
    answer = await trade_capture.stub.RecordExecution(unknown, timeout=5)

    # Assert
    assert answer.state == states.REJECTED
    view = await view_of(trade_capture.conn, order.order_id)
    assert view.history[-1].reason == (
        "venue ARCA rejected: unknown order (OrdRejReason 5: unknown order)"
    )
    assert view.history[-1].event_type == "OrderRejected"
    assert await acknowledged(trade_capture.conn, order.order_id) is None


async def test_a_venue_status_with_fills_never_reported_brings_the_order_to_the_venue_state(
    trade_capture: TradeCaptureUnderTest,
) -> None:
    # Arrange: 40 at 189.50 recorded; the venue has filled all 100 at an average of 189.26.
    order = new_order()
    await record_routed(trade_capture.conn, order)
    await trade_capture.stub.RecordExecution(fill(order, "E1", 40, "189.50", cumulative=40))
    status = report(
        order, STATUS, "S1", cumulative=100, status=VENUE_FILLED, average_price="189.260000"
    )

    # Act
    answer = await trade_capture.stub.RecordExecution(status, timeout=5)

    # Assert
    assert (answer.state, answer.recorded, answer.break_recorded) == (states.FILLED, True, False)
    view = await view_of(trade_capture.conn, order.order_id)
    assert (view.cumulative_quantity, view.average_price) == (100, "189.260000")
    assert [(f.quantity, f.price, f.exec_id) for f in view.fills][-1] == (60, "189.100000", "S1")


async def test_a_venue_status_agreeing_with_the_stream_changes_nothing(
    trade_capture: TradeCaptureUnderTest,
) -> None:
    # Arrange
    order = new_order()
    await record_routed(trade_capture.conn, order)

    # Act
    answer = await trade_capture.stub.RecordExecution(
        report(order, STATUS, "S1", status=VENUE_NEW), timeout=5
    )

    # Assert
    assert (answer.state, answer.recorded, answer.break_recorded) == (states.ROUTED, False, False)
    assert await acknowledged(trade_capture.conn, order.order_id) == "XNAS:S1"


async def test_an_order_status_report_must_say_the_venue_status(
    trade_capture: TradeCaptureUnderTest,
) -> None:
    # Arrange
    order = new_order()
    request = report(order, STATUS, "S1")
    request.ClearField("venue_status")

    # Act
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await trade_capture.stub.RecordExecution(request, timeout=5)

    # Assert
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(refused.value.trailing_metadata() or ())["x-error-field"] == "venue_status"


async def test_execution_breaks_cannot_be_rewritten_or_deleted(
    trade_capture: TradeCaptureUnderTest, fresh_database: Any
) -> None:
    # Arrange
    stranger = new_order()
    await trade_capture.stub.RecordExecution(fill(stranger, "E1", 1, "1.00", cumulative=1))
    owner = await asyncpg.connect(fresh_database.owner_dsn, timeout=10)

    # Act / Assert
    try:
        for statement in (
            "UPDATE execution_breaks SET detail = 'nothing to see'",
            "DELETE FROM execution_breaks",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await owner.execute(statement)
    finally:
        await owner.close()
    assert len(await breaks_of(trade_capture.conn, stranger.order_id)) == 1


async def test_trade_capture_without_its_database_answers_unavailable(
    fresh_database: Any, tmp_path: Any
) -> None:
    # Arrange: a pool that opens its connections on demand, to a port nothing listens on.
    pool = await asyncpg.create_pool(
        "postgresql://brokermesh_app@127.0.0.1:9/brokermesh", min_size=0, timeout=2
    )
    app = ServicerApp(TradeCapture(pool))
    settings = ServiceSettings(port=0, data_dir=tmp_path)
    running = await server.start(MANIFEST, settings, app)
    order = new_order()

    # Act
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = trade_capture_pb2_grpc.TradeCaptureServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await stub.RecordExecution(fill(order, "E1", 1, "1.00", cumulative=1), timeout=5)
    finally:
        await server.stop(running, app, grace_s=1.0)
        await pool.close()

    # Assert
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "database" in (failed.value.details() or "")
