"""Keeps an :class:`~brokermesh.domain.exposure.ExposureBook` current: order events from
JetStream, last prices from venue quotes, the open-order snapshot, and the safe expiry of
holds whose orders never show up.

Order events are followed with an ordered consumer (ephemeral, in-memory, flow-controlled,
no acks) on the ORDERS stream, starting at a point in time shortly before the start-up
snapshot of the read model. Why a start time rather than deliver "new": the snapshot and
the subscription cannot be taken at one instant, and events reach JetStream through the
outbox relay some time after they commit; replaying a margin before the snapshot closes
both gaps, and the book drops what the snapshot already holds by stream version. Why not
deliver "all": it replays the whole history on every start. The start time is turned into
a stream sequence first, because the client recreates an ordered consumer from a sequence
after a gap or a reconnect and the server refuses a start sequence next to a start time.

Hold expiry fails closed. Every ``check_interval_s`` the watcher asks the server whether
the consumer has delivered everything (and the client whether it has applied it) and
tells the book, whose live clock runs only while the answer is yes. A hold that falls due
on that clock expires only if the event store confirms its order never needs it: the
order was never recorded (its caller crashed first), or every event of it left the outbox
at least ``hold_ttl_s`` ago and so has reached the live feed already. An order recorded
but not yet relayed (the ledger's relay is down or behind) keeps its hold, and so does
every hold while PostgreSQL cannot answer.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from decimal import Decimal
from typing import Generic, TypeVar

import asyncpg
import nats.errors
from google.protobuf.message import DecodeError
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from opentelemetry import propagate, trace

from brokermesh.domain.exposure import ExposureBook, parse_price
from brokermesh.events.v1 import order_events_pb2
from brokermesh.mesh.config import ServiceSettings
from brokermesh.trading.v1 import market_data_pb2, order_query_pb2

_LOGGER = logging.getLogger(__name__)

#: A service's books: whatever its checks read from the database besides the orders.
B = TypeVar("B")
_TRACER = trace.get_tracer(__name__)

#: Errors that mean "PostgreSQL is not answering right now", as opposed to a bug.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)
#: Errors that mean "NATS or the stream is not answering right now".
NATS_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError, nats.errors.Error)
#: Timeout of one JetStream API request; a slower answer counts as "not live".
_REQUEST_TIMEOUT_S = 2.0

# Orders with an event that has not left the outbox, or left it within the grace period.
_UNSETTLED_ORDERS = """
SELECT DISTINCT e.stream_id
FROM order_events e JOIN outbox o USING (event_id)
WHERE e.stream_id = ANY($1::text[])
  AND (o.published_at IS NULL OR o.published_at > now() - make_interval(secs => $2))
