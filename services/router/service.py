"""The smart order router service: RouteOrder from quotes, fees and venue health in memory.

Quotes arrive on core NATS (``marketdata.quotes.<venue>.<symbol>``) and are kept, newest
per venue and symbol; the fee schedule is configuration; venue health comes from the venue
gateway's ListVenues, polled in the background. The request path reads memory only and
ranks with :mod:`brokermesh.services.router.ranking`. If NATS or the gateway go away, the
quotes and the last session report age, and the ranking marks the venues unhealthy once
they are too old to trust.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from brokermesh.common.v1 import common_pb2
from brokermesh.mesh import controls as mesh_controls
from brokermesh.mesh.clients import ClientFactory
from brokermesh.mesh.config import ServiceSettings
from brokermesh.mesh.errors import ConfigError, InvalidArgument
from brokermesh.mesh.logging import order_id_var
from brokermesh.services.registry import clients_for
from brokermesh.services.router import ranking
from brokermesh.services.router.manifest import MANIFEST
from brokermesh.trading.v1 import (
    market_data_pb2,
    order_pb2,
    routing_pb2,
    routing_pb2_grpc,
    venue_pb2,
    venue_pb2_grpc,
)

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class RouterSettings(ServiceSettings):
    """Settings of the router (``BROKERMESH_ROUTER_<FIELD>``)."""

    #: Fee per share taking liquidity, by venue: "VENUE=fee,VENUE=fee" (decimal strings).
    fee_schedule: str = "XNAS=0.0030,ARCA=0.0028"
    #: Fee assumed for a venue missing from the schedule.
    default_fee_per_share: Decimal = Decimal("0.0030")
    #: Seconds between ListVenues calls to the venue gateway.
    venue_poll_interval_s: float = 0.5
    #: Timeout of one ListVenues call.
    venue_poll_timeout_s: float = 1.0
    #: A session report older than this no longer counts: the venue is unhealthy.
    venue_status_max_age_s: float = 3.0
    #: A quote older than this no longer counts: the venue is unhealthy for the symbol.
    quote_max_age_s: float = 10.0
    #: Venue quotes on core NATS.
    quotes_subject: str = "marketdata.quotes.>"


def parse_fee_schedule(text: str) -> dict[str, Decimal]:
    """Parse ``"XNAS=0.0030,ARCA=0.0028"``; a malformed entry names the setting."""
    fees: dict[str, Decimal] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        venue, _, fee = item.partition("=")
        try:
            value = Decimal(fee)
        except InvalidOperation:
            value = Decimal("NaN")
        if not venue or not value.is_finite() or value < 0:
            raise ConfigError(f"fee schedule entry {item!r} is not VENUE=fee", field="fee_schedule")
        fees[venue.strip()] = value
    return fees


class QuoteBook:
    """Newest top of book per (venue, symbol), with the monotonic time it arrived."""

    def __init__(self) -> None:
        self._quotes: dict[tuple[str, str], tuple[ranking.TopOfBook, float]] = {}

    def venues_quoting(self, symbol: str) -> set[str]:
        """Venues that have quoted ``symbol`` at least once."""
        return {venue for venue, quoted in self._quotes if quoted == symbol}

    def get(self, venue: str, symbol: str, now: float) -> ranking.TopOfBook | None:
        """The venue's last quote for ``symbol`` with its age at ``now``, or None."""
        entry = self._quotes.get((venue, symbol))
        if entry is None:
            return None
        book, received = entry
        return ranking.TopOfBook(
            bid_price=book.bid_price,
            bid_size=book.bid_size,
            ask_price=book.ask_price,
            ask_size=book.ask_size,
            age_s=max(now - received, 0.0),
        )

    async def on_message(self, msg: Msg) -> None:
        """NATS callback for venue quotes; malformed ones are skipped."""
        quote = market_data_pb2.Quote()
        try:
            quote.ParseFromString(msg.data)
            bid = _price(quote.bid_price)
            ask = _price(quote.ask_price)
        except (DecodeError, InvalidOperation):
            _LOGGER.warning("unusable quote on %s", msg.subject)
            return
        if not (quote.venue and quote.symbol):
            return
        book = ranking.TopOfBook(
            bid_price=bid,
            bid_size=quote.bid_size,
            ask_price=ask,
            ask_size=quote.ask_size,
            age_s=0.0,
        )
        self._quotes[(quote.venue, quote.symbol)] = (book, time.monotonic())


class VenueHealth:
    """The venue gateway's last session report and when it was received."""

    def __init__(self) -> None:
        self.logged_on: dict[str, bool] = {}
        self.received = float("-inf")

    def update(self, venues: Mapping[str, bool], now: float) -> None:
        """Take a fresh report; session changes are logged."""
        for venue, up in venues.items():
            if self.logged_on.get(venue) != up:
                level = logging.INFO if up else logging.WARNING
                _LOGGER.log(level, "venue %s %s", venue, "logged on" if up else "not logged on")
        self.logged_on = dict(venues)
        self.received = now

    def status(self, venue: str, now: float, max_age_s: float) -> bool | None:
        """Whether ``venue`` is logged on; None when the report is missing or too old."""
        if now - self.received > max_age_s:
            return None
        return self.logged_on.get(venue)


