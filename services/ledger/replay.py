"""Rebuilding the order view read model from the event store, and checking the live one.

:func:`rebuild` throws ``order_views`` away and folds every stream again with
:func:`brokermesh.domain.events.apply`, in one transaction: readers see the
old read model until the new one is complete. :func:`compare` folds the same
way in memory and reports where the live read model differs, byte for byte on
the deterministic serialization, without writing anything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg

from brokermesh.domain import events as domain_events
from brokermesh.events.v1.order_events_pb2 import OrderEvent
from brokermesh.services.ledger import projection
from brokermesh.trading.v1.order_query_pb2 import OrderView

#: Views written per statement while rebuilding.
_CHUNK = 1_000

_ALL_EVENTS = """
SELECT stream_id, stream_version, payload FROM order_events ORDER BY stream_id, stream_version
"""

_LIVE_VIEWS = "SELECT order_id, view FROM order_views"


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a rebuild did."""

    streams: int
    events: int
    deleted: int


@dataclass(slots=True)
class ReplayDiff:
    """Where the live read model and a fresh fold of the store disagree."""

    streams: int = 0
    #: Orders with events but no live view.
    missing: list[str] = field(default_factory=list)
    #: Live views with no events behind them.
    extra: list[str] = field(default_factory=list)
    #: Orders whose live view differs from the fold of their events.
    different: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.different)


async def rebuild(conn: asyncpg.Connection) -> ReplayReport:
    """Replace every row of order_views with the fold of its stream, atomically.

    Takes the read model's write lock, so the live projection waits for the
    rebuild rather than interleaving with it. Idempotent: a second run writes
    the same bytes. Uses DELETE rather than TRUNCATE, which the application
    role may not run.
    """
    streams = events = 0
    async with conn.transaction():
        await projection.lock_views(conn)
        deleted = int((await conn.execute("DELETE FROM order_views")).split()[-1])

        chunk: list[OrderView] = []
        async for view in fold_streams(conn):
            streams += 1
            events += view.stream_version
            chunk.append(view)
            if len(chunk) >= _CHUNK:
                await projection.store(conn, chunk)
                chunk.clear()
        await projection.store(conn, chunk)
    return ReplayReport(streams=streams, events=events, deleted=deleted)


async def compare(conn: asyncpg.Connection) -> ReplayDiff:
    """Fold every stream in memory and compare with the live order_views, byte for byte.

    Reads one consistent snapshot. Meaningful once the relay has drained the
    outbox: a view that lags its stream by unpublished events counts as different.
    """
    diff = ReplayDiff()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        live = {row["order_id"]: bytes(row["view"]) for row in await conn.fetch(_LIVE_VIEWS)}
        async for view in fold_streams(conn):
            diff.streams += 1
            order_id = view.order.order_id
            stored = live.pop(order_id, None)
            if stored is None:
                diff.missing.append(order_id)
            elif stored != view.SerializeToString(deterministic=True):
                diff.different.append(order_id)
    diff.extra = sorted(live)
    return diff


async def fold_streams(conn: asyncpg.Connection) -> AsyncIterator[OrderView]:
    """The folded view of every stream, in stream id order; needs an open transaction.

    Raises :class:`projection.ProjectionGap` when a stream skips a version, which
    the store's constraints should make impossible and ``audit verify`` reports.
    """
    stream_id: str | None = None
    view = OrderView()
    async for row in conn.cursor(_ALL_EVENTS, prefetch=_CHUNK):
        if row["stream_id"] != stream_id:
            if stream_id is not None:
                yield view
            stream_id, view = row["stream_id"], OrderView()
        if row["stream_version"] != view.stream_version + 1:
            raise projection.ProjectionGap(
                row["stream_id"], view.stream_version, row["stream_version"]
            )
        domain_events.apply(view, OrderEvent.FromString(bytes(row["payload"])))
    if stream_id is not None:
        yield view
