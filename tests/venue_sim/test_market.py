"""Pure tests of the reproducible market model behind the simulated venues."""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokermesh.mesh.fix.messages import Side, TimeInForce
from brokermesh.mesh.refdata import Security, load_securities
from brokermesh.services.venue_sim.market import (
    VENUES,
    VenueMarket,
    fee_schedule,
    initial_quote,
    seed_orders,
)


def aapl() -> Security:
    return next(s for s in load_securities() if s.symbol == "AAPL")


def test_the_same_seed_always_builds_the_same_books() -> None:
    for venue in VENUES:
        first = seed_orders(venue=venue, seed=7, security=aapl())
        assert first == seed_orders(venue=venue, seed=7, security=aapl())
        assert first != seed_orders(venue=venue, seed=8, security=aapl())


def test_the_two_venues_differ_in_liquidity_and_fees() -> None:
    xnas, arca = (seed_orders(venue=venue, seed=7, security=aapl()) for venue in ("XNAS", "ARCA"))
    assert xnas != arca
    assert fee_schedule("XNAS").fee_per_share != fee_schedule("ARCA").fee_per_share
    assert fee_schedule("XNAS").fee_per_share == Decimal("0.0030")


def test_an_unknown_venue_has_no_fee_schedule() -> None:
    with pytest.raises(ValueError, match="unknown venue"):
        fee_schedule("XLON")


@pytest.mark.parametrize("venue", VENUES)
@pytest.mark.parametrize("seed", [0, 1, 7, 42, 2024])
def test_a_buy_at_the_reference_price_is_marketable_for_every_security(
    venue: str, seed: int
) -> None:
    for security in load_securities():
        quote = initial_quote(venue=venue, seed=seed, security=security)
        assert quote.ask_price is not None and quote.bid_price is not None
        assert quote.ask_price <= security.reference_price
        assert quote.ask_size >= 300
        assert Decimal("0.01") <= quote.ask_price - quote.bid_price <= Decimal("0.03")


@pytest.mark.parametrize("venue", VENUES)
@pytest.mark.parametrize("seed", [0, 1, 7, 42, 2024])
def test_the_blueprint_order_fills_completely_in_one_fill(venue: str, seed: int) -> None:
    market = VenueMarket(venue=venue, seed=seed, securities=load_securities())
    result = market.book("AAPL").submit(
        order_id="BLUEPRINT",
        side=Side.BUY,
        quantity=100,
        limit_price=Decimal("189.50"),
        time_in_force=TimeInForce.DAY,
    )
    assert [fill.quantity for fill in result.fills] == [100]
    assert result.fills[0].price <= Decimal("189.50")


@pytest.mark.parametrize("venue", VENUES)
@pytest.mark.parametrize("seed", [0, 1, 7, 42, 2024])
def test_a_five_thousand_share_order_fills_in_several_fills(venue: str, seed: int) -> None:
    market = VenueMarket(venue=venue, seed=seed, securities=load_securities())
    result = market.book("AAPL").submit(
        order_id="BIG",
        side=Side.BUY,
        quantity=5000,
        limit_price=Decimal("190.00"),
        time_in_force=TimeInForce.DAY,
    )
    assert result.filled == 5000
    assert len(result.fills) >= 5
    assert len({fill.price for fill in result.fills}) >= 3


def test_the_quote_follows_the_live_book() -> None:
    market = VenueMarket(venue="XNAS", seed=7, securities=load_securities())
    before = market.quote("AAPL")
    assert before == initial_quote(venue="XNAS", seed=7, security=aapl())
    assert before.ask_price is not None
    market.book("AAPL").submit(
        order_id="TAKE",
        side=Side.BUY,
        quantity=before.ask_size,
        limit_price=before.ask_price,
        time_in_force=TimeInForce.IOC,
    )
    after = market.quote("AAPL")
    assert after.ask_price is not None and after.ask_price > before.ask_price
    assert after.bid_price == before.bid_price


def test_a_venue_trades_every_reference_security_and_nothing_else() -> None:
    market = VenueMarket(venue="ARCA", seed=1, securities=load_securities())
    assert set(market.symbols()) == {s.symbol for s in load_securities()}
    assert not market.has_symbol("ZZZZ")
    with pytest.raises(KeyError):
        market.book("ZZZZ")
