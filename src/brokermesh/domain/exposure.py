"""Exposure bookkeeping: what open orders, provisional holds and intraday fills take from an
account. Pure: no I/O; the services feed it order events and decisions, and read it back.

OMS validation and pre-trade risk each keep one :class:`ExposureBook`:

* **Hold at decision time.** A service that passes an order places a provisional hold keyed
  by its order id, in the same synchronous step as the check, so the next decision sees it:
  a buy holds ``quantity * basis`` cash, a sell ``quantity`` shares. The basis is the limit
  price or, for a market buy, the last price plus the market markup. A second decision for
  the same order id replaces its hold, never adds to it; a refusal drops it.
* **Commit at RISK_APPROVED.** An order's own events take over from its hold: when the
  order reaches RISK_APPROVED (or a later open state) on the feed, the hold is dropped and
  the commitment placed in one step, so at no moment is the order counted twice or not at
  all. A buy's commitment keeps the basis of its hold (for a market buy, the basis is
  fixed at decision time, so the handover is exact), else the current basis. The order
  stays committed while it is ROUTED or PARTIALLY_FILLED. REJECTED and BLOCKED release the
  hold of an order refused before it committed.
* **Convert at fills.** A fill of ``q`` shares at ``p`` shrinks the order's leaves, so the
  commitment falls by ``q * basis`` (a fill below the limit frees the difference at once);
  a buy fill spends ``q * p`` of cash and adds ``q`` shares, a sell fill removes ``q``
  shares and adds ``q * p`` to unsettled sale proceeds. Proceeds are kept apart because
  they settle on T+1: buying power must not spend them, account value may count them.
* **Release at BLOCKED, REJECTED, CANCELLED**, and at FILLED when nothing is left.
* **Expire holds only on a live feed.** A hold whose order never shows up (the caller
  crashed before recording it) must not hold forever, but a hold whose events are merely
  late must not lapse either. The book counts *live seconds*: time between two consecutive
  observations of a live, caught-up feed (:meth:`ExposureBook.observe_feed`). A hold is due
  once ``hold_ttl_s`` live seconds have passed since it was placed, and only while the feed
  is live; while it is disconnected or lagging, the live clock stands still and no hold
  falls due. The caller decides which due holds really expire (see
  :meth:`ExposureBook.expire`).

The books in PostgreSQL (accounts.cash, positions) are the opening books: until post-trade
settlement exists nothing updates them with trading, so every fill applies on top of them.
Once settlement maintains the books, only fills after the books' as-of time may apply.

Events are applied at most once and in order per order: each carries the order's stream
version, and one at or below the version already applied is a duplicate (replays overlap
the start-up snapshot on purpose). An order first seen at a version above 1 is one whose
start lies before the replay window: it was already terminal in the snapshot, so it is
skipped. Not thread-safe: each service uses its book from one event loop, which is what
makes check-and-hold atomic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import TypeVar

from brokermesh.common.v1 import common_pb2
from brokermesh.events.v1 import order_events_pb2
from brokermesh.mesh.errors import InvalidArgument
from brokermesh.trading.v1 import order_pb2, order_query_pb2

_LOGGER = logging.getLogger(__name__)

_S = order_pb2
#: States in which an order's own events hold its commitment.
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

_N = TypeVar("_N", int, Decimal)

#: gRPC metadata naming the account a decision is for. Holds live in one replica's memory,
#: so the mesh routes every decision for an account to one replica by hashing this value.
ACCOUNT_HEADER = "x-brokermesh-account"

_ZERO = Decimal(0)
_ONE = Decimal(1)
_NO_POSITIONS: Mapping[str, int] = MappingProxyType({})


def parse_price(text: str) -> Decimal | None:
    """A decimal price string as a finite Decimal, or None when it is not one."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def check_routing(metadata: Iterable[tuple[str, str | bytes]] | None, account_id: str) -> None:
    """Refuse a decision routed on another account than its order's.

    The replica was chosen by :data:`ACCOUNT_HEADER`; one named after another account may
    not hold this account's holds, so deciding there could pass what the right replica
    would refuse. A call without the header is served as it is.
    """
    for key, value in metadata or ():
        if key == ACCOUNT_HEADER and value != account_id:
            raise InvalidArgument(
                f"{ACCOUNT_HEADER} {value!r} does not match the order's account {account_id}",
                field=ACCOUNT_HEADER,
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Exposure:
    """What an account's open orders, holds and today's fills change about its books."""

    #: Cash reserved by open buy orders and buy holds, across every symbol.
    committed_cash: Decimal = _ZERO
    #: The part of ``committed_cash`` reserved for buying the symbol asked about.
    symbol_committed_cash: Decimal = _ZERO
    #: Shares of the symbol reserved by open sell orders and sell holds.
    committed_shares: int = 0
    #: Cash spent by buy fills not yet reflected in the books (negative or zero).
    cash_delta: Decimal = _ZERO
    #: Proceeds of sell fills, unsettled until T+1 (positive or zero).
    sale_proceeds: Decimal = _ZERO
    #: Shares of the symbol bought minus sold by fills not yet in the books.
    position_delta: int = 0


NO_EXPOSURE = Exposure()


@dataclass(slots=True, kw_only=True)
class _Claim:
    """Cash or shares one order takes from its account, by hold or by commitment."""

    account_id: str
    symbol: str
    cash: Decimal = _ZERO
    shares: int = 0


@dataclass(slots=True, kw_only=True)
class _Hold:
    """A provisional hold placed at decision time, before the order's events arrive."""

    claim: _Claim
    is_buy: bool
    #: Per-share cash basis of a buy hold; the commitment adopts it.
    basis: Decimal | None
    #: The book's live seconds at placement.
    live_at: float


@dataclass(slots=True, kw_only=True)
class _Order:
    """An order the book follows from its events, with what it currently commits."""

    order_id: str
    account_id: str
    symbol: str
    is_buy: bool
    quantity: int
    limit_price: Decimal | None
    version: int
    state: int
    leaves: int
    #: Per-share price of a buy's cash commitment, fixed when the order first commits.
    basis: Decimal | None = None
    claim: _Claim | None = None


@dataclass(slots=True)
class _AccountBook:
    """Running totals of one account's claims and unsettled fills."""

    committed_cash: Decimal = _ZERO
    symbol_cash: dict[str, Decimal] = field(default_factory=dict)
    committed_shares: dict[str, int] = field(default_factory=dict)
    cash_delta: Decimal = _ZERO
    sale_proceeds: Decimal = _ZERO
    position_delta: dict[str, int] = field(default_factory=dict)


class ExposureBook:
    """Per-account holds, commitments and fills of one service process.

    Every method runs to completion without awaiting, so a check followed by :meth:`hold`
    in one synchronous step cannot interleave with another request. Lookups are O(1).
    """

    def __init__(
        self,
        price_of: Callable[[str], Decimal | None],
        *,
        market_markup: Decimal,
        hold_ttl_s: float = 30.0,
        terminal_retention_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if hold_ttl_s <= 0:
            raise ValueError(f"hold_ttl_s must be positive, not {hold_ttl_s}")
        self._price_of = price_of
        self._markup = _ONE + market_markup
        self._ttl_s = hold_ttl_s
        self._retention_s = terminal_retention_s
        self._clock = clock
        self._orders: dict[str, _Order] = {}
        self._holds: dict[str, _Hold] = {}
        self._books: dict[str, _AccountBook] = {}
        # Final versions of finished orders, kept a while so late duplicates are recognised.
        self._finished: dict[str, tuple[int, float]] = {}
        # The live clock: seconds between consecutive live observations of the feed.
        self._live_s = 0.0
        self._live_mark: float | None = None
        self._live_interval = False

    @property
    def open_orders(self) -> int:
        """How many non-terminal orders the book follows from their events."""
        return len(self._orders)

    @property
    def hold_count(self) -> int:
        """How many provisional holds are in place."""
        return len(self._holds)

    def exposure(self, account_id: str, symbol: str, *, excluding: str = "") -> Exposure:
        """The account's claims and unsettled fills, for ``symbol``'s shares.

        ``excluding`` names an order whose own hold or commitment is left out, so deciding
        on an order a second time sees the account as the first decision did.
        """
        book = self._books.get(account_id)
        if book is None:
            return NO_EXPOSURE

        cash = book.committed_cash
        symbol_cash = book.symbol_cash.get(symbol, _ZERO)
        shares = book.committed_shares.get(symbol, 0)
        own = self._claim_of(excluding) if excluding else None
        if own is not None and own.account_id == account_id:
            cash -= own.cash
            if own.symbol == symbol:
                symbol_cash -= own.cash
                shares -= own.shares
        return Exposure(
            committed_cash=cash,
            symbol_committed_cash=symbol_cash,
            committed_shares=shares,
            cash_delta=book.cash_delta,
            sale_proceeds=book.sale_proceeds,
            position_delta=book.position_delta.get(symbol, 0),
        )

    def position_deltas(self, account_id: str) -> Mapping[str, int]:
        """Shares bought minus sold today by the account's fills, by symbol (read-only)."""
        book = self._books.get(account_id)
        return _NO_POSITIONS if book is None else MappingProxyType(book.position_delta)

    def buy_basis(self, limit_price: str, symbol: str) -> Decimal | None:
        """Per-share cash a buy is held at: its limit, or the marked-up last price."""
        if limit_price:
            price = parse_price(limit_price)
            return price if price is not None and price > 0 else None
        last = self._price_of(symbol)
        return None if last is None or last <= 0 else last * self._markup

    # Holds

    def hold(self, order: order_pb2.Order) -> bool:
        """Place, or replace, the provisional hold of an order that has just passed.

        Idempotent per order id: the new hold replaces any earlier one. Returns False, and
        holds nothing, when the order's own events already commit it or it has finished.
        Raises ValueError for a buy that cannot be priced (a passing check has priced it).
        """
        order_id = order.order_id
        tracked = self._orders.get(order_id)
        if order_id in self._finished or (
            tracked is not None and tracked.state in COMMITTING_STATES
        ):
            return False

        is_buy = order.side == common_pb2.SIDE_BUY
        claim = _Claim(account_id=order.account_id, symbol=order.symbol)
        basis: Decimal | None = None
        if is_buy:
            # Priced as the checks price it: only a limit order's limit counts.
            limit = order.limit_price if order.order_type == common_pb2.ORDER_TYPE_LIMIT else ""
            basis = self.buy_basis(limit, order.symbol)
            if basis is None:
                raise ValueError(f"cannot hold buy {order_id}: no usable price for {order.symbol}")
            claim.cash = basis * order.quantity
        else:
            claim.shares = order.quantity

        self.release(order_id)
        self._holds[order_id] = _Hold(
            claim=claim, is_buy=is_buy, basis=basis, live_at=self._live_now()
        )
        self._add(claim)
        return True

    def release(self, order_id: str) -> bool:
        """Drop the order's hold; False when it had none."""
        hold = self._holds.pop(order_id, None)
        if hold is None:
            return False
        self._remove(hold.claim)
        return True

    def observe_feed(self, *, live: bool) -> None:
        """Record whether the order feed is connected and caught up right now.

        Only the time between two consecutive live observations counts as live, so one
        missed observation stops every hold's clock from the previous observation on.
        """
        now = self._clock()
        if not live:
            self._live_mark = None
            self._live_interval = False
            return
        self._live_interval = self._live_mark is not None
        if self._live_mark is not None:
            self._live_s += now - self._live_mark
        self._live_mark = now

    def due_holds(self) -> list[str]:
        """Order ids of holds placed ``hold_ttl_s`` live seconds ago or more.

        Empty unless the feed was live at the last two observations: nothing falls due
        while the feed is down or lagging, nor at the first sight of it coming back.
        """
        if not self._live_interval:
            return []
        return [order_id for order_id, hold in self._holds.items() if self._is_due(hold)]

    def expire(self, order_ids: Iterable[str]) -> list[str]:
        """Drop those of ``order_ids`` whose holds are still due; returns the dropped ids.

        A hold replaced, taken over or released since :meth:`due_holds` named it is kept.
        """
        if not self._live_interval:
            return []
        dropped = []
        for order_id in order_ids:
            hold = self._holds.get(order_id)
            if hold is not None and self._is_due(hold):
                self.release(order_id)
                dropped.append(order_id)
        return dropped

    # Events

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
            if event.order_id in self._finished or version != 1:
                # A duplicate of a finished order, or one that finished before the snapshot.
                if event.state in TERMINAL_STATES:
                    self.release(event.order_id)
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
        # Buys turn cash into shares; sells turn shares into proceeds that settle later.
        price = parse_price(price_text)
        if price is None:
            _LOGGER.warning("fill of %s has no usable price %r", order.order_id, price_text)
        elif order.is_buy:
            book.cash_delta -= price * quantity
        else:
            book.sale_proceeds += price * quantity
        change = quantity if order.is_buy else -quantity
        book.position_delta[order.symbol] = book.position_delta.get(order.symbol, 0) + change

    def _settle_state(self, order: _Order) -> None:
        # After a change of state: finish the order, or (re)apply what it commits now.
        if order.state in TERMINAL_STATES:
            self.release(order.order_id)
            self._orders.pop(order.order_id, None)
            self._finished[order.order_id] = (order.version, self._clock())
            return

        self._orders[order.order_id] = order
        if order.state not in COMMITTING_STATES:
            # NEW or VALIDATED: the hold, if this process placed one, still stands for it.
            return
        if order.basis is None:
            order.basis = self._adopted_basis(order)
        # Hand over from the hold to the commitment in one step: never both, never neither.
        self.release(order.order_id)
        self._commit(order)

    def _adopted_basis(self, order: _Order) -> Decimal:
        if not order.is_buy:
            return _ZERO
        hold = self._holds.get(order.order_id)
        if hold is not None and hold.is_buy and hold.basis is not None:
            return hold.basis
        if order.limit_price is not None:
            return order.limit_price
        last = self._price_of(order.symbol)
        if last is None:
            _LOGGER.warning(
                "no price for %s: market buy %s commits no cash", order.symbol, order.order_id
            )
            return _ZERO
        return last * self._markup

    def _commit(self, order: _Order) -> None:
        claim = _Claim(account_id=order.account_id, symbol=order.symbol)
        if order.is_buy:
            claim.cash = order.leaves * (order.basis or _ZERO)
        else:
            claim.shares = order.leaves
        order.claim = claim
        self._add(claim)

    def _withdraw(self, order: _Order) -> None:
        # Take the order's current commitment out of the totals before it changes.
        if order.claim is not None:
            self._remove(order.claim)
            order.claim = None

    def _claim_of(self, order_id: str) -> _Claim | None:
        hold = self._holds.get(order_id)
        if hold is not None:
            return hold.claim
        order = self._orders.get(order_id)
        return None if order is None else order.claim

    def _add(self, claim: _Claim) -> None:
        self._change(claim, 1)

    def _remove(self, claim: _Claim) -> None:
        self._change(claim, -1)

    def _change(self, claim: _Claim, sign: int) -> None:
        book = self._book(claim.account_id)
        symbol = claim.symbol
        if claim.cash:
            book.committed_cash += sign * claim.cash
            _bump(book.symbol_cash, symbol, sign * claim.cash, _ZERO)
        if claim.shares:
            _bump(book.committed_shares, symbol, sign * claim.shares, 0)

    def _book(self, account_id: str) -> _AccountBook:
        book = self._books.get(account_id)
        if book is None:
            book = self._books[account_id] = _AccountBook()
        return book

    def _live_now(self) -> float:
        # Live seconds up to now, counting the time since the last live observation as live;
        # should the next observation find the feed down, that time never counts, which only
        # makes a hold placed in it last longer.
        if self._live_mark is None:
            return self._live_s
        return self._live_s + (self._clock() - self._live_mark)

    def _is_due(self, hold: _Hold) -> bool:
        return self._live_s - hold.live_at >= self._ttl_s


def _bump(totals: dict[str, _N], key: str, change: _N, zero: _N) -> None:
    """Add ``change`` to ``totals[key]``, removing the key when it comes back to zero."""
    value = totals.get(key, zero) + change
    if value == zero:
        totals.pop(key, None)
    else:
        totals[key] = value
