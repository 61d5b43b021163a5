"""The order event store in PostgreSQL: append-only streams, optimistic concurrency, hash chain.

Each order is one stream. Appending version N succeeds only if no event N
exists (a unique constraint), so two writers racing on one order cannot both
win. Each row's ``hash`` covers the previous row's hash in the same stream and
the row's own identity and payload; altering any stored row breaks the chain
from that row on, which :func:`verify` reports. A trigger gives every appended
event its outbox row in the same transaction and wakes the relay, so committing
an event and scheduling its publication are one atomic step that no writer can
skip.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from brokermesh.events.v1.order_events_pb2 import OrderEvent
from brokermesh.mesh.errors import Aborted

#: A connection, or one lent by a pool, that statements can run on.
Executor: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


#: ``prev_hash`` of the first event in a stream.
GENESIS = bytes(32)

#: Channel the relay LISTENs on; the outbox trigger (migration 0005) notifies it in the
#: appending transaction.
OUTBOX_CHANNEL = "brokermesh_outbox"

_APPEND = """
INSERT INTO order_events
    (event_id, stream_id, stream_version, event_type, event_version, payload, prev_hash, hash)
SELECT * FROM unnest(
    $1::uuid[], $2::text[], $3::int[], $4::text[], $5::text[], $6::bytea[], $7::bytea[],
    $8::bytea[]
)
"""

#: Opens a new order's stream and claims its (account, client order id) in
#: one statement: one round trip and one commit on the hot path. On a
#: repeated key nothing is written and ``claimed`` is false.
_OPEN = """
WITH claimed AS (
    INSERT INTO order_requests (account_id, client_order_id, order_id)
    VALUES ($9, $10, ($2::text[])[1]) ON CONFLICT DO NOTHING
    RETURNING order_id
), appended AS (
    INSERT INTO order_events
        (event_id, stream_id, stream_version, event_type, event_version, payload, prev_hash, hash)
    SELECT e.* FROM unnest(
        $1::uuid[], $2::text[], $3::int[], $4::text[], $5::text[], $6::bytea[], $7::bytea[],
        $8::bytea[]
    ) AS e
    WHERE EXISTS (SELECT FROM claimed)
)
SELECT EXISTS (SELECT FROM claimed) AS claimed
"""

_READ_STREAM = """
SELECT position, event_id, stream_id, stream_version, event_type, event_version, payload,
       prev_hash, hash
FROM order_events WHERE stream_id = $1 ORDER BY stream_version
"""


class ConcurrencyConflict(Aborted):
    """Another writer appended to the stream first."""

    def __init__(self, stream_id: str, version: int) -> None:
        super().__init__(
            f"stream {stream_id} already has version {version}", code="CONCURRENCY_CONFLICT"
        )
        self.stream_id = stream_id
        self.version = version


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of the event store."""

    position: int
    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    event_type: str
    event_version: str
    payload: bytes
    prev_hash: bytes
    hash: bytes

    def event(self) -> OrderEvent:
        return OrderEvent.FromString(self.payload)


@dataclass(frozen=True, slots=True)
class StreamHead:
    """Where a stream ends: the version and hash the next append builds on."""

    version: int = 0
    hash: bytes = GENESIS


def chain_hash(
    prev_hash: bytes,
    event_id: str,
    stream_id: str,
    stream_version: int,
    event_type: str,
    event_version: str,
    payload: bytes,
) -> bytes:
    """sha256 over the previous hash and the event's fields, each length-prefixed."""
    digest = hashlib.sha256(prev_hash)
    for part in (
        event_id.encode(),
        stream_id.encode(),
        str(stream_version).encode(),
        event_type.encode(),
        event_version.encode(),
        payload,
    ):
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    return digest.digest()


async def append(conn: Executor, head: StreamHead, events: Sequence[OrderEvent]) -> StreamHead:
    """Append ``events`` after ``head`` in the caller's transaction; return the new head.

    The events must carry consecutive ``stream_version``s starting at
    ``head.version + 1``. Raises :class:`ConcurrencyConflict` when another
    writer got there first; the transaction is then unusable and must be
    rolled back by the caller.
    """
    columns, new_head = _columns(head, events)
    try:
        await conn.execute(_APPEND, *columns)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != "order_events_stream_version_key":
            raise
        raise ConcurrencyConflict(events[0].order_id, events[0].stream_version) from exc
    return new_head


async def open_stream(
    conn: Executor | asyncpg.Pool,
    events: Sequence[OrderEvent],
    *,
    account_id: str,
    client_order_id: str,
) -> StreamHead | None:
    """Start a new order's stream with ``events``, claiming its idempotency key.

    One statement, so it commits atomically without an explicit transaction.
    Returns the new head, or None when (account_id, client_order_id) was
    already claimed by another order, in which case nothing was written.
    """
    columns, new_head = _columns(StreamHead(), events)
    row = await conn.fetchrow(_OPEN, *columns, account_id, client_order_id)
    return new_head if row is not None and row["claimed"] else None


def _columns(
    head: StreamHead, events: Sequence[OrderEvent]
) -> tuple[list[list[object]], StreamHead]:
    """The insert's column arrays for ``events`` after ``head``, hashes chained."""
    columns: list[list[object]] = [[] for _ in range(8)]
    prev = head.hash
    for offset, event in enumerate(events, start=1):
        if event.stream_version != head.version + offset:
            raise ValueError(
                f"event {event.event_type} has version {event.stream_version}, "
                f"expected {head.version + offset}"
            )
        # The database stores ids in canonical form and the audit hashes that
        # form, so anything else would be recorded as a broken chain.
        if event.event_id != str(uuid.UUID(event.event_id)):
            raise ValueError(f"event id {event.event_id!r} is not a canonical lower-case UUID")
        payload = event.SerializeToString(deterministic=True)
        digest = chain_hash(
            prev,
            event.event_id,
            event.order_id,
            event.stream_version,
            event.event_type,
            event.event_version,
            payload,
        )
        row = (
            event.event_id,
            event.order_id,
            event.stream_version,
            event.event_type,
            event.event_version,
            payload,
            prev,
            digest,
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
        prev = digest
    return columns, StreamHead(head.version + len(events), prev)


async def read_stream(conn: Executor | asyncpg.Pool, stream_id: str) -> list[StoredEvent]:
    """Every event of one stream, in version order."""
    rows = await conn.fetch(_READ_STREAM, stream_id)
    return [StoredEvent(**dict(row)) for row in rows]


def head_of(stored: Sequence[StoredEvent]) -> StreamHead:
    """The head after ``stored``, a whole stream in version order."""
    if not stored:
        return StreamHead()
    return StreamHead(stored[-1].stream_version, stored[-1].hash)
