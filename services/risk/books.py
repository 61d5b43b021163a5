"""The risk service's copy of the books (limits, cash, positions and reference prices) and
the open-order snapshot its exposure book starts from.

Read from PostgreSQL in one read-only REPEATABLE READ transaction, so a refresh never mixes
two instants, and replaced whole on each refresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

import asyncpg

from brokermesh.domain import orderfeed
from brokermesh.services.risk.policies import Limits


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskBooks:
    """One consistent snapshot of what the policies read from the database."""

    #: Limits of accounts that have their own row.
    account_limits: Mapping[str, Limits] = field(default_factory=dict)
    #: The firm default (the row with no account), if there is one.
    default_limits: Limits | None = None
    cash: Mapping[str, Decimal] = field(default_factory=dict)
    #: Shares held, by account then symbol.
    positions: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    reference_prices: Mapping[str, Decimal] = field(default_factory=dict)

    def limits_for(self, account_id: str) -> Limits | None:
        """The account's own limits, which override the firm default as a whole row."""
        return self.account_limits.get(account_id, self.default_limits)


#: The books and every order view at one instant.
Snapshot = orderfeed.Snapshot[RiskBooks]


async def read_books(pool: asyncpg.Pool, *, timeout_s: float) -> RiskBooks:
    """Read limits, cash, positions and reference prices at one instant."""
    return await orderfeed.read_books(pool, _books, timeout_s=timeout_s)


async def read_snapshot(pool: asyncpg.Pool, *, timeout_s: float) -> Snapshot:
    """The books and every order view at one instant; the exposure book starts from it."""
    return await orderfeed.read_snapshot(pool, _books, timeout_s=timeout_s)


async def _books(conn: asyncpg.pool.PoolConnectionProxy, timeout_s: float) -> RiskBooks:
    limits = await conn.fetch(
        "SELECT account_id, max_order_notional, max_order_quantity, price_collar_bps,"
        " max_concentration_bps FROM risk_limits",
        timeout=timeout_s,
    )
    accounts = await conn.fetch("SELECT account_id, cash FROM accounts", timeout=timeout_s)
    positions = await conn.fetch(
        "SELECT account_id, symbol, quantity FROM positions", timeout=timeout_s
    )
    securities = await conn.fetch(
        "SELECT symbol, reference_price FROM securities", timeout=timeout_s
    )

    by_account: dict[str, dict[str, int]] = {}
    for row in positions:
        by_account.setdefault(row["account_id"], {})[row["symbol"]] = row["quantity"]
    account_limits = {row["account_id"]: _limits(row) for row in limits if row["account_id"]}
    defaults = [_limits(row) for row in limits if row["account_id"] is None]
    return RiskBooks(
        account_limits=account_limits,
        default_limits=defaults[0] if defaults else None,
        cash={row["account_id"]: row["cash"] for row in accounts},
        positions=by_account,
        reference_prices={row["symbol"]: row["reference_price"] for row in securities},
    )


def _limits(row: asyncpg.Record) -> Limits:
    return Limits(
        max_order_notional=row["max_order_notional"],
        max_order_quantity=row["max_order_quantity"],
        price_collar_bps=row["price_collar_bps"],
        max_concentration_bps=row["max_concentration_bps"],
    )
