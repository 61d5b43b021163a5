"""Venue ranking for the smart order router: pure, so every routing decision can be replayed.

Rules, in order:

1. A venue is healthy when the venue gateway reports its FIX session logged on (and that
   report is current) and its quote for the symbol is fresh. Unhealthy venues are never
   chosen; with no healthy venue the order cannot route (FAILED_PRECONDITION).
2. The all-in price per share decides: for a buy the ask plus the venue's fee, for a sell
   the bid minus the fee. Lower is better for buys, higher for sells.
3. A limit order goes to a venue whose quote satisfies the limit now (ask at or below a buy
   limit, bid at or above a sell limit). Only when none does, it goes to the best healthy
   venue anyway, where it will rest, and the reason says so.
4. Ties go to the larger displayed size on the order's side, then to the venue name.

Every decision carries its reason and all candidates, ranked, with their figures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

from brokermesh.mesh.errors import FailedPrecondition


@dataclass(frozen=True, slots=True, kw_only=True)
class TopOfBook:
    """A venue's best bid and offer for one symbol, and how old that news is."""

    bid_price: Decimal | None
    bid_size: int
    ask_price: Decimal | None
    ask_size: int
    age_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueView:
    """What the router knows about one venue when an order arrives."""

    venue: str
    fee_per_share: Decimal
    #: The gateway's report; None when there is no current report.
    logged_on: bool | None
    quote: TopOfBook | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """How one venue scored for an order."""

    venue: str
    healthy: bool
    #: Why the venue is unhealthy; empty when it is healthy.
    health_reason: str
    #: Price on the order's side (ask for buys, bid for sells); None for an empty side.
    quoted_price: Decimal | None
    quoted_size: int
    fee_per_share: Decimal
    effective_price: Decimal | None
    #: Whether the quote satisfies the order's limit now (always, for market orders).
    marketable: bool


@dataclass(frozen=True, slots=True)
class Route:
    """The chosen venue, why, and every candidate (the chosen one first)."""

    venue: str
    reason: str
    candidates: tuple[Candidate, ...]


def rank(
    *,
    symbol: str,
    is_buy: bool,
    limit_price: Decimal | None,
    venues: Iterable[VenueView],
    max_quote_age_s: float,
) -> Route:
    """Choose the venue for an order; raise FailedPrecondition when no venue is healthy."""
    candidates = [_score(view, symbol, is_buy, limit_price, max_quote_age_s) for view in venues]
    healthy = sorted((c for c in candidates if c.healthy), key=_ranking_key(is_buy))
    unhealthy = sorted((c for c in candidates if not c.healthy), key=lambda c: c.venue)
    if not healthy:
        why = "; ".join(f"{c.venue} {c.health_reason}" for c in unhealthy) or "no venues known"
        raise FailedPrecondition(f"no healthy venue for {symbol}: {why}", code="NO_HEALTHY_VENUE")

    marketable = [c for c in healthy if c.marketable]
    if marketable:
        chosen = marketable[0]
        reason = _best_price_reason(chosen, marketable[1:], is_buy)
    else:
        chosen = healthy[0]
        reason = _resting_reason(chosen, limit_price, is_buy)
    reason += _skipped(unhealthy)

    others = [c for c in healthy if c is not chosen]
    return Route(chosen.venue, reason, (chosen, *others, *unhealthy))


def _score(
    view: VenueView, symbol: str, is_buy: bool, limit_price: Decimal | None, max_age_s: float
) -> Candidate:
    quote = view.quote
    price: Decimal | None = None
    size = 0
    if quote is not None and is_buy:
        price, size = quote.ask_price, quote.ask_size
    elif quote is not None:
        price, size = quote.bid_price, quote.bid_size

    effective = None
    if price is not None:
        effective = price + view.fee_per_share if is_buy else price - view.fee_per_share
    return Candidate(
        venue=view.venue,
        healthy=not (problem := _health_problem(view, symbol, max_age_s)),
        health_reason=problem,
        quoted_price=price,
        quoted_size=size,
        fee_per_share=view.fee_per_share,
        effective_price=effective,
        marketable=price is not None and _satisfies(price, limit_price, is_buy),
    )


def _health_problem(view: VenueView, symbol: str, max_age_s: float) -> str:
    if view.logged_on is None:
        return "has no current session status"
    if not view.logged_on:
        return "is not logged on"
    if view.quote is None:
        return f"has no quote for {symbol}"
    if view.quote.age_s > max_age_s:
        return f"quote is {view.quote.age_s:.1f} s old (limit {max_age_s:g} s)"
    return ""


def _satisfies(price: Decimal, limit_price: Decimal | None, is_buy: bool) -> bool:
    if limit_price is None:
        return True
    return price <= limit_price if is_buy else price >= limit_price


_RankKey = tuple[int, Decimal, int, Decimal, str]


def _ranking_key(is_buy: bool) -> Callable[[Candidate], _RankKey]:
    # Priced venues first, best all-in price, then the larger displayed size, then the
    # name; venues with an empty side last, cheapest fee first.
    def key(c: Candidate) -> _RankKey:
        if c.effective_price is None:
            return (1, Decimal(0), 0, c.fee_per_share, c.venue)
        price = c.effective_price if is_buy else -c.effective_price
        return (0, price, -c.quoted_size, Decimal(0), c.venue)

    return key


def _best_price_reason(chosen: Candidate, rest: list[Candidate], is_buy: bool) -> str:
    reason = f"best effective price at {chosen.venue}: {_breakdown(chosen, is_buy)}"
    if rest:
        runner_up = rest[0]
        reason += f"; next {runner_up.venue} at {runner_up.effective_price}"
        if runner_up.effective_price == chosen.effective_price:
            if runner_up.quoted_size != chosen.quoted_size:
                reason += (
                    f" (tie broken by displayed size {chosen.quoted_size} vs "
                    f"{runner_up.quoted_size})"
                )
            else:
                reason += " (tie broken by venue name)"
    return reason


def _resting_reason(chosen: Candidate, limit_price: Decimal | None, is_buy: bool) -> str:
    side = "an ask" if is_buy else "a bid"
    if chosen.quoted_price is None:
        return (
            f"no healthy venue quotes {side}; routed to {chosen.venue} (lowest fee "
            f"{chosen.fee_per_share}), where the order will rest"
        )
    return (
        f"no venue can fill at the limit {limit_price} now; routed to {chosen.venue}, "
        f"the best remaining price ({_breakdown(chosen, is_buy)}), where the order "
        "will rest"
    )


def _breakdown(c: Candidate, is_buy: bool) -> str:
    side, sign = ("ask", "+") if is_buy else ("bid", "-")
    return (
        f"{side} {c.quoted_price} {sign} fee {c.fee_per_share} = {c.effective_price} "
        f"per share, {c.quoted_size} displayed"
    )


def _skipped(unhealthy: list[Candidate]) -> str:
    if not unhealthy:
        return ""
    return "; skipped " + ", ".join(f"{c.venue} ({c.health_reason})" for c in unhealthy)
