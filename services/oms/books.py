"""Reads the OMS's reference data and the open-order snapshot from PostgreSQL.

Each read runs in one read-only REPEATABLE READ transaction, so accounts, positions,
securities and restrictions come from the same instant and never mix two refreshes.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import asyncpg

from brokermesh.domain.orderfeed import read_order_views
from brokermesh.services.oms.checks import Account, ReferenceData, Security
from brokermesh.trading.v1 import order_query_pb2


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """The books plus every order of the read model, as of one database instant."""

    books: ReferenceData
    orders: tuple[order_query_pb2.OrderView, ...]
    as_of: datetime.datetime


async def read_books(pool: asyncpg.Pool, *, timeout_s: float) -> ReferenceData:
    """One consistent copy of accounts, positions, securities and the restricted list."""
    async with pool.acquire(timeout=timeout_s) as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            return await _books(conn, timeout_s)


async def read_snapshot(pool: asyncpg.Pool, *, timeout_s: float) -> Snapshot:
    """The books and every order view at one instant; the exposure book starts from it."""
    async with pool.acquire(timeout=timeout_s) as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            books = await _books(conn, timeout_s)
            orders, as_of = await read_order_views(conn, timeout_s=timeout_s)
    return Snapshot(books=books, orders=orders, as_of=as_of)


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
