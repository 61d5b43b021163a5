"""The OMS's NATS inputs: last prices from venue quotes and the order events it keeps the
ledger from.

Order events are followed with an ordered consumer (ephemeral, in-memory, flow-controlled,
no acks) on the ORDERS stream, starting at a point in time shortly before the start-up
snapshot of the read model. Why a start time rather than deliver "new": the snapshot and
the subscription cannot be taken at one instant, and events reach JetStream through the
outbox relay some time after they commit; replaying a margin before the snapshot closes
both gaps, and the ledger drops what the snapshot already holds by stream version. Why not
deliver "all": it replays the whole history on every start. The start time is turned into
a stream sequence first, because the client recreates an ordered consumer from a sequence
after a gap or a reconnect and the server refuses a start sequence next to a start time.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable
from decimal import Decimal

import nats.errors
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from opentelemetry import propagate, trace

from brokermesh.events.v1 import order_events_pb2
from brokermesh.services.oms.checks import parse_price
from brokermesh.trading.v1 import market_data_pb2

_LOGGER = logging.getLogger(__name__)
_TRACER = trace.get_tracer(__name__)


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
        """NATS callback for the order events; undecodable ones are skipped."""
        event = order_events_pb2.OrderEvent()
        try:
            event.ParseFromString(msg.data)
        except DecodeError:
            _LOGGER.warning("undecodable order event on %s", msg.subject)
            return
        self.last_sequence = msg.metadata.sequence.stream
        # Continue the order's trace (the relay put it in the traceparent header),
        # so `brokermesh trace` shows when the OMS saw each event.
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
        except (OSError, TimeoutError, nats.errors.Error) as exc:
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
