"""Order ids, ORD-YYYYMMDD-NNNNNNNN, from number blocks reserved in PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import date

import asyncpg

#: Must equal the INCREMENT BY of order_number_seq.
BLOCK_SIZE = 100


def format_order_id(day: date, number: int) -> str:
    """``ORD-20260316-00001234`` for day 2026-03-16 and number 1234."""
    return f"ORD-{day:%Y%m%d}-{number % 100_000_000:08d}"


class OrderIds:
    """Hands out order numbers, fetching a block of 100 per database round trip.

    Numbers are unique across processes because each block comes from one
    ``nextval``; a restart abandons the rest of its block, leaving gaps that
    carry no meaning.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._next = 0
        self._end = 0
        self._lock = asyncio.Lock()

    async def next_number(self) -> int:
        if self._next >= self._end:
            async with self._lock:
                if self._next >= self._end:
                    start = await self._pool.fetchval("SELECT nextval('order_number_seq')")
                    self._next, self._end = start, start + BLOCK_SIZE
        number = self._next
        self._next += 1
        return number
