"""Verification of the event store's hash chains, as ``brokermesh audit verify`` runs it.

The chains catch an edit made without recomputing the hashes. Someone able to rewrite
rows could also recompute the hashes from the edited row to the end of its stream, and
a chain alone cannot tell; so the check can also hold every event against the copy the
outbox relay published on JetStream, a second system the database's owner does not
control. An event whose payload differs from its published copy, or a published event
missing from the store, is a break. Events published longer ago than the stream's
retention have no copy left, and are checked by their chain alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import asyncpg

from brokermesh.domain.eventstore import GENESIS, chain_hash
from brokermesh.events.v1.order_events_pb2 import OrderEvent

_ALL_EVENTS = """
SELECT position, event_id::text AS event_id, stream_id, stream_version, event_type,
       event_version, payload, prev_hash, hash
FROM order_events ORDER BY stream_id, stream_version
"""


@dataclass(frozen=True, slots=True)
class Break:
    """One place where the stored history does not hold together."""

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


def payload_digest(payload: bytes) -> bytes:
    """The digest a stored payload and its published copy are compared by."""
    return hashlib.sha256(payload).digest()


@dataclass(slots=True)
class AuditReport:
    streams: int = 0
    events: int = 0
    #: Events held against a published copy (0 when the check ran on the chains alone).
    anchored: int = 0
    breaks: list[Break] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks


async def verify(
    conn: asyncpg.Connection, published: Mapping[str, PublishedCopy] | None = None
) -> AuditReport:
    """Walk every stream and report each row whose chain, version or payload is wrong.

    Reads the whole store in one transaction-consistent cursor; the check
    itself cannot pass by default: a stream passes only when every row's
    recomputed hash equals the stored one and links to its predecessor.
    With ``published`` (event id -> published copy), each row that has a copy
    must match it, and every copy must have its row.
    """
    report = AuditReport()
    unseen = dict(published or {})
    stream_id: str | None = None
    expected_version = 1
    prev_hash = GENESIS

    async with conn.transaction(isolation="repeatable_read", readonly=True):
        async for row in conn.cursor(_ALL_EVENTS, prefetch=1000):
            if row["stream_id"] != stream_id:
                stream_id, expected_version, prev_hash = row["stream_id"], 1, GENESIS
                report.streams += 1
            report.events += 1
            problem = _check_row(row, expected_version, prev_hash)
            copy = unseen.pop(row["event_id"], None)
            if copy is not None:
                report.anchored += 1
                if not problem and copy.digest != payload_digest(bytes(row["payload"])):
                    problem = "payload differs from the copy published on JetStream"
            if problem:
                report.breaks.append(
                    Break(row["stream_id"], row["stream_version"], row["position"], problem)
                )
            expected_version = row["stream_version"] + 1
            prev_hash = bytes(row["hash"])

    for event_id, copy in sorted(unseen.items(), key=lambda item: _stream_order(item[1])):
        report.breaks.append(
            Break(
                copy.stream_id,
                copy.stream_version,
                0,
                f"event {event_id} was published on JetStream but is missing from the store",
            )
        )
    return report


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
