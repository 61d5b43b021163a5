"""The order view read model: folding published events into ``order_views``.

The ledger is the only process that writes ``order_views``. The relay folds
a batch into the views it read with the batch (:func:`fold`) and stores them
with :func:`commit` in the statement that marks the events' outbox rows
published, so the read model never runs ahead of the bus; :func:`project`
does the same inside a caller's transaction for everyone else. The fold
itself is :func:`brokermesh.domain.events.apply`, the same one
``brokermesh replay`` uses, so the live view and a rebuilt one cannot
disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC

import asyncpg

from brokermesh.domain import events as domain_events
from brokermesh.domain import states
from brokermesh.events.v1.order_events_pb2 import OrderEvent
from brokermesh.mesh.errors import FailedPrecondition, MeshError
from brokermesh.trading.v1.order_query_pb2 import OrderView

#: Transaction-level advisory lock ("bmorview") every writer of order_views takes first,
#: so a replay and the live projection never interleave.
VIEWS_LOCK_KEY = 0x626D6F7276696577

_LOCK = "SELECT pg_advisory_xact_lock($1)"

_LOAD = """
SELECT order_id, stream_version, view FROM order_views WHERE order_id = ANY($1::text[])
"""
_LOAD_FOR_UPDATE = _LOAD + " FOR UPDATE"

#: Takes the views lock, checks the views are still at the versions read, marks the
#: outbox rows published and stores the views: one statement (migration 0007).
_COMMIT = """
SELECT relay_commit($1, $2::bigint[], $3::text[], $4::int[], $5::text[], $6::text[],
                    $7::int[], $8::timestamptz[], $9::bytea[])
"""

_UPSERT = """
INSERT INTO order_views (order_id, account_id, state, stream_version, accepted_at, view)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::timestamptz[],
                     $6::bytea[])
ON CONFLICT (order_id) DO UPDATE SET
    account_id = EXCLUDED.account_id,
    state = EXCLUDED.state,
    stream_version = EXCLUDED.stream_version,
    accepted_at = EXCLUDED.accepted_at,
    view = EXCLUDED.view
"""


class ProjectionGap(FailedPrecondition):
    """An event arrived whose predecessor the stored view has not seen.

    The relay publishes each stream in version order, so this means the read
    model was edited or lost rows; ``brokermesh replay`` rebuilds it.
    """

    def __init__(self, order_id: str, stored_version: int, event_version: int) -> None:
        super().__init__(
            f"order {order_id}: view is at version {stored_version} but the next event is "
            f"version {event_version}; rebuild the read model with `brokermesh replay`",
            code="PROJECTION_GAP",
        )
        self.order_id = order_id
        self.stored_version = stored_version
        self.event_version = event_version


@dataclass(slots=True)
class _Stream:
    """One order's view while a batch is folded into it."""

    view: OrderView
    version: int
    changed: bool = False
    #: The version the view had when it was read (0: there was none).
    read_version: int = 0


@dataclass(frozen=True, slots=True)
class StoredView:
    """One order's view as read from ``order_views``: its version and serialized bytes."""

    version: int
    view: bytes


class Fold:
    """A batch folded into the views read with it, in memory: what :func:`commit` stores."""

    def __init__(self, read: Mapping[str, StoredView]) -> None:
        self._streams = {
            order_id: _Stream(
                OrderView.FromString(stored.view), stored.version, False, stored.version
            )
            for order_id, stored in read.items()
        }
        #: Orders the fold refuses: order id -> (first refused version, why).
        self.refused: dict[str, tuple[int, MeshError]] = {}

    def apply(self, events: Iterable[OrderEvent]) -> None:
        """Fold ``events`` (each order's in version order); an order stops at its first refused
        event, which is recorded in :attr:`refused`."""
        for event in events:
            if event.order_id in self.refused:
                continue
            stream = self._streams.setdefault(event.order_id, _Stream(OrderView(), 0))
            try:
                _fold(stream, event)
            except MeshError as exc:
                self.refused[event.order_id] = (event.stream_version, exc)

    @property
    def changed(self) -> list[_Stream]:
        return [stream for stream in self._streams.values() if stream.changed]


