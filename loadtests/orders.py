"""The blueprint order, varied so the venues keep liquidity: alternating BUY/SELL small
limit orders at the reference price on liquid symbols ACC-987654 holds."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from typing import Any

ACCOUNT = "ACC-987654"
ADVISOR = "ADV-1207"
#: Liquid symbols the account holds (AAPL 1500, MSFT 800, SPY 1200) at reference prices.
SYMBOLS: tuple[tuple[str, float], ...] = (("AAPL", 189.50), ("MSFT", 415.20), ("SPY", 520.40))
SIDES = ("BUY", "SELL")
QUANTITY = 10


def client_order_id(prefix: str = "lt") -> str:
    """A unique client order id (pid and a random part, so parallel workers never clash)."""
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:16]}"


def order_specs() -> Iterator[tuple[str, str, float]]:
    """(symbol, side, limit price) forever: each symbol BUY then SELL, round robin."""
    for (symbol, price), side in itertools.cycle([(s, side) for s in SYMBOLS for side in SIDES]):
        yield symbol, side, price


def rest_body(symbol: str, side: str, price: float, prefix: str = "lt") -> dict[str, Any]:
    """The JSON body of POST /v1/orders."""
    return {
        "account_id": ACCOUNT,
        "symbol": symbol,
        "side": side,
        "quantity": QUANTITY,
        "order_type": "LIMIT",
        "limit_price": price,
        "time_in_force": "DAY",
        "advisor_id": ADVISOR,
        "client_order_id": client_order_id(prefix),
    }
