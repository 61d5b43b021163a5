"""Pure tests of the price-time-priority limit order book."""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokermesh.mesh.fix.messages import Side, TimeInForce
from brokermesh.services.venue_sim.book import BookError, Level, OrderBook


def a_book() -> OrderBook:
    book = OrderBook("AAPL")
    book.add_resting(order_id="A1", side=Side.SELL, price=Decimal("10.01"), quantity=100)
    book.add_resting(order_id="A2", side=Side.SELL, price=Decimal("10.02"), quantity=200)
    book.add_resting(order_id="A3", side=Side.SELL, price=Decimal("10.01"), quantity=50)
    book.add_resting(order_id="B1", side=Side.BUY, price=Decimal("9.99"), quantity=300)
    book.add_resting(order_id="B2", side=Side.BUY, price=Decimal("9.98"), quantity=400)
    return book


def buy(book: OrderBook, quantity: int, limit: str | None, tif: TimeInForce = TimeInForce.DAY):
    return book.submit(
        order_id="IN",
        side=Side.BUY,
        quantity=quantity,
        limit_price=None if limit is None else Decimal(limit),
        time_in_force=tif,
        owner="client",
    )


def test_the_best_price_trades_first_and_earlier_orders_first_within_a_price() -> None:
    result = buy(a_book(), 120, "10.02")
    assert [(f.resting_order_id, f.quantity) for f in result.fills] == [("A1", 100), ("A3", 20)]
    assert [f.price for f in result.fills] == [Decimal("10.01"), Decimal("10.01")]


def test_a_large_order_fills_once_per_resting_order_across_levels() -> None:
    book = a_book()
    result = buy(book, 350, "10.02")
    assert [(f.resting_order_id, f.price, f.quantity) for f in result.fills] == [
        ("A1", Decimal("10.01"), 100),
        ("A3", Decimal("10.01"), 50),
        ("A2", Decimal("10.02"), 200),
    ]
    assert (result.filled, result.rested, result.cancelled) == (350, 0, 0)
    assert book.best_ask() is None


def test_a_limit_order_never_trades_through_its_price_and_rests_the_remainder() -> None:
    book = a_book()
    result = buy(book, 400, "10.01")
    assert result.filled == 150
    assert result.rested == 250
    assert book.best_bid() == Level(price=Decimal("10.01"), quantity=250)
    assert book.best_ask() == Level(price=Decimal("10.02"), quantity=200)


def test_a_non_marketable_limit_rests_without_trading() -> None:
    book = a_book()
    result = buy(book, 100, "9.50")
    assert (result.fills, result.rested, result.cancelled) == ((), 100, 0)
    assert book.depth(Side.BUY)[-1] == Level(price=Decimal("9.50"), quantity=100)


def test_the_unfilled_part_of_an_ioc_order_is_cancelled() -> None:
    book = a_book()
    result = buy(book, 200, "10.01", TimeInForce.IOC)
    assert (result.filled, result.rested, result.cancelled) == (150, 0, 50)
    assert book.best_bid() == Level(price=Decimal("9.99"), quantity=300)


def test_a_market_order_sweeps_the_book_and_never_rests() -> None:
    book = a_book()
    result = buy(book, 1000, None)
    assert (result.filled, result.rested, result.cancelled) == (350, 0, 650)
    assert book.best_ask() is None


def test_a_sell_hits_the_highest_bid_first() -> None:
    book = a_book()
    result = book.submit(
        order_id="S",
        side=Side.SELL,
        quantity=500,
        limit_price=Decimal("9.98"),
        time_in_force=TimeInForce.DAY,
    )
    assert [(f.resting_order_id, f.quantity) for f in result.fills] == [("B1", 300), ("B2", 200)]
    assert book.best_bid() == Level(price=Decimal("9.98"), quantity=200)


def test_a_resting_order_remembers_its_owner_when_it_trades() -> None:
    book = a_book()
    buy(book, 100, "10.00")
    result = book.submit(
        order_id="S",
        side=Side.SELL,
        quantity=100,
        limit_price=Decimal("10.00"),
        time_in_force=TimeInForce.DAY,
    )
    assert [(f.resting_order_id, f.resting_owner, f.resting_remaining) for f in result.fills] == [
        ("IN", "client", 0)
    ]


@pytest.mark.parametrize(("quantity", "price"), [(0, "10.00"), (-1, "10.00"), (100, "0")])
def test_orders_without_a_positive_quantity_or_price_are_refused(quantity: int, price: str) -> None:
    with pytest.raises(BookError):
        buy(a_book(), quantity, price)
