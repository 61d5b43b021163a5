"""The OMS checks as pure functions: one verdict per check, every check every time."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from brokermesh.common.v1 import common_pb2
from brokermesh.domain.exposure import NO_EXPOSURE, Exposure
from brokermesh.services.oms import checks
from brokermesh.services.oms.checks import Account, ReferenceData, Security
from brokermesh.trading.v1 import order_pb2

CHECK_ORDER = [
    "account_status",
    "trading_permissions",
    "symbol_eligibility",
    "restricted_list",
    "order_type_sanity",
    "buying_power",
]

BOOKS = ReferenceData(
    accounts={
        "ACC-1": Account(
            account_id="ACC-1",
            status="ACTIVE",
            cash=Decimal("20000.00"),
            permissions=frozenset({"EQUITY"}),
        ),
        "ACC-FROZEN": Account(
            account_id="ACC-FROZEN",
            status="FROZEN",
            cash=Decimal("1000000"),
            permissions=frozenset({"EQUITY"}),
        ),
        "ACC-CLOSING": Account(
            account_id="ACC-CLOSING",
            status="RESTRICTED",
            cash=Decimal("1000000"),
            permissions=frozenset({"EQUITY"}),
        ),
        "ACC-NOPERM": Account(
            account_id="ACC-NOPERM",
            status="ACTIVE",
            cash=Decimal("1000000"),
            permissions=frozenset(),
        ),
    },
    positions={("ACC-1", "AAPL"): 150, ("ACC-CLOSING", "AAPL"): 10},
    securities={
        "AAPL": Security(symbol="AAPL", reference_price=Decimal("189.50"), eligible=True),
        "PENNY": Security(symbol="PENNY", reference_price=Decimal("0.4321"), eligible=True),
        "OTC": Security(symbol="OTC", reference_price=Decimal("5.00"), eligible=False),
        "BMSH": Security(symbol="BMSH", reference_price=Decimal("20.00"), eligible=True),
        "TSLA": Security(symbol="TSLA", reference_price=Decimal("175.60"), eligible=True),
    },
    firm_restrictions={"BMSH": "issuer is the firm: employee trading blackout"},
    account_restrictions={("ACC-1", "TSLA"): "client is an affiliated person of the issuer"},
)
LAST = Decimal("189.50")


def order(**fields: Any) -> order_pb2.Order:
    """A valid limit buy of 100 AAPL at 189.50 for ACC-1, with ``fields`` changed."""
    values: dict[str, Any] = {
        "order_id": "ORD-20260316-00000001",
        "client_order_id": "CO-1",
        "account_id": "ACC-1",
        "advisor_id": "ADV-1",
        "symbol": "AAPL",
        "side": common_pb2.SIDE_BUY,
        "quantity": 100,
        "order_type": common_pb2.ORDER_TYPE_LIMIT,
        "limit_price": "189.50",
        "time_in_force": common_pb2.TIME_IN_FORCE_DAY,
    }
    values.update(fields)
    return order_pb2.Order(**values)


def market(**fields: Any) -> order_pb2.Order:
    return order(order_type=common_pb2.ORDER_TYPE_MARKET, limit_price="", **fields)


def verdicts(
    o: order_pb2.Order, exposure: Exposure = NO_EXPOSURE, last: Decimal | None = LAST
) -> dict[str, checks.Verdict]:
    return {v.policy: v for v in checks.validate(o, BOOKS, exposure, last)}


def failures(
    o: order_pb2.Order, exposure: Exposure = NO_EXPOSURE, last: Decimal | None = LAST
) -> dict[str, str]:
    return {name: v.reason for name, v in verdicts(o, exposure, last).items() if not v.passed}


def test_a_sound_order_passes_every_check_in_the_fixed_order() -> None:
    result = checks.validate(order(), BOOKS, NO_EXPOSURE, LAST)

    assert [v.policy for v in result] == CHECK_ORDER
    assert all(v.passed for v in result)


def test_every_check_runs_after_a_failure_so_all_reasons_are_reported() -> None:
    result = checks.validate(
        order(account_id="ACC-FROZEN", symbol="BMSH", limit_price="20.123456"),
        BOOKS,
        NO_EXPOSURE,
        LAST,
    )

    assert [v.policy for v in result] == CHECK_ORDER
    assert {v.policy for v in result if not v.passed} == {
        "account_status",
        "restricted_list",
        "order_type_sanity",
    }


def test_frozen_account_fails_account_status() -> None:
    assert failures(order(account_id="ACC-FROZEN")) == {
        "account_status": "account ACC-FROZEN is FROZEN: no trading allowed",
    }


def test_restricted_account_may_sell_but_not_buy() -> None:
    buy = failures(order(account_id="ACC-CLOSING"))
    sell = failures(order(account_id="ACC-CLOSING", side=common_pb2.SIDE_SELL, quantity=10))

    assert buy == {"account_status": "account ACC-CLOSING is RESTRICTED: only sells are allowed"}
    assert sell == {}


def test_unknown_account_fails_the_account_checks() -> None:
    failed = failures(order(account_id="ACC-NOBODY"))

    assert set(failed) == {"account_status", "trading_permissions", "buying_power"}
    assert failed["account_status"] == "account ACC-NOBODY does not exist"


def test_account_without_equity_permission_fails_trading_permissions() -> None:
    assert failures(order(account_id="ACC-NOPERM")) == {
        "trading_permissions": "account ACC-NOPERM lacks EQUITY permission (has: none)",
    }


def test_symbol_missing_from_the_master_fails_eligibility() -> None:
    failed = failures(order(symbol="ZZZZ"))

    assert failed["symbol_eligibility"] == "ZZZZ is not in the security master"


def test_ineligible_symbol_fails_eligibility() -> None:
    assert failures(order(symbol="OTC", limit_price="5.00")) == {
        "symbol_eligibility": "OTC is not eligible for trading",
    }


def test_firm_wide_restriction_fails_with_its_reason() -> None:
    assert failures(order(symbol="BMSH", limit_price="20.00")) == {
        "restricted_list": "BMSH is restricted firm-wide: issuer is the firm: employee trading "
        "blackout",
    }


def test_account_restriction_applies_to_that_account_only() -> None:
    own = failures(order(symbol="TSLA", limit_price="175.60"))
    other = failures(order(account_id="ACC-NOPERM", symbol="TSLA", limit_price="175.60"))

    assert own == {
        "restricted_list": "TSLA is restricted for ACC-1: client is an affiliated "
        "person of the issuer"
    }
    assert "restricted_list" not in other


@pytest.mark.parametrize("price", ["189.5", "189.50", "189.5025", "189.502500"])
def test_limit_price_with_at_most_four_decimals_passes(price: str) -> None:
    assert "order_type_sanity" not in failures(order(limit_price=price))


def test_limit_price_with_five_decimals_above_a_dollar_fails() -> None:
    assert failures(order(limit_price="189.50251")) == {
        "order_type_sanity": "limit price 189.50251 has 5 decimals; at most 4 allowed",
    }


def test_sub_dollar_limit_price_may_carry_six_decimals() -> None:
    assert failures(order(symbol="PENNY", limit_price="0.432101")) == {}


@pytest.mark.parametrize("price", ["0", "0.000000"])
def test_limit_price_must_be_positive(price: str) -> None:
    failed = failures(order(limit_price=price))

    assert "must be positive" in failed["order_type_sanity"]


def test_limit_order_without_a_price_fails() -> None:
    failed = failures(order(limit_price=""))

    assert failed["order_type_sanity"] == "a limit order needs a limit price"


def test_market_order_with_a_limit_price_fails() -> None:
    failed = failures(order(order_type=common_pb2.ORDER_TYPE_MARKET))

    assert failed["order_type_sanity"] == "a market order must not carry a limit price"


def test_market_order_with_gtc_is_refused() -> None:
    assert failures(market(time_in_force=common_pb2.TIME_IN_FORCE_GTC)) == {
        "order_type_sanity": "a market order cannot be GTC",
    }


@pytest.mark.parametrize("tif", [common_pb2.TIME_IN_FORCE_DAY, common_pb2.TIME_IN_FORCE_IOC])
def test_market_day_and_ioc_orders_pass(tif: int) -> None:
    assert failures(market(time_in_force=tif)) == {}


def test_buy_within_buying_power_passes_with_the_figures() -> None:
    reason = verdicts(order())["buying_power"].reason

    assert reason == "buy notional $18,950.00 within available $20,000.00"


def test_buy_beyond_buying_power_fails_with_the_shortfall() -> None:
    failed = failures(order(quantity=106))

    assert failed == {
        "buying_power": "buy notional $20,087.00 exceeds available $20,000.00 (cash $20,000.00 "
        "less $0.00 committed to open buys): shortfall $87.00",
    }


def test_cash_committed_to_open_buys_is_not_available() -> None:
    exposure = Exposure(committed_cash=Decimal("1895.00"))

    failed = failures(order(), exposure)

    assert "shortfall $845.00" in failed["buying_power"]
    assert "less $1,895.00 committed to open buys" in failed["buying_power"]


def test_cash_spent_by_todays_fills_is_not_available() -> None:
    exposure = Exposure(cash_delta=Decimal("-2000.00"))

    failed = failures(order(), exposure)

    assert "cash $18,000.00" in failed["buying_power"]


def test_market_buy_is_priced_five_percent_above_the_last_price() -> None:
    # 100 x 189.50 x 1.05 = 19,897.50, inside 20,000; 101 shares would not be.
    fits = verdicts(market())["buying_power"]
    too_many = failures(market(quantity=101))

    assert fits.reason == "buy notional $19,897.50 within available $20,000.00"
    assert "buy notional $20,096.48" in too_many["buying_power"]


def test_market_buy_without_any_price_fails() -> None:
    failed = failures(market(), last=None)

    assert failed["buying_power"] == "cannot price the order: no usable price for AAPL"


def test_sell_within_the_position_passes() -> None:
    assert failures(order(side=common_pb2.SIDE_SELL, quantity=150)) == {}


def test_sell_beyond_the_position_fails_as_a_short_sale() -> None:
    assert failures(order(side=common_pb2.SIDE_SELL, quantity=151)) == {
        "buying_power": "sell of 151 AAPL exceeds the 150 shares available (position 150, 0 "
        "committed to open sells): short selling is not allowed",
    }


def test_shares_committed_to_open_sells_are_not_available() -> None:
    exposure = Exposure(committed_shares=100)

    failed = failures(order(side=common_pb2.SIDE_SELL, quantity=60), exposure)

    assert "exceeds the 50 shares available" in failed["buying_power"]


def test_shares_bought_today_can_be_sold() -> None:
    exposure = Exposure(position_delta=50)

    assert failures(order(side=common_pb2.SIDE_SELL, quantity=200), exposure) == {}


def test_selling_a_symbol_not_held_fails() -> None:
    failed = failures(
        order(side=common_pb2.SIDE_SELL, symbol="PENNY", limit_price="0.43", quantity=1)
    )

    assert "exceeds the 0 shares available" in failed["buying_power"]
