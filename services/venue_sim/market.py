"""A reproducible market model: seeded order books, quotes and fee schedules per simulated venue.

Model, per venue and symbol, drawn from ``random.Random(f"{seed}/{venue}/{symbol}")`` so that a
seed always rebuilds the same books, independently of hash seeds and of the other symbols:

* the best ask sits at the reference price or one tick (one cent) below it, so a buy limit
  at the reference price is marketable at every venue; the top ask holds at least 300 shares,
  so the blueprint order BUY 100 AAPL LIMIT 189.50 fills completely, in one fill, anywhere;
* the best bid sits one to three ticks below the best ask (the spread);
* each side has twenty levels one tick apart, each level holding one or two resting orders
  of 300 to 600 shares (round lots): at most 1,200 shares per level and at least 6,000 per
  side, so an order for 5,000 shares at a marketable limit fills completely in at least five
  fills across several levels.

XNAS and ARCA differ through their random streams (tops, spreads and sizes) and their fees.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from brokermesh.mesh.fix.messages import Side
from brokermesh.mesh.refdata import Security
from brokermesh.services.venue_sim.book import OrderBook

TICK = Decimal("0.01")
LOT = 100
LEVELS_PER_SIDE = 20
MAX_SPREAD_TICKS = 3
MIN_LOTS_PER_ORDER = 3
MAX_LOTS_PER_ORDER = 6
MAX_ORDERS_PER_LEVEL = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class FeeSchedule:
    """What a venue charges per share for an order that takes liquidity."""

    venue: str
    fee_per_share: Decimal


FEE_SCHEDULES: dict[str, FeeSchedule] = {
    "XNAS": FeeSchedule(venue="XNAS", fee_per_share=Decimal("0.0030")),
    "ARCA": FeeSchedule(venue="ARCA", fee_per_share=Decimal("0.0028")),
}
VENUES: tuple[str, ...] = tuple(FEE_SCHEDULES)


@dataclass(frozen=True, slots=True, kw_only=True)
class Quote:
    """Top of book at one venue; a missing side has no price and a size of zero."""

    venue: str
    symbol: str
    bid_price: Decimal | None
    bid_size: int
    ask_price: Decimal | None
    ask_size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedOrder:
    """One resting order of the initial liquidity."""

    order_id: str
    side: Side
    price: Decimal
    quantity: int


def fee_schedule(venue: str) -> FeeSchedule:
    """The fee schedule of a simulated venue; raises ValueError for an unknown venue."""
    try:
        return FEE_SCHEDULES[venue]
    except KeyError:
        raise ValueError(f"unknown venue {venue!r}; expected one of {VENUES}") from None


def seed_orders(*, venue: str, seed: int, security: Security) -> tuple[SeedOrder, ...]:
    """The initial resting orders for ``security`` at ``venue``, best levels first per side."""
    fee_schedule(venue)
    rng = random.Random(f"{seed}/{venue}/{security.symbol}")
    best_ask = security.reference_price.quantize(TICK) - TICK * rng.randint(0, 1)
    best_bid = best_ask - TICK * rng.randint(1, MAX_SPREAD_TICKS)
    orders: list[SeedOrder] = []
    for side, best, step in ((Side.SELL, best_ask, TICK), (Side.BUY, best_bid, -TICK)):
        for level in range(LEVELS_PER_SIDE):
            price = best + step * level
            if price > 0:
                orders.extend(_level_orders(rng, venue, security.symbol, side, price, len(orders)))
    return tuple(orders)


def _level_orders(
    rng: random.Random, venue: str, symbol: str, side: Side, price: Decimal, first: int
) -> list[SeedOrder]:
    count = rng.randint(1, MAX_ORDERS_PER_LEVEL)
    return [
        SeedOrder(
            order_id=f"{venue}-SEED-{symbol}-{first + n + 1}",
            side=side,
            price=price,
            quantity=LOT * rng.randint(MIN_LOTS_PER_ORDER, MAX_LOTS_PER_ORDER),
        )
        for n in range(count)
    ]


def initial_quote(*, venue: str, seed: int, security: Security) -> Quote:
    """Top of book ``VenueMarket(venue=venue, seed=seed, ...)`` starts from for ``security``."""
    book = _seeded_book(venue=venue, seed=seed, security=security)
    return _quote(venue, book)


class VenueMarket:
    """The live order books of one simulated venue, seeded reproducibly."""

    def __init__(self, *, venue: str, seed: int, securities: Iterable[Security]) -> None:
        self.venue = venue
        self.seed = seed
        self.fees = fee_schedule(venue)
        self._securities = {security.symbol: security for security in securities}
        self._books = {
            symbol: _seeded_book(venue=venue, seed=seed, security=security)
            for symbol, security in self._securities.items()
        }
        self._refills = 0

    def symbols(self) -> tuple[str, ...]:
        """The symbols this venue trades."""
        return tuple(self._books)

    def has_symbol(self, symbol: str) -> bool:
        """Whether this venue trades ``symbol``."""
        return symbol in self._books

    def book(self, symbol: str) -> OrderBook:
        """The order book of ``symbol``; raises KeyError for a symbol the venue does not trade."""
        return self._books[symbol]

    def quote(self, symbol: str) -> Quote:
        """The current top of book of ``symbol``."""
        return _quote(self.venue, self.book(symbol))

    def replenish(self, symbol: str) -> int:
        """Re-quote a side of ``symbol`` that trading has thinned below half its seeded depth.

        The venue's market makers step back in at the seeded prices, skipping any
        that would cross the other side, so the simulated market does not run dry
        under sustained one-sided flow. Returns the number of orders added.
        """
        book = self._books[symbol]
        security = self._securities[symbol]
        seeded = seed_orders(venue=self.venue, seed=self.seed, security=security)
        added = 0
        for side in (Side.BUY, Side.SELL):
            full = sum(o.quantity for o in seeded if o.side is side)
            if sum(level.quantity for level in book.depth(side)) * 2 >= full:
                continue
            opposite = book.best_ask() if side is Side.BUY else book.best_bid()
            for order in (o for o in seeded if o.side is side):
                if opposite is not None and (
                    order.price >= opposite.price
                    if side is Side.BUY
                    else order.price <= opposite.price
                ):
                    continue
                self._refills += 1
                book.add_resting(
                    order_id=f"{order.order_id}-R{self._refills}",
                    side=side,
                    price=order.price,
                    quantity=order.quantity,
                )
                added += 1
        return added


def _seeded_book(*, venue: str, seed: int, security: Security) -> OrderBook:
    book = OrderBook(security.symbol)
    for order in seed_orders(venue=venue, seed=seed, security=security):
        book.add_resting(
            order_id=order.order_id, side=order.side, price=order.price, quantity=order.quantity
        )
    return book


def _quote(venue: str, book: OrderBook) -> Quote:
    bid, ask = book.best_bid(), book.best_ask()
    return Quote(
        venue=venue,
        symbol=book.symbol,
        bid_price=bid.price if bid else None,
        bid_size=bid.quantity if bid else 0,
        ask_price=ask.price if ask else None,
        ask_size=ask.quantity if ask else 0,
    )
