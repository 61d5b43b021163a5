"""The platform's JetStream assets on a real nats-server: definitions, idempotence, drift."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType
from nats.js.errors import APIError, NotFoundError

from brokermesh.mesh.jetstream import (
    AUDIT_CHECKPOINTS_STREAM,
    CONTROL_AUDIT_STREAM,
    CONTROLS_BUCKET,
    ORDERS,
    ORDERS_STREAM,
    AssetMismatch,
    ensure_jetstream,
)
from brokermesh.platform.nats import LocalNats
from tests.processes import free_port


@pytest_asyncio.fixture
async def js(nats_server: Any) -> AsyncIterator[JetStreamContext]:
    """JetStream on the session's server, for tests that only read."""
    client = await nats.connect(nats_server.url)
    try:
        yield client.jetstream()
    finally:
        await client.close()


@pytest.fixture(scope="module")
def private_nats() -> Iterator[LocalNats]:
    """A server of this module's own: publishing test messages into the shared ORDERS
    stream, or bending its configuration, would disturb other packages' consumers."""
    folder = Path(tempfile.mkdtemp(prefix="brokermesh-js-"))
    server = LocalNats(folder, port=free_port(), monitor_port=free_port())
    try:
        server.start()
        asyncio.run(server.ensure_assets())
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest_asyncio.fixture
async def private_js(private_nats: LocalNats) -> AsyncIterator[JetStreamContext]:
    client = await nats.connect(private_nats.url)
    try:
        yield client.jetstream()
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_ensure_is_idempotent(js: JetStreamContext) -> None:
    # The fixture already ran it once; every further run changes nothing.
    first = await ensure_jetstream(js)
    second = await ensure_jetstream(js)

    expected = {
        ORDERS_STREAM: "unchanged",
        CONTROL_AUDIT_STREAM: "unchanged",
        AUDIT_CHECKPOINTS_STREAM: "unchanged",
        f"KV_{CONTROLS_BUCKET}": "unchanged",
    }
    assert first == expected
    assert second == expected


@pytest.mark.asyncio
async def test_orders_stream_has_the_platform_definition(js: JetStreamContext) -> None:
    config = (await js.stream_info(ORDERS_STREAM)).config

    assert sorted(config.subjects or []) == ["risk.decisions.>", "trading.orders.>"]
    assert config.duplicate_window == 600
    assert not config.max_age
    assert config.storage == StorageType.FILE
    assert config.retention == RetentionPolicy.LIMITS
    assert config.deny_delete and config.deny_purge


@pytest.mark.asyncio
async def test_control_audit_stream_and_controls_bucket(js: JetStreamContext) -> None:
    audit = (await js.stream_info(CONTROL_AUDIT_STREAM)).config
    kv = await js.key_value(CONTROLS_BUCKET)
    bucket = await kv.status()

    assert audit.subjects == ["control.audit.>"]
    assert audit.storage == StorageType.FILE
    assert audit.deny_delete and audit.deny_purge
    assert bucket.history == 64
    assert bucket.stream_info.config.storage == StorageType.FILE


@pytest.mark.asyncio
async def test_checkpoint_stream_keeps_every_checkpoint_and_refuses_deletion(
    js: JetStreamContext,
) -> None:
    config = (await js.stream_info(AUDIT_CHECKPOINTS_STREAM)).config

    assert config.subjects == ["audit.checkpoints"]
    assert config.storage == StorageType.FILE
    assert config.retention == RetentionPolicy.LIMITS
    assert not config.max_age
    assert config.deny_delete and config.deny_purge


@pytest.mark.asyncio
async def test_duplicate_window_drops_a_resent_message(private_js: JetStreamContext) -> None:
    subject = f"trading.orders.test.{uuid.uuid4().hex[:8]}"
    msg_id = uuid.uuid4().hex

    first = await private_js.publish(subject, b"accepted", headers={"Nats-Msg-Id": msg_id})
    again = await private_js.publish(subject, b"accepted", headers={"Nats-Msg-Id": msg_id})

    assert not first.duplicate
    assert again.duplicate
    assert again.seq == first.seq


