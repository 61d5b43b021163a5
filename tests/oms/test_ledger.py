"""The commitment ledger: what open orders and fills take from an account, kept from events."""

from __future__ import annotations

from decimal import Decimal

from brokermesh.common.v1 import common_pb2
from brokermesh.events.v1 import order_events_pb2
from brokermesh.services.oms.checks import Exposure
from brokermesh.services.oms.ledger import CommitmentLedger
from brokermesh.trading.v1 import order_pb2, order_query_pb2

S = order_pb2
ACCOUNT = "ACC-1"
LAST_PRICES = {"AAPL": Decimal("200.00")}


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ledger(clock: FakeClock | None = None) -> CommitmentLedger:
    return CommitmentLedger(
        LAST_PRICES.get,
        market_markup=Decimal("0.05"),
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


def approved(book: CommitmentLedger, order_id: str, **fields: object) -> None:
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
    book = ledger()

    book.apply(event("O1", 1, S.ORDER_STATE_NEW))
    book.apply(event("O1", 2, S.ORDER_STATE_VALIDATED))

    assert book.exposure(ACCOUNT, "AAPL") == Exposure()
    assert book.open_orders == 1


def test_risk_approval_commits_the_buy_notional_at_the_limit() -> None:
    book = ledger()

    approved(book, "O1")

    assert book.exposure(ACCOUNT, "AAPL").committed_cash == Decimal("18950.00")


def test_risk_approval_of_a_market_buy_commits_at_the_marked_up_last_price() -> None:
    book = ledger()

    approved(book, "O1", limit_price="")

    assert book.exposure(ACCOUNT, "AAPL").committed_cash == Decimal("21000.00")


def test_risk_approval_commits_sell_shares() -> None:
    book = ledger()

    approved(book, "O1", side=common_pb2.SIDE_SELL, quantity=40)

    exposure = book.exposure(ACCOUNT, "AAPL")
    assert exposure.committed_shares == 40
    assert exposure.committed_cash == 0
    assert book.exposure(ACCOUNT, "MSFT").committed_shares == 0


def test_blocked_order_never_commits() -> None:
    book = ledger()
    book.apply(event("O1", 1, S.ORDER_STATE_NEW))
    book.apply(event("O1", 2, S.ORDER_STATE_VALIDATED))

    book.apply(event("O1", 3, S.ORDER_STATE_BLOCKED))

    assert book.exposure(ACCOUNT, "AAPL") == Exposure()
    assert book.open_orders == 0


def test_cancel_releases_the_remaining_commitment() -> None:
    book = ledger()
    approved(book, "O1")
    book.apply(event("O1", 4, S.ORDER_STATE_ROUTED))

    book.apply(event("O1", 5, S.ORDER_STATE_CANCELLED))

    assert book.exposure(ACCOUNT, "AAPL").committed_cash == 0
    assert book.open_orders == 0


def test_venue_rejection_after_routing_releases_the_commitment() -> None:
    book = ledger()
    approved(book, "O1", side=common_pb2.SIDE_SELL)
    book.apply(event("O1", 4, S.ORDER_STATE_ROUTED, side=common_pb2.SIDE_SELL))

    book.apply(event("O1", 5, S.ORDER_STATE_REJECTED, side=common_pb2.SIDE_SELL))

    assert book.exposure(ACCOUNT, "AAPL").committed_shares == 0


def test_partial_fill_converts_commitment_into_spent_cash_and_shares() -> None:
    book = ledger()
    approved(book, "O1")

    book.apply(fill("O1", 4, 40, "189.50", cumulative=40))

    exposure = book.exposure(ACCOUNT, "AAPL")
    assert exposure.committed_cash == Decimal("11370.00")  # 60 left at 189.50
    assert exposure.cash_delta == Decimal("-7580.00")  # 40 x 189.50 spent
    assert exposure.position_delta == 40


def test_fill_below_the_limit_frees_the_price_improvement_at_once() -> None:
    book = ledger()
    approved(book, "O1")

    book.apply(fill("O1", 4, 100, "189.00", cumulative=100))

    exposure = book.exposure(ACCOUNT, "AAPL")
    assert exposure.committed_cash == 0
    assert exposure.cash_delta == Decimal("-18900.00")
    assert book.open_orders == 0


def test_sell_fill_removes_shares_and_credits_no_cash_before_settlement() -> None:
    book = ledger()
    approved(book, "O1", side=common_pb2.SIDE_SELL, quantity=50)

    book.apply(fill("O1", 4, 20, "190.00", cumulative=20, total=50, side=common_pb2.SIDE_SELL))

    exposure = book.exposure(ACCOUNT, "AAPL")
    assert exposure.committed_shares == 30
    assert exposure.position_delta == -20
    assert exposure.cash_delta == 0


def test_duplicate_events_are_applied_once() -> None:
    book = ledger()
    approved(book, "O1")
    partial = fill("O1", 4, 40, "189.50", cumulative=40)

    assert book.apply(partial)
    assert not book.apply(partial)
    assert not book.apply(event("O1", 3, S.ORDER_STATE_RISK_APPROVED))

    assert book.exposure(ACCOUNT, "AAPL").cash_delta == Decimal("-7580.00")


def test_order_first_seen_mid_stream_is_not_followed() -> None:
    # Its start lies before the replay window: it was finished in the snapshot already.
    book = ledger()

    assert not book.apply(event("O1", 3, S.ORDER_STATE_RISK_APPROVED))

    assert book.exposure(ACCOUNT, "AAPL") == Exposure()


def test_open_order_from_the_snapshot_commits_and_its_later_events_continue_it() -> None:
    book = ledger()
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
    book = ledger()
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
    book = ledger(clock)
    approved(book, "O1")
    book.apply(event("O1", 4, S.ORDER_STATE_CANCELLED))
    clock.now += 30
    approved(book, "O2")
    book.apply(event("O2", 4, S.ORDER_STATE_CANCELLED))

    clock.now += 45

    assert book.prune() == 1
    assert book.prune() == 0
