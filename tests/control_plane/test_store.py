"""ControlsStore on a bucket of its own: absent, deleted and corrupt keys, on real JetStream."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from brokermesh.control.v1 import control_pb2
from brokermesh.mesh import controls as mesh_controls
from brokermesh.services.control_plane.service import ControlPlaneSettings, ControlsStore

from .support import operator

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


@pytest_asyncio.fixture
async def scratch_kv(nats_client: NatsClient) -> AsyncIterator[KeyValue]:
    """A fresh bucket shaped like ``controls``, deleted afterwards."""
    js = nats_client.jetstream()
    bucket = f"controls-test-{uuid.uuid4().hex[:12]}"
    kv = await js.create_key_value(
        KeyValueConfig(bucket=bucket, history=64, storage=StorageType.FILE)
    )
    try:
        yield kv
    finally:
        await js.delete_key_value(bucket)


def _store(nats_client: NatsClient, kv: KeyValue) -> ControlsStore:
    return ControlsStore(nats_client.jetstream(), kv, ControlPlaneSettings())


def _halt(controls: control_pb2.TradingControls) -> None:
    controls.trading_halted = True


def _emergency(controls: control_pb2.TradingControls) -> None:
    controls.mode = control_pb2.DEGRADATION_MODE_EMERGENCY


async def test_absent_key_reads_as_defaults_and_first_change_creates_it(
    nats_client: NatsClient,
    scratch_kv: KeyValue,
) -> None:
    store = _store(nats_client, scratch_kv)

    assert await store.read() == (mesh_controls.default_controls(), 0)

    after = await store.change(operator("ops-store"), "first ever halt", _halt)
    assert after.trading_halted
    assert after.mode == control_pb2.DEGRADATION_MODE_NORMAL
    assert await store.read() == (after, after.revision)


async def test_changes_build_on_the_current_value(
    nats_client: NatsClient,
    scratch_kv: KeyValue,
) -> None:
    store = _store(nats_client, scratch_kv)

    await store.change(operator(), "halt", _halt)
    after = await store.change(operator(), "emergency", _emergency)

    assert after.trading_halted
    assert after.mode == control_pb2.DEGRADATION_MODE_EMERGENCY


async def test_deleted_or_corrupt_key_reads_as_the_newest_valid_value(
    nats_client: NatsClient,
    scratch_kv: KeyValue,
) -> None:
    store = _store(nats_client, scratch_kv)
    halted = await store.change(operator(), "halt", _halt)

    corrupt_revision = await scratch_kv.put(mesh_controls.KEY, b"\xff not controls")
    assert await store.read() == (halted, corrupt_revision)

    await scratch_kv.delete(mesh_controls.KEY)
    controls, tombstone_revision = await store.read()
    assert controls == halted
    assert tombstone_revision > corrupt_revision

    # A change after the deletion names the tombstone's revision and so succeeds.
    after = await store.change(operator(), "emergency after delete", _emergency)
    assert after.trading_halted
    assert after.revision > tombstone_revision
