"""Which accounts each advisor may act on, kept in memory and refreshed from PostgreSQL.

The assignments live in ``advisor_accounts``. The gateway loads them at
start-up and reloads them every ``refresh_s`` seconds in a named background
task. When PostgreSQL cannot be reached the last assignments that were read
stay in force; before the first successful read nobody is entitled to
anything, so an outage never widens access.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

import asyncpg

from brokermesh.mesh.tasks import cancel_and_wait

_LOGGER = logging.getLogger(__name__)

#: Assignments of active advisors only: a deactivated advisor loses every account.
_QUERY = """
    SELECT aa.advisor_id, aa.account_id
    FROM advisor_accounts aa
    JOIN advisors a USING (advisor_id)
    WHERE a.active
"""
#: What a lost or refused PostgreSQL connection raises.
_PG_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class Entitlements:
    """The advisor-to-account assignments the gateway enforces."""

    def __init__(self, dsn: str, *, refresh_s: float, timeout_s: float = 2.0) -> None:
        self._dsn = dsn
        self._refresh_s = refresh_s
        self._timeout_s = timeout_s
        self._accounts: Mapping[str, frozenset[str]] = {}
        self._loaded = False
        self._connection: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def loaded(self) -> bool:
        """Whether assignments were read from PostgreSQL at least once."""
        return self._loaded

    def allows(self, advisor_id: str, account_id: str) -> bool:
        """Whether ``advisor_id`` may act on ``account_id``."""
        return account_id in self._accounts.get(advisor_id, frozenset())

    async def start(self) -> None:
        """Read the assignments once, then keep refreshing them until :meth:`stop`.

        A failed first read is logged and retried by the refresh task; until it
        succeeds every entitlement check fails.
        """
        try:
            await self.refresh()
        except _PG_ERRORS as exc:
            _LOGGER.warning("entitlements not loaded yet, retrying: %s", exc)
        self._task = asyncio.create_task(self._refresh_forever(), name="entitlements-refresh")

    async def stop(self) -> None:
        """Stop refreshing and close the connection; safe to call more than once."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        await self._disconnect()

    async def refresh(self) -> None:
        """Replace the assignments with what ``advisor_accounts`` holds now."""
        try:
            connection = await self._connect()
            rows = await connection.fetch(_QUERY, timeout=self._timeout_s)
        except BaseException:
            await self._disconnect()
            raise
        accounts: dict[str, set[str]] = {}
        for row in rows:
            accounts.setdefault(row["advisor_id"], set()).add(row["account_id"])
        self._accounts = {advisor: frozenset(ids) for advisor, ids in accounts.items()}
        if not self._loaded:
            _LOGGER.info("entitlements loaded for %d advisors", len(self._accounts))
        self._loaded = True

    async def _refresh_forever(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                await self.refresh()
            except _PG_ERRORS as exc:
                if not failing:
                    _LOGGER.warning("entitlements refresh failed, keeping the last ones: %s", exc)
                failing = True
                continue
            if failing:
                _LOGGER.info("entitlements refresh recovered")
            failing = False

    async def _connect(self) -> asyncpg.Connection:
        if self._connection is None or self._connection.is_closed():
            self._connection = await asyncpg.connect(self._dsn, timeout=self._timeout_s)
        return self._connection

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            with contextlib.suppress(*_PG_ERRORS):
                await asyncio.wait_for(connection.close(), self._timeout_s)