"""


class LastPrices:
    """The freshest last price per symbol, whichever venue reported it."""

    def __init__(self) -> None:
        self._prices: dict[str, Decimal] = {}

    def get(self, symbol: str) -> Decimal | None:
        """The last price of ``symbol``, or None before its first quote."""
        return self._prices.get(symbol)

    async def on_message(self, msg: Msg) -> None:
        """NATS callback for ``marketdata.quotes.>``; malformed quotes are skipped."""
        quote = market_data_pb2.Quote()
        try:
            quote.ParseFromString(msg.data)
        except DecodeError:
            _LOGGER.warning("undecodable quote on %s", msg.subject)
            return
        price = parse_price(quote.last_price) if quote.last_price else None
        if price is not None and price > 0 and quote.symbol:
            self._prices[quote.symbol] = price


class OrderEventHandler:
    """NATS callback that decodes order events and hands them to ``apply``."""

    def __init__(self, apply: Callable[[order_events_pb2.OrderEvent], bool]) -> None:
        self._apply = apply
        #: Stream sequence of the last event received, for diagnostics.
        self.last_sequence = 0

    async def on_message(self, msg: Msg) -> None:
        """NATS callback for the order events; undecodable ones are skipped.

        Runs to the end without awaiting, so no event is ever half applied when another
        task looks at the book.
        """
        event = order_events_pb2.OrderEvent()
        try:
            event.ParseFromString(msg.data)
        except DecodeError:
            _LOGGER.warning("undecodable order event on %s", msg.subject)
            return
        self.last_sequence = msg.metadata.sequence.stream
        # Continue the order's trace (the relay put it in the traceparent header),
        # so `brokermesh trace` shows when this service saw each event.
        with _TRACER.start_as_current_span(
            f"consume {msg.subject}",
            context=propagate.extract(msg.headers or {}),
            kind=trace.SpanKind.CONSUMER,
            attributes={"messaging.system": "nats", "order_id": event.order_id},
        ):
            self._apply_logged(event)

    def _apply_logged(self, event: order_events_pb2.OrderEvent) -> None:
        try:
            applied = self._apply(event)
        except Exception:
            # One bad event must not stop the feed; the client would only count the error.
            _LOGGER.exception(
                "cannot apply %s v%d of %s", event.event_type, event.stream_version, event.order_id
            )
            return
        if applied and _LOGGER.isEnabledFor(logging.DEBUG):
            _LOGGER.debug(
                "applied %s v%d of %s", event.event_type, event.stream_version, event.order_id
            )


async def follow_orders(
    js: JetStreamContext,
    handler: OrderEventHandler,
    *,
    stream: str,
    subject: str,
    since: datetime.datetime,
    retry_s: float,
) -> JetStreamContext.PushSubscription:
    """Subscribe ``handler`` to ``stream`` from ``since``, retrying until the stream exists."""
    attempt = 0
    while True:
        try:
            start = await _sequence_at(js, stream, since)
            subscription = await js.subscribe(
                subject,
                stream=stream,
                cb=handler.on_message,
                ordered_consumer=True,
                idle_heartbeat=2.0,
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                config=api.ConsumerConfig(opt_start_seq=start),
            )
        except NATS_ERRORS as exc:
            attempt += 1
            level = logging.WARNING if attempt == 1 else logging.DEBUG
            _LOGGER.log(level, "cannot follow stream %s yet (%r); retrying", stream, exc)
            await asyncio.sleep(retry_s)
            continue
        _LOGGER.info("following %s from sequence %d", stream, start)
        return subscription


async def _sequence_at(js: JetStreamContext, stream: str, since: datetime.datetime) -> int:
    # The server resolves a time to a sequence when it creates a consumer; a throwaway pull
    # consumer reports it as delivered = start - 1 without delivering anything.
    info = await js.add_consumer(
        stream,
        api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_TIME,
            opt_start_time=since,
            ack_policy=api.AckPolicy.NONE,
            mem_storage=True,
            inactive_threshold=10.0,
        ),
    )
    try:
        return (info.delivered.stream_seq if info.delivered else 0) + 1
    finally:
        await js.delete_consumer(stream, info.name)


@dataclass(frozen=True, kw_only=True, slots=True)
class ExposureSettings(ServiceSettings):
    """Settings every service that keeps an exposure book shares (OMS validation, risk)."""

    #: Seconds between background re-reads of the books.
    refresh_interval_s: float = 3.0
    #: How long start-up keeps retrying the first read from PostgreSQL.
    startup_timeout_s: float = 30.0
    #: Timeout of one database statement or pool checkout.
    database_timeout_s: float = 5.0
    #: Markup on the last price that prices a market order (500 = 5 %).
    market_markup_bps: int = 500
    #: Venue quotes on core NATS; their last_price prices market orders.
    quotes_subject: str = "marketdata.quotes.>"
    #: JetStream stream carrying the order events, and the subjects followed in it.
    orders_stream: str = "ORDERS"
    orders_subject: str = "trading.orders.>"
    #: How far before the start-up snapshot the order events are replayed.
    replay_margin_s: float = 60.0
    #: Seconds between attempts to reach NATS or the stream when they are missing.
    nats_retry_s: float = 2.0
    #: How long finished orders are remembered to recognise late duplicate events.
    finished_retention_s: float = 600.0
    #: Seconds of live, caught-up order feed after which a hold whose order never showed
    #: up may expire (and then only if the event store confirms nothing of it is on the way).
    hold_ttl_s: float = 30.0
    #: Seconds between checks of the order feed's health and of due holds.
    feed_check_interval_s: float = 1.0


#: Reads a service's books on a connection already inside a transaction.
BooksReader = Callable[[asyncpg.pool.PoolConnectionProxy, float], Awaitable[B]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot(Generic[B]):
    """A service's books plus every order of the read model, as of one database instant."""

    books: B
    orders: tuple[order_query_pb2.OrderView, ...]
    as_of: datetime.datetime


async def read_books(pool: asyncpg.Pool, read: BooksReader[B], *, timeout_s: float) -> B:
    """``read``'s books, in one read-only REPEATABLE READ transaction: one instant's copy."""
    async with pool.acquire(timeout=timeout_s) as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            return await read(conn, timeout_s)


async def read_snapshot(
    pool: asyncpg.Pool, read: BooksReader[B], *, timeout_s: float
) -> Snapshot[B]:
    """``read``'s books and every order view at one instant; an exposure book starts from it,
    and follows the feed from ``as_of`` on."""
    async with pool.acquire(timeout=timeout_s) as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            books = await read(conn, timeout_s)
            as_of = await conn.fetchval("SELECT now()", timeout=timeout_s)
            rows = await conn.fetch("SELECT view FROM order_views", timeout=timeout_s)
    orders = tuple(order_query_pb2.OrderView.FromString(row["view"]) for row in rows)
    return Snapshot(books=books, orders=orders, as_of=as_of)


