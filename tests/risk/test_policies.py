"""The pre-trade risk policies: CEL rules on integer micro-units, with reasons carrying figures."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from brokermesh.services.risk.books import RiskBooks
from brokermesh.services.risk.policies import (
    RULES,
    Limits,
    OrderFacts,
    PolicySet,
    Rule,
    Verdict,
    to_micros,
)

FIRM = Limits(
    max_order_notional=Decimal("1000000.00"),
    max_order_quantity=50_000,
    price_collar_bps=500,
    max_concentration_bps=3000,
)
#: The blueprint order against ACC-987654's books (AAPL, MSFT, SPY and 2.5 M cash).
BLUEPRINT = OrderFacts(
    symbol="AAPL",
    quantity=100,
    is_buy=True,
    limit_price=Decimal("189.50"),
    last_price=Decimal("189.50"),
    price=Decimal("189.50"),
    position_value=Decimal("284250.00"),
    total_value=Decimal("3728410.00"),
)
POLICIES = PolicySet()


def evaluate(
    facts: OrderFacts = BLUEPRINT,
    limits: Limits = FIRM,
    note: str = "",
) -> dict[str, Verdict]:
    return {v.policy: v for v in POLICIES.evaluate(facts, limits, note=note)}


def failures(facts: OrderFacts = BLUEPRINT, limits: Limits = FIRM) -> dict[str, str]:
    return {name: v.reason for name, v in evaluate(facts, limits).items() if not v.passed}


def limit_buy(quantity: int, price: str, **fields: object) -> OrderFacts:
    return replace(
        BLUEPRINT, quantity=quantity, limit_price=Decimal(price), price=Decimal(price), **fields
    )  # type: ignore[arg-type]


def test_blueprint_order_passes_every_policy_in_order() -> None:
    verdicts = POLICIES.evaluate(BLUEPRINT, FIRM)

    assert [v.policy for v in verdicts] == [
        "max_notional",
        "max_quantity",
        "price_collar",
        "concentration",
    ]
    assert all(v.passed for v in verdicts)
    assert verdicts[0].reason == "notional $18,950.00 within max_order_notional $1,000,000.00"


def test_notional_above_the_maximum_fails_with_the_figures() -> None:
    failed = failures(limit_buy(6000, "189.50"))

    assert failed["max_notional"] == (
        "notional $1,137,000.00 exceeds max_order_notional $1,000,000.00"
    )


def test_notional_exactly_at_the_maximum_passes() -> None:
    assert "max_notional" not in failures(limit_buy(5000, "200.00"))


def test_quantity_above_the_maximum_fails() -> None:
    penny_stock = limit_buy(50_001, "1.00", last_price=Decimal("1.00"))  # type: ignore[arg-type]

    failed = failures(penny_stock)

    assert failed == {"max_quantity": "quantity 50,001 exceeds max_order_quantity 50,000"}


def test_limit_outside_collar_fails() -> None:
    failed = failures(limit_buy(10, "199.50"))

    assert failed == {
        "price_collar": "limit 199.50 is 527.70 bps from last 189.50, outside the 500 bps collar"
    }


def test_limit_on_the_collar_edge_passes_and_a_cent_beyond_fails() -> None:
    edge = replace(limit_buy(10, "105.00"), last_price=Decimal("100.00"))
    beyond = replace(limit_buy(10, "105.01"), last_price=Decimal("100.00"))

    assert "price_collar" not in failures(edge)
    assert "price_collar" in failures(beyond)


def test_sell_limit_far_below_the_last_price_fails_the_collar() -> None:
    sell = replace(limit_buy(10, "170.00"), is_buy=False)

    assert "outside the 500 bps collar" in failures(sell)["price_collar"]


def test_market_order_passes_the_collar() -> None:
    facts = replace(BLUEPRINT, limit_price=None, price=Decimal("198.975"))

    verdict = evaluate(facts)["price_collar"]

    assert verdict.passed
    assert verdict.reason == "market order: no price collar applies"


def test_market_order_notional_is_taken_at_the_marked_up_price() -> None:
    facts = replace(BLUEPRINT, limit_price=None, price=Decimal("198.975"), quantity=5026)

    assert failures(facts)["max_notional"].startswith("notional $1,000,048.35 exceeds")


def test_buy_pushing_concentration_above_the_cap_fails() -> None:
    failed = failures(limit_buy(5000, "189.50"))

    assert failed == {
        "concentration": "AAPL would be $1,231,750.00 of account value "
        "$3,728,410.00 (3303.69 bps), above the 3000 bps cap"
    }


def test_sell_passes_concentration_whatever_the_size() -> None:
    sell = replace(limit_buy(5000, "189.50"), is_buy=False)

    verdict = evaluate(sell)["concentration"]

    assert verdict.passed
    assert verdict.reason == "sell orders do not add concentration"


def test_account_with_no_value_fails_concentration() -> None:
    empty = replace(BLUEPRINT, position_value=Decimal(0), total_value=Decimal(0))

    assert failures(empty) == {
        "concentration": "AAPL would be $18,950.00 of an account with no value, above the "
        "3000 bps cap",
    }


def test_conservative_limits_halve_notional_quantity_and_collar() -> None:
    assert FIRM.conservative() == Limits(
        max_order_notional=Decimal("500000.00"),
        max_order_quantity=25_000,
        price_collar_bps=250,
        max_concentration_bps=3000,
    )


def test_degraded_mode_note_is_added_to_the_tightened_policies_only() -> None:
    note = " (REDUCED mode: conservative limits, halved)"

    verdicts = evaluate(limit_buy(3000, "189.50"), FIRM.conservative(), note)

    assert verdicts["max_notional"].reason == (
        "notional $568,500.00 exceeds max_order_notional $500,000.00" + note
    )
    assert verdicts["max_quantity"].reason.endswith(note)
    assert verdicts["price_collar"].reason.endswith(note)
    assert not verdicts["concentration"].reason.endswith(note)


def test_symbol_without_any_price_fails_every_policy() -> None:
    unpriced = replace(BLUEPRINT, limit_price=None, last_price=None, price=None)

    verdicts = POLICIES.evaluate(unpriced, FIRM)

    assert [(v.passed, v.reason) for v in verdicts] == [(False, "no price for AAPL")] * 4


def test_figures_beyond_the_integer_range_fail_rather_than_pass() -> None:
    # 10,000,000 shares at 9,999,999,999 dollars overflows 64-bit micro-units.
    huge = limit_buy(10_000_000, "9999999999", last_price=Decimal("9999999999"))  # type: ignore[arg-type]

    failed = failures(huge, replace(FIRM, max_order_quantity=10_000_000))

    assert "max_notional" in failed
    assert "concentration" in failed


def test_money_reaches_cel_as_integer_micro_units_rounded_against_the_order() -> None:
    assert to_micros(Decimal("189.50"), up=True) == 189_500_000
    assert to_micros(Decimal("0.0000001"), up=True) == 1
    assert to_micros(Decimal("0.0000009"), up=False) == 0


def test_a_broken_rule_fails_when_compiled_not_when_an_order_arrives() -> None:
    broken = Rule(name="broken", expression="quantity <= 'many'", passed="", failed="")

    with pytest.raises(RuntimeError):
        PolicySet((*RULES, broken))


def test_account_limits_override_the_firm_default_as_a_whole_row() -> None:
    own = Limits(
        max_order_notional=Decimal("50000.00"),
        max_order_quantity=100,
        price_collar_bps=200,
        max_concentration_bps=1000,
    )
    books = RiskBooks(account_limits={"ACC-1": own}, default_limits=FIRM)

    assert books.limits_for("ACC-1") == own
    assert books.limits_for("ACC-2") == FIRM
    assert RiskBooks().limits_for("ACC-1") is None
