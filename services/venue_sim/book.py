"""A pure price-time-priority limit order book for one symbol."""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass
from decimal import Decimal

from brokermesh.mesh.fix.messages import Side, TimeInForce


class BookError(ValueError):
    """An order the book cannot accept, e.g. a non-positive quantity or price."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Level:
    """The aggregate resting quantity at one price."""

    price: Decimal
    quantity: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Fill:
    """One trade between an incoming order and one resting order, at the resting price."""

    resting_order_id: str
    resting_owner: str | None
    resting_remaining: int
    price: Decimal
    quantity: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MatchResult:
    """What happened to an incoming order: its fills, then what rested or was cancelled."""

    fills: tuple[Fill, ...]
    rested: int
    cancelled: int

    @property
    def filled(self) -> int:
        """Total quantity traded."""
        return sum(fill.quantity for fill in self.fills)


@dataclass(slots=True, kw_only=True)
class _Resting:
    order_id: str
    owner: str | None
    remaining: int


class _BookSide:
    """One side of the book: price levels, each a FIFO queue of resting orders."""

    def __init__(self, side: Side) -> None:
        self._side = side
        self._prices: list[Decimal] = []
        self._queues: dict[Decimal, deque[_Resting]] = {}

    def best(self) -> Decimal | None:
        """The most aggressive resting price, if any."""
        if not self._prices:
            return None
        return self._prices[-1] if self._side is Side.BUY else self._prices[0]

    def top(self) -> Level | None:
        """The best level, if any."""
        price = self.best()
        if price is None:
            return None
        return Level(price=price, quantity=sum(o.remaining for o in self._queues[price]))

    def levels(self) -> list[Level]:
        """Aggregated levels, best price first."""
        ordered = reversed(self._prices) if self._side is Side.BUY else iter(self._prices)
        return [Level(price=p, quantity=sum(o.remaining for o in self._queues[p])) for p in ordered]

    def add(self, price: Decimal, order: _Resting) -> None:
        """Queue ``order`` behind everything already resting at ``price``."""
        if price not in self._queues:
            bisect.insort(self._prices, price)
            self._queues[price] = deque()
        self._queues[price].append(order)

    def take(self, quantity: int, limit: Decimal | None, incoming: Side) -> list[Fill]:
        """Trade up to ``quantity`` against the best levels within ``limit``."""
        fills: list[Fill] = []
        while quantity > 0 and (price := self.best()) is not None:
            if limit is not None and not _crosses(incoming, limit, price):
                break
            fill = self._take_first(price, quantity)
            fills.append(fill)
            quantity -= fill.quantity
        return fills

    def _take_first(self, price: Decimal, quantity: int) -> Fill:
        queue = self._queues[price]
        first = queue[0]
        traded = min(quantity, first.remaining)
        first.remaining -= traded
        if first.remaining == 0:
            queue.popleft()
        if not queue:
            del self._queues[price]
            self._prices.remove(price)
        return Fill(
            resting_order_id=first.order_id,
            resting_owner=first.owner,
            resting_remaining=first.remaining,
            price=price,
            quantity=traded,
        )


def _crosses(incoming: Side, limit: Decimal, resting_price: Decimal) -> bool:
    return resting_price <= limit if incoming is Side.BUY else resting_price >= limit


class OrderBook:
    """Bids and asks for one symbol; each fill is against one resting order at its price."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self._sides = {Side.BUY: _BookSide(Side.BUY), Side.SELL: _BookSide(Side.SELL)}

    def best_bid(self) -> Level | None:
        """The highest bid level, if any."""
        return self._sides[Side.BUY].top()

    def best_ask(self) -> Level | None:
        """The lowest ask level, if any."""
        return self._sides[Side.SELL].top()

    def depth(self, side: Side) -> list[Level]:
        """All levels of ``side``, best price first."""
        return self._sides[side].levels()

    def add_resting(
        self, *, order_id: str, side: Side, price: Decimal, quantity: int, owner: str | None = None
    ) -> None:
        """Rest a limit order without matching it (used to seed liquidity)."""
        _check(quantity, price)
        self._sides[side].add(price, _Resting(order_id=order_id, owner=owner, remaining=quantity))

    def submit(
        self,
        *,
        order_id: str,
        side: Side,
        quantity: int,
        limit_price: Decimal | None,
        time_in_force: TimeInForce,
        owner: str | None = None,
    ) -> MatchResult:
        """Match an incoming order; a market order (no limit) or an IOC never rests."""
        _check(quantity, limit_price)
        opposite = Side.SELL if side is Side.BUY else Side.BUY
        fills = tuple(self._sides[opposite].take(quantity, limit_price, side))
        remaining = quantity - sum(fill.quantity for fill in fills)
        if remaining and limit_price is not None and time_in_force is not TimeInForce.IOC:
            self.add_resting(
                order_id=order_id, side=side, price=limit_price, quantity=remaining, owner=owner
            )
            return MatchResult(fills=fills, rested=remaining, cancelled=0)
        return MatchResult(fills=fills, rested=0, cancelled=remaining)


def _check(quantity: int, price: Decimal | None) -> None:
    if quantity <= 0:
        raise BookError(f"quantity must be positive, got {quantity}")
    if price is not None and (not price.is_finite() or price <= 0):
        raise BookError(f"price must be positive, got {price}")
