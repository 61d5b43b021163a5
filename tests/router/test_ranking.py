"""Venue ranking: price plus fees, health, limits and tie-breaks, with the reasons it gives."""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokermesh.mesh.errors import ConfigError, FailedPrecondition
from brokermesh.services.router.ranking import Route, TopOfBook, VenueView, rank
from brokermesh.services.router.service import parse_fee_schedule

XNAS_FEE = Decimal("0.0030")
ARCA_FEE = Decimal("0.0025")


def book(
    bid: str | None = "189.48",
    ask: str | None = "189.50",
    *,
    bid_size: int = 300,
    ask_size: int = 300,
    age_s: float = 0.5,
) -> TopOfBook:
    return TopOfBook(
        bid_price=None if bid is None else Decimal(bid),
        bid_size=bid_size,
        ask_price=None if ask is None else Decimal(ask),
        ask_size=ask_size,
        age_s=age_s,
    )


def venue(
    name: str, quote: TopOfBook | None, *, logged_on: bool | None = True, fee: Decimal | None = None
) -> VenueView:
    default = XNAS_FEE if name == "XNAS" else ARCA_FEE
    return VenueView(
        venue=name, fee_per_share=default if fee is None else fee, logged_on=logged_on, quote=quote
    )


def route(*venues: VenueView, is_buy: bool = True, limit: str | None = None) -> Route:
    return rank(
        symbol="AAPL",
        is_buy=is_buy,
        limit_price=None if limit is None else Decimal(limit),
        venues=venues,
        max_quote_age_s=10.0,
    )


def test_buy_goes_to_the_lowest_ask_plus_fee() -> None:
    result = route(venue("XNAS", book(ask="189.49")), venue("ARCA", book(ask="189.50")))

    assert result.venue == "XNAS"
    assert result.reason == (
        "best effective price at XNAS: ask 189.49 + fee 0.0030 = 189.4930 per share, "
        "300 displayed; next ARCA at 189.5025"
    )


def test_the_fee_decides_between_equal_asks() -> None:
    result = route(venue("XNAS", book()), venue("ARCA", book()))

    assert result.venue == "ARCA"
    assert [(c.venue, c.effective_price) for c in result.candidates] == [
        ("ARCA", Decimal("189.5025")),
        ("XNAS", Decimal("189.5030")),
    ]


def test_sell_goes_to_the_highest_bid_minus_fee() -> None:
    result = route(
        venue("XNAS", book(bid="189.49")), venue("ARCA", book(bid="189.48")), is_buy=False
    )

    assert result.venue == "XNAS"
    assert result.reason.startswith(
        "best effective price at XNAS: bid 189.49 - fee 0.0030 = 189.4870 per share"
    )


def test_unhealthy_venue_is_never_chosen() -> None:
    result = route(venue("XNAS", book(ask="189.00"), logged_on=False), venue("ARCA", book()))

    assert result.venue == "ARCA"
    assert result.reason.endswith("; skipped XNAS (is not logged on)")
    assert [(c.venue, c.healthy) for c in result.candidates] == [("ARCA", True), ("XNAS", False)]


def test_a_stale_quote_makes_the_venue_unhealthy() -> None:
    result = route(venue("XNAS", book(ask="189.00", age_s=12.5)), venue("ARCA", book()))

    assert result.venue == "ARCA"
    assert "skipped XNAS (quote is 12.5 s old (limit 10 s))" in result.reason


def test_a_venue_without_a_current_session_report_is_unhealthy() -> None:
    result = route(venue("XNAS", book(ask="189.00"), logged_on=None), venue("ARCA", book()))

    assert result.venue == "ARCA"
    assert "XNAS (has no current session status)" in result.reason


def test_no_healthy_venue_fails_the_precondition_naming_each_problem() -> None:
    with pytest.raises(FailedPrecondition) as caught:
        route(venue("XNAS", book(), logged_on=False), venue("ARCA", None))

    assert caught.value.message == (
        "no healthy venue for AAPL: ARCA has no quote for AAPL; XNAS is not logged on"
    )
    assert caught.value.code == "NO_HEALTHY_VENUE"


def test_buy_limit_skips_a_cheaper_venue_whose_ask_is_above_the_limit() -> None:
    # Equal asks would favour ARCA on fees; only XNAS can fill at 189.49.
    result = route(
        venue("XNAS", book(ask="189.49")), venue("ARCA", book(ask="189.50")), limit="189.49"
    )

    assert result.venue == "XNAS"
    assert [c.marketable for c in result.candidates] == [True, False]


def test_sell_limit_skips_a_venue_whose_bid_is_below_the_limit() -> None:
    result = route(
        venue("XNAS", book(bid="189.45")),
        venue("ARCA", book(bid="189.48")),
        is_buy=False,
        limit="189.46",
    )

    assert result.venue == "ARCA"


def test_when_no_venue_can_satisfy_the_limit_the_order_rests_at_the_best_venue() -> None:
    result = route(
        venue("XNAS", book(ask="189.52")), venue("ARCA", book(ask="189.51")), limit="189.00"
    )

    assert result.venue == "ARCA"
    assert result.reason == (
        "no venue can fill at the limit 189.00 now; routed to ARCA, the best remaining price "
        "(ask 189.51 + fee 0.0025 = 189.5125 per share, 300 displayed), where the order will "
        "rest"
    )


def test_a_tie_on_effective_price_goes_to_the_larger_displayed_size() -> None:
    result = route(
        venue("XNAS", book(ask_size=300), fee=ARCA_FEE), venue("ARCA", book(ask_size=500))
    )

    assert result.venue == "ARCA"
    assert "(tie broken by displayed size 500 vs 300)" in result.reason


def test_a_tie_on_price_and_size_goes_to_the_venue_name() -> None:
    result = route(venue("XNAS", book(), fee=ARCA_FEE), venue("ARCA", book()))

    assert result.venue == "ARCA"
    assert result.reason.endswith("(tie broken by venue name)")


def test_an_empty_side_everywhere_rests_at_the_cheapest_venue() -> None:
    result = route(venue("XNAS", book(ask=None)), venue("ARCA", book(ask=None)))

    assert result.venue == "ARCA"
    assert result.reason == (
        "no healthy venue quotes an ask; routed to ARCA (lowest fee 0.0025), where the order "
        "will rest"
    )


def test_priced_venues_rank_before_a_venue_with_an_empty_side() -> None:
    result = route(venue("XNAS", book(ask="189.60")), venue("ARCA", book(ask=None)))

    assert result.venue == "XNAS"
    assert [c.venue for c in result.candidates] == ["XNAS", "ARCA"]


def test_fee_schedule_reads_decimal_fees_per_venue() -> None:
    assert parse_fee_schedule("XNAS=0.0030, ARCA=0.0025") == {
        "XNAS": Decimal("0.0030"),
        "ARCA": Decimal("0.0025"),
    }


@pytest.mark.parametrize("text", ["XNAS", "XNAS=cheap", "=0.0030", "XNAS=-0.001"])
def test_a_malformed_fee_schedule_names_the_setting(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_fee_schedule(text)

    assert caught.value.field == "fee_schedule"
