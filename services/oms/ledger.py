"""The OMS commitment ledger: what each account's open orders and fills have used up.

ValidateOrder is declared free of side effects, so validating an order reserves nothing.
Instead the ledger follows the order events and keeps, per account, an intraday view:

* **Commit at RISK_APPROVED.** An order commits only once it has passed risk and may route;
  orders refused by validation or risk never held anything. A buy commits
  ``leaves * basis`` cash, where the basis is its limit price or, for a market buy, the last
  price plus the market markup at the moment of approval (fixed then, so the release is
  exact). A sell commits its leaves quantity of shares. The order stays committed while it
  is ROUTED or PARTIALLY_FILLED.
* **Convert at fills.** A fill of ``q`` shares at ``p`` shrinks the order's leaves, so the
  reservation falls by ``q * basis`` (a fill below the limit frees the difference at once);
  a buy fill spends ``q * p`` of cash and adds ``q`` shares, a sell fill removes ``q``
  shares. Sale proceeds are not credited to buying power: they settle on T+1 and spending
  them first would risk a good-faith violation.
* **Release at BLOCKED, REJECTED, CANCELLED**, and at FILLED when nothing is left.

The books in PostgreSQL (accounts.cash, positions) are the opening books: until post-trade
settlement exists nothing updates them with trading, so the ledger applies every fill on top
of them. Once settlement maintains the books, the ledger must apply only fills after the
books' as-of time.

Events are applied at most once and in order per order: each carries the order's stream
version, and one at or below the version already applied is a duplicate (replays overlap
the start-up snapshot on purpose). An order first seen at a version above 1 is one whose
start lies before the replay window: it was already terminal in the snapshot, so it is
skipped. Pure: no I/O; the service feeds it snapshot rows and events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from brokermesh.common.v1 import common_pb2
from brokermesh.events.v1 import order_events_pb2
from brokermesh.services.oms.checks import NO_EXPOSURE, Exposure, parse_price
from brokermesh.trading.v1 import order_pb2, order_query_pb2

_LOGGER = logging.getLogger(__name__)

_S = order_pb2
#: States in which an order holds a commitment.
COMMITTING_STATES = frozenset(
    {_S.ORDER_STATE_RISK_APPROVED, _S.ORDER_STATE_ROUTED, _S.ORDER_STATE_PARTIALLY_FILLED}
)
#: States an order never leaves.
TERMINAL_STATES = frozenset(
    {
        _S.ORDER_STATE_FILLED,
        _S.ORDER_STATE_REJECTED,
        _S.ORDER_STATE_BLOCKED,
        _S.ORDER_STATE_CANCELLED,
    }
)

_ZERO = Decimal(0)
_ONE = Decimal(1)


@dataclass(slots=True, kw_only=True)
class _Order:
    """An order the ledger follows, with what it currently holds."""

    order_id: str
    account_id: str
    symbol: str
    is_buy: bool
    quantity: int
    limit_price: Decimal | None
    version: int
    state: int
    leaves: int
    #: Per-share price of a buy's cash reservation, fixed when the order commits.
    basis: Decimal | None = None
    held_cash: Decimal = _ZERO
    held_shares: int = 0


@dataclass(slots=True)
class _AccountBook:
    """Running totals of one account's commitments and unsettled fills."""

    committed_cash: Decimal = _ZERO
    committed_shares: dict[str, int] = field(default_factory=dict)
    cash_delta: Decimal = _ZERO
    position_delta: dict[str, int] = field(default_factory=dict)


