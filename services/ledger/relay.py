"""The outbox relay: publishes committed order events to JetStream, in order, at least once.

Appending an event writes an outbox row and NOTIFYs ``brokermesh_outbox`` in
the same transaction. The relay wakes on that notification (and every
``poll_interval_s`` anyway, in case a notification was lost across a
reconnect), reads the unpublished rows in outbox position order, publishes
each event with its event id as ``Nats-Msg-Id``, and only after JetStream
acknowledged it marks the row published and folds the event into the order
view, in one transaction.

Rows are chosen by ``published_at IS NULL``, not by a high-water mark, so a
transaction that commits late, with a lower position than rows already
published, is still picked up on the next pass.

Ordering: events of one order are published strictly one after another, the
next only after the previous one's ack; events of different orders go out
concurrently, one per order per round. When a publication fails, the pass
stops after that round, leaving the failed event and everything after it in
its order for the next pass. A crash between the ack and the mark republishes
the event, which JetStream drops as a duplicate inside its window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js.client import JetStreamContext
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from prometheus_client import Counter

from brokermesh.domain.eventstore import OUTBOX_CHANNEL
from brokermesh.events.v1.order_events_pb2 import OrderEvent
from brokermesh.services.ledger import projection, subjects

_LOGGER = logging.getLogger(__name__)
_TRACER = trace.get_tracer(__name__)

#: What the relay did, for dashboards: a log line per pass would be one per commit.
RELAYED = Counter(
    "brokermesh_outbox_relayed", "Order events published to JetStream and marked published."
)
RELAYED_DUPLICATES = Counter(
    "brokermesh_outbox_relayed_duplicates",
    "Publications JetStream reported as duplicates (already stored by an earlier attempt).",
)

#: Session advisory lock ("bmrelay!") held by the one relay allowed to publish,
#: so two ledger processes never interleave one order's events.
RELAY_LOCK_KEY = 0x626D72656C617921

#: The unpublished rows with their orders' views as they stand, so one round trip gives the
#: pass everything it folds.
_PENDING = """
SELECT o.position, e.event_id::text AS event_id, e.stream_id, e.stream_version,
       e.event_type, e.payload, v.stream_version AS view_version, v.view
