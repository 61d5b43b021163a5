"""Pre-trade risk policies as code: named CEL rules, compiled once, with reason templates.

Each policy is one CEL expression that must evaluate to ``true`` for the order to pass.
Anything else (``false``, or a CEL error such as an integer overflow) fails the policy:
a risk check that cannot be evaluated must not let an order through.

Encoding of money for CEL: no floats ever reach an expression. Prices and amounts travel
as ``int`` micro-units (millionths of a dollar, the contract's finest price precision),
so ``189.50`` is ``189_500_000``; quantities are whole shares and limits in basis points
are ``int``. CEL integers are signed 64-bit, which holds amounts up to about
$9.2 trillion; a product beyond that is an overflow, which fails the policy (and no
legitimate order comes near). Conversions round against the order: prices up, limits down.

The figures in the reasons are computed once more in Python with ``Decimal`` from the
same inputs; the expressions alone decide pass or fail.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from cel_expr_python import cel

MICROS_PER_UNIT = 1_000_000
_MICROS = Decimal(MICROS_PER_UNIT)
_BPS = Decimal(10_000)
_ZERO = Decimal(0)
_CENT = Decimal("0.01")

#: Every variable an expression may use, with its CEL type.
VARIABLES: Mapping[str, Any] = {
    "quantity": cel.Type.INT,
    "is_buy": cel.Type.BOOL,
    "is_limit": cel.Type.BOOL,
    # Per-share price the notional is taken at: the limit, or the marked-up last price.
    "price": cel.Type.INT,
    "limit_price": cel.Type.INT,
    "last_price": cel.Type.INT,
    # Value of the account's holding of the symbol (books and today's fills at the last
    # price, plus its open buy orders and holds at their basis), and of the whole account.
    "position_value": cel.Type.INT,
    "total_value": cel.Type.INT,
    "max_order_notional": cel.Type.INT,
    "max_order_quantity": cel.Type.INT,
    "price_collar_bps": cel.Type.INT,
    "max_concentration_bps": cel.Type.INT,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """A policy: its name, the CEL condition for passing, and how to explain the outcome.

    ``exempt_if`` only chooses the wording: when it holds and the rule passed, the reason
    is ``exempt``. Whether the order passes is the expression's alone.
    """

    name: str
    expression: str
    passed: str
    failed: str
    exempt: str = ""
    exempt_if: Callable[[OrderFacts], bool] | None = None
    #: Whether the reduced-functionality defaults tighten this rule's limit.
    tightened_when_degraded: bool = False


#: The policies, in the order their decisions are reported.
RULES: tuple[Rule, ...] = (
    Rule(
        name="max_notional",
        expression="quantity * price <= max_order_notional",
        passed="notional {notional} within max_order_notional {max_notional}",
        failed="notional {notional} exceeds max_order_notional {max_notional}",
        tightened_when_degraded=True,
    ),
    Rule(
        name="max_quantity",
        expression="quantity <= max_order_quantity",
        passed="quantity {quantity} within max_order_quantity {max_quantity}",
        failed="quantity {quantity} exceeds max_order_quantity {max_quantity}",
        tightened_when_degraded=True,
    ),
    Rule(
        name="price_collar",
        expression=(
            "!is_limit || (limit_price >= last_price ? limit_price - last_price"
            " : last_price - limit_price) * 10000 <= last_price * price_collar_bps"
        ),
        passed="{collar_position}, within the {collar_bps} bps collar",
        failed="{collar_position}, outside the {collar_bps} bps collar",
        exempt="market order: no price collar applies",
        exempt_if=lambda facts: facts.limit_price is None,
        tightened_when_degraded=True,
    ),
    Rule(
        name="concentration",
        # The division comes first so the product stays in range; flooring it makes the
        # cap at most a hundredth of a cent per basis point tighter.
        expression=(
            "!is_buy || position_value + quantity * price"
            " <= total_value / 10000 * max_concentration_bps"
        ),
        passed="{concentration_position}, within the {concentration_cap} bps cap",
        failed="{concentration_position}, above the {concentration_cap} bps cap",
        exempt="sell orders do not add concentration",
        exempt_if=lambda facts: not facts.is_buy,
    ),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Risk limits of one account (its own row, or the firm default)."""

    max_order_notional: Decimal
    max_order_quantity: int
    price_collar_bps: int
    max_concentration_bps: int

    def conservative(self) -> Limits:
        """The reduced-functionality defaults: notional, quantity and collar halved."""
        return Limits(
            max_order_notional=(self.max_order_notional / 2).quantize(_CENT, ROUND_FLOOR),
            max_order_quantity=self.max_order_quantity // 2,
            price_collar_bps=self.price_collar_bps // 2,
            max_concentration_bps=self.max_concentration_bps,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderFacts:
    """What the policies need to know about one order and its account."""

    symbol: str
    quantity: int
    is_buy: bool
    #: The limit price, or None for a market order.
    limit_price: Decimal | None
    #: The freshest last price, or the reference price; None when the symbol has neither.
    last_price: Decimal | None
    #: Per-share price of the notional: the limit, or the last price plus a markup.
    price: Decimal | None
    #: The symbol as held (books and today's fills) plus what open buys and holds would add.
    position_value: Decimal
    #: Cash (after today's fills) plus the market value of every holding.
    total_value: Decimal


@dataclass(frozen=True, slots=True)
class Verdict:
    """One policy's outcome and the reason with its figures."""

    policy: str
    passed: bool
    reason: str


class PolicySet:
    """The compiled policies. Compile once at start; ``evaluate`` is safe to call at will."""

    def __init__(self, rules: tuple[Rule, ...] = RULES) -> None:
        env = cel.NewEnv(variables=dict(VARIABLES))
        # A syntax or type error in a rule fails here, at start, never on an order.
        self._compiled = tuple((rule, env.compile(rule.expression)) for rule in rules)

    def evaluate(self, facts: OrderFacts, limits: Limits, *, note: str = "") -> list[Verdict]:
        """One verdict per policy, in order.

        ``note`` is appended to the reasons of the rules the degraded modes tighten; the
        caller passes the tightened ``limits`` and says why in ``note``.
        """
        if facts.price is None or facts.last_price is None:
            return [
                Verdict(rule.name, False, f"no price for {facts.symbol}")
                for rule, _ in self._compiled
            ]

        data = _activation(facts, limits)
        figures = _Figures(facts, limits)
        verdicts = []
        for rule, program in self._compiled:
            passed = _holds(program, data)
            if not passed:
                template = rule.failed
            elif rule.exempt_if is not None and rule.exempt_if(facts):
                template = rule.exempt
            else:
                template = rule.passed
            reason = template.format_map(figures)
            if note and rule.tightened_when_degraded:
                reason += note
            verdicts.append(Verdict(rule.name, passed, reason))
        return verdicts


def to_micros(value: Decimal, *, up: bool) -> int:
    """``value`` in integer micro-units, rounded up (prices) or down (limits)."""
    return int((value * _MICROS).to_integral_value(ROUND_CEILING if up else ROUND_FLOOR))


def _activation(facts: OrderFacts, limits: Limits) -> dict[str, Any]:
    # Prices and values round against the order, limits round down: never in its favour.
    assert facts.price is not None and facts.last_price is not None
    limit = facts.limit_price
    return {
        "quantity": facts.quantity,
        "is_buy": facts.is_buy,
        "is_limit": limit is not None,
        "price": to_micros(facts.price, up=True),
        "limit_price": 0 if limit is None else to_micros(limit, up=True),
        "last_price": to_micros(facts.last_price, up=False),
        "position_value": to_micros(facts.position_value, up=True),
        "total_value": to_micros(facts.total_value, up=False),
        "max_order_notional": to_micros(limits.max_order_notional, up=False),
        "max_order_quantity": limits.max_order_quantity,
        "price_collar_bps": limits.price_collar_bps,
        "max_concentration_bps": limits.max_concentration_bps,
    }


def _holds(program: Any, data: dict[str, Any]) -> bool:
    # Only a boolean true passes; an error value (overflow, missing input) fails.
    try:
        return program.eval(data=data).value() is True
    except (RuntimeError, ValueError, TypeError, OverflowError):
        return False


class _Figures(dict[str, str]):
    """The numbers a reason quotes, computed lazily: each template uses a few of them."""

    def __init__(self, facts: OrderFacts, limits: Limits) -> None:
        super().__init__()
        self._facts = facts
        self._limits = limits

    def __missing__(self, key: str) -> str:
        value = getattr(self, f"_{key}")()
        self[key] = value
        return str(value)

    def _notional(self) -> str:
        return _money(self._notional_value())

    def _max_notional(self) -> str:
        return _money(self._limits.max_order_notional)

    def _quantity(self) -> str:
        return f"{self._facts.quantity:,}"

    def _max_quantity(self) -> str:
        return f"{self._limits.max_order_quantity:,}"

    def _collar_position(self) -> str:
        facts = self._facts
        if facts.limit_price is None or facts.last_price is None or not facts.last_price:
            return "no limit price to compare"
        distance = abs(facts.limit_price - facts.last_price) / facts.last_price * _BPS
        return (
            f"limit {facts.limit_price} is {distance.quantize(_CENT)} bps from "
            f"last {facts.last_price}"
        )

    def _collar_bps(self) -> str:
        return str(self._limits.price_collar_bps)

    def _concentration_position(self) -> str:
        facts = self._facts
        after = facts.position_value + self._notional_value()
        if facts.total_value <= _ZERO:
            return f"{facts.symbol} would be {_money(after)} of an account with no value"
        share = (after / facts.total_value * _BPS).quantize(_CENT)
        return (
            f"{facts.symbol} would be {_money(after)} of account value "
            f"{_money(facts.total_value)} ({share} bps)"
        )

    def _concentration_cap(self) -> str:
        return str(self._limits.max_concentration_bps)

    def _notional_value(self) -> Decimal:
        assert self._facts.price is not None
        return self._facts.price * self._facts.quantity


def _money(value: Decimal) -> str:
    return f"${value.quantize(_CENT):,}"
