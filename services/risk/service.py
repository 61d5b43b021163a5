"""The pre-trade risk service: EvaluateOrder against limits, books, exposure and prices in
memory.

The request path reads memory only. Limits, cash, positions and reference prices come from
PostgreSQL at start (one read must succeed) and are re-read in the background; the
account's open orders, holds and today's fills come from an
:class:`~brokermesh.domain.exposure.ExposureBook` kept from the order events on JetStream
(see :mod:`brokermesh.domain.orderfeed`); last prices come from venue quotes on core NATS;
the degradation mode comes from the control plane through
:class:`~brokermesh.mesh.controls.ControlsWatcher`. In REDUCED and EMERGENCY mode the
conservative defaults apply: max notional, max quantity and the price collar are halved,
and the reasons say so. When PostgreSQL or NATS go away after start, the service keeps
answering from the last state it had.

Concentration values the symbol as the books hold it, plus today's fills, plus what the
account's open buy orders and provisional holds would add. An approved buy gets its hold
in the same synchronous step as its evaluation, so a large buy split into small ones
concurrently still meets the cap. Holds live in this process's memory: with several
replicas, every call for one account must reach the same replica. Order entry sends the
account id in the ``x-brokermesh-account`` metadata, and the mesh hashes it to pick the
replica (account affinity); a call that reached another replica would not see the
account's holds, which is why a call whose header names another account than
its order's is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import asyncpg
import grpc
from nats.aio.client import Client as NatsClient

from brokermesh.common.v1 import common_pb2
from brokermesh.control.v1 import control_pb2
from brokermesh.domain.exposure import Exposure, ExposureBook, check_routing
from brokermesh.domain.orderfeed import DATABASE_ERRORS, ExposureFeed, ExposureSettings, LastPrices
from brokermesh.mesh import controls as mesh_controls
from brokermesh.mesh import database
from brokermesh.mesh.errors import Unavailable
from brokermesh.mesh.logging import order_id_var
from brokermesh.services.risk.books import RiskBooks, read_books, read_snapshot
from brokermesh.services.risk.policies import RULES, OrderFacts, PolicySet, Verdict
from brokermesh.trading.v1 import order_pb2, risk_pb2, risk_pb2_grpc

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

_PASS = common_pb2.DECISION_RESULT_PASS
_FAIL = common_pb2.DECISION_RESULT_FAIL
_BPS = Decimal(10_000)
_ZERO = Decimal(0)
_NO_HOLDINGS: Mapping[str, int] = {}
#: Modes in which the blueprint's "conservative risk defaults" apply.
DEGRADED_MODES = frozenset(
    {control_pb2.DEGRADATION_MODE_REDUCED, control_pb2.DEGRADATION_MODE_EMERGENCY}
)


@dataclass(frozen=True, kw_only=True, slots=True)
class RiskSettings(ExposureSettings):
    """Settings of the risk service (``BROKERMESH_RISK_<FIELD>``); the market markup prices
    a market order's notional."""


