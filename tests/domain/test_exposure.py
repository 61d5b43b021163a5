"""The exposure book: what holds, open orders and fills take from an account."""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokermesh.common.v1 import common_pb2
from brokermesh.domain.exposure import ACCOUNT_HEADER, Exposure, ExposureBook, check_routing
from brokermesh.events.v1 import order_events_pb2
from brokermesh.mesh.errors import InvalidArgument
from brokermesh.trading.v1 import order_pb2, order_query_pb2

S = order_pb2
ACCOUNT = "ACC-1"
LAST_PRICES = {"AAPL": Decimal("200.00")}
HOLD_TTL_S = 30.0


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def new_book(clock: FakeClock | None = None) -> ExposureBook:
    return ExposureBook(
        LAST_PRICES.get,
        market_markup=Decimal("0.05"),
        hold_ttl_s=HOLD_TTL_S,
        terminal_retention_s=60.0,
        clock=clock or FakeClock(),
    )


def event(
    order_id: str,
    version: int,
    state: int,
    *,
    side: int = common_pb2.SIDE_BUY,
    quantity: int = 100,
    limit_price: str = "189.50",
    symbol: str = "AAPL",
) -> order_events_pb2.OrderEvent:
    return order_events_pb2.OrderEvent(
        event_type="Order",
        order_id=order_id,
        account_id=ACCOUNT,
        symbol=symbol,
        side=side,
        quantity=quantity,
        limit_price=limit_price,
        stream_version=version,
        state=state,
        order_type=common_pb2.ORDER_TYPE_LIMIT if limit_price else common_pb2.ORDER_TYPE_MARKET,
    )


def approved(book: ExposureBook, order_id: str, **fields: object) -> None:
    """Take an order through accepted, validated and risk-approved (versions 1 to 3)."""
    for version, state in enumerate(
        (S.ORDER_STATE_NEW, S.ORDER_STATE_VALIDATED, S.ORDER_STATE_RISK_APPROVED), start=1
    ):
        assert book.apply(event(order_id, version, state, **fields))  # type: ignore[arg-type]


def fill(
    order_id: str,
    version: int,
    quantity: int,
    price: str,
    cumulative: int,
    total: int = 100,
    **fields: object,
) -> order_events_pb2.OrderEvent:
    state = S.ORDER_STATE_FILLED if cumulative == total else S.ORDER_STATE_PARTIALLY_FILLED
    filled = event(order_id, version, state, quantity=total, **fields)  # type: ignore[arg-type]
    filled.filled.fill.quantity = quantity
    filled.filled.fill.price = price
    filled.filled.cumulative_quantity = cumulative
    filled.filled.leaves_quantity = total - cumulative
    return filled


def test_validation_alone_commits_nothing() -> None:
    book = new_book()

    book.apply(event("O1", 1, S.ORDER_STATE_NEW))
    book.apply(event("O1", 2, S.ORDER_STATE_VALIDATED))

    assert book.exposure(ACCOUNT, "AAPL") == Exposure()
    assert book.open_orders == 1


def test_risk_approval_commits_the_buy_notional_at_the_limit() -> None:
    book = new_book()

    approved(book, "O1")

    assert book.exposure(ACCOUNT, "AAPL").committed_cash == Decimal("18950.00")


def test_risk_approval_of_a_market_buy_commits_at_the_marked_up_last_price() -> None:
    book = new_book()

    approved(book, "O1", limit_price="")

    assert book.exposure(ACCOUNT, "AAPL").committed_cash == Decimal("21000.00")


def test_risk_approval_commits_sell_shares() -> None:
    book = new_book()

    approved(book, "O1", side=common_pb2.SIDE_SELL, quantity=40)

    exposure = book.exposure(ACCOUNT, "AAPL")
    assert exposure.committed_shares == 40
    assert exposure.committed_cash == 0
    assert book.exposure(ACCOUNT, "MSFT").committed_shares == 0


def test_blocked_order_never_commits() -> None:
    book = new_book()
    book.apply(event("O1", 1, S.ORDER_STATE_NEW))
    book.apply(event("O1", 2, S.ORDER_STATE_VALIDATED))

    book.apply(event("O1", 3, S.ORDER_STATE_BLOCKED))

    assert book.exposure(ACCOUNT, "AAPL") == Exposure()
    assert book.open_orders == 0


