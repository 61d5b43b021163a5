"""The simulated venue process: FIX acceptor, gRPC health, and top-of-book quotes on NATS."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import grpc
import nats
from nats.aio.client import Client

from brokermesh.mesh.config import ServiceSettings
from brokermesh.mesh.fix.acceptor import FixAcceptor
from brokermesh.mesh.fix.messages import Execution, NewOrder, OrderStatusQuery
from brokermesh.mesh.refdata import load_securities
from brokermesh.mesh.tasks import cancel_and_wait
from brokermesh.services.venue_sim.acceptor import VenueOrderHandler, create_venue_acceptor
from brokermesh.services.venue_sim.market import Quote, VenueMarket
from brokermesh.trading.v1 import market_data_pb2

_LOGGER = logging.getLogger(__name__)

Report = tuple[str, Execution]


@dataclass(frozen=True, kw_only=True, slots=True)
class VenueSettings(ServiceSettings):
    #: Port the FIX acceptor listens on.
    fix_port: int = 9881
    #: Seed of the market model; one seed always gives the same books.
    seed: int = 20260316
    #: Seconds between full quote snapshots, so subscribers can tell a live venue.
    quote_interval_s: float = 1.0


def quote_message(quote: Quote, last_price: Decimal) -> market_data_pb2.Quote:
    """The wire form of a top-of-book quote."""
    message = market_data_pb2.Quote(
        venue=quote.venue,
        symbol=quote.symbol,
        bid_price=str(quote.bid_price) if quote.bid_price is not None else "",
        bid_size=quote.bid_size,
        ask_price=str(quote.ask_price) if quote.ask_price is not None else "",
        ask_size=quote.ask_size,
        last_price=str(last_price),
    )
    message.quoted_at.GetCurrentTime()
    return message


def quote_subject(venue: str, symbol: str) -> str:
    """``marketdata.quotes.XNAS.AAPL``; dots in symbols (BRK.B) become underscores."""
    return f"marketdata.quotes.{venue}.{symbol.replace('.', '_')}"


class VenueApp:
    """Implements :class:`brokermesh.mesh.server.App` for one simulated venue."""

    def __init__(self, settings: VenueSettings, venue: str) -> None:
        self._settings = settings
        self._venue = venue
        securities = load_securities()
        self._market = VenueMarket(venue=venue, seed=settings.seed, securities=securities)
        self._last = {s.symbol: s.reference_price for s in securities}
        self._handler = VenueOrderHandler(self._market)
        self._acceptor: FixAcceptor = create_venue_acceptor(
            _MarketMaking(self, self._market),  # type: ignore[arg-type]
            fix_port=settings.fix_port,
            data_dir=Path(settings.data_dir),
        )
        self._nats: Client | None = None
        self._ticker: asyncio.Task[None] | None = None

    async def handle(self, session: str, order: NewOrder) -> Sequence[Report]:
        reports = self._handler.handle(session, order)
        if self._market.has_symbol(order.symbol):
            for _, execution in reports:
                if execution.exec_type.is_trade:
                    self._last[order.symbol] = execution.last_price
            self._market.replenish(order.symbol)
            await self._publish(order.symbol)
        return reports

    def status(self, session: str, query: OrderStatusQuery) -> Execution:
        return self._handler.status(session, query)

    async def start(self) -> None:
        self._nats = await nats.connect(
            self._settings.nats_url, max_reconnect_attempts=-1, connect_timeout=5
        )
        await self._acceptor.start()
        self._ticker = asyncio.create_task(self._snapshots(), name=f"{self._venue}-quotes")

    def register(self, server: grpc.aio.Server) -> None:
        """A venue serves only gRPC health; its trading interface is FIX."""

    async def stop(self) -> None:
        try:
            if self._ticker is not None:
                await cancel_and_wait(self._ticker)
        finally:
            await self._acceptor.stop()
            if self._nats is not None:
                await self._nats.close()

    async def _snapshots(self) -> None:
        while True:
            for symbol in self._market.symbols():
                await self._publish(symbol)
            await asyncio.sleep(self._settings.quote_interval_s)

    async def _publish(self, symbol: str) -> None:
        if self._nats is None or not self._nats.is_connected:
            return  # market data is best effort; the next snapshot catches up
        quote = quote_message(self._market.quote(symbol), self._last[symbol])
        await self._nats.publish(quote_subject(self._venue, symbol), quote.SerializeToString())


class _MarketMaking:
    """The acceptor's order handler: match, re-quote, publish."""

    def __init__(self, app: VenueApp, market: VenueMarket) -> None:
        self._app = app
        self.market = market

    async def __call__(self, session: str, order: NewOrder) -> Sequence[Report]:
        return await self._app.handle(session, order)

    def status(self, session: str, query: OrderStatusQuery) -> Execution:
        return self._app.status(session, query)
