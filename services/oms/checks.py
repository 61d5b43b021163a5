"""The OMS validation checks: pure functions of an order, the reference data and the account's
exposure.

Every check runs for every order, in a fixed order, so an advisor sees all the reasons an
order fails at once rather than one per attempt. Nothing here does I/O or reads a clock:
the service hands in a snapshot of the books and its exposure book's view of the account's
holds, open orders and fills.

Checks, in order: ``account_status``, ``trading_permissions``, ``symbol_eligibility``,
``restricted_list``, ``order_type_sanity``, ``buying_power``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from brokermesh.common.v1 import common_pb2
from brokermesh.domain.exposure import Exposure, parse_price
from brokermesh.trading.v1 import order_pb2

BUY = common_pb2.SIDE_BUY
SELL = common_pb2.SIDE_SELL
MARKET = common_pb2.ORDER_TYPE_MARKET
LIMIT = common_pb2.ORDER_TYPE_LIMIT
GTC = common_pb2.TIME_IN_FORCE_GTC
ALLOWED_TIME_IN_FORCE = frozenset(
    {common_pb2.TIME_IN_FORCE_DAY, common_pb2.TIME_IN_FORCE_IOC, common_pb2.TIME_IN_FORCE_GTC}
)

#: Product permission an account needs to trade the securities in the master (all equities).
EQUITY = "EQUITY"
#: Decimal places a limit price may carry at one dollar and above (sub-penny is refused
#: beyond this); below one dollar the contract's own limit of six applies.
MAX_PLACES_AT_OR_ABOVE_ONE = 4
MAX_PLACES_BELOW_ONE = 6
#: Markup on the last price that prices a market buy for buying power: 5 %.
DEFAULT_MARKET_MARKUP = Decimal("0.05")

_ONE = Decimal(1)
_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """An account as the books hold it at the start of the day."""

    account_id: str
    status: str
    cash: Decimal
    permissions: frozenset[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Security:
    """A security-master entry: its reference price and whether the firm lets it trade."""

    symbol: str
    reference_price: Decimal
    eligible: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferenceData:
    """One consistent snapshot of the books; replaced whole on every refresh."""

    accounts: Mapping[str, Account] = field(default_factory=dict)
    #: Shares held, by (account_id, symbol).
    positions: Mapping[tuple[str, str], int] = field(default_factory=dict)
    securities: Mapping[str, Security] = field(default_factory=dict)
    #: Reason a symbol is restricted firm-wide, by symbol.
    firm_restrictions: Mapping[str, str] = field(default_factory=dict)
    #: Reason a symbol is restricted for one account, by (account_id, symbol).
    account_restrictions: Mapping[tuple[str, str], str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Verdict:
    """One check's outcome and the reason, in words an advisor can act on."""

    policy: str
    passed: bool
    reason: str


def validate(
    order: order_pb2.Order,
    books: ReferenceData,
    exposure: Exposure,
    last_price: Decimal | None,
    *,
    market_markup: Decimal = DEFAULT_MARKET_MARKUP,
) -> list[Verdict]:
    """Run every check on ``order`` and return one verdict per check, in the fixed order.

    ``last_price`` is the symbol's freshest traded price (or its reference price); it prices
    market buys. Pure and idempotent: the same inputs always give the same verdicts.
    """
    account = books.accounts.get(order.account_id)
    security = books.securities.get(order.symbol)
    return [
        check_account_status(order, account),
        check_trading_permissions(order, account),
        check_symbol_eligibility(order, security),
        check_restricted_list(order, books),
        check_order_type_sanity(order),
        check_buying_power(order, account, books, exposure, last_price, market_markup),
    ]


def check_account_status(order: order_pb2.Order, account: Account | None) -> Verdict:
    """ACTIVE trades; RESTRICTED may only sell (close); FROZEN may not trade at all."""
    name = "account_status"
    if account is None:
        return Verdict(name, False, f"account {order.account_id} does not exist")

    status = account.status
    if status == "ACTIVE":
        return Verdict(name, True, f"account {account.account_id} is ACTIVE")
    if status == "RESTRICTED":
        if order.side == SELL:
            return Verdict(
                name, True, f"account {account.account_id} is RESTRICTED: closing sells allowed"
            )
        return Verdict(
            name, False, f"account {account.account_id} is RESTRICTED: only sells are allowed"
        )
    if status == "FROZEN":
        return Verdict(name, False, f"account {account.account_id} is FROZEN: no trading allowed")
    return Verdict(name, False, f"account {account.account_id} has unknown status {status!r}")


def check_trading_permissions(order: order_pb2.Order, account: Account | None) -> Verdict:
    """The account must be permissioned for equities, the only product the master lists."""
    name = "trading_permissions"
    if account is None:
        return Verdict(name, False, f"account {order.account_id} does not exist")
    if EQUITY in account.permissions:
        return Verdict(name, True, f"account {account.account_id} may trade {EQUITY}")

    held = ", ".join(sorted(account.permissions)) or "none"
    return Verdict(
        name, False, f"account {account.account_id} lacks {EQUITY} permission (has: {held})"
    )