def test_cancel_releases_the_remaining_commitment() -> None:
    book = new_book()
    approved(book, "O1")
    book.apply(event("O1", 4, S.ORDER_STATE_ROUTED))

    book.apply(event("O1", 5, S.ORDER_STATE_CANCELLED))

    assert book.exposure(ACCOUNT, "AAPL").committed_cash == 0
    assert book.open_orders == 0


def test_venue_rejection_after_routing_releases_the_commitment() -> None:
    book = new_book()
    approved(book, "O1", side=common_pb2.SIDE_SELL)
    book.apply(event("O1", 4, S.ORDER_STATE_ROUTED, side=common_pb2.SIDE_SELL))

    book.apply(event("O1", 5, S.ORDER_STATE_REJECTED, side=common_pb2.SIDE_SELL))

    assert book.exposure(ACCOUNT, "AAPL").committed_shares == 0


def test_partial_fill_converts_commitment_into_spent_cash_and_shares() -> None:
    book = new_book()
    approved(book, "O1")

    book.apply(fill("O1", 4, 40, "189.50", cumulative=40))

    exposure = book.exposure(ACCOUNT, "AAPL")
    assert exposure.committed_cash == Decimal("11370.00")  # 60 left at 189.50
    assert exposure.cash_delta == Decimal("-7580.00")  # 40 x 189.50 spent
    assert exposure.position_delta == 40


def test_fill_below_the_limit_frees_the_price_improvement_at_once() -> None:
    book = new_book()
    approved(book, "O1")

    book.apply(fill("O1", 4, 100, "189.00", cumulative=100))

    exposure = book.exposure(ACCOUNT, "AAPL")
    assert exposure.committed_cash == 0
    assert exposure.cash_delta == Decimal("-18900.00")
    assert book.open_orders == 0


def test_sell_fill_removes_shares_and_keeps_its_proceeds_apart_until_settlement() -> None:
    book = new_book()
    approved(book, "O1", side=common_pb2.SIDE_SELL, quantity=50)

    book.apply(fill("O1", 4, 20, "190.00", cumulative=20, total=50, side=common_pb2.SIDE_SELL))

    exposure = book.exposure(ACCOUNT, "AAPL")
    assert exposure.committed_shares == 30
    assert exposure.position_delta == -20
    assert exposure.cash_delta == 0
    assert exposure.sale_proceeds == Decimal("3800.00")  # 20 x 190.00, settling on T+1


def test_duplicate_events_are_applied_once() -> None:
    book = new_book()
    approved(book, "O1")
    partial = fill("O1", 4, 40, "189.50", cumulative=40)

    assert book.apply(partial)
    assert not book.apply(partial)
    assert not book.apply(event("O1", 3, S.ORDER_STATE_RISK_APPROVED))

    assert book.exposure(ACCOUNT, "AAPL").cash_delta == Decimal("-7580.00")


def test_order_first_seen_mid_stream_is_not_followed() -> None:
    # Its start lies before the replay window: it was finished in the snapshot already.
    book = new_book()

    assert not book.apply(event("O1", 3, S.ORDER_STATE_RISK_APPROVED))

    assert book.exposure(ACCOUNT, "AAPL") == Exposure()


def test_open_order_from_the_snapshot_commits_and_its_later_events_continue_it() -> None:
    book = new_book()
    view = order_query_pb2.OrderView(
        order=order_pb2.Order(
            order_id="O1",
            account_id=ACCOUNT,
            symbol="AAPL",
            side=common_pb2.SIDE_BUY,
            quantity=100,
            limit_price="189.50",
            order_type=common_pb2.ORDER_TYPE_LIMIT,
        ),
        state=S.ORDER_STATE_PARTIALLY_FILLED,
        stream_version=5,
        cumulative_quantity=40,
        leaves_quantity=60,
        fills=[order_pb2.Fill(exec_id="E1", quantity=40, price="189.50")],
    )

    book.load_view(view)
    replayed = book.apply(fill("O1", 5, 40, "189.50", cumulative=40))
    book.apply(fill("O1", 6, 60, "189.50", cumulative=100))

    assert not replayed
    exposure = book.exposure(ACCOUNT, "AAPL")
    assert exposure.committed_cash == 0
    assert exposure.cash_delta == Decimal("-18950.00")
    assert exposure.position_delta == 100