async def orders_still_needing_holds(
    pool: asyncpg.Pool, order_ids: Collection[str], *, grace_s: float, timeout_s: float
) -> set[str]:
    """Those of ``order_ids`` whose events may still be on their way to the feed.

    An order needs its hold while one of its events is unpublished or was published less
    than ``grace_s`` ago. One never recorded needs none: nothing of it will ever arrive.
    """
    ids = list(order_ids)
    async with pool.acquire(timeout=timeout_s) as conn:
        unsettled = await conn.fetch(_UNSETTLED_ORDERS, ids, grace_s, timeout=timeout_s)
    return {row["stream_id"] for row in unsettled}


class ExposureFeed:
    """Follows the order events into an :class:`ExposureBook` and expires its holds safely.

    :meth:`follow` subscribes (retrying until the stream exists); :meth:`watch` runs for
    the life of the service, observing the feed's health and expiring due holds.
    """

    def __init__(
        self,
        book: ExposureBook,
        *,
        stream: str,
        subject: str,
        retry_s: float,
        hold_ttl_s: float,
        check_interval_s: float,
        database_timeout_s: float,
    ) -> None:
        self._book = book
        self._stream = stream
        self._subject = subject
        self._retry_s = retry_s
        self._hold_ttl_s = hold_ttl_s
        self._check_interval_s = check_interval_s
        self._database_timeout_s = database_timeout_s
        self._handler = OrderEventHandler(book.apply)
        self._nats: NatsClient | None = None
        self._subscription: JetStreamContext.PushSubscription | None = None
        # Due holds kept for an order still on its way, so each is reported once.
        self._kept: set[str] = set()
        self._store_failing = False

    @classmethod
    def from_settings(cls, book: ExposureBook, settings: ExposureSettings) -> ExposureFeed:
        """A feed into ``book`` configured by a service's :class:`ExposureSettings`."""
        return cls(
            book,
            stream=settings.orders_stream,
            subject=settings.orders_subject,
            retry_s=settings.nats_retry_s,
            hold_ttl_s=settings.hold_ttl_s,
            check_interval_s=settings.feed_check_interval_s,
            database_timeout_s=settings.database_timeout_s,
        )

    async def follow(self, nc: NatsClient, since: datetime.datetime) -> None:
        """Subscribe to the order events from ``since``; returns once subscribed."""
        self._nats = nc
        self._subscription = await follow_orders(
            nc.jetstream(timeout=_REQUEST_TIMEOUT_S),
            self._handler,
            stream=self._stream,
            subject=self._subject,
            since=since,
            retry_s=self._retry_s,
        )

    async def caught_up(self) -> bool:
        """Whether the feed is connected and has applied everything the stream holds for it.

        The server counts what it has handed to the consumer, the client queue what arrived
        but is not applied yet. A message in flight between the two is seen by neither;
        :meth:`check` leaves a margin for it by keeping the holds of orders whose events
        were published recently.
        """
        nc, subscription = self._nats, self._subscription
        if nc is None or subscription is None or not nc.is_connected:
            return False
        try:
            info = await asyncio.wait_for(subscription.consumer_info(), _REQUEST_TIMEOUT_S)
        except NATS_ERRORS:
            return False
        return not info.num_pending and subscription.pending_msgs == 0

    async def watch(self, pool: asyncpg.Pool) -> None:
        """Observe the feed and expire due holds every ``check_interval_s``, forever."""
        while True:
            await asyncio.sleep(self._check_interval_s)
            self._book.prune()
            await self.check(pool)

    async def check(self, pool: asyncpg.Pool) -> list[str]:
        """One round: ask the event store about due holds, then the feed, then expire.

        The store is asked first: whatever it reports as published is then on the stream,
        so a feed found caught up afterwards has applied it. Returns the expired order ids.
        """
        due = self._book.due_holds()
        needed: set[str] | None = set()
        if due:
            needed = await self._still_needed(pool, due)
        live = await self.caught_up()
        self._book.observe_feed(live=live)
        if not due or needed is None or not live:
            return []

        for order_id in needed - self._kept:
            _LOGGER.warning("hold of %s kept: its order's events are still on the way", order_id)
        self._kept = needed
        expired = self._book.expire(order_id for order_id in due if order_id not in needed)
        for order_id in expired:
            _LOGGER.info("hold of %s expired: nothing of its order is on the way", order_id)
        return expired

    async def _still_needed(self, pool: asyncpg.Pool, due: list[str]) -> set[str] | None:
        # None when the store cannot answer: then no hold expires this round.
        try:
            needed = await orders_still_needing_holds(
                pool, due, grace_s=self._hold_ttl_s, timeout_s=self._database_timeout_s
            )
        except DATABASE_ERRORS as exc:
            if not self._store_failing:
                _LOGGER.warning("due holds kept: the event store cannot answer (%r)", exc)
            self._store_failing = True
            return None
        if self._store_failing:
            _LOGGER.info("the event store answers again; due holds may expire")
        self._store_failing = False
        return needed