@pytest.mark.asyncio
async def test_history_cannot_be_deleted_or_purged(private_js: JetStreamContext) -> None:
    ack = await private_js.publish(f"trading.orders.test.{uuid.uuid4().hex[:8]}", b"x")

    with pytest.raises(APIError):
        await private_js.delete_msg(ORDERS_STREAM, ack.seq)
    with pytest.raises(APIError):
        await private_js.purge_stream(ORDERS_STREAM)


@pytest.mark.asyncio
async def test_drift_is_corrected(private_js: JetStreamContext) -> None:
    await private_js.update_stream(ORDERS.evolve(max_age=24 * 60 * 60))
    kv_config = (await private_js.stream_info(f"KV_{CONTROLS_BUCKET}")).config
    await private_js.update_stream(kv_config.evolve(max_msgs_per_subject=8))

    outcomes = await ensure_jetstream(private_js)

    assert outcomes[ORDERS_STREAM] == "updated"
    assert outcomes[f"KV_{CONTROLS_BUCKET}"] == "updated"
    assert not (await private_js.stream_info(ORDERS_STREAM)).config.max_age
    assert (await (await private_js.key_value(CONTROLS_BUCKET)).status()).history == 64


@pytest.mark.asyncio
async def test_an_update_sends_the_replica_count_the_stream_has(
    private_nats: LocalNats, private_js: JetStreamContext
) -> None:
    # Arrange: a drifted stream, and a second client that sees the update request on the wire.
    await private_js.update_stream(ORDERS.evolve(max_age=24 * 60 * 60))
    replicas = (await private_js.stream_info(ORDERS_STREAM)).config.num_replicas
    observer = await nats.connect(private_nats.url)
    requests: list[dict[str, Any]] = []

    async def record(msg: Msg) -> None:
        requests.append(json.loads(msg.data))

    try:
        await observer.subscribe(f"$JS.API.STREAM.UPDATE.{ORDERS_STREAM}", cb=record)
        await observer.flush()

        # Act
        await ensure_jetstream(private_js)
        await observer.flush()
    finally:
        await observer.close()

    # Assert: left out, the server would take one replica, whatever the stream had.
    assert [request.get("num_replicas") for request in requests] == [replicas]


@pytest.mark.asyncio
async def test_verify_mode_reports_a_drifted_stream_and_leaves_it_as_it_is(
    private_js: JetStreamContext,
) -> None:
    await private_js.update_stream(ORDERS.evolve(max_age=24 * 60 * 60))
    try:
        with pytest.raises(AssetMismatch, match=r"stream ORDERS differs .* in max_age"):
            await ensure_jetstream(private_js, "verify")

        assert (await private_js.stream_info(ORDERS_STREAM)).config.max_age == 24 * 60 * 60
    finally:
        await ensure_jetstream(private_js)


@pytest.mark.asyncio
async def test_verify_mode_does_not_create_a_missing_stream(private_js: JetStreamContext) -> None:
    await private_js.delete_stream(AUDIT_CHECKPOINTS_STREAM)
    try:
        with pytest.raises(AssetMismatch, match="stream AUDIT_CHECKPOINTS does not exist"):
            await ensure_jetstream(private_js, "verify")

        with pytest.raises(NotFoundError):
            await private_js.stream_info(AUDIT_CHECKPOINTS_STREAM)
    finally:
        await ensure_jetstream(private_js)


@pytest.mark.asyncio
async def test_verify_mode_passes_assets_that_match(private_js: JetStreamContext) -> None:
    await ensure_jetstream(private_js)

    outcomes = await ensure_jetstream(private_js, "verify")

    assert set(outcomes.values()) == {"verified"}


@pytest.mark.asyncio
async def test_an_unknown_asset_mode_is_refused_by_name(private_js: JetStreamContext) -> None:
    with pytest.raises(ValueError, match="jetstream_assets='own' is not one of: manage, verify"):
        await ensure_jetstream(private_js, "own")


def test_server_syncs_every_write(nats_server: Any) -> None:
    with urllib.request.urlopen(f"{nats_server.monitor_url}/varz", timeout=5) as reply:
        varz = json.load(reply)

    assert varz["jetstream"]["config"]["sync_always"] is True
    assert nats_server.server.config_file.read_text().count("sync_interval: always") == 1
