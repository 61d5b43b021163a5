"""The simulated venue's order handling: orders matched, executions reported, status answered."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from brokermesh.mesh.fix.acceptor import FixAcceptor
from brokermesh.mesh.fix.engine import BROKER_COMP_ID, FixSessionConfig
from brokermesh.mesh.fix.messages import (
    ORD_REJ_REASON_UNKNOWN_ORDER,
    ExecType,
    Execution,
    NewOrder,
    OrderStatusQuery,
    OrderType,
    OrdStatus,
    TimeInForce,
)
from brokermesh.services.venue_sim.book import Fill
from brokermesh.services.venue_sim.market import TICK, VenueMarket

MAX_ORDER_QTY = 1_000_000
_AVG_PRICE_QUANTUM = Decimal("0.000001")
_NO_ORDER_ID = "NONE"

Report = tuple[str, Execution]


@dataclass(slots=True, kw_only=True)
class _LiveOrder:
    """A client order the venue has taken in, and where it stands."""

    session: str
    order: NewOrder
    venue_order_id: str
    cum_qty: int = 0
    notional: Decimal = Decimal(0)
    status: OrdStatus = OrdStatus.NEW

    @property
    def leaves_qty(self) -> int:
        return self.order.quantity - self.cum_qty


def _utc_now() -> datetime:
    return datetime.now(UTC)


class VenueOrderHandler:
    """Turns each NewOrderSingle into ExecutionReports: an ack, one report per fill, or a reject.

    Fills are reported to the incoming order's session and, when a client order resting on the
    book is hit, to that order's session too. Orders with an unknown symbol, a quantity above
    ``MAX_ORDER_QTY``, a price off the one-cent tick or a reused ClOrdID are rejected. Every
    order taken in is remembered, so an OrderStatusRequest is answered with its status; one
    for a ClOrdID the venue never received is rejected as an unknown order.
    """

    def __init__(
        self,
        market: VenueMarket,
        *,
        clock: Callable[[], datetime] = _utc_now,
        run_tag: str | None = None,
    ) -> None:
        self.market = market
        self._clock = clock
        self._prefix = f"{market.venue}-{run_tag or secrets.token_hex(3)}"
        self._order_ids = itertools.count(1)
        self._exec_ids = itertools.count(1)
        self._live: dict[str, _LiveOrder] = {}
        self._seen: set[tuple[str, str]] = set()
        self._orders: dict[tuple[str, str], _LiveOrder] = {}

    async def __call__(self, session: str, order: NewOrder) -> Sequence[Report]:
        """The ``FixAcceptor`` order handler."""
        return self.handle(session, order)

    def handle(self, session: str, order: NewOrder) -> list[Report]:
        """Match ``order`` from ``session`` and return the reports to send, in order."""
        problem = self._problem(session, order)
        if problem:
            rejected = _LiveOrder(session=session, order=order, venue_order_id=_NO_ORDER_ID)
            if (session, order.cl_ord_id) not in self._seen:
                self._orders[(session, order.cl_ord_id)] = rejected
            return [(session, self._reject(rejected, problem))]
        self._seen.add((session, order.cl_ord_id))
        live = _LiveOrder(
            session=session, order=order, venue_order_id=f"{self._prefix}-O{next(self._order_ids)}"
        )
        self._orders[(session, order.cl_ord_id)] = live
        reports = [(session, self._report(live, ExecType.NEW, OrdStatus.NEW))]
        reports += self._match(live)
        return reports

    def status(self, session: str, query: OrderStatusQuery) -> Execution:
        """The answer to an OrderStatusRequest from ``session`` (ExecType I)."""
        live = self._orders.get((session, query.cl_ord_id))
        if live is None:
            return Execution(
                cl_ord_id=query.cl_ord_id,
                venue_order_id=_NO_ORDER_ID,
                exec_id=f"{self._prefix}-E{next(self._exec_ids)}",
                exec_type=ExecType.ORDER_STATUS,
                order_status=OrdStatus.REJECTED,
                symbol=query.symbol,
                side=query.side,
                last_qty=0,
                last_price=Decimal(0),
                cum_qty=0,
                leaves_qty=0,
                avg_price=Decimal(0),
                text=f"unknown order {query.cl_ord_id}",
                transact_time=self._clock(),
                ord_rej_reason=ORD_REJ_REASON_UNKNOWN_ORDER,
            )
        done = live.status in (OrdStatus.CANCELED, OrdStatus.REJECTED)
        return self._report(live, ExecType.ORDER_STATUS, live.status, leaves=0 if done else None)

    def _problem(self, session: str, order: NewOrder) -> str:
        if not self.market.has_symbol(order.symbol):
            return f"unknown symbol {order.symbol}"
        if order.quantity > MAX_ORDER_QTY:
            return f"quantity {order.quantity} exceeds the maximum of {MAX_ORDER_QTY}"
        price = order.limit_price
        if order.order_type is OrderType.LIMIT and price is not None and price % TICK:
            return f"price {price} is not a multiple of the {TICK} tick"
        if (session, order.cl_ord_id) in self._seen:
            return f"duplicate ClOrdID {order.cl_ord_id}"
        return ""

    def _match(self, live: _LiveOrder) -> list[Report]:
        order = live.order
        limit = order.limit_price if order.order_type is OrderType.LIMIT else None
        result = self.market.book(order.symbol).submit(
            order_id=live.venue_order_id,
            side=order.side,
            quantity=order.quantity,
            limit_price=limit,
            time_in_force=order.time_in_force,
            owner=live.session,
        )
        reports: list[Report] = []
        for fill in result.fills:
            reports.append((live.session, self._fill(live, fill.price, fill.quantity)))
            reports += self._passive_fill(fill)
        if result.rested:
            self._live[live.venue_order_id] = live
        if result.cancelled:
            reports.append((live.session, self._cancel(live)))
        return reports

    def _passive_fill(self, fill: Fill) -> list[Report]:
        resting = self._live.get(fill.resting_order_id)
        if resting is None:
            return []
        report = self._fill(resting, fill.price, fill.quantity)
        if resting.leaves_qty == 0:
            del self._live[fill.resting_order_id]
        return [(resting.session, report)]

    def _fill(self, live: _LiveOrder, price: Decimal, quantity: int) -> Execution:
        live.cum_qty += quantity
        live.notional += price * quantity
        done = live.leaves_qty == 0
        exec_type = ExecType.FILL if done else ExecType.PARTIAL_FILL
        status = OrdStatus.FILLED if done else OrdStatus.PARTIALLY_FILLED
        return self._report(live, exec_type, status, last_qty=quantity, last_price=price)

    def _cancel(self, live: _LiveOrder) -> Execution:
        why = "IOC" if live.order.time_in_force is TimeInForce.IOC else "market order"
        text = f"{why} remainder of {live.leaves_qty} cancelled"
        return self._report(live, ExecType.CANCELED, OrdStatus.CANCELED, text=text, leaves=0)

    def _report(
        self,
        live: _LiveOrder,
        exec_type: ExecType,
        status: OrdStatus,
        *,
        last_qty: int = 0,
        last_price: Decimal = Decimal(0),
        text: str = "",
        leaves: int | None = None,
    ) -> Execution:
        order = live.order
        live.status = status
        return Execution(
            cl_ord_id=order.cl_ord_id,
            venue_order_id=live.venue_order_id,
            exec_id=f"{self._prefix}-E{next(self._exec_ids)}",
            exec_type=exec_type,
            order_status=status,
            symbol=order.symbol,
            side=order.side,
            last_qty=last_qty,
            last_price=last_price,
            cum_qty=live.cum_qty,
            leaves_qty=live.leaves_qty if leaves is None else leaves,
            avg_price=_average(live.notional, live.cum_qty),
            text=text,
            transact_time=self._clock(),
        )

    def _reject(self, live: _LiveOrder, text: str) -> Execution:
        return self._report(live, ExecType.REJECTED, OrdStatus.REJECTED, text=text, leaves=0)


def _average(notional: Decimal, quantity: int) -> Decimal:
    if quantity == 0:
        return Decimal(0)
    average = (notional / quantity).quantize(_AVG_PRICE_QUANTUM)
    on_tick = average.quantize(TICK)
    return on_tick if on_tick == average else average.normalize()


def create_venue_acceptor(
    handler: VenueOrderHandler,
    *,
    fix_port: int,
    data_dir: Path,
    client_comp_ids: Sequence[str] = (BROKER_COMP_ID,),
) -> FixAcceptor:
    """A ``FixAcceptor`` with one session per client, the venue name being its SenderCompID."""
    sessions = [
        FixSessionConfig(
            sender_comp_id=handler.market.venue,
            target_comp_id=client,
            host="0.0.0.0",  # QuickFIX acceptors always bind every interface
            port=fix_port,
            data_dir=data_dir,
        )
        for client in client_comp_ids
    ]
    return FixAcceptor(sessions, on_order=handler, on_status=handler.status)