class RiskApp:
    """Holds the risk service's in-memory state and the tasks that keep it fresh."""

    def __init__(self, settings: RiskSettings) -> None:
        self._settings = settings
        markup = Decimal(settings.market_markup_bps) / _BPS
        self._markup = 1 + markup
        self._policies = PolicySet()
        self._books = RiskBooks()
        self._prices = LastPrices()
        self._exposure = ExposureBook(
            lambda symbol: self._price_of(symbol, self._books),
            market_markup=markup,
            hold_ttl_s=settings.hold_ttl_s,
            terminal_retention_s=settings.finished_retention_s,
        )
        self._feed = ExposureFeed.from_settings(self._exposure, settings)
        self._controls = mesh_controls.ControlsWatcher(
            settings.nats_url, data_dir=settings.data_dir, service="risk"
        )
        self._pool: asyncpg.Pool | None = None
        self._nats: NatsClient | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Read the books and open orders once (retrying), then start the controls and feeds."""
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
        if self._books.default_limits is None:
            _LOGGER.warning("no firm default risk limits: accounts without their own are refused")
        _LOGGER.info(
            "loaded limits for %d accounts, %d reference prices, %d open orders",
            len(self._books.account_limits),
            len(self._books.reference_prices),
            self._exposure.open_orders,
        )

        await self._controls.start()
        since = snapshot.as_of - datetime.timedelta(seconds=settings.replay_margin_s)
        self._tasks = [
            _spawn(self._refresh_books(), "risk-books-refresh"),
            _spawn(self._follow_nats(since), "risk-nats-feeds"),
            _spawn(self._feed.watch(self._require_pool()), "risk-holds-watch"),
        ]

    def register(self, server: grpc.aio.Server) -> None:
        """Serve PreTradeRiskService on ``server``."""
        risk_pb2_grpc.add_PreTradeRiskServiceServicer_to_server(RiskServicer(self), server)

    async def stop(self) -> None:
        """Stop the feeds and the controls watch, and close connections."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._controls.stop()
        if self._nats is not None:
            with contextlib.suppress(Exception):
                await self._nats.close()
        if self._pool is not None:
            await self._pool.close()

    def evaluate(self, order: order_pb2.Order) -> risk_pb2.EvaluateOrderResponse:
        """Evaluate every policy for ``order`` and hold an approved buy, in one step.

        Idempotent per order id: the order's own earlier hold is left out of the evaluation
        and replaced by the new one, and a refusal drops it. Never awaits, so no other
        request runs between the evaluation and the hold.
        """
        response = self._decide(order)
        if response.approved and order.side == common_pb2.SIDE_BUY:
            self._exposure.hold(order)
        else:
            self._exposure.release(order.order_id)
        return response

    def _decide(self, order: order_pb2.Order) -> risk_pb2.EvaluateOrderResponse:
        books = self._books
        limits = books.limits_for(order.account_id)
        if limits is None:
            return _refuse_all(
                f"no risk limits configured for {order.account_id} and no firm default"
            )
        if order.order_type == common_pb2.ORDER_TYPE_LIMIT and _limit_price(order) is None:
            # Evaluated as a market order it would skip the collar: refuse instead.
            return _refuse_all(f"limit price {order.limit_price!r} is not a positive number")

        mode = self._controls.mode
        note = ""
        if mode in DEGRADED_MODES:
            limits = limits.conservative()
            note = f" ({mesh_controls.mode_name(mode)} mode: conservative limits, halved)"
        return _response(self._policies.evaluate(self._facts(order, books), limits, note=note))

    def _facts(self, order: order_pb2.Order, books: RiskBooks) -> OrderFacts:
        last = self._price_of(order.symbol, books)
        limit_price = _limit_price(order)
        if limit_price is not None:
            price: Decimal | None = limit_price
        else:
            price = None if last is None else last * self._markup

        account_id = order.account_id
        exposure = self._exposure.exposure(account_id, order.symbol, excluding=order.order_id)
        holdings = _holdings(
            books.positions.get(account_id, _NO_HOLDINGS),
            self._exposure.position_deltas(account_id),
        )
        # The symbol as held after today's fills, plus what open buys and holds would add.
        held_value = _ZERO if last is None else last * holdings.get(order.symbol, 0)
        return OrderFacts(
            symbol=order.symbol,
            quantity=order.quantity,
            is_buy=order.side == common_pb2.SIDE_BUY,
            limit_price=limit_price,
            last_price=last,
            price=price,
            position_value=held_value + exposure.symbol_committed_cash,
            total_value=self._cash(books, account_id, exposure)
            + self._holdings_value(holdings, books),
        )

    @staticmethod
    def _cash(books: RiskBooks, account_id: str, exposure: Exposure) -> Decimal:
        # Cash committed to open buys is still the account's; spent cash and unsettled sale
        # proceeds are what today's fills changed.
        return books.cash.get(account_id, _ZERO) + exposure.cash_delta + exposure.sale_proceeds

    def _holdings_value(self, holdings: Mapping[str, int], books: RiskBooks) -> Decimal:
        # A holding with no price at all counts as worthless: that can only make the
        # concentration check stricter.
        total = _ZERO
        for symbol, quantity in holdings.items():
            price = self._price_of(symbol, books)
            if price is not None:
                total += price * quantity
        return total

    def _price_of(self, symbol: str, books: RiskBooks) -> Decimal | None:
        price = self._prices.get(symbol)
        return price if price is not None else books.reference_prices.get(symbol)

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
        # Connecting waits for NATS however long it takes; the books serve meanwhile.
        self._nats = NatsClient()
        await mesh_controls.connect(self._nats, self._settings.nats_url, name="risk")
        await self._nats.subscribe(self._settings.quotes_subject, cb=self._prices.on_message)
        await self._feed.follow(self._nats, since)


class RiskServicer(risk_pb2_grpc.PreTradeRiskServiceServicer):
    """gRPC face of :class:`RiskApp`; the pipeline has already validated the request."""

    def __init__(self, app: RiskApp) -> None:
        self._app = app

    async def EvaluateOrder(
        self, request: risk_pb2.EvaluateOrderRequest, context: grpc.aio.ServicerContext
    ) -> risk_pb2.EvaluateOrderResponse:
        order_id_var.set(request.order.order_id)
        check_routing(context.invocation_metadata(), request.order.account_id)
        return self._app.evaluate(request.order)


def _holdings(books: Mapping[str, int], deltas: Mapping[str, int]) -> Mapping[str, int]:
    """Shares held per symbol: the books' positions moved by today's fills."""
    if not deltas:
        return books
    merged = dict(books)
    for symbol, change in deltas.items():
        merged[symbol] = merged.get(symbol, 0) + change
    return merged


def _limit_price(order: order_pb2.Order) -> Decimal | None:
    if order.order_type != common_pb2.ORDER_TYPE_LIMIT or not order.limit_price:
        return None
    try:
        price = Decimal(order.limit_price)
    except InvalidOperation:
        return None
    return price if price.is_finite() and price > 0 else None


def _refuse_all(reason: str) -> risk_pb2.EvaluateOrderResponse:
    return _response([Verdict(rule.name, False, reason) for rule in RULES])


def _response(verdicts: list[Verdict]) -> risk_pb2.EvaluateOrderResponse:
    response = risk_pb2.EvaluateOrderResponse(approved=all(v.passed for v in verdicts))
    for verdict in verdicts:
        response.decisions.add(
            policy=verdict.policy, result=_PASS if verdict.passed else _FAIL, reason=verdict.reason
        )
    return response


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
