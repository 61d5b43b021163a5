"""Verification of the event store against its hash chains and two witnesses on JetStream.

The chains catch an edit made without recomputing the hashes. Someone able to
rewrite rows could also recompute the hashes from the edited row to the end of
its stream, or delete a stream's last rows, or a whole stream, and a chain
alone cannot tell. So the check also holds the store against two records kept
on JetStream, a second system the database's owner does not control:

* the copy of each event the outbox relay published on ``ORDERS``: a row
  whose payload differs from its copy, a copy whose row is gone, two
  different copies of one event, or a row marked published without any copy
  is a break, and so is an empty or missing ``ORDERS`` stream while the store
  has published events;
* the ledger's signed, chained checkpoints on ``AUDIT_CHECKPOINTS``
  (:mod:`brokermesh.services.ledger.checkpoints`): every stream head a
  checkpoint recorded must still be in the store with the same hash, so a
  truncated, deleted or rewritten stream is a break even where no copy is left.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from brokermesh.domain.eventstore import GENESIS, chain_hash
from brokermesh.events.v1.order_events_pb2 import OrderEvent

_ALL_EVENTS = """
SELECT e.position, e.event_id::text AS event_id, e.stream_id, e.stream_version, e.event_type,
       e.event_version, e.payload, e.prev_hash, e.hash, o.position IS NOT NULL AS scheduled,
       o.published_at
