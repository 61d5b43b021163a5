"""The ledger's signed checkpoints on a NATS server of their own, and what the audit makes of it."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.js.client import JetStreamContext
from nats.js.errors import APIError

from brokermesh.domain import audit, eventstore, states
from brokermesh.domain.eventstore import chain_hash
from brokermesh.events.v1.order_events_pb2 import OrderEvent
from brokermesh.mesh import keys, server
from brokermesh.mesh.errors import ConfigError
from brokermesh.mesh.jetstream import AUDIT_CHECKPOINTS_STREAM, CHECKPOINT_SUBJECT
from brokermesh.platform.nats import LocalNats
from brokermesh.services.ledger import anchors, checkpoints
from brokermesh.services.ledger.checkpoints import Checkpoint, Checkpointer, Head
from brokermesh.services.ledger.manifest import MANIFEST
from brokermesh.services.ledger.service import LedgerApp, LedgerSettings

from .support import append_order, as_owner, drain, lifecycle, new_order

pytestmark = pytest.mark.timeout(60)

_PATH = (states.NEW, states.VALIDATED, states.RISK_APPROVED)

_ROWS = """
SELECT position, event_id::text AS event_id, stream_id, stream_version, event_type,
       event_version, payload, prev_hash, hash
FROM order_events WHERE stream_id = $1 ORDER BY stream_version
"""


async def _published(js: JetStreamContext) -> list[Checkpoint]:
    """Every checkpoint on the stream, in order."""
    info = await js.stream_info(AUDIT_CHECKPOINTS_STREAM)
    found = []
    for seq in range(1, info.state.last_seq + 1):
        message = await js.get_msg(AUDIT_CHECKPOINTS_STREAM, seq)
        found.append(checkpoints.parse(message.data or b""))
    return found


async def _until(check: Callable[[], Awaitable[bool]], timeout_s: float = 15.0) -> None:
    """Poll ``check`` until it holds; neither JetStream nor a table offers a wait."""
    async with asyncio.timeout(timeout_s):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)


async def _messages(js: JetStreamContext, stream: str) -> bool:
    return bool((await js.stream_info(stream)).state.messages)


async def _none_unpublished(conn: asyncpg.Connection) -> bool:
    return not await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")


def _heads(checkpoint: Checkpoint) -> list[tuple[str, int]]:
    return [(head.stream_id, head.version) for head in checkpoint.heads]


async def _record(js: JetStreamContext, key: Ed25519PrivateKey) -> audit.CheckpointRecord:
    return await anchors.checkpoint_record(js, key.public_key())


async def _publish_raw(js: JetStreamContext, body: bytes, signature: str) -> None:
    await js.publish(
        CHECKPOINT_SUBJECT,
        body,
        stream=AUDIT_CHECKPOINTS_STREAM,
        headers={checkpoints.SIGNATURE_HEADER: signature},
    )


# -- taking checkpoints ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_first_checkpoint_starts_the_chain_even_for_an_empty_store(
    checkpointer: Checkpointer, bus: JetStreamContext, key: Ed25519PrivateKey
) -> None:
    published = await checkpointer.checkpoint()

    record = await _record(bus, key)
    assert published == 1
    assert (record.count, dict(record.heads), list(record.breaks)) == (1, {}, [])
    assert (await _published(bus))[0].prev == checkpoints.GENESIS


@pytest.mark.asyncio
async def test_each_checkpoint_records_the_streams_changed_since_the_last_and_chains_onto_it(
    own_conn: asyncpg.Connection, checkpointer: Checkpointer, bus: JetStreamContext
) -> None:
    # Arrange: one order, a checkpoint, then that order goes on and a second one starts.
    first, second = new_order(), new_order()
    head = await append_order(own_conn, first, _PATH)
    await checkpointer.checkpoint()
    stored = await eventstore.read_stream(own_conn, first.order_id)
    async with own_conn.transaction():
        await eventstore.append(
            own_conn,
            eventstore.head_of(stored),
            lifecycle(first, (states.ROUTED,), first_version=len(head) + 1),
        )
    await append_order(own_conn, second, _PATH)

    # Act
    published = await checkpointer.checkpoint()

    # Assert
    taken = await _published(bus)
    extended = await eventstore.read_stream(own_conn, first.order_id)
    assert published == 1
    assert _heads(taken[0]) == [(first.order_id, 3)]
    assert sorted(_heads(taken[1])) == sorted([(first.order_id, 4), (second.order_id, 3)])
    assert Head(first.order_id, 4, extended[-1].hash) in taken[1].heads
    assert [c.number for c in taken] == [1, 2]
    assert taken[1].prev == checkpoints.digest(taken[0].body())


@pytest.mark.asyncio
async def test_a_round_with_nothing_new_publishes_nothing(
    own_conn: asyncpg.Connection, checkpointer: Checkpointer, bus: JetStreamContext
) -> None:
    await append_order(own_conn, new_order(), _PATH)
    await checkpointer.checkpoint()

    published = await checkpointer.checkpoint()

    assert published == 0
    assert len(await _published(bus)) == 1


@pytest.mark.asyncio
async def test_more_heads_than_one_checkpoint_holds_go_out_in_several_that_chain(
    own_pool: asyncpg.Pool,
    own_conn: asyncpg.Connection,
    bus: JetStreamContext,
    key: Ed25519PrivateKey,
) -> None:
    small = Checkpointer(own_pool, bus, key, interval_s=3600, max_heads=2)
    orders = [new_order() for _ in range(3)]
    for order in orders:
        await append_order(own_conn, order, _PATH)

    published = await small.checkpoint()

    taken = await _published(bus)
    record = await _record(bus, key)
    assert published == 2
    assert [len(c.heads) for c in taken] == [2, 1]
    # Only the last of a round moves the cursor, so a crash between them rescans.
    assert taken[0].cursor == 0 < taken[1].cursor
    assert list(record.breaks) == []
    assert set(record.heads) == {(order.order_id, 3) for order in orders}


@pytest.mark.asyncio
async def test_a_transaction_that_commits_late_is_in_the_next_checkpoint(
    own_db: Any, own_conn: asyncpg.Connection, checkpointer: Checkpointer, bus: JetStreamContext
) -> None:
    late, early = new_order(), new_order()
    holder = await asyncpg.connect(own_db.app_dsn)
    try:
        # The late transaction takes the lower position and stays open over a checkpoint...
        held = holder.transaction()
        await held.start()
        await eventstore.append(holder, eventstore.StreamHead(), lifecycle(late, (states.NEW,)))
        await append_order(own_conn, early, (states.NEW,))
        await checkpointer.checkpoint()
        # ...and commits only afterwards.
        await held.commit()
    finally:
        await holder.close()

    await checkpointer.checkpoint()

    taken = await _published(bus)
    assert [_heads(c) for c in taken] == [[(early.order_id, 1)], [(late.order_id, 1)]]


@pytest.mark.asyncio
async def test_a_restarted_checkpointer_chains_onto_the_last_checkpoint(
    own_pool: asyncpg.Pool,
    own_conn: asyncpg.Connection,
    checkpointer: Checkpointer,
    bus: JetStreamContext,
    key: Ed25519PrivateKey,
) -> None:
    order = new_order()
    await append_order(own_conn, order, _PATH)
    await checkpointer.checkpoint()
    restarted = Checkpointer(own_pool, bus, key, interval_s=3600)
    await append_order(own_conn, new_order(), _PATH)

    await restarted.checkpoint()

    record = await _record(bus, key)
    assert (record.count, list(record.breaks)) == (2, [])
    assert (order.order_id, 3) in record.heads


@pytest.mark.asyncio
async def test_two_checkpointers_never_fork_the_chain(
    own_pool: asyncpg.Pool,
    own_conn: asyncpg.Connection,
    checkpointer: Checkpointer,
    bus: JetStreamContext,
    key: Ed25519PrivateKey,
) -> None:
    # Arrange: both have read checkpoint 1 as the tip; the first then moves on.
    rival = Checkpointer(own_pool, bus, key, interval_s=3600)
    await checkpointer.checkpoint()
    await rival.checkpoint()
    await append_order(own_conn, new_order(), _PATH)
    await checkpointer.checkpoint()

    # Act: the rival's chaining onto checkpoint 1 is refused; its next attempt re-reads the tip.
    with pytest.raises(APIError):
        await rival.checkpoint()
    later = new_order()
    await append_order(own_conn, later, _PATH)
    await rival.checkpoint()

    # Assert: one chain, and the rival's checkpoint holds only what the first had not covered.
    taken = await _published(bus)
    assert [c.number for c in taken] == [1, 2, 3]
    assert _heads(taken[2]) == [(later.order_id, 3)]
    assert list((await _record(bus, key)).breaks) == []


def test_the_signing_key_is_generated_once_for_the_owner_alone_with_its_public_half_beside_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys" / checkpoints.PRIVATE_KEY_FILE

    first = checkpoints.ensure_signing_key(path)
    second = checkpoints.ensure_signing_key(path)

    public = keys.load_public_key(checkpoints.public_key_path(path))
    assert checkpoints.key_id(first.public_key()) == checkpoints.key_id(second.public_key())
    assert checkpoints.key_id(public) == checkpoints.key_id(first.public_key())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_the_ledger_keeps_its_checkpoint_key_in_its_data_dir_unless_told_otherwise(
    tmp_path: Path,
) -> None:
    default = LedgerSettings(data_dir=tmp_path)
    mounted = LedgerSettings(data_dir=tmp_path, checkpoint_key_path=Path("/etc/ledger/key.pem"))

    assert default.checkpoint_key_path == tmp_path / "keys" / "checkpoint-signing.pem"
    assert mounted.checkpoint_key_path == Path("/etc/ledger/key.pem")


def test_an_unknown_jetstream_assets_mode_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="jetstream_assets='own' is not one of") as raised:
        LedgerSettings(jetstream_assets="own")

    assert raised.value.field == "jetstream_assets"


@pytest.mark.asyncio
async def test_the_ledger_checkpoints_when_it_starts_and_once_more_when_it_stops(
    own_db: Any,
    own_conn: asyncpg.Connection,
    private_nats: LocalNats,
    bus: JetStreamContext,
    tmp_path: Path,
) -> None:
    # Arrange: a ledger whose interval is far longer than the test.
    settings = LedgerSettings(
        port=0,
        database_url=own_db.app_dsn,
        nats_url=private_nats.url,
        data_dir=tmp_path,
        relay_poll_interval_ms=100,
        checkpoint_interval_ms=3_600_000,
    )
    app = LedgerApp(settings)
    running = await server.start(MANIFEST, settings, app)
    order = new_order()
    try:
        await _until(lambda: _messages(bus, AUDIT_CHECKPOINTS_STREAM))
        await append_order(own_conn, order, _PATH)
        await _until(lambda: _none_unpublished(own_conn))

    # Act
    finally:
        await server.stop(running, app, grace_s=1)

    # Assert: the start's checkpoint was empty; the one at shutdown holds the order.
    key = keys.load_public_key(checkpoints.public_key_path(settings.checkpoint_key_path))
    record = await anchors.checkpoint_record(bus, key)
    assert (record.count, list(record.breaks)) == (2, [])
    assert set(record.heads) == {(order.order_id, 3)}


# -- what the audit makes of them ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_deleting_a_streams_last_event_is_caught_by_the_checkpoint(
    own_db: Any,
    own_conn: asyncpg.Connection,
    checkpointer: Checkpointer,
    bus: JetStreamContext,
    key: Ed25519PrivateKey,
) -> None:
    # Arrange: the order's last event deleted by the superuser, the trigger off.
    order = new_order()
    await append_order(own_conn, order, _PATH)
    await checkpointer.checkpoint()
    last = (await own_conn.fetch(_ROWS, order.order_id))[-1]
    await as_owner(
        own_db.owner_dsn,
        ("DELETE FROM outbox WHERE event_id = $1::uuid", (last["event_id"],)),
        ("DELETE FROM order_events WHERE position = $1", (last["position"],)),
    )

    # Act
    chains_only = await audit.verify(own_conn)
    report = await audit.verify(own_conn, checkpoints=await _record(bus, key))

    # Assert: the chain alone cannot tell.
    assert chains_only.ok
    assert report.breaks == [
        audit.Break(
            order.order_id,
            3,
            0,
            "the stream ends at version 2, but checkpoint 1 recorded version 3",
        )
    ]


@pytest.mark.asyncio
async def test_deleting_a_whole_stream_is_caught_by_the_checkpoint(
    own_db: Any,
    own_conn: asyncpg.Connection,
    checkpointer: Checkpointer,
    bus: JetStreamContext,
    key: Ed25519PrivateKey,
) -> None:
    kept, deleted = new_order(), new_order()
    await append_order(own_conn, kept, _PATH)
    await append_order(own_conn, deleted, _PATH)
    await checkpointer.checkpoint()
    await as_owner(
        own_db.owner_dsn,
        (
            "DELETE FROM outbox WHERE event_id IN "
            "(SELECT event_id FROM order_events WHERE stream_id = $1)",
            (deleted.order_id,),
        ),
        ("DELETE FROM order_events WHERE stream_id = $1", (deleted.order_id,)),
    )

    chains_only = await audit.verify(own_conn)
    report = await audit.verify(own_conn, checkpoints=await _record(bus, key))

    assert chains_only.ok
    assert [(b.stream_id, b.problem) for b in report.breaks] == [
        (
            deleted.order_id,
            "the stream is missing from the store; checkpoint 1 recorded it at version 3",
        )
    ]
    assert report.checkpointed == 1


@pytest.mark.asyncio
async def test_deleting_an_event_and_recomputing_the_chain_after_it_is_caught_by_the_checkpoint(
    own_db: Any,
    own_conn: asyncpg.Connection,
    checkpointer: Checkpointer,
    bus: JetStreamContext,
    key: Ed25519PrivateKey,
) -> None:
    # Arrange: version 2 deleted; version 3 renumbered to 2, its payload and hashes redone.
    order = new_order()
    await append_order(own_conn, order, _PATH)
    await checkpointer.checkpoint()
    first, second, third = await own_conn.fetch(_ROWS, order.order_id)
    moved = OrderEvent.FromString(bytes(third["payload"]))
    moved.stream_version = 2
    payload = moved.SerializeToString(deterministic=True)
    new_hash = chain_hash(
        bytes(first["hash"]),
        third["event_id"],
        order.order_id,
        2,
        third["event_type"],
        third["event_version"],
        payload,
    )
    await as_owner(
        own_db.owner_dsn,
        ("DELETE FROM outbox WHERE event_id = $1::uuid", (second["event_id"],)),
        ("DELETE FROM order_events WHERE position = $1", (second["position"],)),
        (
            "UPDATE order_events SET stream_version = 2, payload = $1, prev_hash = $2, "
            "hash = $3 WHERE position = $4",
            (payload, bytes(first["hash"]), new_hash, third["position"]),
        ),
    )

    chains_only = await audit.verify(own_conn)
    report = await audit.verify(own_conn, checkpoints=await _record(bus, key))

    assert chains_only.ok
    assert [(b.stream_id, b.problem) for b in report.breaks] == [
        (order.order_id, "the stream ends at version 2, but checkpoint 1 recorded version 3")
    ]


@pytest.mark.asyncio
async def test_a_checkpoint_signed_with_another_key_is_a_break_and_vouches_for_nothing(
    own_conn: asyncpg.Connection,
    checkpointer: Checkpointer,
    bus: JetStreamContext,
    key: Ed25519PrivateKey,
) -> None:
    # Arrange: a genuine checkpoint, then a forged one for a stream that never existed.
    await checkpointer.checkpoint()
    genuine = (await _published(bus))[0]
    forger = Ed25519PrivateKey.generate()
    forged = Checkpoint(
        number=2,
        prev=checkpoints.digest(genuine.body()),
        cursor=0,
        taken_at=genuine.taken_at,
        key_id=checkpoints.key_id(key.public_key()),
        heads=(Head("ORD-20260316-99999999", 1, bytes(32)),),
    )
    await _publish_raw(bus, forged.body(), checkpoints.signature_of(forger, forged.body()))

    # Act
    record = await _record(bus, key)
    report = await audit.verify(own_conn, checkpoints=record)

    # Assert
    problem = (
        "checkpoint 2: the signature does not verify with the ledger's key "
        f"{checkpoints.key_id(key.public_key())}"
    )
    assert [b.problem for b in record.breaks] == [problem]
    assert dict(record.heads) == {}
    assert [b.problem for b in report.breaks] == [problem]


@pytest.mark.asyncio
async def test_a_checkpoint_altered_after_signing_is_a_break(
    own_conn: asyncpg.Connection,
    checkpointer: Checkpointer,
    bus: JetStreamContext,
    key: Ed25519PrivateKey,
) -> None:
    order = new_order()
    await append_order(own_conn, order, _PATH)
    genuine = Checkpoint(
        number=1,
        prev=checkpoints.GENESIS,
        cursor=0,
        taken_at="2026-03-16T14:30:00.000+00:00",
        key_id=checkpoints.key_id(key.public_key()),
        heads=(Head(order.order_id, 3, bytes(32)),),
    )
    altered = genuine.body().replace(b'"number":1', b'"number": 1')
    await _publish_raw(bus, altered, checkpoints.signature_of(key, genuine.body()))

    record = await _record(bus, key)

    assert [b.problem for b in record.breaks] == [
        "checkpoint 1: the signature does not verify with the ledger's key "
        f"{checkpoints.key_id(key.public_key())}"
    ]
    assert dict(record.heads) == {}


@pytest.mark.asyncio
async def test_a_signed_checkpoint_that_does_not_chain_onto_the_one_before_is_a_break(
    checkpointer: Checkpointer, bus: JetStreamContext, key: Ed25519PrivateKey
) -> None:
    await checkpointer.checkpoint()
    unchained = Checkpoint(
        number=2,
        prev=checkpoints.GENESIS,
        cursor=0,
        taken_at="2026-03-16T14:30:00.000+00:00",
        key_id=checkpoints.key_id(key.public_key()),
        heads=(),
    )
    await _publish_raw(bus, unchained.body(), checkpoints.signature_of(key, unchained.body()))

    record = await _record(bus, key)

    assert [b.problem for b in record.breaks] == [
        "checkpoint 2: it does not chain onto checkpoint 1"
    ]


@pytest.mark.asyncio
async def test_no_checkpoints_while_the_store_has_published_events_is_a_break(
    own_conn: asyncpg.Connection, bus: JetStreamContext, key: Ed25519PrivateKey
) -> None:
    await append_order(own_conn, new_order(), _PATH)
    await drain(own_conn, bus)
    await bus.delete_stream(AUDIT_CHECKPOINTS_STREAM)

    report = await audit.verify(own_conn, checkpoints=await _record(bus, key))

    assert [b.problem for b in report.breaks] == [
        "the AUDIT_CHECKPOINTS stream on JetStream does not exist, yet the store has 3 events "
        "marked published: the checkpoints were deleted or the ledger never took any"
    ]
