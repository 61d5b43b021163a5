"""ControlsStore on a bucket of its own, on real JetStream: absent, deleted and corrupt keys,
and a change audited before it is made."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from brokermesh.control.v1 import control_pb2
from brokermesh.mesh import controls as mesh_controls
from brokermesh.mesh.errors import Unavailable
from brokermesh.services.control_plane.service import ControlPlaneSettings, ControlsStore

from .support import audit_records, operator

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


async def test_change_is_audited_as_intended_before_the_value_is_written(
    nats_client: NatsClient,
    scratch_kv: KeyValue,
) -> None:
    store = _store(nats_client, scratch_kv)

    after = await store.change(operator("ops-order"), "halt, audited first", _halt)

    records = await audit_records(nats_client.jetstream(), after.change_id)
    (entry,) = await scratch_kv.history(mesh_controls.KEY)
    assert [(r.outcome, msg_id) for r, msg_id, _ in records] == [
        (control_pb2.CHANGE_OUTCOME_INTENDED, after.change_id),
        (control_pb2.CHANGE_OUTCOME_APPLIED, f"{after.change_id}.outcome"),
    ]
    (intent, _, intended_at), (outcome, _, applied_at) = records
    assert entry.created is not None
    assert intended_at <= entry.created.timestamp() <= applied_at
    # The intent names the value before its revision is known; the outcome carries it.
    assert intent.after.revision == 0
    assert intent.after.trading_halted
    assert outcome.after == after
    assert mesh_controls.decode_controls(entry.value or b"", entry.revision) == after


async def test_change_whose_audit_record_cannot_be_stored_is_not_made(
    nats_client: NatsClient,
    scratch_kv: KeyValue,
) -> None:
    # A stream that does not hold the audit subjects refuses every record.
    store = ControlsStore(
        nats_client.jetstream(),
        scratch_kv,
        ControlPlaneSettings(audit_attempts=2, nats_timeout_s=0.5),
        audit_stream="NOT_THE_AUDIT_STREAM",
    )

    with pytest.raises(Unavailable, match="the controls were not changed"):
        await store.change(operator(), "halt that cannot be audited", _halt)

    assert await store.read() == (mesh_controls.default_controls(), 0)


async def test_lost_compare_and_set_is_recorded_as_not_applied_and_retried(
    nats_server: Any,
    nats_client: NatsClient,
    scratch_kv: KeyValue,
) -> None:
    store = _store(nats_client, scratch_kv)
    bucket = (await scratch_kv.status()).bucket
    interfered: list[int] = []

    def halt_after_another_write(controls: control_pb2.TradingControls) -> None:
        # The first attempt has read the key; another writer changes it before the write.
        if not interfered:
            interfered.append(_put_from_another_client(nats_server.url, bucket, b"other"))
        controls.trading_halted = True

    # The other writer's value is not valid controls: the store reads past it, as watchers do.
    after = await store.change(operator(), "halt racing another writer", halt_after_another_write)

    history = await store.history(10)
    won, lost = history[0], history[1]
    assert won.change_id == after.change_id
    assert won.outcome == control_pb2.CHANGE_OUTCOME_APPLIED
    assert after.revision > interfered[0]
    assert lost.outcome == control_pb2.CHANGE_OUTCOME_NOT_APPLIED
    assert lost.outcome_detail == "the controls changed after revision 0 was read"
    assert lost.change_id != after.change_id
    records = await audit_records(nats_client.jetstream(), lost.change_id)
    assert [r.outcome for r, _, _ in records] == [
        control_pb2.CHANGE_OUTCOME_INTENDED,
        control_pb2.CHANGE_OUTCOME_NOT_APPLIED,
    ]


def _put_from_another_client(nats_url: str, bucket: str, value: bytes) -> int:
    """Write ``value`` under the key over a connection of its own, from a thread of its own,
    while the caller's event loop waits: a second writer at an exact moment."""
    revisions: list[int] = []

    async def put() -> None:
        other = await nats.connect(nats_url)
        try:
            other_kv = await other.jetstream().key_value(bucket)
            revisions.append(await other_kv.put(mesh_controls.KEY, value))
        finally:
            await other.close()

    thread = threading.Thread(target=asyncio.run, args=(put(),))
    thread.start()
    thread.join(timeout=10)
    return revisions[0]