class RouterApp:
    """Holds the router's in-memory state and the tasks that keep it fresh."""

    def __init__(self, settings: RouterSettings, clients: ClientFactory | None = None) -> None:
        self._settings = settings
        self._fees = parse_fee_schedule(settings.fee_schedule)
        self._clients = clients or clients_for(MANIFEST, settings)
        self._quotes = QuoteBook()
        self._health = VenueHealth()
        self._nats: NatsClient | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start the quote feed and the venue-health poll; neither is waited for."""
        self._tasks = [
            _spawn(self._poll_venues(), "router-venue-health"),
            _spawn(self._follow_quotes(), "router-quotes"),
        ]

    def register(self, server: grpc.aio.Server) -> None:
        """Serve SmartOrderRouterService on ``server``."""
        routing_pb2_grpc.add_SmartOrderRouterServiceServicer_to_server(RouterServicer(self), server)

    async def stop(self) -> None:
        """Stop the background tasks and close connections."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._nats is not None:
            with contextlib.suppress(Exception):
                await self._nats.close()
        await self._clients.close()

    def route(self, order: order_pb2.Order) -> routing_pb2.RouteOrderResponse:
        """Rank the venues for ``order``; FailedPrecondition when none is healthy."""
        route = ranking.rank(
            symbol=order.symbol,
            is_buy=order.side == common_pb2.SIDE_BUY,
            limit_price=_limit_price(order),
            venues=self._views(order.symbol),
            max_quote_age_s=self._settings.quote_max_age_s,
        )
        response = routing_pb2.RouteOrderResponse(venue=route.venue, reason=route.reason)
        for c in route.candidates:
            response.candidates.add(
                venue=c.venue,
                healthy=c.healthy,
                quoted_price=_text(c.quoted_price),
                fee_per_share=str(c.fee_per_share),
                effective_price=_text(c.effective_price),
                quoted_size=c.quoted_size,
            )
        return response

    def _views(self, symbol: str) -> list[ranking.VenueView]:
        # Every venue anyone mentions: the gateway's sessions, the fee schedule, the quotes.
        now = time.monotonic()
        settings = self._settings
        names = set(self._health.logged_on) | set(self._fees) | self._quotes.venues_quoting(symbol)
        return [
            ranking.VenueView(
                venue=venue,
                fee_per_share=self._fees.get(venue, settings.default_fee_per_share),
                logged_on=self._health.status(venue, now, settings.venue_status_max_age_s),
                quote=self._quotes.get(venue, symbol, now),
            )
            for venue in sorted(names)
        ]

    async def _poll_venues(self) -> None:
        # The gateway being unreachable is logged once per outage; the reports just age.
        settings = self._settings
        stub = self._clients.stub("venue-gateway", venue_pb2_grpc.VenueGatewayServiceStub)
        failing = False
        while True:
            try:
                reply = await stub.ListVenues(
                    venue_pb2.ListVenuesRequest(), timeout=settings.venue_poll_timeout_s
                )
            except grpc.aio.AioRpcError as exc:
                if not failing:
                    _LOGGER.warning(
                        "venue gateway unreachable (%s); venue reports will age", exc.code().name
                    )
                failing = True
            else:
                if failing:
                    _LOGGER.info("venue gateway reachable again")
                failing = False
                self._health.update({v.venue: v.logged_on for v in reply.venues}, time.monotonic())
            await asyncio.sleep(settings.venue_poll_interval_s)

    async def _follow_quotes(self) -> None:
        # Connecting waits for NATS however long it takes; without quotes nothing routes.
        self._nats = NatsClient()
        await mesh_controls.connect(self._nats, self._settings.nats_url, name="router")
        await self._nats.subscribe(self._settings.quotes_subject, cb=self._quotes.on_message)


class RouterServicer(routing_pb2_grpc.SmartOrderRouterServiceServicer):
    """gRPC face of :class:`RouterApp`; the pipeline has already validated the request."""

    def __init__(self, app: RouterApp) -> None:
        self._app = app

    async def RouteOrder(
        self, request: routing_pb2.RouteOrderRequest, context: grpc.aio.ServicerContext
    ) -> routing_pb2.RouteOrderResponse:
        order_id_var.set(request.order.order_id)
        return self._app.route(request.order)


def _price(text: str) -> Decimal | None:
    # An empty side of the book has no price; anything else must be a positive number.
    if not text:
        return None
    value = Decimal(text)
    if not value.is_finite() or value <= 0:
        raise InvalidOperation(text)
    return value


def _limit_price(order: order_pb2.Order) -> Decimal | None:
    # A limit that cannot be read must not be routed as if it were a market order.
    if order.order_type != common_pb2.ORDER_TYPE_LIMIT:
        return None
    try:
        value = Decimal(order.limit_price)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value <= 0:
        raise InvalidArgument(
            f"limit price {order.limit_price!r} is not a positive number", field="order.limit_price"
        )
    return value


def _text(value: Decimal | None) -> str:
    return "" if value is None else str(value)


def _spawn(work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    """Start a named background task whose crash is logged rather than lost."""
    task = asyncio.create_task(work, name=name)
    task.add_done_callback(_log_crash)
    return task


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _LOGGER.error("background task %s stopped", task.get_name(), exc_info=task.exception())
