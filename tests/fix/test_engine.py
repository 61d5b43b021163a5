"""Tests of the QuickFIX asyncio bridge over real FIX sessions on loopback."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import quickfix

from brokermesh.mesh.fix.engine import (
    FixAcceptor,
    FixConfigError,
    FixInitiator,
    FixNotLoggedOnError,
    FixSessionConfig,
    FixSessionError,
    find_data_dictionary,
    render_settings,
)
from brokermesh.mesh.fix.messages import Execution, NewOrder

pytestmark = pytest.mark.timeout(120)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


def ignore(venue: str, execution: Execution) -> None:
    return None


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
        FixInitiator([broker_side(tmp_path, 1), broker_side(tmp_path, 2)], on_execution=ignore)


@pytest.mark.asyncio
async def test_sending_without_a_logged_on_session_raises_a_clear_error(tmp_path: Path) -> None:
    async with FixInitiator([broker_side(tmp_path, free_port())], on_execution=ignore) as fix:
        with pytest.raises(FixNotLoggedOnError, match="VENUE"):
            await fix.send("VENUE", quickfix.Message())
        with pytest.raises(FixNotLoggedOnError):
            await fix.wait_logged_on("VENUE", timeout_s=0.5)
        with pytest.raises(FixSessionError, match="unknown"):
            await fix.send("NOWHERE", quickfix.Message())


@pytest.mark.asyncio
async def test_an_acceptor_on_a_busy_port_fails_to_start(tmp_path: Path) -> None:
    port = free_port()
    async with FixAcceptor([venue_side(tmp_path, port)], on_order=no_fills):
        clash = FixAcceptor([venue_side(tmp_path, port, "OTHER")], on_order=no_fills)
        with pytest.raises(FixSessionError, match="cannot start"):
            await clash.start()


@pytest.mark.asyncio
async def test_the_initiator_keeps_reconnecting_until_the_venue_is_up(tmp_path: Path) -> None:
    port = free_port()
    async with FixInitiator([broker_side(tmp_path, port)], on_execution=ignore) as broker:
        await asyncio.sleep(1.5)
        assert not broker.is_logged_on("VENUE")
        async with FixAcceptor([venue_side(tmp_path, port)], on_order=no_fills) as venue:
            await broker.wait_logged_on("VENUE", timeout_s=10)
            await venue.wait_logged_on("BROKER", timeout_s=10)
            assert broker.is_logged_on("VENUE")


@pytest.mark.asyncio
async def test_sequence_numbers_survive_a_restart_of_both_sides(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    for _ in range(2):
        port = free_port()
        async with (
            FixAcceptor([venue_side(tmp_path, port)], on_order=no_fills) as venue,
            FixInitiator([broker_side(tmp_path, port)], on_execution=ignore) as broker,
        ):
            await broker.wait_logged_on("VENUE", timeout_s=10)
            await venue.wait_logged_on("BROKER", timeout_s=10)
            seen.append((broker.next_sender_seq_num("VENUE"), venue.next_sender_seq_num("BROKER")))
    (broker_first, venue_first), (broker_again, venue_again) = seen
    assert broker_again > broker_first > 1
    assert venue_again > venue_first > 1


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
