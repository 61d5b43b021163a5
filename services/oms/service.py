"""The OMS validation service: ValidateOrder over books held in memory.

Nothing on the request path touches the network. The books come from PostgreSQL at start
(which must succeed once) and are re-read in the background every few seconds; the
account's exposure comes from an :class:`~brokermesh.domain.exposure.ExposureBook` kept from
the order events on JetStream (see :mod:`brokermesh.domain.orderfeed`); last prices come
from venue quotes on core NATS. When PostgreSQL or NATS go away after start, the service
keeps answering from the last state it had and catches up when they return.

A passing order gets a provisional hold (cash for a buy, shares for a sell) in the same
synchronous step as its checks, so the next validation, however soon, sees it; the order's
own events take over from the hold once they arrive. Holds live in this process's memory:
with several replicas, every call for one account must reach the same replica. Order entry
sends the account id in the ``x-brokermesh-account`` metadata, and the mesh hashes it to
pick the replica (account affinity); a call that reached another replica would not see
the account's holds, which is why a call whose header names another account than
its order's is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import asyncpg
import grpc
from nats.aio.client import Client as NatsClient

from brokermesh.common.v1 import common_pb2
from brokermesh.domain.exposure import ExposureBook, check_routing
from brokermesh.domain.orderfeed import DATABASE_ERRORS, ExposureFeed, ExposureSettings, LastPrices
from brokermesh.mesh import controls as mesh_controls
from brokermesh.mesh import database
from brokermesh.mesh.errors import Unavailable
from brokermesh.mesh.logging import order_id_var
from brokermesh.services.oms import checks
from brokermesh.services.oms.books import read_books, read_snapshot
from brokermesh.trading.v1 import order_pb2, validation_pb2, validation_pb2_grpc

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

_PASS = common_pb2.DECISION_RESULT_PASS
_FAIL = common_pb2.DECISION_RESULT_FAIL
_BPS = Decimal(10_000)


@dataclass(frozen=True, kw_only=True, slots=True)
class OmsSettings(ExposureSettings):
    """Settings of the OMS (``BROKERMESH_OMS_<FIELD>``); the market markup prices market
    buys for buying power."""


class OmsApp:
    """Holds the OMS's in-memory state and the tasks that keep it fresh."""

    def __init__(self, settings: OmsSettings) -> None:
        self._settings = settings
        self._markup = Decimal(settings.market_markup_bps) / _BPS
        self._books = checks.ReferenceData()
        self._prices = LastPrices()
        self._exposure = ExposureBook(
            self.price_of,
            market_markup=self._markup,
            hold_ttl_s=settings.hold_ttl_s,
            terminal_retention_s=settings.finished_retention_s,
        )
        self._feed = ExposureFeed.from_settings(self._exposure, settings)
        self._pool: asyncpg.Pool | None = None
        self._nats: NatsClient | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Read the books and the open orders once (retrying), then start the feeds."""
        settings = self._settings
        self._pool = await _retry(self._open_pool, "PostgreSQL", settings.startup_timeout_s)
        snapshot = await _retry(
            lambda: read_snapshot(self._require_pool(), timeout_s=settings.database_timeout_s),
            "the books",
            settings.startup_timeout_s,
        )
        self._books = snapshot.books
        for view in snapshot.orders:
            self._exposure.load_view(view)
        _LOGGER.info(
            "loaded %d accounts, %d securities, %d open orders",
            len(snapshot.books.accounts),
            len(snapshot.books.securities),
            self._exposure.open_orders,
        )

        since = snapshot.as_of - datetime.timedelta(seconds=settings.replay_margin_s)
        self._tasks = [
            _spawn(self._refresh_books(), "oms-books-refresh"),
            _spawn(self._follow_nats(since), "oms-nats-feeds"),
            _spawn(self._feed.watch(self._require_pool()), "oms-holds-watch"),
        ]

    def register(self, server: grpc.aio.Server) -> None:
        """Serve OrderValidationService on ``server``."""
        validation_pb2_grpc.add_OrderValidationServiceServicer_to_server(
            ValidationServicer(self), server
        )

    async def stop(self) -> None:
        """Stop the feeds and close connections; safe to call once after start."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._nats is not None:
            with contextlib.suppress(Exception):
                await self._nats.close()
        if self._pool is not None:
            await self._pool.close()

    def price_of(self, symbol: str) -> Decimal | None:
        """The last traded price of ``symbol``, else its reference price, else None."""
        price = self._prices.get(symbol)
        if price is not None:
            return price
        security = self._books.securities.get(symbol)
        return None if security is None else security.reference_price

    def validate(self, order: order_pb2.Order) -> validation_pb2.ValidateOrderResponse:
        """Run every check on ``order`` and hold what a passing order needs, in one step.

        Idempotent per order id: the order's own earlier hold is left out of the check and
        replaced by the new one, and a refusal drops it. Never awaits, so no other request
        runs between the check and the hold.
        """
        verdicts = checks.validate(
            order,
            self._books,
            self._exposure.exposure(order.account_id, order.symbol, excluding=order.order_id),
            self.price_of(order.symbol),
            market_markup=self._markup,
        )
        passed = all(v.passed for v in verdicts)
        if passed:
            self._exposure.hold(order)
        else:
            self._exposure.release(order.order_id)

        response = validation_pb2.ValidateOrderResponse(passed=passed)
        for verdict in verdicts:
            response.decisions.add(
                policy=verdict.policy,
                result=_PASS if verdict.passed else _FAIL,
                reason=verdict.reason,
            )
        return response

    async def _open_pool(self) -> asyncpg.Pool:
        return await database.create_pool(
            self._settings.database_url,
            min_size=1,
            max_size=2,
            timeout=self._settings.database_timeout_s,
        )

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise Unavailable("database pool is not open")
        return self._pool

    async def _refresh_books(self) -> None:
        # Swap in a whole new snapshot; on failure keep serving the previous one.
        settings = self._settings
        failing = False
        while True:
            await asyncio.sleep(settings.refresh_interval_s)
            try:
                books = await read_books(
                    self._require_pool(), timeout_s=settings.database_timeout_s
                )
            except DATABASE_ERRORS as exc:
                if not failing:
                    _LOGGER.warning("books refresh failed (%r); serving the last copy", exc)
                failing = True
                continue
            if failing:
                _LOGGER.info("books refresh recovered")
            failing = False
            self._books = books

    async def _follow_nats(self, since: datetime.datetime) -> None:
        settings = self._settings
        # Connecting waits for NATS however long it takes; the books serve meanwhile.
        self._nats = NatsClient()
        await mesh_controls.connect(self._nats, settings.nats_url, name="oms")
        await self._nats.subscribe(settings.quotes_subject, cb=self._prices.on_message)
        await self._feed.follow(self._nats, since)