FROM order_events e LEFT JOIN outbox o USING (event_id)
ORDER BY e.stream_id, e.stream_version
"""

_STREAM_ENDS = """
SELECT stream_id, max(stream_version) AS version FROM order_events
WHERE stream_id = ANY($1::text[]) GROUP BY stream_id
"""

#: How long after its copy was stored a row may be marked published (the relay marks it
#: once JetStream acked): the slack when deciding whether a copy may have aged out.
_MARK_SLACK = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Break:
    """One place where the stored history does not hold together.

    ``stream_id`` is empty for a break of a witness as a whole (a missing
    stream, a checkpoint whose signature fails), which belongs to no stream.
    """

    stream_id: str
    stream_version: int
    position: int
    problem: str


@dataclass(frozen=True, slots=True)
class PublishedCopy:
    """What JetStream holds of one published event: where it belongs and its payload's
    sha256."""

    stream_id: str
    stream_version: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class PublishedCopies:
    """Everything the ``ORDERS`` stream holds of the order events."""

    #: Event id -> its copy.
    copies: Mapping[str, PublishedCopy]
    #: Event ids of which JetStream holds two or more copies that differ.
    conflicting: frozenset[str] = frozenset()
    #: False when the stream does not exist at all.
    stream_exists: bool = True
    #: The stream's maximum message age in seconds; 0 keeps every message.
    max_age_s: float = 0.0


@dataclass(frozen=True, slots=True)
class CheckpointedHead:
    """A stream head as a verified checkpoint recorded it."""

    stream_id: str
    version: int
    hash: bytes
    #: Number of the first checkpoint that recorded it.
    checkpoint: int


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    """What the checkpoint stream vouches for, once its chain and signatures were checked."""

    #: (stream id, version) -> the head there, from checkpoints whose signature verified.
    heads: Mapping[tuple[str, int], CheckpointedHead]
    #: Checkpoints on the stream, valid or not.
    count: int
    #: What is wrong with the checkpoints themselves: chain, signature or format.
    breaks: Sequence[Break] = ()
    #: False when the stream does not exist at all.
    stream_exists: bool = True


def payload_digest(payload: bytes) -> bytes:
    """The digest a stored payload and its published copy are compared by."""
    return hashlib.sha256(payload).digest()


@dataclass(slots=True)
class AuditReport:
    streams: int = 0
    events: int = 0
    #: Events held against a published copy (0 when the copies were not read).
    anchored: int = 0
    #: Checkpoints read (0 when they were not read).
    checkpoints: int = 0
    #: Checkpointed stream heads found in the store with the recorded hash.
    checkpointed: int = 0
    breaks: list[Break] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks


@dataclass(slots=True)
class _Walk:
    """State of one pass over the store."""

    published: PublishedCopies | None
    checkpoints: CheckpointRecord | None
    #: When the witnesses began to be read: rows marked published later need no copy yet.
    witnesses_read_at: datetime | None
    #: Rows marked published before this time may have had their copy aged out.
    expired_before: datetime | None
    unseen_copies: dict[str, PublishedCopy]
    unseen_heads: dict[tuple[str, int], CheckpointedHead]
    #: Rows marked published before ``witnesses_read_at``.
    published_rows: int = 0
    #: Of those, rows whose copy is missing.
    missing_copies: int = 0


async def verify(
    conn: asyncpg.Connection,
    published: PublishedCopies | None = None,
    checkpoints: CheckpointRecord | None = None,
    *,
    witnesses_read_at: datetime | None = None,
) -> AuditReport:
    """Walk every stream and report each row whose chain, version or payload is wrong.

    Reads the whole store in one transaction-consistent cursor; the check
    itself cannot pass by default: a stream passes only when every row's
    recomputed hash equals the stored one and links to its predecessor.
    With ``published``, each row that has a copy must match it, every copy
    must have its row, and every row marked published before
    ``witnesses_read_at`` (the database's clock when the witnesses began to be
    read; None means every row) must have its copy unless the stream's age
    limit may have removed it. With ``checkpoints``, every checkpointed head must be in
    the store with the recorded hash. Both witnesses must have been read
    before this call, so that whatever they hold was committed before the
    store is read.
    """
    report = AuditReport()
    walk = _Walk(
        published=published,
        checkpoints=checkpoints,
        witnesses_read_at=witnesses_read_at,
        expired_before=None,
        unseen_copies=dict(published.copies) if published is not None else {},
        unseen_heads=dict(checkpoints.heads) if checkpoints is not None else {},
    )
    if checkpoints is not None:
        report.checkpoints = checkpoints.count
        report.breaks.extend(checkpoints.breaks)

    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if published is not None and published.max_age_s:
            now: datetime = await conn.fetchval("SELECT clock_timestamp()")
            walk.expired_before = now - timedelta(seconds=published.max_age_s) + _MARK_SLACK
        await _walk_rows(conn, walk, report)
        ends = await _stream_ends(conn, walk.unseen_heads)

    report.breaks.extend(_missing_rows(walk.unseen_copies))
    report.breaks.extend(_missing_heads(walk.unseen_heads, ends))
    report.breaks.extend(_silent_witnesses(walk))
    return report


async def _walk_rows(conn: asyncpg.Connection, walk: _Walk, report: AuditReport) -> None:
    stream_id: str | None = None
    expected_version = 1
    prev_hash = GENESIS
    async for row in conn.cursor(_ALL_EVENTS, prefetch=1000):
        if row["stream_id"] != stream_id:
            stream_id, expected_version, prev_hash = row["stream_id"], 1, GENESIS
            report.streams += 1
        report.events += 1
        published_at: datetime | None = row["published_at"]
        if published_at is not None and (
            walk.witnesses_read_at is None or published_at < walk.witnesses_read_at
        ):
            walk.published_rows += 1

        # Every check runs on every row (each keeps its own count); the first problem found
        # is the one reported.
        problems = [_check_row(row, expected_version, prev_hash)]
        if not row["scheduled"]:
            problems.append("the event has no outbox row: it was never scheduled for publication")
        if walk.published is not None:
            problems.append(_check_copy(row, walk.published, walk, report))
        if walk.checkpoints is not None:
            problems.append(_check_head(row, walk, report))
        problem = next((found for found in problems if found), "")
        if problem:
            report.breaks.append(
                Break(row["stream_id"], row["stream_version"], row["position"], problem)
            )
        expected_version = row["stream_version"] + 1
        prev_hash = bytes(row["hash"])


def _check_copy(
    row: asyncpg.Record, published: PublishedCopies, walk: _Walk, report: AuditReport
) -> str:
    """The row against its published copy; the problem found, else ""."""
    event_id = row["event_id"]
    copy = walk.unseen_copies.pop(event_id, None)
    if event_id in published.conflicting:
        return "JetStream holds different copies of this event"
    if copy is not None:
        report.anchored += 1
        if (copy.stream_id, copy.stream_version) != (row["stream_id"], row["stream_version"]):
            return (
                f"the copy published on JetStream belongs to stream {copy.stream_id} "
                f"version {copy.stream_version}"
            )
        if copy.digest != payload_digest(bytes(row["payload"])):
            return "payload differs from the copy published on JetStream"
        return ""

    published_at: datetime | None = row["published_at"]
    if published_at is None:
        return ""
    if walk.witnesses_read_at is not None and published_at >= walk.witnesses_read_at:
        return ""
    if walk.expired_before is not None and published_at < walk.expired_before:
        return ""
    walk.missing_copies += 1
    if _bus_empty(published):
        # One break for the whole stream says it better than one per event.
        return ""
    return "marked published, but JetStream holds no copy of it"


def _check_head(row: asyncpg.Record, walk: _Walk, report: AuditReport) -> str:
    """The row against the head a checkpoint recorded at its place, if any."""
    head = walk.unseen_heads.pop((row["stream_id"], row["stream_version"]), None)
    if head is None:
        return ""
    if head.hash != bytes(row["hash"]):
        return f"hash differs from the one checkpoint {head.checkpoint} recorded"
    report.checkpointed += 1
    return ""


async def _stream_ends(
    conn: asyncpg.Connection, heads: Mapping[tuple[str, int], CheckpointedHead]
) -> dict[str, int]:
    """The last version of each stream named in ``heads`` that still has rows."""
    if not heads:
        return {}
    rows = await conn.fetch(_STREAM_ENDS, sorted({stream_id for stream_id, _ in heads}))
    return {row["stream_id"]: row["version"] for row in rows}


def _missing_rows(unseen: Mapping[str, PublishedCopy]) -> list[Break]:
    return [
        Break(
            copy.stream_id,
            copy.stream_version,
            0,
            f"event {event_id} was published on JetStream but is missing from the store",
        )
        for event_id, copy in sorted(unseen.items(), key=lambda item: _stream_order(item[1]))
    ]


def _missing_heads(
    unseen: Mapping[tuple[str, int], CheckpointedHead], ends: Mapping[str, int]
) -> list[Break]:
    """One break per stream whose checkpointed head is gone: the latest such head says most."""
    latest: dict[str, CheckpointedHead] = {}
    for head in unseen.values():
        if head.stream_id not in latest or latest[head.stream_id].version < head.version:
            latest[head.stream_id] = head
    breaks = []
    for stream_id, head in sorted(latest.items()):
        end = ends.get(stream_id)
        if end is None:
            problem = (
                f"the stream is missing from the store; checkpoint {head.checkpoint} "
                f"recorded it at version {head.version}"
            )
        elif end < head.version:
            problem = (
                f"the stream ends at version {end}, but checkpoint {head.checkpoint} "
                f"recorded version {head.version}"
            )
        else:
            problem = (
                f"version {head.version}, which checkpoint {head.checkpoint} recorded, "
                "is missing from the store"
            )
        breaks.append(Break(stream_id, head.version, 0, problem))
    return breaks


def _silent_witnesses(walk: _Walk) -> list[Break]:
    """A witness that holds nothing while the store has published events was reset."""
    breaks = []
    if walk.published is not None and _bus_empty(walk.published) and walk.missing_copies:
        state = "does not exist" if not walk.published.stream_exists else "is empty"
        breaks.append(
            Break(
                "",
                0,
                0,
                f"the ORDERS stream on JetStream {state}, yet the store has "
                f"{walk.missing_copies} events marked published: the stream was deleted or "
                "recreated, and the published copies are lost",
            )
        )
    if walk.checkpoints is not None and not walk.checkpoints.count and walk.published_rows:
        state = "does not exist" if not walk.checkpoints.stream_exists else "is empty"
        breaks.append(
            Break(
                "",
                0,
                0,
                f"the AUDIT_CHECKPOINTS stream on JetStream {state}, yet the store has "
                f"{walk.published_rows} events marked published: the checkpoints were deleted "
                "or the ledger never took any",
            )
        )
    return breaks


def _bus_empty(published: PublishedCopies) -> bool:
    return not published.stream_exists or not published.copies


def _stream_order(copy: PublishedCopy) -> tuple[str, int]:
    return copy.stream_id, copy.stream_version


def _check_row(row: asyncpg.Record, expected_version: int, prev_hash: bytes) -> str:
    if row["stream_version"] != expected_version:
        return f"version {row['stream_version']} where {expected_version} was expected"
    if bytes(row["prev_hash"]) != prev_hash:
        return "prev_hash does not match the previous event's hash"

    recomputed = chain_hash(
        prev_hash,
        row["event_id"],
        row["stream_id"],
        row["stream_version"],
        row["event_type"],
        row["event_version"],
        bytes(row["payload"]),
    )
    if recomputed != bytes(row["hash"]):
        return "hash does not match the event's contents"

    try:
        event = OrderEvent.FromString(bytes(row["payload"]))
    except Exception:
        return "payload is not a valid OrderEvent"
    if (event.order_id, event.stream_version, event.event_id) != (
        row["stream_id"],
        row["stream_version"],
        row["event_id"],
    ):
        return "payload disagrees with the row's stream, version or event id"
    return ""
