"""The venue side of FIX: orders and status requests handed, in arrival order, to the loop."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TypeAlias

import quickfix

from brokermesh.mesh.fix.engine import (
    FixEngine,
    FixSessionConfig,
    FixSessionError,
    target_of,
)
from brokermesh.mesh.fix.messages import (
    MSG_TYPE_NEW_ORDER_SINGLE,
    MSG_TYPE_ORDER_STATUS_REQUEST,
    Execution,
    FixMessageError,
    NewOrder,
    OrderStatusQuery,
    execution_report,
    msg_type,
    order_reject,
    parse_new_order_single,
    parse_order_status_request,
)
from brokermesh.mesh.tasks import cancel_and_wait

_logger = logging.getLogger(__name__)

OrderHandler = Callable[[str, NewOrder], Awaitable[Sequence[tuple[str, Execution]]]]
StatusHandler = Callable[[str, OrderStatusQuery], Execution]

_Inbound: TypeAlias = NewOrder | OrderStatusQuery | quickfix.Message


class FixAcceptor(FixEngine):
    """The venue side: parsed orders go, in arrival order, to ``on_order`` on the asyncio loop.

    ``on_order(session, order)`` returns ``(session, execution)`` pairs to send, in order: the
    reports for the order itself and for any resting orders it traded against. Those reports
    are sent even while the receiving session is down, since the persistent store lets the
    client recover them with a ResendRequest. An order that cannot be parsed is rejected, in
    its turn, with an ExecutionReport (ExecType 8) whose Text names the offending tag.

    ``on_status(session, query)`` answers an OrderStatusRequest, in the same order as the
    orders, with the one report to send back (ExecType I). A request that cannot be parsed is
    logged and left unanswered: answering it with a rejection would read as the order's.
    """

    _connection_type = "acceptor"

    def __init__(
        self,
        sessions: Sequence[FixSessionConfig],
        *,
        on_order: OrderHandler,
        on_status: StatusHandler,
    ) -> None:
        super().__init__(sessions)
        self._on_order = on_order
        self._on_status = on_status
        self._inbound: asyncio.Queue[tuple[str, _Inbound]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._reject_ids = itertools.count(1)
        self._run_tag = secrets.token_hex(3)

    async def start(self) -> None:
        """Start accepting connections and handing orders to ``on_order``."""
        await super().start()
        self._worker = asyncio.create_task(self._drain_inbound(), name="fix-acceptor-orders")

    async def stop(self) -> None:
        """Stop the order worker, then log sessions out and stop QuickFIX."""
        worker, self._worker = self._worker, None
        try:
            if worker is not None:
                await cancel_and_wait(worker)
        finally:
            await super().stop()

    async def _drain_inbound(self) -> None:
        while True:
            session, item = await self._inbound.get()
            if isinstance(item, NewOrder):
                await self._handle_order(session, item)
            elif isinstance(item, OrderStatusQuery):
                self._handle_status(session, item)
            else:
                self._deliver(session, item)

    async def _handle_order(self, session: str, order: NewOrder) -> None:
        try:
            replies = await self._on_order(session, order)
        except Exception:
            _logger.exception("order %s from %s could not be handled", order.cl_ord_id, session)
            return
        for target, execution in replies:
            self._deliver(target, execution_report(execution))

    def _handle_status(self, session: str, query: OrderStatusQuery) -> None:
        try:
            reply = self._on_status(session, query)
        except Exception:
            _logger.exception(
                "status request for %s from %s could not be answered", query.cl_ord_id, session
            )
            return
        self._deliver(session, execution_report(reply))

    def _deliver(self, session: str, message: quickfix.Message) -> None:
        try:
            sent = self._send_to_target(session, message)
        except FixSessionError as exc:
            _logger.error("cannot deliver a report to %s: %s", session, exc)
            return
        if not sent:
            _logger.error("QuickFIX refused a report for %s", session)

    def receive_app_message(
        self, message: quickfix.Message, session_id: quickfix.SessionID
    ) -> None:
        """Engine thread: parse an order or status request and queue it for the loop."""
        session = target_of(session_id)
        kind = msg_type(message)
        if kind == MSG_TYPE_ORDER_STATUS_REQUEST:
            self._receive_status_request(session, message)
            return
        if kind != MSG_TYPE_NEW_ORDER_SINGLE:
            _logger.warning("ignoring FIX message type %r from %s", kind, session)
            return
        try:
            order = parse_new_order_single(message)
        except FixMessageError as exc:
            self._post(self._inbound.put_nowait, (session, self._reject(message, session_id, exc)))
            return
        self._post(self._inbound.put_nowait, (session, order))

    def _receive_status_request(self, session: str, message: quickfix.Message) -> None:
        try:
            query = parse_order_status_request(message)
        except FixMessageError as exc:
            _logger.error("unreadable order status request from %s: %s", session, exc)
            return
        self._post(self._inbound.put_nowait, (session, query))

    def _reject(
        self, order: quickfix.Message, session_id: quickfix.SessionID, error: FixMessageError
    ) -> quickfix.Message:
        exec_id = f"{session_id.getSenderCompID().getString()}-REJ-{self._run_tag}-"
        return order_reject(
            order,
            venue_order_id="NONE",
            exec_id=f"{exec_id}{next(self._reject_ids)}",
            text=str(error),
            transact_time=datetime.now(UTC),
        )