class ValidationServicer(validation_pb2_grpc.OrderValidationServiceServicer):
    """gRPC face of :class:`OmsApp`; the pipeline has already validated the request."""

    def __init__(self, app: OmsApp) -> None:
        self._app = app

    async def ValidateOrder(
        self, request: validation_pb2.ValidateOrderRequest, context: grpc.aio.ServicerContext
    ) -> validation_pb2.ValidateOrderResponse:
        order_id_var.set(request.order.order_id)
        check_routing(context.invocation_metadata(), request.order.account_id)
        return self._app.validate(request.order)


async def _retry(attempt: Callable[[], Awaitable[T]], what: str, budget_s: float) -> T:
    """Run ``attempt`` until it succeeds, backing off, for at most ``budget_s`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget_s
    delay_s = 0.2
    while True:
        try:
            return await attempt()
        except DATABASE_ERRORS as exc:
            if loop.time() + delay_s > deadline:
                raise Unavailable(f"{what} unavailable after {budget_s:.0f} s: {exc!r}") from exc
            _LOGGER.warning("%s unavailable (%r); retrying in %.1f s", what, exc, delay_s)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 3.0)


def _spawn(work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    """Start a named background task whose crash is logged rather than lost."""
    task = asyncio.create_task(work, name=name)
    task.add_done_callback(_log_crash)
    return task


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _LOGGER.error("background task %s stopped", task.get_name(), exc_info=task.exception())