def check_symbol_eligibility(order: order_pb2.Order, security: Security | None) -> Verdict:
    """The symbol must be in the security master and eligible for advisors to trade."""
    name = "symbol_eligibility"
    if security is None:
        return Verdict(name, False, f"{order.symbol} is not in the security master")
    if not security.eligible:
        return Verdict(name, False, f"{order.symbol} is not eligible for trading")
    return Verdict(name, True, f"{order.symbol} is eligible")


def check_restricted_list(order: order_pb2.Order, books: ReferenceData) -> Verdict:
    """A firm-wide or an account-specific restriction refuses the order, with its reason."""
    name = "restricted_list"
    firm = books.firm_restrictions.get(order.symbol)
    if firm is not None:
        return Verdict(name, False, f"{order.symbol} is restricted firm-wide: {firm}")

    own = books.account_restrictions.get((order.account_id, order.symbol))
    if own is not None:
        return Verdict(name, False, f"{order.symbol} is restricted for {order.account_id}: {own}")
    return Verdict(name, True, f"{order.symbol} is not on the restricted list")


def check_order_type_sanity(order: order_pb2.Order) -> Verdict:
    """Limit orders carry a positive, tick-sane price; market orders none, and never GTC."""
    name = "order_type_sanity"
    problems: list[str] = []
    if order.time_in_force not in ALLOWED_TIME_IN_FORCE:
        problems.append("time in force must be DAY, IOC or GTC")

    if order.order_type == LIMIT:
        problems.extend(_limit_price_problems(order.limit_price))
    elif order.order_type == MARKET:
        if order.limit_price:
            problems.append("a market order must not carry a limit price")
        if order.time_in_force == GTC:
            problems.append("a market order cannot be GTC")
    else:
        problems.append("order type must be MARKET or LIMIT")

    if problems:
        return Verdict(name, False, "; ".join(problems))
    kind = "limit" if order.order_type == LIMIT else "market"
    tif = common_pb2.TimeInForce.Name(order.time_in_force).removeprefix("TIME_IN_FORCE_")
    return Verdict(name, True, f"{kind} {tif} order is well formed")


def check_buying_power(
    order: order_pb2.Order,
    account: Account | None,
    books: ReferenceData,
    exposure: Exposure,
    last_price: Decimal | None,
    market_markup: Decimal,
) -> Verdict:
    """Buys must fit the cash not already committed; sells the shares not already committed."""
    name = "buying_power"
    if account is None:
        return Verdict(name, False, f"account {order.account_id} does not exist")
    if order.side == SELL:
        return _check_shares(order, books, exposure)

    price = _buy_price(order, last_price, market_markup)
    if price is None:
        return Verdict(name, False, f"cannot price the order: no usable price for {order.symbol}")
    return _check_cash(order, account, exposure, price)


def money(value: Decimal) -> str:
    """Dollars to the cent with thousands separators, for reasons people read."""
    return f"${value.quantize(_CENT):,}"


def _limit_price_problems(text: str) -> list[str]:
    # The contract's pattern already bounds the digits; this adds the trading rules.
    if not text:
        return ["a limit order needs a limit price"]
    price = parse_price(text)
    if price is None:
        return [f"limit price {text!r} is not a number"]
    if price <= 0:
        return [f"limit price {text} must be positive"]

    exponent = price.normalize().as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    allowed = MAX_PLACES_AT_OR_ABOVE_ONE if price >= _ONE else MAX_PLACES_BELOW_ONE
    if places > allowed:
        return [f"limit price {text} has {places} decimals; at most {allowed} allowed"]
    return []


def _buy_price(
    order: order_pb2.Order, last_price: Decimal | None, market_markup: Decimal
) -> Decimal | None:
    # A limit buy can cost at most its limit; a market buy is priced conservatively above
    # the last price, since it takes whatever the book offers.
    if order.order_type == LIMIT:
        price = parse_price(order.limit_price)
        return price if price is not None and price > 0 else None
    if last_price is None or last_price <= 0:
        return None
    return last_price * (_ONE + market_markup)


def _check_cash(
    order: order_pb2.Order, account: Account, exposure: Exposure, price: Decimal
) -> Verdict:
    name = "buying_power"
    notional = price * order.quantity
    cash = account.cash + exposure.cash_delta
    available = cash - exposure.committed_cash
    detail = f"cash {money(cash)} less {money(exposure.committed_cash)} committed to open buys"
    if notional > available:
        shortfall = notional - max(available, Decimal(0))
        return Verdict(
            name,
            False,
            f"buy notional {money(notional)} exceeds available {money(available)} ({detail}): "
            f"shortfall {money(shortfall)}",
        )
    return Verdict(
        name, True, f"buy notional {money(notional)} within available {money(available)}"
    )


def _check_shares(order: order_pb2.Order, books: ReferenceData, exposure: Exposure) -> Verdict:
    # No short selling: a sell may use only shares held and not already promised to
    # another open sell.
    name = "buying_power"
    held = books.positions.get((order.account_id, order.symbol), 0) + exposure.position_delta
    available = held - exposure.committed_shares
    if order.quantity > available:
        return Verdict(
            name,
            False,
            f"sell of {order.quantity} {order.symbol} exceeds the {max(available, 0)} shares "
            f"available (position {held}, {exposure.committed_shares} committed to open "
            "sells): short selling is not allowed",
        )
    return Verdict(
        name,
        True,
        f"sell of {order.quantity} {order.symbol} within the {available} shares available",
    )