def fold(read: Mapping[str, StoredView], events: Sequence[OrderEvent]) -> Fold:
    """Fold ``events`` into the views ``read`` along with them, touching no database."""
    folded = Fold(read)
    folded.apply(events)
    return folded


class ViewsMoved(Exception):
    """A view changed between the relay's read and its commit (a replay ran): read again."""


async def commit(conn: asyncpg.Connection, positions: Sequence[int], folded: Fold) -> None:
    """Mark ``positions`` published and store ``folded``'s changed views, in one statement.

    Raises :class:`ViewsMoved`, marking and storing nothing, when a view is no
    longer at the version :func:`fold` started from.
    """
    streams = folded.changed
    columns: list[list[object]] = [[] for _ in range(6)]
    for stream in streams:
        for column, value in zip(columns, row_of(stream.view), strict=True):
            column.append(value)
    order_ids, account_ids, state_names, versions, accepted, views = columns
    try:
        await conn.fetchval(
            _COMMIT,
            VIEWS_LOCK_KEY,
            list(positions),
            order_ids,
            [stream.read_version for stream in streams],
            account_ids,
            state_names,
            versions,
            accepted,
            views,
        )
    except asyncpg.SerializationError as exc:
        raise ViewsMoved(str(exc)) from exc


async def lock_views(conn: asyncpg.Connection) -> None:
    """Take the read model's write lock until the caller's transaction ends."""
    await conn.execute(_LOCK, VIEWS_LOCK_KEY)


async def project(conn: asyncpg.Connection, events: Sequence[OrderEvent]) -> int:
    """Fold ``events`` into their orders' stored views, in the caller's transaction.

    Events of one order must come in version order. An event the view already
    reflects (version <= the stored one) is skipped, so projecting a batch twice
    is harmless; an event that skips a version raises :class:`ProjectionGap`,
    and an illegal transition raises ``IllegalTransition``, either of which
    leaves the transaction for the caller to roll back. Returns how many
    events changed a view.
    """
    if not events:
        return 0
    await lock_views(conn)
    streams = await _load(conn, {event.order_id for event in events}, for_update=True)

    applied = 0
    for event in events:
        stream = streams.setdefault(event.order_id, _Stream(OrderView(), 0))
        applied += _fold(stream, event)

    await store(conn, (s.view for s in streams.values() if s.changed))
    return applied


def _fold(stream: _Stream, event: OrderEvent) -> int:
    """Apply ``event`` to ``stream`` unless already reflected; 1 if applied, else 0."""
    if event.stream_version <= stream.version:
        return 0
    if event.stream_version != stream.version + 1:
        raise ProjectionGap(event.order_id, stream.version, event.stream_version)
    domain_events.apply(stream.view, event)
    stream.version = event.stream_version
    stream.changed = True
    return 1


async def store(conn: asyncpg.Connection, views: Iterable[OrderView]) -> int:
    """Upsert ``views`` into order_views in one statement; returns how many."""
    columns: list[list[object]] = [[] for _ in range(6)]
    for view in views:
        for column, value in zip(columns, row_of(view), strict=True):
            column.append(value)
    if columns[0]:
        await conn.execute(_UPSERT, *columns)
    return len(columns[0])


def row_of(view: OrderView) -> tuple[object, ...]:
    """The order_views row for ``view``: its key columns and the deterministic serialization.

    Deterministic serialization makes the stored bytes a function of the view
    alone, so a replayed view can be compared with the live one byte for byte.
    """
    return (
        view.order.order_id,
        view.order.account_id,
        states.name(view.state),
        view.stream_version,
        view.order.accepted_at.ToDatetime(tzinfo=UTC),
        view.SerializeToString(deterministic=True),
    )


async def _load(
    conn: asyncpg.Connection, order_ids: set[str], *, for_update: bool
) -> dict[str, _Stream]:
    # Sorted ids lock rows in one global order, so two writers cannot deadlock.
    rows = await conn.fetch(_LOAD_FOR_UPDATE if for_update else _LOAD, sorted(order_ids))
    return {
        row["order_id"]: _Stream(OrderView.FromString(bytes(row["view"])), row["stream_version"])
        for row in rows
    }