def test_finished_order_in_the_snapshot_ignores_a_replayed_start() -> None:
    book = new_book()
    view = order_query_pb2.OrderView(
        order=order_pb2.Order(
            order_id="O1",
            account_id=ACCOUNT,
            symbol="AAPL",
            side=common_pb2.SIDE_BUY,
            quantity=100,
            limit_price="189.50",
            order_type=common_pb2.ORDER_TYPE_LIMIT,
        ),
        state=S.ORDER_STATE_CANCELLED,
        stream_version=4,
    )
    book.load_view(view)

    assert not book.apply(event("O1", 1, S.ORDER_STATE_NEW))
    assert book.open_orders == 0


def test_finished_orders_are_forgotten_after_the_retention() -> None:
    clock = FakeClock()
    book = new_book(clock)
    approved(book, "O1")
    book.apply(event("O1", 4, S.ORDER_STATE_CANCELLED))
    clock.now += 30
    approved(book, "O2")
    book.apply(event("O2", 4, S.ORDER_STATE_CANCELLED))

    clock.now += 45

    assert book.prune() == 1
    assert book.prune() == 0


# Provisional holds


def decided(
    order_id: str,
    *,
    side: int = common_pb2.SIDE_BUY,
    quantity: int = 100,
    limit_price: str = "189.50",
    symbol: str = "AAPL",
) -> order_pb2.Order:
    """An order as a service sees it when deciding on it, before any of its events."""
    return order_pb2.Order(
        order_id=order_id,
        account_id=ACCOUNT,
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        quantity=quantity,
        limit_price=limit_price,
        order_type=common_pb2.ORDER_TYPE_LIMIT if limit_price else common_pb2.ORDER_TYPE_MARKET,
    )


def test_hold_of_a_limit_buy_holds_its_notional_at_the_limit() -> None:
    book = new_book()

    placed = book.hold(decided("O1"))

    assert placed
    exposure = book.exposure(ACCOUNT, "AAPL")
    assert exposure.committed_cash == Decimal("18950.00")
    assert exposure.symbol_committed_cash == Decimal("18950.00")
    assert book.hold_count == 1


def test_hold_of_a_market_buy_holds_at_the_marked_up_last_price() -> None:
    book = new_book()

    book.hold(decided("O1", limit_price=""))

    assert book.exposure(ACCOUNT, "AAPL").committed_cash == Decimal("21000.00")


def test_hold_of_a_sell_holds_its_shares_and_no_cash() -> None:
    book = new_book()

    book.hold(decided("O1", side=common_pb2.SIDE_SELL, quantity=40))

    exposure = book.exposure(ACCOUNT, "AAPL")
    assert exposure.committed_shares == 40
    assert exposure.committed_cash == 0


def test_hold_of_a_market_buy_without_any_price_is_refused() -> None:
    book = new_book()

    with pytest.raises(ValueError, match="no usable price for MSFT"):
        book.hold(decided("O1", symbol="MSFT", limit_price=""))

    assert book.hold_count == 0


def test_second_hold_for_the_same_order_replaces_the_first() -> None:
    book = new_book()
    book.hold(decided("O1", quantity=100))

    book.hold(decided("O1", quantity=100))
    book.hold(decided("O1", quantity=10))

    assert book.exposure(ACCOUNT, "AAPL").committed_cash == Decimal("1895.00")
    assert book.hold_count == 1


def test_exposure_excluding_an_order_leaves_out_its_own_hold_only() -> None:
    book = new_book()
    book.hold(decided("O1", quantity=100))
    book.hold(decided("O2", quantity=10))

    exposure = book.exposure(ACCOUNT, "AAPL", excluding="O1")

    assert exposure.committed_cash == Decimal("1895.00")
    assert exposure.symbol_committed_cash == Decimal("1895.00")


def test_exposure_excluding_an_order_leaves_out_its_own_commitment() -> None:
    book = new_book()
    approved(book, "O1", side=common_pb2.SIDE_SELL, quantity=40)

    exposure = book.exposure(ACCOUNT, "AAPL", excluding="O1")

    assert exposure.committed_shares == 0


def test_symbol_committed_cash_counts_only_that_symbols_buys() -> None:
    book = new_book()
    book.hold(decided("O1", quantity=10))
    book.hold(decided("O2", symbol="MSFT", limit_price="400.00", quantity=5))

    aapl = book.exposure(ACCOUNT, "AAPL")
    msft = book.exposure(ACCOUNT, "MSFT")

    assert aapl.committed_cash == msft.committed_cash == Decimal("3895.00")
    assert aapl.symbol_committed_cash == Decimal("1895.00")
    assert msft.symbol_committed_cash == Decimal("2000.00")


