"""Integration tests: a broker-side FixInitiator trading with simulated venues over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from brokermesh.mesh.fix.engine import BROKER_COMP_ID, FixSessionConfig
from brokermesh.mesh.fix.initiator import FixInitiator
from brokermesh.mesh.fix.journal import ExecutionJournal
from brokermesh.mesh.fix.messages import (
    ORD_REJ_REASON_UNKNOWN_ORDER,
    ExecType,
    Execution,
    NewOrder,
    OrderStatusQuery,
    OrderType,
    OrdStatus,
    Side,
    TimeInForce,
    new_order_single,
    order_status_request,
)
from brokermesh.services.venue_sim.runner import run_venue
from tests.processes import free_port

pytestmark = pytest.mark.timeout(120)

Reports = asyncio.Queue[tuple[str, Execution]]
_ids = itertools.count(1)


@contextlib.asynccontextmanager
async def a_venue(tmp_path: Path, name: str, *, seed: int = 7) -> AsyncIterator[int]:
    """Run ``run_venue`` in-process until the block exits; yields its FIX port."""
    port, stop, ready = free_port(), asyncio.Event(), asyncio.Event()
    venue = asyncio.create_task(
        run_venue(
            venue=name, fix_port=port, data_dir=tmp_path / name, seed=seed, stop=stop, ready=ready
        )
    )
    try:
        listening = asyncio.create_task(ready.wait())
        await asyncio.wait([venue, listening], timeout=10, return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()
        if venue.done():
            venue.result()
        assert ready.is_set(), f"venue {name} did not start listening"
        yield port
    finally:
        stop.set()
        await venue


@contextlib.asynccontextmanager
async def a_broker(
    tmp_path: Path, ports: dict[str, int]
) -> AsyncIterator[tuple[FixInitiator, Reports]]:
    """A FixInitiator logged on to every venue in ``ports``, with the reports it receives.

    Each report is taken from the initiator's journal and acknowledged as it arrives.
    """
    reports: Reports = asyncio.Queue()
    sessions = [
        FixSessionConfig(
            sender_comp_id=BROKER_COMP_ID,
            target_comp_id=venue,
            host="127.0.0.1",
            port=port,
            data_dir=tmp_path / "broker",
        )
        for venue, port in ports.items()
    ]
    journal = ExecutionJournal(tmp_path / "broker" / "journal.sqlite3")

    def take_from_journal() -> None:
        for entry in journal.pending():
            reports.put_nowait((entry.venue, entry.execution()))
            journal.acknowledge(entry.seq)

    try:
        async with FixInitiator(
            sessions, journal=journal, on_report=take_from_journal
        ) as initiator:
            for venue in ports:
                await initiator.wait_logged_on(venue, timeout_s=10)
            yield initiator, reports
    finally:
        journal.close()


def an_order(*, quantity: int = 100, price: str = "189.50", symbol: str = "AAPL") -> NewOrder:
    return NewOrder(
        cl_ord_id=f"IT-{next(_ids)}",
        account="ACC-42",
        symbol=symbol,
        side=Side.BUY,
        quantity=quantity,
        order_type=OrderType.LIMIT,
        limit_price=Decimal(price),
        time_in_force=TimeInForce.DAY,
        transact_time=datetime.now(UTC),
    )


async def reports_until(
    reports: Reports, done: Callable[[Execution], bool], timeout_s: float = 10.0
) -> list[tuple[str, Execution]]:
    """Collect reports until one satisfies ``done``."""
    received: list[tuple[str, Execution]] = []
    async with asyncio.timeout(timeout_s):
        while not received or not done(received[-1][1]):
            received.append(await reports.get())
    return received


def is_final(execution: Execution) -> bool:
    return execution.leaves_qty == 0


@pytest.mark.asyncio
async def test_the_blueprint_order_is_acknowledged_then_filled_in_full(tmp_path: Path) -> None:
    order = an_order()
    async with a_venue(tmp_path, "XNAS") as port, a_broker(tmp_path, {"XNAS": port}) as link:
        initiator, reports = link
        await initiator.send("XNAS", new_order_single(order))
        received = await reports_until(reports, is_final)
    venues = {venue for venue, _ in received}
    executions = [execution for _, execution in received]
    assert venues == {"XNAS"}
    assert all(e.cl_ord_id == order.cl_ord_id for e in executions)
    assert (executions[0].exec_type, executions[0].order_status) == (ExecType.NEW, OrdStatus.NEW)
    fills = executions[1:]
    assert sum(f.last_qty for f in fills) == 100
    assert fills[-1].exec_type is ExecType.FILL
    assert all(f.last_price <= Decimal("189.50") for f in fills)


@pytest.mark.asyncio
async def test_a_non_marketable_limit_is_only_acknowledged_and_rests(tmp_path: Path) -> None:
    order = an_order(price="100.00")
    async with a_venue(tmp_path, "XNAS") as port, a_broker(tmp_path, {"XNAS": port}) as link:
        initiator, reports = link
        await initiator.send("XNAS", new_order_single(order))
        [(_, ack)] = await reports_until(reports, lambda e: e.exec_type is ExecType.NEW)
        await asyncio.sleep(1.0)
        assert reports.empty()
    assert (ack.order_status, ack.leaves_qty, ack.cum_qty) == (OrdStatus.NEW, 100, 0)


@pytest.mark.asyncio
async def test_a_large_order_fills_in_several_partial_fills(tmp_path: Path) -> None:
    order = an_order(quantity=5000, price="190.00")
    async with a_venue(tmp_path, "XNAS") as port, a_broker(tmp_path, {"XNAS": port}) as link:
        initiator, reports = link
        await initiator.send("XNAS", new_order_single(order))
        received = await reports_until(reports, is_final)
    executions = [execution for _, execution in received]
    partials = [e for e in executions if e.exec_type is ExecType.PARTIAL_FILL]
    assert executions[0].exec_type is ExecType.NEW
    assert len(partials) >= 2
    assert all(e.order_status is OrdStatus.PARTIALLY_FILLED for e in partials)
    cumulative = [e.cum_qty for e in executions[1:]]
    assert cumulative == sorted(cumulative)
    assert cumulative[-1] == 5000 == sum(e.last_qty for e in executions[1:])
    assert (executions[-1].exec_type, executions[-1].order_status) == (
        ExecType.FILL,
        OrdStatus.FILLED,
    )


@pytest.mark.asyncio
async def test_invalid_orders_are_rejected_with_their_reason(tmp_path: Path) -> None:
    bad_quantity, unknown_symbol = an_order(quantity=0), an_order(symbol="ZZZZ")
    async with a_venue(tmp_path, "XNAS") as port, a_broker(tmp_path, {"XNAS": port}) as link:
        initiator, reports = link
        await initiator.send("XNAS", new_order_single(bad_quantity))
        await initiator.send("XNAS", new_order_single(unknown_symbol))
        received = await reports_until(reports, lambda e: e.cl_ord_id == unknown_symbol.cl_ord_id)
    rejects = {e.cl_ord_id: e for _, e in received}
    assert {e.exec_type for e in rejects.values()} == {ExecType.REJECTED}
    assert "OrderQty(38)" in rejects[bad_quantity.cl_ord_id].text
    assert rejects[unknown_symbol.cl_ord_id].text == "unknown symbol ZZZZ"


@pytest.mark.asyncio
async def test_one_initiator_routes_to_each_of_two_venues(tmp_path: Path) -> None:
    async with (
        a_venue(tmp_path, "XNAS", seed=7) as xnas,
        a_venue(tmp_path, "ARCA", seed=8) as arca,
        a_broker(tmp_path, {"XNAS": xnas, "ARCA": arca}) as link,
    ):
        initiator, reports = link
        for venue in ("ARCA", "XNAS"):
            await initiator.send(venue, new_order_single(an_order()))
            received = await reports_until(reports, is_final)
            assert {name for name, _ in received} == {venue}
            assert received[-1][1].venue_order_id.startswith(f"{venue}-")


@pytest.mark.asyncio
async def test_a_venue_answers_status_requests_for_known_and_unknown_orders(
    tmp_path: Path,
) -> None:
    # Arrange
    resting = an_order(price="100.00")
    async with a_venue(tmp_path, "XNAS") as port, a_broker(tmp_path, {"XNAS": port}) as link:
        initiator, reports = link
        await initiator.send("XNAS", new_order_single(resting))
        await reports_until(reports, lambda e: e.exec_type is ExecType.NEW)

        # Act
        for cl_ord_id in (resting.cl_ord_id, "NEVER-SENT"):
            query = OrderStatusQuery(cl_ord_id=cl_ord_id, symbol="AAPL", side=Side.BUY)
            await initiator.send("XNAS", order_status_request(query))
        received = await reports_until(reports, lambda e: e.cl_ord_id == "NEVER-SENT")

    # Assert
    known, unknown = (execution for _, execution in received)
    assert (known.cl_ord_id, known.exec_type, known.order_status, known.leaves_qty) == (
        resting.cl_ord_id,
        ExecType.ORDER_STATUS,
        OrdStatus.NEW,
        100,
    )
    assert (unknown.exec_type, unknown.order_status, unknown.ord_rej_reason) == (
        ExecType.ORDER_STATUS,
        OrdStatus.REJECTED,
        ORD_REJ_REASON_UNKNOWN_ORDER,
    )
