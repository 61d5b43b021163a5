"""The report forwarder between a real journal and real trade capture, and what it sends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import protovalidate
import pytest
import pytest_asyncio

from brokermesh.domain import states
from brokermesh.mesh.fix.journal import ExecutionJournal
from brokermesh.mesh.fix.messages import (
    ORD_REJ_REASON_UNKNOWN_ORDER,
    ExecType,
    Execution,
    OrdStatus,
    Side,
    execution_report,
)
from brokermesh.mesh.tasks import cancel_and_wait
from brokermesh.platform.migrate import apply_migrations
from brokermesh.services.venue_gateway.reports import ReportForwarder, to_record_request
from brokermesh.trading.v1 import trade_capture_pb2_grpc
from brokermesh.trading.v1.trade_capture_pb2 import ExecutionKind, VenueOrderStatus
from tests.processes import eventually, free_port
from tests.trade_capture.support import new_order, record_routed, view_of

from .support import TradeCaptureServer

pytestmark = pytest.mark.timeout(120)

_VALIDATOR = protovalidate.Validator()


def execution(cl_ord_id: str, exec_id: str, **changes: Any) -> Execution:
    fields: dict[str, Any] = {
        "cl_ord_id": cl_ord_id,
        "venue_order_id": "XNAS-O1",
        "exec_id": exec_id,
        "exec_type": ExecType.FILL,
        "order_status": OrdStatus.FILLED,
        "symbol": "AAPL",
        "side": Side.BUY,
        "last_qty": 100,
        "last_price": Decimal("189.50"),
        "cum_qty": 100,
        "leaves_qty": 0,
        "avg_price": Decimal("189.50"),
        "text": "",
        "transact_time": datetime(2026, 3, 16, 14, 30, tzinfo=UTC),
    }
    fields.update(changes)
    return Execution(**fields)


def raw(report: Execution) -> str:
    return str(execution_report(report).toString())


class Forwarding:
    """A forwarder running on a journal, against trade capture at ``port``."""

    def __init__(self, journal: ExecutionJournal, port: int) -> None:
        self.journal = journal
        self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.forwarder = ReportForwarder(
            journal,
            trade_capture_pb2_grpc.TradeCaptureServiceStub(self._channel),
            call_timeout_s=1.0,
            retry_max_s=0.2,
        )
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Forwarding:
        self._task = asyncio.create_task(self.forwarder.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        await self._channel.close()

    async def drained(self) -> list[int]:
        async def pending() -> list[int]:
            return [entry.seq for entry in self.journal.pending()]

        return await eventually(pending, lambda seqs: not seqs, timeout_s=15)


@pytest_asyncio.fixture
async def database(fresh_database: Any) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    await apply_migrations(fresh_database.owner_dsn, load_reference_data=False)
    conn = await asyncpg.connect(fresh_database.app_dsn, timeout=10)
    try:
        yield fresh_database.app_dsn, conn
    finally:
        await conn.close()


@pytest.mark.asyncio
async def test_reports_trade_capture_cannot_take_are_parked_and_the_next_one_still_goes(
    database: tuple[str, asyncpg.Connection], tmp_path: Path
) -> None:
    # Arrange: a report naming no platform order, one missing its ExecID, one with an
    # average price no decimal string can hold, then a good fill.
    dsn, conn = database
    order = new_order()
    await record_routed(conn, order)
    trade_capture = TradeCaptureServer(
        database_url=dsn, venue_gateway_port=free_port(), data_dir=tmp_path, reconcile_after_s=3600
    )
    await trade_capture.start()
    unreadable = execution_report(execution(order.order_id, "E0"))
    unreadable.removeField(17)
    with ExecutionJournal(tmp_path / "journal.sqlite3") as journal:
        foreign = journal.append("XNAS", raw(execution("NOT-AN-ORDER", "E1")))
        broken = journal.append("XNAS", str(unreadable.toString()))
        absurd = journal.append(
            "XNAS", raw(execution(order.order_id, "E9", avg_price=Decimal("1E+40")))
        )
        journal.append("XNAS", raw(execution(order.order_id, "E2")))

        # Act
        try:
            async with Forwarding(journal, trade_capture.port) as forwarding:
                left = await forwarding.drained()
        finally:
            await trade_capture.stop()
        parked = {p.entry.seq: p.reason for p in journal.parked()}

    # Assert
    assert left == []
    assert (await view_of(conn, order.order_id)).state == states.FILLED
    assert set(parked) == {foreign, broken, absurd}
    assert parked[foreign].startswith("trade capture refused it: INVALID_ARGUMENT: order_id")
    assert parked[broken] == "unreadable execution report: missing required tag ExecID(17)"
    assert parked[absurd] == f"unreadable execution report: AvgPx {10**40} is out of range"


@pytest.mark.asyncio
async def test_reports_wait_while_trade_capture_is_down_and_go_once_it_is_back(
    database: tuple[str, asyncpg.Connection], tmp_path: Path
) -> None:
    # Arrange
    dsn, conn = database
    order = new_order()
    await record_routed(conn, order)
    trade_capture = TradeCaptureServer(
        database_url=dsn, venue_gateway_port=free_port(), data_dir=tmp_path, reconcile_after_s=3600
    )
    with ExecutionJournal(tmp_path / "journal.sqlite3") as journal:
        journal.append("XNAS", raw(execution(order.order_id, "E1")))

        async with Forwarding(journal, trade_capture.port) as forwarding:
            # Act: a while with trade capture down, then with it up.
            await asyncio.sleep(1.5)
            waiting = (len(journal.pending()), len(journal.parked()))
            await trade_capture.start()
            try:
                left = await forwarding.drained()
            finally:
                await trade_capture.stop()

    # Assert
    assert waiting == (1, 0)
    assert left == []
    assert (await view_of(conn, order.order_id)).state == states.FILLED


def test_an_unknown_order_status_becomes_a_valid_status_report_naming_the_reason() -> None:
    # Arrange
    unknown = execution(
        "ORD-20260316-00000001",
        "S1",
        exec_type=ExecType.ORDER_STATUS,
        order_status=OrdStatus.REJECTED,
        venue_order_id="NONE",
        last_qty=0,
        last_price=Decimal(0),
        cum_qty=0,
        avg_price=Decimal(0),
        text="unknown order ORD-20260316-00000001",
        ord_rej_reason=ORD_REJ_REASON_UNKNOWN_ORDER,
    )

    # Act
    request = to_record_request("XNAS", unknown)

    # Assert
    assert (request.kind, request.venue_status) == (
        ExecutionKind.EXECUTION_KIND_ORDER_STATUS,
        VenueOrderStatus.VENUE_ORDER_STATUS_REJECTED,
    )
    assert request.text == ("unknown order ORD-20260316-00000001 (OrdRejReason 5: unknown order)")
    assert not request.HasField("fill")
    assert _VALIDATOR.collect_violations(request) == []


def test_a_fill_goes_out_with_plain_decimal_strings_that_pass_the_contract() -> None:
    # Arrange
    tiny = execution(
        "ORD-20260316-00000002",
        "E9",
        last_price=Decimal("1E+2"),
        avg_price=Decimal("99.9999999"),
    )

    # Act
    request = to_record_request("XNAS", tiny)

    # Assert
    assert (request.fill.price, request.average_price) == ("100", "100.000000")
    assert request.exec_id == "XNAS:E9"
    assert _VALIDATOR.collect_violations(request) == []
