"""ControlsWatcher: follows changes, survives a control-plane crash and a NATS outage, and
never lets a bad value replace a good one."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from nats.js.kv import KeyValue

from brokermesh.control.v1 import control_pb2, control_pb2_grpc
from brokermesh.mesh import controls as mesh_controls
from brokermesh.mesh.controls import ControlsWatcher

from .support import ControlPlaneProcess, free_port, operator

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

Stub = control_pb2_grpc.ControlPlaneServiceStub

#: A mode number the contract does not define.
UNKNOWN_MODE = cast(control_pb2.DegradationMode, 99)

#: Generous bound for a change to reach a watcher on one machine.
SEEN_WITHIN_S = 10.0


@asynccontextmanager
async def running(
    url: str,
    data_dir: Path,
    service: str = "test-service",
) -> AsyncIterator[ControlsWatcher]:
    watcher = ControlsWatcher(url, data_dir=data_dir, service=service)
    await watcher.start()
    try:
        yield watcher
    finally:
        await watcher.stop()


async def _set_halted(stub: Stub, halted: bool, reason: str) -> control_pb2.TradingControls:
    response = await stub.SetKillSwitch(
        control_pb2.SetKillSwitchRequest(trading_halted=halted, reason=reason, actor=operator())
    )
    return response.controls


def _file_names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def _unreachable_url() -> str:
    return f"nats://127.0.0.1:{free_port()}"


async def test_watcher_follows_changes_and_persists_them(
    nats_server: Any,
    stub: Stub,
    tmp_path: Path,
) -> None:
    async with running(nats_server.url, tmp_path) as watcher:
        halted = await _set_halted(stub, True, "watcher should see this")
        seen = await watcher.wait_for(lambda c: c.revision >= halted.revision, SEEN_WITHIN_S)
        assert seen == halted
        assert watcher.halted

        reduced = (
            await stub.SetDegradationMode(
                control_pb2.SetDegradationModeRequest(
                    mode=control_pb2.DEGRADATION_MODE_REDUCED,
                    reason="reduce",
                    actor=operator(),
                )
            )
        ).controls
        await watcher.wait_for(lambda c: c.revision >= reduced.revision, SEEN_WITHIN_S)
        assert watcher.mode == control_pb2.DEGRADATION_MODE_REDUCED
        assert watcher.synced

    stored = (tmp_path / mesh_controls.LAST_KNOWN_GOOD_FILE).read_bytes()
    assert control_pb2.TradingControls.FromString(stored) == reduced
    # The atomic write leaves no temporary files behind.
    assert _file_names(tmp_path) == [mesh_controls.LAST_KNOWN_GOOD_FILE]


async def test_watcher_keeps_last_known_good_while_control_plane_is_down(
    nats_server: Any,
    control_plane: ControlPlaneProcess,
    tmp_path: Path,
) -> None:
    async with running(nats_server.url, tmp_path) as watcher:
        async with grpc.aio.insecure_channel(control_plane.address) as channel:
            halted = await _set_halted(
                control_pb2_grpc.ControlPlaneServiceStub(channel), True, "halt before the crash"
            )
        await watcher.wait_for(lambda c: c.revision >= halted.revision, SEEN_WITHIN_S)

        control_plane.kill()
        await asyncio.sleep(1.0)
        assert watcher.halted
        assert watcher.current == halted

        control_plane.start()
        async with grpc.aio.insecure_channel(control_plane.address) as channel:
            resumed = await _set_halted(
                control_pb2_grpc.ControlPlaneServiceStub(channel), False, "resume after the restart"
            )
        seen = await watcher.wait_for(lambda c: c.revision >= resumed.revision, SEEN_WITHIN_S)
        assert seen == resumed
        assert not watcher.halted


async def test_watcher_starts_from_persisted_value_when_nats_is_unreachable(
    nats_server: Any,
    stub: Stub,
    tmp_path: Path,
) -> None:
    async with running(nats_server.url, tmp_path) as watcher:
        halted = await _set_halted(stub, True, "halt to be remembered")
        await watcher.wait_for(lambda c: c.revision >= halted.revision, SEEN_WITHIN_S)

    started = time.monotonic()
    async with running(_unreachable_url(), tmp_path, "restarted-service") as restarted:
        # start() does not wait for NATS.
        assert time.monotonic() - started < 1.0
        assert restarted.current == halted
        await asyncio.sleep(1.5)  # A few failed connection attempts change nothing.
        assert restarted.halted
        assert not restarted.synced


async def test_watcher_without_any_value_starts_from_defaults(tmp_path: Path) -> None:
    async with running(_unreachable_url(), tmp_path) as watcher:
        assert not watcher.halted
        assert watcher.mode == control_pb2.DEGRADATION_MODE_NORMAL
        assert watcher.current.revision == 0


async def test_watcher_ignores_an_unreadable_persisted_file(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (tmp_path / mesh_controls.LAST_KNOWN_GOOD_FILE).write_bytes(b"\xff\xff not protobuf")

    with caplog.at_level(logging.WARNING, logger="brokermesh.mesh.controls"):
        async with running(_unreachable_url(), tmp_path) as watcher:
            assert watcher.current == mesh_controls.default_controls()

    assert any("unreadable" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "bad_value",
    [
        b"\xff\xfe definitely not a protobuf",
        control_pb2.TradingControls(trading_halted=False, mode=UNKNOWN_MODE).SerializeToString(),
        b"",
    ],
    ids=["garbage", "unknown-mode", "empty"],
)
async def test_malformed_value_is_ignored_and_last_good_kept(
    nats_server: Any,
    stub: Stub,
    controls_kv: KeyValue,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    bad_value: bytes,
) -> None:
    async with running(nats_server.url, tmp_path) as watcher:
        halted = await _set_halted(stub, True, "halt before the bad write")
        await watcher.wait_for(lambda c: c.revision >= halted.revision, SEEN_WITHIN_S)

        with caplog.at_level(logging.WARNING, logger="brokermesh.mesh.controls"):
            bad_revision = await controls_kv.put(mesh_controls.KEY, bad_value)
            await _wait_for_log(caplog, f"revision {bad_revision}")

        assert watcher.current == halted
        assert (tmp_path / mesh_controls.LAST_KNOWN_GOOD_FILE).read_bytes() == (
            halted.SerializeToString()
        )
        # The control plane reports the same last good value the data plane holds.
        current = (await stub.GetTradingControls(control_pb2.GetTradingControlsRequest())).controls
        assert current == halted

        # The next proper change replaces the bad value everywhere.
        resumed = await _set_halted(stub, False, "resume after the bad write")
        assert resumed.revision > bad_revision
        await watcher.wait_for(lambda c: c.revision >= resumed.revision, SEEN_WITHIN_S)
        assert watcher.current == resumed


async def test_older_revision_is_ignored(
    nats_server: Any,
    stub: Stub,
    controls_kv: KeyValue,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A persisted value from the future, as after the bucket was rebuilt with lower revisions.
    latest = (await stub.GetTradingControls(control_pb2.GetTradingControlsRequest())).controls
    future = control_pb2.TradingControls()
    future.CopyFrom(latest)
    future.trading_halted = True
    future.reason = "persisted at a revision the bucket has not reached"
    future.revision = latest.revision + 1000
    (tmp_path / mesh_controls.LAST_KNOWN_GOOD_FILE).write_bytes(future.SerializeToString())

    with caplog.at_level(logging.WARNING, logger="brokermesh.mesh.controls"):
        async with running(nats_server.url, tmp_path) as watcher:
            await _wait_for_log(caplog, "older than the held revision")
            assert watcher.current == future


async def test_wait_for_times_out(tmp_path: Path) -> None:
    async with running(_unreachable_url(), tmp_path) as watcher:
        with pytest.raises(TimeoutError):
            await watcher.wait_for(lambda c: c.trading_halted, 0.2)


async def _wait_for_log(caplog: pytest.LogCaptureFixture, text: str) -> None:
    deadline = time.monotonic() + SEEN_WITHIN_S
    while not any(text in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, f"no log line containing {text!r}"
        await asyncio.sleep(0.05)
