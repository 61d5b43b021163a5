"""PostgreSQL connection pools for the services, without a round trip on every release.

asyncpg resets each connection it takes back into a pool with ``SELECT
pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``: one more round
trip for every statement or transaction a service runs, about a sixth of all
the statements an order costs. The services' pooled connections never carry
session state: no ``SET``, no session advisory lock, no ``LISTEN``, no cursor
outside a transaction (the ledger's relay, which needs a LISTEN and a session
lock, has a connection of its own). So the pools skip that query. asyncpg still
rolls back a transaction left open on a released connection and drops its
listeners, whatever ``reset`` does.
"""

from __future__ import annotations

from typing import Any

import asyncpg


async def keep_session(connection: asyncpg.Connection) -> None:
    """A pool's ``reset``: nothing to undo (see the module docstring)."""


def create_pool(dsn: str, **options: Any) -> asyncpg.Pool:
    """``asyncpg.create_pool(dsn, **options)`` with :func:`keep_session` as its reset.

    Like asyncpg's own, the pool is returned unopened: await it (or the result of
    this call) to open it.
    """
    return asyncpg.create_pool(dsn, reset=keep_session, **options)