FROM outbox o
JOIN order_events e USING (event_id)
LEFT JOIN order_views v ON v.order_id = e.stream_id
WHERE o.published_at IS NULL AND e.stream_id <> ALL($2::text[])
ORDER BY o.position
LIMIT $1
"""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One event waiting to be published."""

    position: int
    event_id: str
    stream_id: str
    stream_version: int
    event_type: str
    payload: bytes

    def event(self) -> OrderEvent:
        return OrderEvent.FromString(self.payload)


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one pass over the outbox did."""

    #: Rows marked published (and projected) in this pass.
    published: int
    #: Rows the pass read.
    read: int
    #: Publications JetStream reported as duplicates (already stored earlier).
    duplicates: int = 0
    #: Rows not published because the projection refuses their order's history.
    held_rows: int = 0
    #: Orders held back, with the reason; a caller passes them as ``skip`` next time.
    held: Mapping[str, str] = field(default_factory=dict)

    @property
    def stalled(self) -> bool:
        """Whether a publication failed, leaving rows for a later pass."""
        return self.published + self.held_rows < self.read


class PublishError(Exception):
    """JetStream did not acknowledge a publication; the relay retries it on a later pass."""


@dataclass(frozen=True, slots=True)
class Pending:
    """Unpublished rows, oldest position first, and the stored views of their orders."""

    rows: list[OutboxRow]
    views: dict[str, projection.StoredView]


async def pending(conn: asyncpg.Connection, limit: int, skip: Collection[str] = ()) -> Pending:
    """Up to ``limit`` unpublished rows, oldest position first, leaving out orders in ``skip``,
    with the views their orders have now."""
    records = await conn.fetch(_PENDING, limit, list(skip))
    rows: list[OutboxRow] = []
    views: dict[str, projection.StoredView] = {}
    for record in records:
        rows.append(
            OutboxRow(
                position=record["position"],
                event_id=record["event_id"],
                stream_id=record["stream_id"],
                stream_version=record["stream_version"],
                event_type=record["event_type"],
                payload=bytes(record["payload"]),
            )
        )
        if record["view"] is not None:
            views[record["stream_id"]] = projection.StoredView(
                record["view_version"], bytes(record["view"])
            )
    return Pending(rows, views)


def rounds(rows: Sequence[OutboxRow]) -> list[list[OutboxRow]]:
    """Split rows into publishing rounds: round ``k`` holds the ``k``-th row of each order.

    Within a round no two rows share an order, so a round may be published
    concurrently while each order still goes out in position (= version) order.
    """
    result: list[list[OutboxRow]] = []
    depth: dict[str, int] = {}
    for row in rows:
        index = depth.get(row.stream_id, 0)
        depth[row.stream_id] = index + 1
        if index == len(result):
            result.append([])
        result[index].append(row)
    return result


async def publish_pending(
    conn: asyncpg.Connection,
    js: JetStreamContext,
    *,
    limit: int = 256,
    timeout_s: float = 5.0,
    skip: Collection[str] = (),
) -> PassResult:
    """One pass: publish up to ``limit`` unpublished rows, then mark and project the acked ones.

    Safe to call again at any time (idempotent up to JetStream's de-duplication
    window). Stops at the first round with a failed publication; rows acked
    before it are still marked. An order whose next event the projection would
    refuse (a gap, an illegal transition) is held back from that event on and
    reported in :attr:`PassResult.held`, so it cannot block the other orders;
    orders in ``skip`` are not read at all. Raises for database errors, in
    which case nothing of this pass is marked. When a replay rewrote a view
    between the read and the commit, nothing is marked either and the pass
    reports itself stalled, so the relay reads again.
    """
    found = await pending(conn, limit, skip)
    rows = found.rows
    events = {row.position: row.event() for row in rows}
    refused = projection.fold(found.views, list(events.values())).refused
    publishable = [
        row
        for row in rows
        if row.stream_id not in refused or row.stream_version < refused[row.stream_id][0]
    ]

    acked, duplicates = await _publish_rounds(js, publishable, events, timeout_s)

    try:
        await _record(conn, acked, found.views)
    except projection.ViewsMoved as exc:
        _LOGGER.warning("order views changed during the pass (%s); reading them again", exc)
        acked = []
    return PassResult(
        published=len(acked),
        read=len(rows),
        duplicates=duplicates,
        held_rows=len(rows) - len(publishable),
        held={order_id: str(error) for order_id, (_, error) in refused.items()},
    )


async def _publish_rounds(
    js: JetStreamContext,
    rows: Sequence[OutboxRow],
    events: Mapping[int, OrderEvent],
    timeout_s: float,
) -> tuple[list[tuple[OutboxRow, OrderEvent]], int]:
    """Publish ``rows`` round by round until one fails; returns the acked rows and how
    many publications JetStream reported as duplicates."""
    acked: list[tuple[OutboxRow, OrderEvent]] = []
    duplicates = 0
    for batch in rounds(rows):
        results = await asyncio.gather(
            *(_publish_row(js, row, events[row.position], timeout_s) for row in batch),
            return_exceptions=True,
        )
        failed = False
        for row, result in zip(batch, results, strict=True):
            if isinstance(result, PublishError):
                _LOGGER.warning(
                    "publishing event %s (order %s v%d) failed: %s",
                    row.event_id,
                    row.stream_id,
                    row.stream_version,
                    result,
                )
                failed = True
            elif isinstance(result, BaseException):
                raise result
            else:
                acked.append((row, events[row.position]))
                duplicates += result
        # The next round may hold the failed order's next version: stop here, keep order.
        if failed:
            break
    return acked, duplicates


async def _record(
    conn: asyncpg.Connection,
    acked: Sequence[tuple[OutboxRow, OrderEvent]],
    read: Mapping[str, projection.StoredView],
) -> None:
    """Mark acked rows published and store their events folded into the views ``read``,
    atomically, in one statement."""
    if not acked:
        return
    # Rows of one order were acked in version order and rounds keep that order,
    # so grouping by position order again hands the fold each stream in sequence.
    ordered = sorted(acked, key=lambda pair: pair[0].position)
    folded = projection.fold(read, [event for _, event in ordered])
    if folded.refused:
        # Refused orders were held back before publishing; this cannot happen.
        raise RuntimeError(f"the fold refused acked events: {folded.refused}")
    await projection.commit(conn, [row.position for row, _ in ordered], folded)


async def _publish_row(
    js: JetStreamContext, row: OutboxRow, event: OrderEvent, timeout_s: float
) -> int:
    """Publish one event (and its risk copy) under a producer span; returns duplicates seen."""
    subject = subjects.event_subject(row.event_type)
    span = _TRACER.start_span(
        f"publish {subject}",
        context=_parent_context(event),
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "nats",
            "messaging.destination.name": subject,
            "messaging.message.id": row.event_id,
            "brokermesh.order_id": row.stream_id,
        },
    )
    try:
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        copies = subjects.publications(event, row.payload, _trace_headers(carrier))
        acks = await asyncio.gather(*(_publish(js, copy, timeout_s) for copy in copies))
    except PublishError as exc:
        span.set_status(trace.StatusCode.ERROR, str(exc))
        raise
    finally:
        span.end()
    return sum(acks)


async def _publish(js: JetStreamContext, copy: subjects.Publication, timeout_s: float) -> int:
    """Publish one message and wait for its ack; 1 when JetStream already had it, else 0."""
    try:
        ack = await js.publish(
            copy.subject,
            copy.payload,
            timeout=timeout_s,
            stream=subjects.STREAM,
            headers=dict(copy.headers),
        )
    except nats.errors.Error as exc:
        raise PublishError(f"{copy.subject} ({copy.msg_id}): {type(exc).__name__} {exc}") from exc
    if _LOGGER.isEnabledFor(logging.DEBUG):
        _LOGGER.debug(
            "published %s %s seq %d duplicate %s", copy.subject, copy.msg_id, ack.seq, ack.duplicate
        )
    return 1 if ack.duplicate else 0


def _parent_context(event: OrderEvent) -> otel_context.Context:
    """A context whose current span carries the event's trace id, so the publish span and
    its ``traceparent`` continue the order's trace; an empty one (new trace) when the
    event has no usable trace id."""
    trace_id = subjects.parse_trace_id(event.trace_id)
    if trace_id is None:
        return otel_context.Context()
    # The producer's own span id is not stored with the event; a fresh one stands in.
    parent = SpanContext(
        trace_id=trace_id,
        span_id=secrets.randbits(64) or 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


def _trace_headers(carrier: dict[str, str]) -> dict[str, str]:
    # Only the W3C trace context travels; baggage has no consumer on the bus.
    value = carrier.get(subjects.TRACEPARENT)
    return {subjects.TRACEPARENT: value} if value else {}


def raise_if_cancelling() -> None:
    """Raise CancelledError when the current task was asked to stop but the request got lost.

    Python 3.11's ``asyncio.wait_for`` (which nats.py uses for every request)
    returns the result instead of raising when the cancellation and the result
    arrive together; the task is then still marked as cancelling, and a loop
    that never checks would run on forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class OutboxRelay:
    """The long-running relay: one dedicated database connection, LISTEN, publish, repeat.

    :meth:`run` returns only when cancelled. It holds the relay advisory lock
    while publishing, so a second ledger process waits rather than interleaving.
    Database failures close the connection and reconnect with backoff; while
    NATS is disconnected the relay waits without touching the outbox.
    """

    def __init__(
        self,
        database_url: str,
        nc: NatsClient,
        js: JetStreamContext,
        *,
        batch_size: int = 256,
        poll_interval_s: float = 0.5,
        publish_timeout_s: float = 5.0,
        max_backoff_s: float = 30.0,
    ) -> None:
        self._database_url = database_url
        self._nc = nc
        self._js = js
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._publish_timeout_s = publish_timeout_s
        self._max_backoff_s = max_backoff_s
        self._wake = asyncio.Event()
        #: Orders the projection refuses, left out of every pass until the next session.
        self.held: dict[str, str] = {}
        #: Total rows published since start, for logs and tests.
        self.published = 0

    async def run(self) -> None:
        """Relay until cancelled, reconnecting to PostgreSQL as needed."""
        backoff_s = self._poll_interval_s
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A session that ran a while was healthy; its failure starts a fresh backoff.
                if time.monotonic() - started > self._max_backoff_s:
                    backoff_s = self._poll_interval_s
                _LOGGER.exception("outbox relay failed; retrying in %.1f s", backoff_s)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self._max_backoff_s)

    async def _session(self) -> None:
        """One database session: connect, become the publishing relay, then drain forever."""
        conn = await asyncpg.connect(self._database_url, timeout=10)
        try:
            await self._acquire_leadership(conn)
            await conn.add_listener(OUTBOX_CHANNEL, self._on_notify)  # type: ignore[arg-type]
            _LOGGER.info("outbox relay listening on %s", OUTBOX_CHANNEL)
            # A new session gives held orders another chance (a replay may have fixed them).
            self.held.clear()
            # Whatever was committed while nobody listened is picked up by the first pass.
            self._wake.set()
            await self._drain_forever(conn)
        finally:
            # Closing also releases the session advisory lock and the LISTEN.
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.close(timeout=2))

    async def _acquire_leadership(self, conn: asyncpg.Connection) -> None:
        """Wait until this session holds the relay lock."""
        announced = False
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY):
            if not announced:
                _LOGGER.info("another ledger holds the outbox relay lock; standing by")
                announced = True
            await asyncio.sleep(max(self._poll_interval_s, 1.0))

    async def _drain_forever(self, conn: asyncpg.Connection) -> None:
        backoff_s = self._poll_interval_s
        while True:
            await self._wait_for_work()
            raise_if_cancelling()
            if not self._nc.is_connected:
                # Publishing now would only time out; the outbox keeps the events.
                continue
            result = await self.drain(conn)
            if result.stalled:
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self._max_backoff_s)
            else:
                backoff_s = self._poll_interval_s

    async def drain(self, conn: asyncpg.Connection) -> PassResult:
        """Publish batches until the outbox is empty or a publication fails."""
        published = read = duplicates = held_rows = 0
        started = time.perf_counter()
        while True:
            raise_if_cancelling()
            result = await publish_pending(
                conn,
                self._js,
                limit=self._batch_size,
                timeout_s=self._publish_timeout_s,
                skip=self.held,
            )
            self._hold(result.held)
            published += result.published
            read += result.read
            duplicates += result.duplicates
            held_rows += result.held_rows
            if result.stalled or result.read < self._batch_size:
                break

        self.published += published
        RELAYED.inc(published)
        RELAYED_DUPLICATES.inc(duplicates)
        if published and _LOGGER.isEnabledFor(logging.DEBUG):
            _LOGGER.debug(
                "relayed %d events (%d duplicates) in %.3f s",
                published,
                duplicates,
                time.perf_counter() - started,
            )
        return PassResult(
            published=published,
            read=read,
            duplicates=duplicates,
            held_rows=held_rows,
            held=dict(self.held),
        )

    def _hold(self, refused: Mapping[str, str]) -> None:
        for order_id, reason in refused.items():
            if order_id not in self.held:
                _LOGGER.error("order %s held back from the bus: %s", order_id, reason)
            self.held[order_id] = reason

    async def _wait_for_work(self) -> None:
        # A notification usually wakes us; the timeout is the safety net for lost ones.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._poll_interval_s):
                await self._wake.wait()
        self._wake.clear()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, _payload: str) -> None:
        self._wake.set()