class CommitmentLedger:
    """Per-account commitments of open orders, kept from order events.

    Not thread-safe; the service uses it from its one event loop. Lookups are O(1).
    """

    def __init__(
        self,
        price_of: Callable[[str], Decimal | None],
        *,
        market_markup: Decimal,
        terminal_retention_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._price_of = price_of
        self._markup = _ONE + market_markup
        self._retention_s = terminal_retention_s
        self._clock = clock
        self._orders: dict[str, _Order] = {}
        self._books: dict[str, _AccountBook] = {}
        # Final versions of finished orders, kept a while so late duplicates are recognised.
        self._finished: dict[str, tuple[int, float]] = {}

    @property
    def open_orders(self) -> int:
        """How many non-terminal orders the ledger follows."""
        return len(self._orders)

    def exposure(self, account_id: str, symbol: str) -> Exposure:
        """The account's commitments and unsettled fills, for ``symbol``'s shares."""
        book = self._books.get(account_id)
        if book is None:
            return NO_EXPOSURE
        return Exposure(
            committed_cash=book.committed_cash,
            committed_shares=book.committed_shares.get(symbol, 0),
            cash_delta=book.cash_delta,
            position_delta=book.position_delta.get(symbol, 0),
        )

    def load_view(self, view: order_query_pb2.OrderView) -> None:
        """Take one order from the start-up snapshot of the read model."""
        order = view.order
        tracked = _Order(
            order_id=order.order_id,
            account_id=order.account_id,
            symbol=order.symbol,
            is_buy=order.side == common_pb2.SIDE_BUY,
            quantity=order.quantity,
            limit_price=parse_price(order.limit_price) if order.limit_price else None,
            version=view.stream_version,
            state=view.state,
            leaves=max(order.quantity - view.cumulative_quantity, 0),
        )
        book = self._book(tracked.account_id)
        for fill in view.fills:
            self._spend(book, tracked, fill.quantity, fill.price)
        self._settle_state(tracked)

    def apply(self, event: order_events_pb2.OrderEvent) -> bool:
        """Apply one order event; False when it was a duplicate or is not followed."""
        version = event.stream_version
        order = self._orders.get(event.order_id)
        if order is None:
            finished = self._finished.get(event.order_id)
            if finished is not None or version != 1:
                # A duplicate of a finished order, or one that finished before the snapshot.
                return False
            order = self._from_event(event)
        elif version <= order.version:
            return False

        self._withdraw(order)
        if event.WhichOneof("detail") == "filled":
            self._fill(order, event.filled)
        order.version = version
        order.state = event.state
        self._settle_state(order)
        return True

    def prune(self) -> int:
        """Forget finished orders older than the retention; returns how many were dropped."""
        horizon = self._clock() - self._retention_s
        dropped = 0
        # Insertion order is finishing order, so the oldest entries are at the front.
        while self._finished:
            order_id, (_, finished_at) = next(iter(self._finished.items()))
            if finished_at > horizon:
                break
            del self._finished[order_id]
            dropped += 1
        return dropped

    def _from_event(self, event: order_events_pb2.OrderEvent) -> _Order:
        return _Order(
            order_id=event.order_id,
            account_id=event.account_id,
            symbol=event.symbol,
            is_buy=event.side == common_pb2.SIDE_BUY,
            quantity=event.quantity,
            limit_price=parse_price(event.limit_price) if event.limit_price else None,
            version=0,
            state=order_pb2.ORDER_STATE_UNSPECIFIED,
            leaves=event.quantity,
        )

    def _fill(self, order: _Order, filled: order_events_pb2.OrderFilled) -> None:
        # The venue's cumulative quantity is authoritative; it also repairs a missed fill.
        quantity = filled.fill.quantity
        if filled.cumulative_quantity:
            order.leaves = max(order.quantity - filled.cumulative_quantity, 0)
        else:
            order.leaves = max(order.leaves - quantity, 0)
        self._spend(self._book(order.account_id), order, quantity, filled.fill.price)

    def _spend(self, book: _AccountBook, order: _Order, quantity: int, price_text: str) -> None:
        # Buys turn cash into shares; sells remove shares and credit nothing until settlement.
        price = parse_price(price_text)
        if order.is_buy:
            if price is None:
                _LOGGER.warning("fill of %s has no usable price %r", order.order_id, price_text)
            else:
                book.cash_delta -= price * quantity
            change = quantity
        else:
            change = -quantity
        book.position_delta[order.symbol] = book.position_delta.get(order.symbol, 0) + change

    def _settle_state(self, order: _Order) -> None:
        # After a change of state: finish the order, or (re)apply what it holds now.
        if order.state in TERMINAL_STATES:
            self._orders.pop(order.order_id, None)
            self._finished[order.order_id] = (order.version, self._clock())
            return

        self._orders[order.order_id] = order
        if order.state in COMMITTING_STATES:
            if order.basis is None:
                order.basis = self._basis(order)
            self._hold(order)

    def _basis(self, order: _Order) -> Decimal:
        if not order.is_buy:
            return _ZERO
        if order.limit_price is not None:
            return order.limit_price
        last = self._price_of(order.symbol)
        if last is None:
            _LOGGER.warning(
                "no price for %s: market buy %s commits no cash", order.symbol, order.order_id
            )
            return _ZERO
        return last * self._markup

    def _hold(self, order: _Order) -> None:
        book = self._book(order.account_id)
        if order.is_buy:
            order.held_cash = order.leaves * (order.basis or _ZERO)
            book.committed_cash += order.held_cash
        else:
            order.held_shares = order.leaves
            shares = book.committed_shares
            shares[order.symbol] = shares.get(order.symbol, 0) + order.held_shares

    def _withdraw(self, order: _Order) -> None:
        # Take the order's current holding out of the totals before it changes.
        if not (order.held_cash or order.held_shares):
            return
        book = self._book(order.account_id)
        book.committed_cash -= order.held_cash
        if order.held_shares:
            remaining = book.committed_shares.get(order.symbol, 0) - order.held_shares
            if remaining:
                book.committed_shares[order.symbol] = remaining
            else:
                book.committed_shares.pop(order.symbol, None)
        order.held_cash = _ZERO
        order.held_shares = 0

    def _book(self, account_id: str) -> _AccountBook:
        book = self._books.get(account_id)
        if book is None:
            book = self._books[account_id] = _AccountBook()
        return book