def test_release_drops_the_hold_and_frees_its_cash() -> None:
    book = new_book()
    book.hold(decided("O1"))

    released = book.release("O1")

    assert released
    assert not book.release("O1")
    assert book.exposure(ACCOUNT, "AAPL") == Exposure()


def test_hold_stands_while_the_order_is_new_or_validated() -> None:
    book = new_book()
    book.hold(decided("O1"))

    book.apply(event("O1", 1, S.ORDER_STATE_NEW))
    book.apply(event("O1", 2, S.ORDER_STATE_VALIDATED))

    assert book.exposure(ACCOUNT, "AAPL").committed_cash == Decimal("18950.00")
    assert book.hold_count == 1


def test_risk_approval_hands_the_hold_over_to_the_commitment_at_the_same_amount() -> None:
    book = new_book()
    book.hold(decided("O1"))
    book.apply(event("O1", 1, S.ORDER_STATE_NEW))
    book.apply(event("O1", 2, S.ORDER_STATE_VALIDATED))

    book.apply(event("O1", 3, S.ORDER_STATE_RISK_APPROVED))

    assert book.exposure(ACCOUNT, "AAPL").committed_cash == Decimal("18950.00")
    assert book.hold_count == 0
    book.apply(event("O1", 4, S.ORDER_STATE_CANCELLED))
    assert book.exposure(ACCOUNT, "AAPL").committed_cash == 0


def test_market_buy_commits_at_the_basis_of_its_hold_when_the_price_moved() -> None:
    prices = {"AAPL": Decimal("200.00")}
    book = ExposureBook(prices.get, market_markup=Decimal("0.05"), clock=FakeClock())
    book.hold(decided("O1", limit_price=""))
    prices["AAPL"] = Decimal("250.00")

    approved(book, "O1", limit_price="")

    assert book.exposure(ACCOUNT, "AAPL").committed_cash == Decimal("21000.00")


@pytest.mark.parametrize(
    "state", [S.ORDER_STATE_BLOCKED, S.ORDER_STATE_REJECTED], ids=["blocked", "rejected"]
)
def test_refusal_event_releases_the_hold(state: int) -> None:
    book = new_book()
    book.hold(decided("O1"))
    book.apply(event("O1", 1, S.ORDER_STATE_NEW))
    book.apply(event("O1", 2, S.ORDER_STATE_VALIDATED))

    book.apply(event("O1", 3, state))

    assert book.exposure(ACCOUNT, "AAPL") == Exposure()
    assert book.hold_count == 0


def test_no_hold_is_placed_for_an_order_its_events_already_commit() -> None:
    book = new_book()
    approved(book, "O1")

    placed = book.hold(decided("O1"))

    assert not placed
    assert book.exposure(ACCOUNT, "AAPL").committed_cash == Decimal("18950.00")


def test_no_hold_is_placed_for_a_finished_order() -> None:
    book = new_book()
    approved(book, "O1")
    book.apply(event("O1", 4, S.ORDER_STATE_CANCELLED))

    placed = book.hold(decided("O1"))

    assert not placed
    assert book.exposure(ACCOUNT, "AAPL").committed_cash == 0


def test_terminal_event_of_an_order_first_seen_mid_stream_releases_its_hold() -> None:
    book = new_book()
    book.hold(decided("O1"))

    book.apply(event("O1", 5, S.ORDER_STATE_CANCELLED))

    assert book.hold_count == 0


def test_position_deltas_list_every_symbol_the_fills_moved() -> None:
    book = new_book()
    approved(book, "O1", quantity=10)
    approved(book, "O2", symbol="MSFT", side=common_pb2.SIDE_SELL, quantity=5)
    book.apply(fill("O1", 4, 10, "189.50", cumulative=10, total=10))
    book.apply(
        fill("O2", 4, 5, "400.00", cumulative=5, total=5, symbol="MSFT", side=common_pb2.SIDE_SELL)
    )

    deltas = book.position_deltas(ACCOUNT)

    assert dict(deltas) == {"AAPL": 10, "MSFT": -5}
    assert dict(book.position_deltas("ACC-OTHER")) == {}


# Hold expiry on the live clock


