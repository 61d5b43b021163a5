"""ControlsWatcher: follows changes, survives a control-plane crash and a NATS outage, fails
closed while it knows nothing, follows a recreated bucket, and never lets a bad value replace
a good one."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import grpc
import nats
import pytest
from nats.js.kv import KeyValue

from brokermesh.control.v1 import control_pb2, control_pb2_grpc
from brokermesh.mesh import controls as mesh_controls
from brokermesh.mesh.controls import ControlsWatcher
from brokermesh.mesh.jetstream import CONTROLS
from brokermesh.platform.nats import LocalNats
from tests.processes import free_port

from .support import ControlPlaneProcess, operator

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
    *,
    first_sync_s: float = 5.0,
    resync_s: float = 30.0,
) -> AsyncIterator[ControlsWatcher]:
    watcher = ControlsWatcher(
        url, data_dir=data_dir, service=service, first_sync_s=first_sync_s, resync_s=resync_s
    )
    await watcher.start()
    try:
        yield watcher
    finally:
        await watcher.stop()


@pytest.fixture
def own_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNats]:
    """A NATS server of the test's own, with the platform's assets, that it may wipe."""
    server = LocalNats(
        tmp_path_factory.mktemp("own-nats"), port=free_port(), monitor_port=free_port()
    )
    try:
        server.start()
        asyncio.run(server.ensure_assets())
        yield server
    finally:
        server.stop()


async def _put(url: str, controls: control_pb2.TradingControls) -> int:
    """Store ``controls`` as the control plane would; the revision the bucket gave it."""
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value(mesh_controls.BUCKET)
        return int(await kv.put(mesh_controls.KEY, controls.SerializeToString()))
    finally:
        await nc.close()


def _controls(*, halted: bool, reason: str) -> control_pb2.TradingControls:
    return control_pb2.TradingControls(
        trading_halted=halted,
        mode=control_pb2.DEGRADATION_MODE_NORMAL,
        reason=reason,
        updated_by=operator(),
    )


def _stored(controls: control_pb2.TradingControls, revision: int) -> control_pb2.TradingControls:
    stored = control_pb2.TradingControls()
    stored.CopyFrom(controls)
    stored.revision = revision
    return stored


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


async def test_watcher_without_any_value_is_halted_until_it_knows_the_controls(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    async with running(_unreachable_url(), tmp_path, first_sync_s=0.3) as watcher:
        # start() waited for a first sync, but not for long.
        assert time.monotonic() - started < 2.0
        await asyncio.sleep(1.0)  # Failed connection attempts change nothing.

        assert watcher.halted
        assert not watcher.known
        assert watcher.mode == control_pb2.DEGRADATION_MODE_EMERGENCY
        assert watcher.current == mesh_controls.unknown_controls()
        assert "not yet known" in watcher.current.reason
    assert not (tmp_path / mesh_controls.LAST_KNOWN_GOOD_FILE).exists()


async def test_watcher_without_any_value_starts_on_the_buckets_value(
    nats_server: Any,
    stub: Stub,
    tmp_path: Path,
) -> None:
    resumed = await _set_halted(stub, False, "trading as usual")

    async with running(nats_server.url, tmp_path) as watcher:
        # start() waits for the first sync when nothing is known, so no wait_for here.
        assert watcher.known
        assert watcher.current == resumed
        assert not watcher.halted


async def test_key_never_written_syncs_as_the_defaults(
    own_nats: LocalNats,
    tmp_path: Path,
) -> None:
    async with running(own_nats.url, tmp_path) as watcher:
        assert watcher.synced
        assert watcher.current == mesh_controls.default_controls()
        assert not watcher.halted

    stored = (tmp_path / mesh_controls.LAST_KNOWN_GOOD_FILE).read_bytes()
    assert control_pb2.TradingControls.FromString(stored) == mesh_controls.default_controls()


async def test_watcher_ignores_an_unreadable_persisted_file(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (tmp_path / mesh_controls.LAST_KNOWN_GOOD_FILE).write_bytes(b"\xff\xff not protobuf")

    with caplog.at_level(logging.WARNING, logger="brokermesh.mesh.controls"):
        async with running(_unreachable_url(), tmp_path, first_sync_s=0) as watcher:
            assert watcher.current == mesh_controls.unknown_controls()
            assert watcher.halted

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


async def test_persisted_value_at_a_higher_revision_yields_to_the_bucket(
    nats_server: Any,
    stub: Stub,
    tmp_path: Path,
) -> None:
    # A value persisted before the bucket was rebuilt, its revisions starting again at 1.
    latest = (await stub.GetTradingControls(control_pb2.GetTradingControlsRequest())).controls
    future = control_pb2.TradingControls()
    future.CopyFrom(latest)
    future.trading_halted = not latest.trading_halted
    future.reason = "persisted at a revision the bucket has not reached"
    future.revision = latest.revision + 1000
    (tmp_path / mesh_controls.LAST_KNOWN_GOOD_FILE).write_bytes(future.SerializeToString())

    async with running(nats_server.url, tmp_path) as watcher:
        seen = await watcher.wait_for(lambda c: c.revision == latest.revision, SEEN_WITHIN_S)

    assert seen == latest


async def test_bucket_recreated_after_nats_lost_its_data_is_followed_including_a_halt(
    own_nats: LocalNats,
    tmp_path: Path,
) -> None:
    # Arrange: trading resumed at a revision above the new bucket's first ones.
    resumed = _controls(halted=False, reason="trading")
    for _ in range(4):
        await _put(own_nats.url, resumed)
    held = _stored(resumed, await _put(own_nats.url, resumed))
    assert held.revision == 5

    async with running(own_nats.url, tmp_path) as watcher:
        await watcher.wait_for(lambda c: c == held, SEEN_WITHIN_S)

        # Act: NATS comes back without its data; the first change is a halt, at revision 1.
        own_nats.stop()
        shutil.rmtree(own_nats.store_dir)
        own_nats.start()
        await own_nats.ensure_assets()
        halt = _controls(halted=True, reason="halt on the new bucket")
        halted = _stored(halt, await _put(own_nats.url, halt))

        # Assert
        assert halted.revision == 1
        seen = await watcher.wait_for(lambda c: c.trading_halted, SEEN_WITHIN_S)
        assert seen == halted

    # A restart starts from the halt it persisted, and the bucket agrees.
    async with running(own_nats.url, tmp_path, "restarted-service") as restarted:
        assert restarted.current == halted
        await asyncio.sleep(0.5)
        assert restarted.halted


async def test_restart_after_nats_lost_its_data_takes_the_new_buckets_halt(
    own_nats: LocalNats,
    tmp_path: Path,
) -> None:
    resumed = _controls(halted=False, reason="trading")
    for _ in range(3):
        held = _stored(resumed, await _put(own_nats.url, resumed))
    async with running(own_nats.url, tmp_path) as watcher:
        await watcher.wait_for(lambda c: c == held, SEEN_WITHIN_S)

    own_nats.stop()
    shutil.rmtree(own_nats.store_dir)
    own_nats.start()
    await own_nats.ensure_assets()
    halt = _controls(halted=True, reason="halt while the service was down")
    halted = _stored(halt, await _put(own_nats.url, halt))

    async with running(own_nats.url, tmp_path, "restarted-service") as restarted:
        seen = await restarted.wait_for(lambda c: c.trading_halted, SEEN_WITHIN_S)

    assert held.revision > halted.revision
    assert seen == halted


async def test_bucket_recreated_while_nats_stays_up_is_followed(
    own_nats: LocalNats,
    tmp_path: Path,
) -> None:
    resumed = _controls(halted=False, reason="trading")
    for _ in range(3):
        held = _stored(resumed, await _put(own_nats.url, resumed))

    async with running(own_nats.url, tmp_path, resync_s=0.5) as watcher:
        await watcher.wait_for(lambda c: c == held, SEEN_WITHIN_S)

        nc = await nats.connect(own_nats.url)
        try:
            js = nc.jetstream()
            await js.delete_key_value(mesh_controls.BUCKET)
            await js.create_key_value(CONTROLS)
        finally:
            await nc.close()
        halt = _controls(halted=True, reason="halt on the recreated bucket")
        halted = _stored(halt, await _put(own_nats.url, halt))

        seen = await watcher.wait_for(lambda c: c.trading_halted, SEEN_WITHIN_S)

    assert seen == halted


async def test_wait_for_times_out(tmp_path: Path) -> None:
    async with running(_unreachable_url(), tmp_path, first_sync_s=0) as watcher:
        with pytest.raises(TimeoutError):
            await watcher.wait_for(lambda c: not c.trading_halted, 0.2)


async def _wait_for_log(caplog: pytest.LogCaptureFixture, text: str) -> None:
    deadline = time.monotonic() + SEEN_WITHIN_S
    while not any(text in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, f"no log line containing {text!r}"
        await asyncio.sleep(0.05)
