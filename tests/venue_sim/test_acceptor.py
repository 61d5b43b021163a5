"""Pure tests of the venue's order handling, without a FIX session."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from brokermesh.mesh.fix.messages import (
    ORD_REJ_REASON_UNKNOWN_ORDER,
    ExecType,
    NewOrder,
    OrderStatusQuery,
    OrderType,
    OrdStatus,
    Side,
    TimeInForce,
)
from brokermesh.mesh.refdata import load_securities
from brokermesh.services.venue_sim.acceptor import VenueOrderHandler
from brokermesh.services.venue_sim.market import VenueMarket

WHEN = datetime(2024, 5, 1, 13, 30, tzinfo=UTC)


def a_handler() -> VenueOrderHandler:
    market = VenueMarket(venue="XNAS", seed=7, securities=load_securities())
    return VenueOrderHandler(market, clock=lambda: WHEN, run_tag="T")


def an_order(
    cl_ord_id: str = "ORD-1",
    *,
    symbol: str = "AAPL",
    side: Side = Side.BUY,
    quantity: int = 100,
    price: str | None = "189.50",
    time_in_force: TimeInForce = TimeInForce.DAY,
) -> NewOrder:
    return NewOrder(
        cl_ord_id=cl_ord_id,
        account="ACC-42",
        symbol=symbol,
        side=side,
        quantity=quantity,
        order_type=OrderType.MARKET if price is None else OrderType.LIMIT,
        limit_price=None if price is None else Decimal(price),
        time_in_force=time_in_force,
        transact_time=WHEN,
    )


def test_the_blueprint_order_is_acknowledged_then_filled_in_one_report() -> None:
    reports = a_handler().handle("BROKERMESH", an_order())
    assert [(s, e.exec_type, e.order_status) for s, e in reports] == [
        ("BROKERMESH", ExecType.NEW, OrdStatus.NEW),
        ("BROKERMESH", ExecType.FILL, OrdStatus.FILLED),
    ]
    ack, fill = (execution for _, execution in reports)
    assert (ack.leaves_qty, ack.cum_qty) == (100, 0)
    assert (fill.last_qty, fill.cum_qty, fill.leaves_qty) == (100, 100, 0)
    assert fill.avg_price == fill.last_price <= Decimal("189.50")
    assert ack.venue_order_id == fill.venue_order_id == "XNAS-T-O1"
    assert ack.exec_id != fill.exec_id


def test_a_large_order_reports_partial_fills_with_a_running_average() -> None:
    reports = a_handler().handle("BROKERMESH", an_order(quantity=5000, price="190.00"))
    fills = [execution for _, execution in reports[1:]]
    assert all(f.exec_type is ExecType.PARTIAL_FILL for f in fills[:-1])
    assert fills[-1].exec_type is ExecType.FILL
    assert [f.cum_qty for f in fills] == sorted({f.cum_qty for f in fills})
    assert sum(f.last_qty for f in fills) == fills[-1].cum_qty == 5000
    notional = sum((f.last_price * f.last_qty for f in fills), Decimal(0))
    assert abs(fills[-1].avg_price - notional / 5000) < Decimal("0.000001")


def test_an_unknown_symbol_is_rejected_with_a_reason() -> None:
    [(_, reject)] = a_handler().handle("BROKERMESH", an_order(symbol="ZZZZ"))
    assert (reject.exec_type, reject.order_status) == (ExecType.REJECTED, OrdStatus.REJECTED)
    assert reject.text == "unknown symbol ZZZZ"
    assert reject.venue_order_id == "NONE"


def test_a_price_off_the_tick_and_an_oversized_quantity_are_rejected() -> None:
    handler = a_handler()
    [(_, off_tick)] = handler.handle("BROKERMESH", an_order("A", price="189.505"))
    [(_, too_big)] = handler.handle("BROKERMESH", an_order("B", quantity=2_000_000))
    assert off_tick.exec_type is too_big.exec_type is ExecType.REJECTED
    assert "tick" in off_tick.text
    assert "exceeds" in too_big.text


def test_a_reused_client_order_id_is_rejected() -> None:
    handler = a_handler()
    handler.handle("BROKERMESH", an_order(price="100.00"))
    [(_, reject)] = handler.handle("BROKERMESH", an_order(price="100.00"))
    assert reject.text == "duplicate ClOrdID ORD-1"


def test_an_ioc_order_that_cannot_trade_is_acknowledged_then_cancelled() -> None:
    reports = a_handler().handle(
        "BROKERMESH", an_order(price="100.00", time_in_force=TimeInForce.IOC)
    )
    assert [e.exec_type for _, e in reports] == [ExecType.NEW, ExecType.CANCELED]
    assert (reports[-1][1].leaves_qty, reports[-1][1].cum_qty) == (0, 0)


def test_a_resting_client_order_is_told_when_another_order_hits_it() -> None:
    handler = a_handler()
    assert len(handler.handle("ALICE", an_order("BID", price="100.00"))) == 1
    depth = sum(level.quantity for level in handler.market.book("AAPL").depth(Side.BUY))
    reports = handler.handle(
        "BOB", an_order("SWEEP", side=Side.SELL, quantity=depth, price="100.00")
    )
    alice = [execution for session, execution in reports if session == "ALICE"]
    assert [(e.cl_ord_id, e.exec_type, e.last_qty, e.last_price) for e in alice] == [
        ("BID", ExecType.FILL, 100, Decimal("100.00"))
    ]
    assert reports[-1] == ("ALICE", alice[0])


def test_the_status_of_a_filled_order_says_filled_with_its_quantities() -> None:
    # Arrange
    handler = a_handler()
    [_, (_, fill)] = handler.handle("BROKERMESH", an_order("FILLED-1"))

    # Act
    status = handler.status(
        "BROKERMESH", OrderStatusQuery(cl_ord_id="FILLED-1", symbol="AAPL", side=Side.BUY)
    )

    # Assert
    assert (status.exec_type, status.order_status) == (ExecType.ORDER_STATUS, OrdStatus.FILLED)
    assert (status.cum_qty, status.leaves_qty, status.last_qty) == (100, 0, 0)
    assert status.avg_price == fill.avg_price
    assert status.venue_order_id == fill.venue_order_id
    assert status.exec_id != fill.exec_id


def test_the_status_of_a_resting_order_says_new_with_everything_left() -> None:
    # Arrange
    handler = a_handler()
    handler.handle("BROKERMESH", an_order("REST-1", price="100.00"))

    # Act
    status = handler.status(
        "BROKERMESH", OrderStatusQuery(cl_ord_id="REST-1", symbol="AAPL", side=Side.BUY)
    )

    # Assert
    assert (status.order_status, status.cum_qty, status.leaves_qty) == (OrdStatus.NEW, 0, 100)


def test_the_status_of_a_cancelled_ioc_order_says_cancelled_with_nothing_left() -> None:
    # Arrange
    handler = a_handler()
    handler.handle("BROKERMESH", an_order("IOC-1", price="100.00", time_in_force=TimeInForce.IOC))

    # Act
    status = handler.status(
        "BROKERMESH", OrderStatusQuery(cl_ord_id="IOC-1", symbol="AAPL", side=Side.BUY)
    )

    # Assert
    assert (status.order_status, status.leaves_qty) == (OrdStatus.CANCELED, 0)


def test_an_order_the_venue_never_received_is_rejected_as_unknown() -> None:
    # Arrange
    handler = a_handler()
    handler.handle("BROKERMESH", an_order("KNOWN-1"))

    # Act: another session's order, and one nobody sent.
    elsewhere = handler.status(
        "OTHER", OrderStatusQuery(cl_ord_id="KNOWN-1", symbol="AAPL", side=Side.BUY)
    )
    never = handler.status(
        "BROKERMESH", OrderStatusQuery(cl_ord_id="NEVER-1", symbol="AAPL", side=Side.SELL)
    )

    # Assert
    for unknown in (elsewhere, never):
        assert (unknown.exec_type, unknown.order_status) == (
            ExecType.ORDER_STATUS,
            OrdStatus.REJECTED,
        )
        assert unknown.ord_rej_reason == ORD_REJ_REASON_UNKNOWN_ORDER
        assert (unknown.cum_qty, unknown.leaves_qty) == (0, 0)
    assert (never.cl_ord_id, never.side, never.text) == (
        "NEVER-1",
        Side.SELL,
        "unknown order NEVER-1",
    )


def test_an_order_the_venue_rejected_reports_its_rejection_not_an_unknown_order() -> None:
    # Arrange
    handler = a_handler()
    handler.handle("BROKERMESH", an_order("ODD-1", symbol="ZZZZ"))

    # Act
    status = handler.status(
        "BROKERMESH", OrderStatusQuery(cl_ord_id="ODD-1", symbol="ZZZZ", side=Side.BUY)
    )

    # Assert
    assert status.order_status is OrdStatus.REJECTED
    assert status.ord_rej_reason is None
