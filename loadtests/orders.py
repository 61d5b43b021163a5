"""The blueprint order, varied so a long run stays tradable: alternating BUY/SELL small
marketable limit orders on liquid symbols, for an account of the load tests' own.

Each order crosses the spread by a few cents, well inside the risk price collar, so it
fills at once against the venue's book. Buys and sells alternate per symbol, so cash and
positions oscillate. Sale proceeds settle on T+1, though, so buys still spend cash the
sells do not give back the same day: the account (:data:`ACCOUNT`, which the harness
provisions with :data:`ACCOUNT_CASH` and :data:`ACCOUNT_SHARES` of each symbol) is funded
for far longer runs than the benchmarks make, so they measure the whole pre-venue path
rather than an early rejection for buying power.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

#: The load tests' own account, assigned to ADVISOR (see loadtests.harness.provision).
ACCOUNT = "ACC-LOADTEST"
ADVISOR = "ADV-1207"
ACCOUNT_CASH = Decimal("10000000000.00")
ACCOUNT_SHARES = 10_000_000
#: Liquid symbols the account holds (ACCOUNT_SHARES each), at their reference prices.
SYMBOLS: tuple[tuple[str, Decimal], ...] = (
    ("AAPL", Decimal("189.50")),
    ("MSFT", Decimal("415.20")),
    ("SPY", Decimal("520.40")),
)
SIDES = ("BUY", "SELL")
QUANTITY = 10
#: How far past the reference price an order reaches: the venue simulators keep the best
#: ask at or one tick under the reference and the spread at one to three ticks.
CROSS = Decimal("0.05")


def client_order_id(prefix: str = "lt") -> str:
    """A unique client order id (pid and a random part, so parallel workers never clash)."""
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:16]}"


def marketable_price(reference: Decimal, side: str) -> Decimal:
    """A limit price that crosses the spread: above the reference to buy, below to sell."""
    return reference + CROSS if side == "BUY" else reference - CROSS


def order_specs() -> Iterator[tuple[str, str, Decimal]]:
    """(symbol, side, limit price) forever: each symbol BUY then SELL, round robin."""
    pairs = [(symbol, price, side) for symbol, price in SYMBOLS for side in SIDES]
    for symbol, price, side in itertools.cycle(pairs):
        yield symbol, side, marketable_price(price, side)


def rest_body(symbol: str, side: str, price: Decimal, prefix: str = "lt") -> dict[str, Any]:
    """The JSON body of POST /v1/orders (the limit price as a decimal string)."""
    return {
        "account_id": ACCOUNT,
        "symbol": symbol,
        "side": side,
        "quantity": QUANTITY,
        "order_type": "LIMIT",
        "limit_price": str(price),
        "time_in_force": "DAY",
        "advisor_id": ADVISOR,
        "client_order_id": client_order_id(prefix),
    }
