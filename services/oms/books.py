"""Reads the OMS's reference data and the open-order snapshot from PostgreSQL.

Each read runs in one read-only REPEATABLE READ transaction, so accounts, positions,
securities and restrictions come from the same instant and never mix two refreshes.
"""

from __future__ import annotations

import asyncpg

from brokermesh.domain import orderfeed
from brokermesh.services.oms.checks import Account, ReferenceData, Security

#: The books and every order view at one instant.
Snapshot = orderfeed.Snapshot[ReferenceData]


async def read_books(pool: asyncpg.Pool, *, timeout_s: float) -> ReferenceData:
    """One consistent copy of accounts, positions, securities and the restricted list."""
    return await orderfeed.read_books(pool, _books, timeout_s=timeout_s)


async def read_snapshot(pool: asyncpg.Pool, *, timeout_s: float) -> Snapshot:
    """The books and every order view at one instant; the exposure book starts from it."""
    return await orderfeed.read_snapshot(pool, _books, timeout_s=timeout_s)


async def _books(conn: asyncpg.pool.PoolConnectionProxy, timeout_s: float) -> ReferenceData:
    accounts = await conn.fetch(
        "SELECT account_id, status, cash, permissions FROM accounts", timeout=timeout_s
    )
    positions = await conn.fetch(
        "SELECT account_id, symbol, quantity FROM positions", timeout=timeout_s
    )
    securities = await conn.fetch(
        "SELECT symbol, reference_price, eligible FROM securities", timeout=timeout_s
    )
    restricted = await conn.fetch(
        "SELECT symbol, account_id, reason FROM restricted_list", timeout=timeout_s
    )
    return ReferenceData(
        accounts={
            row["account_id"]: Account(
                account_id=row["account_id"],
                status=row["status"],
                cash=row["cash"],
                permissions=frozenset(row["permissions"] or ()),
            )
            for row in accounts
        },
        positions={(row["account_id"], row["symbol"]): row["quantity"] for row in positions},
        securities={
            row["symbol"]: Security(
                symbol=row["symbol"],
                reference_price=row["reference_price"],
                eligible=row["eligible"],
            )
            for row in securities
        },
        firm_restrictions={
            row["symbol"]: row["reason"] for row in restricted if row["account_id"] is None
        },
        account_restrictions={
            (row["account_id"], row["symbol"]): row["reason"]
            for row in restricted
            if row["account_id"] is not None
        },
    )
