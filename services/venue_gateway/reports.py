"""Execution reports from the journal to trade capture: oldest first, each until it is recorded.

The FIX initiator journals every report durably before QuickFIX moves on; the forwarder
here hands the journaled reports to trade capture one at a time, in arrival order, and
removes each from the journal only once trade capture has answered for it. Reports still
in the journal at start-up (the process stopped or crashed before forwarding them) go
first. Trade capture ignores a report it has already recorded, so sending one again after
an ambiguous failure is safe: delivery is at least once.

A transient failure (trade capture unreachable, a deadline, a lost race) is retried with
backoff and holds the later reports back, since their order matters. A refusal that
repeating cannot cure, or a report that cannot even be read, is parked in the journal with
its reason, logged at ERROR and counted, and the next report goes on: one bad report must
never hold up the fills behind it.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import grpc
import quickfix
from prometheus_client import Counter

from brokermesh.mesh.fix.journal import ExecutionJournal, JournalEntry, JournalError
from brokermesh.mesh.fix.messages import ExecType, Execution, FixMessageError, OrdStatus
from brokermesh.trading.v1 import trade_capture_pb2, trade_capture_pb2_grpc
from brokermesh.trading.v1.order_pb2 import Fill
from brokermesh.trading.v1.trade_capture_pb2 import ExecutionKind, VenueOrderStatus

_LOGGER = logging.getLogger(__name__)

REPORTS_FORWARDED = Counter(
    "brokermesh_execution_reports_forwarded",
    "Execution reports trade capture has answered for, by venue.",
    ["venue"],
)
REPORTS_PARKED = Counter(
    "brokermesh_execution_reports_parked",
    "Execution reports set aside because trade capture cannot record them, by venue and reason.",
    ["venue", "reason"],
)

#: Failures after which the same call may well succeed. ABORTED is a lost optimistic
#: concurrency race and CANCELLED a call cut off by trade capture shutting down: both pass.
TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
    }
)

_AVERAGE_PRICE_QUANTUM = Decimal("0.000001")

_KINDS = {
    ExecType.NEW: ExecutionKind.EXECUTION_KIND_ACKNOWLEDGED,
    ExecType.PARTIAL_FILL: ExecutionKind.EXECUTION_KIND_FILL,
    ExecType.FILL: ExecutionKind.EXECUTION_KIND_FILL,
    ExecType.REJECTED: ExecutionKind.EXECUTION_KIND_REJECTED,
    ExecType.CANCELED: ExecutionKind.EXECUTION_KIND_CANCELLED,
    ExecType.ORDER_STATUS: ExecutionKind.EXECUTION_KIND_ORDER_STATUS,
}

_STATUSES = {
    OrdStatus.NEW: VenueOrderStatus.VENUE_ORDER_STATUS_NEW,
    OrdStatus.PARTIALLY_FILLED: VenueOrderStatus.VENUE_ORDER_STATUS_PARTIALLY_FILLED,
    OrdStatus.FILLED: VenueOrderStatus.VENUE_ORDER_STATUS_FILLED,
    OrdStatus.CANCELED: VenueOrderStatus.VENUE_ORDER_STATUS_CANCELLED,
    OrdStatus.REJECTED: VenueOrderStatus.VENUE_ORDER_STATUS_REJECTED,
}

#: OrdRejReason (103) values worth spelling out in the recorded reason.
_REJECT_REASONS = {
    0: "broker / exchange option",
    1: "unknown symbol",
    2: "exchange closed",
    3: "order exceeds limit",
    4: "too late to enter",
    5: "unknown order",
    6: "duplicate order",
}


def to_record_request(venue: str, execution: Execution) -> trade_capture_pb2.RecordExecutionRequest:
    """What trade capture needs to know of one execution report from ``venue``.

    Raises ValueError for a report no request can carry (an average price out of range).
    """
    request = trade_capture_pb2.RecordExecutionRequest(
        order_id=execution.cl_ord_id,
        kind=_KINDS[execution.exec_type],
        cumulative_quantity=execution.cum_qty,
        leaves_quantity=execution.leaves_qty,
        venue=venue,
        venue_order_id=execution.venue_order_id,
        text=_text(execution),
        exec_id=f"{venue}:{execution.exec_id}",
        venue_status=_STATUSES[execution.order_status],
        average_price=_average_price(execution),
    )
    if execution.exec_type.is_trade:
        request.fill.CopyFrom(
            Fill(
                exec_id=execution.exec_id,
                venue=venue,
                quantity=execution.last_qty,
                price=format(execution.last_price, "f"),
            )
        )
        request.fill.executed_at.FromDatetime(execution.transact_time)
    return request


def _average_price(execution: Execution) -> str:
    try:
        return format(execution.avg_price.quantize(_AVERAGE_PRICE_QUANTUM), "f")
    except ArithmeticError:
        raise ValueError(f"AvgPx {execution.avg_price} is out of range") from None


def _text(execution: Execution) -> str:
    code = execution.ord_rej_reason
    if code is None:
        return execution.text
    reason = f"OrdRejReason {code}: {_REJECT_REASONS.get(code, 'other')}"
    return f"{execution.text} ({reason})" if execution.text else reason


class ReportForwarder:
    """Forwards the journal's reports to trade capture; :meth:`run` is its long-lived task."""

    def __init__(
        self,
        journal: ExecutionJournal,
        trade_capture: trade_capture_pb2_grpc.TradeCaptureServiceStub,
        *,
        batch_size: int = 64,
        call_timeout_s: float = 1.0,
        retry_initial_s: float = 0.05,
        retry_max_s: float = 2.0,
    ) -> None:
        self._journal = journal
        self._trade_capture = trade_capture
        self._batch_size = batch_size
        self._call_timeout_s = call_timeout_s
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        """Loop thread: the journal holds a new report."""
        self._wakeup.set()

    async def run(self) -> None:
        """Forever: forward what the journal holds, then wait for more."""
        while True:
            # Cleared before reading, so a report journaled meanwhile is never missed.
            self._wakeup.clear()
            try:
                entries = await asyncio.to_thread(self._journal.pending, self._batch_size)
                for entry in entries:
                    await self._forward(entry)
            except JournalError:
                _LOGGER.exception("the execution journal failed; retrying")
                await asyncio.sleep(self._retry_max_s)
                continue
            if not entries:
                await self._wakeup.wait()

    async def _forward(self, entry: JournalEntry) -> None:
        try:
            request = to_record_request(entry.venue, entry.execution())
        except (FixMessageError, ValueError, quickfix.FIXException) as exc:
            # A report that cannot be turned into a request never will be: retrying it
            # would hold every later report back for good.
            await self._park(entry, "UNREADABLE", f"unreadable execution report: {exc}")
            return

        delay_s = self._retry_initial_s
        while True:
            try:
                await self._trade_capture.RecordExecution(request, timeout=self._call_timeout_s)
                break
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in TRANSIENT:
                    reason = f"trade capture refused it: {exc.code().name}: {exc.details()}"
                    await self._park(entry, exc.code().name, reason)
                    return
                _LOGGER.warning(
                    "trade capture cannot take report %s now (%s); retrying",
                    request.exec_id,
                    exc.code().name,
                )
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, self._retry_max_s)

        await asyncio.to_thread(self._journal.acknowledge, entry.seq)
        REPORTS_FORWARDED.labels(entry.venue).inc()

    async def _park(self, entry: JournalEntry, code: str, reason: str) -> None:
        await asyncio.to_thread(self._journal.park, entry.seq, reason)
        REPORTS_PARKED.labels(entry.venue, code).inc()
        _LOGGER.error(
            "execution report %d from %s parked: %s",
            entry.seq,
            entry.venue,
            reason,
            extra={"journal_seq": entry.seq, "venue": entry.venue},
        )
