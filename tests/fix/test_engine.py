"""Tests of the QuickFIX asyncio bridge over real FIX sessions on loopback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import quickfix

from brokermesh.mesh.fix.acceptor import FixAcceptor, OrderHandler
from brokermesh.mesh.fix.engine import (
    FixConfigError,
    FixNotLoggedOnError,
    FixSessionConfig,
    FixSessionError,
    find_data_dictionary,
    render_settings,
)
from brokermesh.mesh.fix.initiator import FixInitiator
from brokermesh.mesh.fix.journal import ExecutionJournal
from brokermesh.mesh.fix.messages import (
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
from tests.processes import free_port

pytestmark = pytest.mark.timeout(120)


def broker_side(tmp_path: Path, port: int, venue: str = "VENUE") -> FixSessionConfig:
    return FixSessionConfig(
        sender_comp_id="BROKER",
        target_comp_id=venue,
        host="127.0.0.1",
        port=port,
        data_dir=tmp_path / "broker",
    )


def venue_side(tmp_path: Path, port: int, venue: str = "VENUE") -> FixSessionConfig:
    return FixSessionConfig(
        sender_comp_id=venue,
        target_comp_id="BROKER",
        host="127.0.0.1",
        port=port,
        data_dir=tmp_path / venue,
    )


async def no_fills(session: str, order: NewOrder) -> Sequence[tuple[str, Execution]]:
    return ()


def report(cl_ord_id: str, exec_type: ExecType, status: OrdStatus) -> Execution:
    return Execution(
        cl_ord_id=cl_ord_id,
        venue_order_id="V-1",
        exec_id=f"E-{cl_ord_id}-{exec_type.value}",
        exec_type=exec_type,
        order_status=status,
        symbol="AAPL",
        side=Side.BUY,
        last_qty=0,
        last_price=Decimal(0),
        cum_qty=0,
        leaves_qty=100,
        avg_price=Decimal(0),
        text="",
        transact_time=datetime.now(UTC),
    )


async def acknowledge(session: str, order: NewOrder) -> Sequence[tuple[str, Execution]]:
    return [(session, report(order.cl_ord_id, ExecType.NEW, OrdStatus.NEW))]


def resting(session: str, query: OrderStatusQuery) -> Execution:
    return report(query.cl_ord_id, ExecType.ORDER_STATUS, OrdStatus.NEW)


def nothing_new() -> None:
    return None


def an_order(cl_ord_id: str = "ORD-1") -> NewOrder:
    return NewOrder(
        cl_ord_id=cl_ord_id,
        account="ACC-42",
        symbol="AAPL",
        side=Side.BUY,
        quantity=100,
        order_type=OrderType.LIMIT,
        limit_price=Decimal("100.00"),
        time_in_force=TimeInForce.DAY,
        transact_time=datetime.now(UTC),
    )


def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "journal" / "executions.sqlite3"


def initiator(
    tmp_path: Path, *sessions: FixSessionConfig, on_report: Callable[[], None] = nothing_new
) -> FixInitiator:
    journal = ExecutionJournal(journal_path(tmp_path))
    return FixInitiator(list(sessions), journal=journal, on_report=on_report)


def acceptor(*sessions: FixSessionConfig, on_order: OrderHandler = no_fills) -> FixAcceptor:
    return FixAcceptor(list(sessions), on_order=on_order, on_status=resting)


def test_the_fix44_data_dictionary_is_found_in_the_environment() -> None:
    path = find_data_dictionary()
    assert path.name == "FIX44.xml"
    assert path.is_file()


def test_rendered_initiator_settings_never_reset_sequence_numbers(tmp_path: Path) -> None:
    configs = [broker_side(tmp_path, 9001, "XNAS"), broker_side(tmp_path, 9002, "ARCA")]
    text = render_settings(configs, connection_type="initiator")
    lines = set(text.splitlines())
    for expected in (
        "ResetOnLogon=N",
        "ResetOnLogout=N",
        "ResetOnDisconnect=N",
        "PersistMessages=Y",
        "UseDataDictionary=Y",
        "ReconnectInterval=1",
        "SocketConnectHost=127.0.0.1",
        "SocketConnectPort=9002",
        f"DataDictionary={find_data_dictionary()}",
        f"FileStorePath={tmp_path / 'broker' / 'store'}",
    ):
        assert expected in lines
    assert text.count("[SESSION]") == 2


def test_quickfix_accepts_the_rendered_acceptor_settings(tmp_path: Path) -> None:
    text = render_settings([venue_side(tmp_path, 9003)], connection_type="acceptor")
    settings = quickfix.SessionSettings()
    settings.setFromString(text)
    assert [str(session) for session in settings.getSessions()] == ["FIX.4.4:VENUE->BROKER"]
    assert "SocketAcceptPort=9003" in text.splitlines()


def test_two_sessions_to_the_same_counterparty_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FixConfigError):
        initiator(tmp_path, broker_side(tmp_path, 1), broker_side(tmp_path, 2))


@pytest.mark.asyncio
async def test_sending_without_a_logged_on_session_raises_a_clear_error(tmp_path: Path) -> None:
    async with initiator(tmp_path, broker_side(tmp_path, free_port())) as fix:
        with pytest.raises(FixNotLoggedOnError, match="VENUE"):
            await fix.send("VENUE", quickfix.Message())
        with pytest.raises(FixNotLoggedOnError):
            await fix.wait_logged_on("VENUE", timeout_s=0.5)
        with pytest.raises(FixSessionError, match="unknown"):
            await fix.send("NOWHERE", quickfix.Message())


@pytest.mark.asyncio
async def test_an_acceptor_on_a_busy_port_fails_to_start(tmp_path: Path) -> None:
    port = free_port()
    async with acceptor(venue_side(tmp_path, port)):
        clash = acceptor(venue_side(tmp_path, port, "OTHER"))
        with pytest.raises(FixSessionError, match="cannot start"):
            await clash.start()


@pytest.mark.asyncio
async def test_the_initiator_keeps_reconnecting_until_the_venue_is_up(tmp_path: Path) -> None:
    port = free_port()
    async with initiator(tmp_path, broker_side(tmp_path, port)) as broker:
        await asyncio.sleep(1.5)
        assert not broker.is_logged_on("VENUE")
        async with acceptor(venue_side(tmp_path, port)) as venue:
            await broker.wait_logged_on("VENUE", timeout_s=10)
            await venue.wait_logged_on("BROKER", timeout_s=10)
            assert broker.is_logged_on("VENUE")


@pytest.mark.asyncio
async def test_sequence_numbers_survive_a_restart_of_both_sides(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    for _ in range(2):
        port = free_port()
        async with (
            acceptor(venue_side(tmp_path, port)) as venue,
            initiator(tmp_path, broker_side(tmp_path, port)) as broker,
        ):
            await broker.wait_logged_on("VENUE", timeout_s=10)
            await venue.wait_logged_on("BROKER", timeout_s=10)
            seen.append((broker.next_sender_seq_num("VENUE"), venue.next_sender_seq_num("BROKER")))
    (broker_first, venue_first), (broker_again, venue_again) = seen
    assert broker_again > broker_first > 1
    assert venue_again > venue_first > 1


@pytest.mark.asyncio
async def test_an_execution_report_is_journaled_before_the_loop_hears_of_it(
    tmp_path: Path,
) -> None:
    # Arrange
    port = free_port()
    journaled_when_told: list[list[str]] = []
    told = asyncio.Event()
    journal = ExecutionJournal(journal_path(tmp_path))

    def on_report() -> None:
        journaled_when_told.append([entry.execution().cl_ord_id for entry in journal.pending()])
        told.set()

    broker = FixInitiator([broker_side(tmp_path, port)], journal=journal, on_report=on_report)

    # Act
    async with acceptor(venue_side(tmp_path, port), on_order=acknowledge) as venue, broker:
        await broker.wait_logged_on("VENUE", timeout_s=10)
        await venue.wait_logged_on("BROKER", timeout_s=10)
        await broker.send("VENUE", new_order_single(an_order("ORD-7")))
        await asyncio.wait_for(told.wait(), timeout=10)
    journal.close()

    # Assert: the loop heard of it only once it was on disk, and it outlives the engine.
    assert journaled_when_told[0] == ["ORD-7"]
    with ExecutionJournal(journal_path(tmp_path)) as reopened:
        [entry] = reopened.pending()
    assert (entry.venue, entry.execution().exec_type) == ("VENUE", ExecType.NEW)


@pytest.mark.asyncio
async def test_the_acceptor_answers_an_order_status_request_with_a_status_report(
    tmp_path: Path,
) -> None:
    # Arrange
    port = free_port()
    told = asyncio.Event()
    broker = initiator(tmp_path, broker_side(tmp_path, port), on_report=told.set)
    query = OrderStatusQuery(cl_ord_id="ORD-9", symbol="AAPL", side=Side.BUY)

    # Act
    async with acceptor(venue_side(tmp_path, port)) as venue, broker:
        await broker.wait_logged_on("VENUE", timeout_s=10)
        await venue.wait_logged_on("BROKER", timeout_s=10)
        await broker.send("VENUE", order_status_request(query))
        await asyncio.wait_for(told.wait(), timeout=10)

    # Assert
    with ExecutionJournal(journal_path(tmp_path)) as journal:
        [entry] = journal.pending()
    answer = entry.execution()
    assert (answer.cl_ord_id, answer.exec_type, answer.order_status) == (
        "ORD-9",
        ExecType.ORDER_STATUS,
        OrdStatus.NEW,
    )


def test_importing_the_fix_package_keeps_ctrl_c_a_keyboard_interrupt() -> None:
    script = (
        "import os, signal, time\n"
        "import brokermesh.mesh.fix\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(5)\n"
        "except KeyboardInterrupt:\n"
        "    print('KeyboardInterrupt')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "KeyboardInterrupt"