def live_for(book: ExposureBook, clock: FakeClock, seconds: float, step_s: float = 1.0) -> None:
    """Observe a live feed every ``step_s`` for ``seconds``."""
    elapsed = 0.0
    while elapsed < seconds:
        clock.now += step_s
        elapsed += step_s
        book.observe_feed(live=True)


def test_hold_falls_due_after_the_ttl_of_live_feed() -> None:
    clock = FakeClock()
    book = new_book(clock)
    book.observe_feed(live=True)
    book.hold(decided("O1"))

    live_for(book, clock, HOLD_TTL_S - 1)
    early = book.due_holds()
    live_for(book, clock, 1)

    assert early == []
    assert book.due_holds() == ["O1"]


def test_hold_never_falls_due_while_the_feed_is_down() -> None:
    clock = FakeClock()
    book = new_book(clock)
    book.observe_feed(live=True)
    book.hold(decided("O1"))

    for _ in range(10 * int(HOLD_TTL_S)):
        clock.now += 1
        book.observe_feed(live=False)

    assert book.due_holds() == []
    assert book.expire(["O1"]) == []
    assert book.hold_count == 1


def test_time_with_the_feed_down_does_not_count_towards_the_ttl() -> None:
    clock = FakeClock()
    book = new_book(clock)
    book.observe_feed(live=True)
    book.hold(decided("O1"))
    live_for(book, clock, 20)
    clock.now += 600
    book.observe_feed(live=False)

    book.observe_feed(live=True)
    live_for(book, clock, 9)
    short = book.due_holds()
    live_for(book, clock, 1)

    assert short == []
    assert book.due_holds() == ["O1"]


def test_nothing_falls_due_at_the_first_live_observation_after_an_outage() -> None:
    clock = FakeClock()
    book = new_book(clock)
    book.observe_feed(live=True)
    book.hold(decided("O1"))
    live_for(book, clock, HOLD_TTL_S + 5)
    book.observe_feed(live=False)

    book.observe_feed(live=True)
    first = book.due_holds()
    live_for(book, clock, 1)

    assert first == []
    assert book.due_holds() == ["O1"]


def test_hold_placed_just_before_an_outage_gets_no_credit_for_that_time() -> None:
    clock = FakeClock()
    book = new_book(clock)
    book.observe_feed(live=True)
    clock.now += 0.9
    book.hold(decided("O1"))
    clock.now += 0.1
    book.observe_feed(live=False)

    book.observe_feed(live=True)
    live_for(book, clock, HOLD_TTL_S)

    assert book.due_holds() == []


def test_expire_drops_a_due_hold_and_frees_its_cash() -> None:
    clock = FakeClock()
    book = new_book(clock)
    book.observe_feed(live=True)
    book.hold(decided("O1"))
    live_for(book, clock, HOLD_TTL_S)

    dropped = book.expire(book.due_holds())

    assert dropped == ["O1"]
    assert book.exposure(ACCOUNT, "AAPL") == Exposure()


def test_expire_keeps_a_hold_replaced_since_it_fell_due() -> None:
    clock = FakeClock()
    book = new_book(clock)
    book.observe_feed(live=True)
    book.hold(decided("O1"))
    live_for(book, clock, HOLD_TTL_S)
    due = book.due_holds()

    book.hold(decided("O1"))
    dropped = book.expire(due)

    assert due == ["O1"]
    assert dropped == []
    assert book.hold_count == 1


def test_hold_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="hold_ttl_s must be positive"):
        ExposureBook(LAST_PRICES.get, market_markup=Decimal("0.05"), hold_ttl_s=0)


def test_hold_of_a_market_order_ignores_a_stray_limit_price() -> None:
    book = new_book()
    order = decided("O1", limit_price="1.00")
    order.order_type = common_pb2.ORDER_TYPE_MARKET

    book.hold(order)

    assert book.exposure(ACCOUNT, "AAPL").committed_cash == Decimal("21000.00")


# Account affinity


def test_call_routed_on_another_account_is_refused_naming_both() -> None:
    metadata = [("traceparent", "00-x"), (ACCOUNT_HEADER, "ACC-2")]

    with pytest.raises(InvalidArgument) as caught:
        check_routing(metadata, ACCOUNT)

    assert caught.value.message == (
        "x-brokermesh-account 'ACC-2' does not match the order's account ACC-1"
    )
    assert caught.value.field == ACCOUNT_HEADER
