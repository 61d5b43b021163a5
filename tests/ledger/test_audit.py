"""``brokermesh audit verify`` on an intact event store and on one whose history was edited."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from nats.js.client import JetStreamContext

from brokermesh.cli import audit as audit_cli
from brokermesh.domain import audit, states
from brokermesh.domain.eventstore import chain_hash
from brokermesh.events.v1.order_events_pb2 import OrderEvent
from brokermesh.mesh.jetstream import ORDERS, ORDERS_STREAM, ensure_jetstream
from brokermesh.platform.nats import LocalNats
from brokermesh.services.ledger import anchors, subjects
from brokermesh.services.ledger.checkpoints import Checkpointer

from .support import append_order, as_owner, drain, new_order

pytestmark = pytest.mark.timeout(60)

_PATH = (states.NEW, states.VALIDATED, states.RISK_APPROVED)
_DISABLE = "ALTER TABLE order_events DISABLE TRIGGER order_events_append_only"
_ENABLE = "ALTER TABLE order_events ENABLE TRIGGER order_events_append_only"
_FLIP_ONE_BYTE = (
    "UPDATE order_events SET payload = set_byte(payload, 7, get_byte(payload, 7) # 1) "
    "WHERE position = $1"
)


async def _second_event_position(conn: asyncpg.Connection, order_id: str) -> int:
    position = await conn.fetchval(
        "SELECT position FROM order_events WHERE stream_id = $1 AND stream_version = 2", order_id
    )
    return int(position)


async def _verify(dsn: str) -> int:
    # The command runs its own event loop, so it gets a thread of its own here.
    args = argparse.Namespace(database_url=dsn, nats_url=None, chains_only=True)
    return await asyncio.to_thread(audit_cli.main, args)


@pytest.mark.asyncio
async def test_audit_verify_passes_on_an_intact_store(
    own_db: Any,
    own_conn: asyncpg.Connection,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for _ in range(3):
        await append_order(own_conn, new_order(), _PATH)

    code = await _verify(own_db.app_dsn)

    out = capsys.readouterr().out
    assert code == 0, out
    assert "checked 3 streams, 9 events" in out
    assert "hash chain intact" in out
    assert "BROKEN" not in out


@pytest.mark.asyncio
async def test_audit_verify_reports_the_row_whose_payload_was_edited(
    own_db: Any,
    own_conn: asyncpg.Connection,
    capsys: pytest.CaptureFixture[str],
) -> None:
    order = new_order()
    await append_order(own_conn, new_order(), _PATH)
    await append_order(own_conn, order, _PATH)
    position = await _second_event_position(own_conn, order.order_id)
    owner = await asyncpg.connect(own_db.owner_dsn)
    try:
        await owner.execute(_DISABLE)
        await owner.execute(_FLIP_ONE_BYTE, position)
        await owner.execute(_ENABLE)
    finally:
        await owner.close()

    code = await _verify(own_db.app_dsn)

    out = capsys.readouterr().out
    broken = [line for line in out.splitlines() if line.startswith("BROKEN")]
    assert code == 1, out
    assert broken == [
        f"BROKEN stream {order.order_id} version 2 position {position}: "
        "hash does not match the event's contents"
    ]
    assert "1 break(s) found" in out


@pytest.mark.asyncio
async def test_the_append_only_trigger_refuses_the_edit_while_enabled(
    own_db: Any,
    own_conn: asyncpg.Connection,
) -> None:
    order = new_order()
    await append_order(own_conn, order, _PATH)
    position = await _second_event_position(own_conn, order.order_id)
    owner = await asyncpg.connect(own_db.owner_dsn)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await owner.execute(_FLIP_ONE_BYTE, position)
    finally:
        await owner.close()


@pytest.mark.asyncio
async def test_audit_verify_of_an_unreachable_database_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = await _verify("postgresql://brokermesh@127.0.0.1:1/brokermesh")

    assert code == 2
    assert "audit verify failed" in capsys.readouterr().err


@pytest.mark.asyncio
async def test_audit_verify_without_its_nats_server_exits_2_and_offers_chains_only(
    own_db: Any, public_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.Namespace(
        database_url=own_db.app_dsn,
        nats_url="nats://127.0.0.1:1",
        checkpoint_key=public_key,
        chains_only=False,
    )

    code = await asyncio.to_thread(audit_cli.main, args)

    err = capsys.readouterr().err
    assert code == 2
    assert "cannot read the published events from NATS at nats://127.0.0.1:1" in err
    assert "--chains-only" in err


def test_audit_register_adds_audit_verify() -> None:
    parser = argparse.ArgumentParser()
    audit_cli.register(parser.add_subparsers())

    args = parser.parse_args(["audit", "verify", "--database-url", "postgresql://x@h/db"])

    assert args.func is audit_cli.main
    assert args.database_url == "postgresql://x@h/db"
    assert (args.nats_url, args.checkpoint_key, args.chains_only) == (None, None, False)


@pytest.mark.asyncio
async def test_audit_verify_without_the_ledgers_public_key_exits_2_naming_the_path(
    own_db: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.pub.pem"
    args = argparse.Namespace(
        database_url=own_db.app_dsn,
        nats_url="nats://127.0.0.1:1",
        checkpoint_key=missing,
        chains_only=False,
    )

    code = await asyncio.to_thread(audit_cli.main, args)

    err = capsys.readouterr().err
    assert code == 2
    assert f"cannot read the ledger's public checkpoint key {missing}" in err
    assert "--checkpoint-key" in err


# --- the published copies on JetStream as a second witness ------------------------------

_LAST_ROW = """
SELECT position, event_id::text AS event_id, stream_id, stream_version, event_type,
       event_version, payload, prev_hash
FROM order_events WHERE stream_id = $1 ORDER BY stream_version DESC LIMIT 1
"""


async def _copies_as_published(conn: asyncpg.Connection) -> audit.PublishedCopies:
    """What the relay would have published of every event now in the store."""
    rows = await conn.fetch(
        "SELECT event_id::text, stream_id, stream_version, payload FROM order_events"
    )
    return audit.PublishedCopies(
        {
            row["event_id"]: audit.PublishedCopy(
                row["stream_id"],
                row["stream_version"],
                audit.payload_digest(bytes(row["payload"])),
            )
            for row in rows
        }
    )


async def _as_owner(own_db: Any, *statements: tuple[str, tuple[Any, ...]]) -> None:
    await as_owner(own_db.owner_dsn, *statements)


async def _forge_last_event(own_db: Any, conn: asyncpg.Connection, order_id: str) -> OrderEvent:
    """Rewrite the stream's last event to a larger quantity, its hash recomputed; returns it."""
    row = await conn.fetchrow(_LAST_ROW, order_id)
    forged = OrderEvent.FromString(bytes(row["payload"]))
    forged.quantity += 900
    payload = forged.SerializeToString(deterministic=True)
    new_hash = chain_hash(
        bytes(row["prev_hash"]),
        row["event_id"],
        row["stream_id"],
        row["stream_version"],
        row["event_type"],
        row["event_version"],
        payload,
    )
    await _as_owner(
        own_db,
        (
            "UPDATE order_events SET payload = $1, hash = $2 WHERE position = $3",
            (payload, new_hash, row["position"]),
        ),
    )
    return forged


@pytest.mark.asyncio
async def test_a_last_event_forged_with_its_hash_recomputed_is_caught_by_its_published_copy(
    own_db: Any, own_conn: asyncpg.Connection
) -> None:
    # Arrange: the order's last event rewritten to a larger quantity, its hash recomputed.
    order = new_order()
    await append_order(own_conn, order, _PATH)
    published = await _copies_as_published(own_conn)
    row = await own_conn.fetchrow(_LAST_ROW, order.order_id)
    await _forge_last_event(own_db, own_conn, order.order_id)

    # Act
    chains_only = await audit.verify(own_conn)
    against_copies = await audit.verify(own_conn, published)

    # Assert: the chain alone cannot tell; the published copy can.
    assert chains_only.ok
    assert against_copies.anchored == len(_PATH)
    assert against_copies.breaks == [
        audit.Break(
            order.order_id,
            len(_PATH),
            row["position"],
            "payload differs from the copy published on JetStream",
        )
    ]


@pytest.mark.asyncio
async def test_a_deleted_last_event_is_caught_by_its_published_copy(
    own_db: Any, own_conn: asyncpg.Connection
) -> None:
    order = new_order()
    await append_order(own_conn, order, _PATH)
    published = await _copies_as_published(own_conn)
    row = await own_conn.fetchrow(_LAST_ROW, order.order_id)
    await _as_owner(
        own_db,
        ("DELETE FROM outbox WHERE event_id = $1::uuid", (row["event_id"],)),
        ("DELETE FROM order_events WHERE position = $1", (row["position"],)),
    )

    chains_only = await audit.verify(own_conn)
    against_copies = await audit.verify(own_conn, published)

    assert chains_only.ok
    assert [(b.stream_id, b.stream_version, b.problem) for b in against_copies.breaks] == [
        (
            order.order_id,
            len(_PATH),
            f"event {row['event_id']} was published on JetStream but is missing from the store",
        )
    ]


@pytest.mark.asyncio
async def test_published_copies_reads_back_what_the_relay_published(
    own_conn: asyncpg.Connection, js: JetStreamContext
) -> None:
    # Arrange: one order's events through the real relay onto JetStream.
    order = new_order()
    await append_order(own_conn, order, _PATH)
    await drain(own_conn, js)
    expected = await _copies_as_published(own_conn)

    # Act
    copies = await anchors.published_copies(js)

    # Assert: other tests publish to the same server, so ours are a subset.
    assert {event_id: copies.copies.get(event_id) for event_id in expected.copies} == dict(
        expected.copies
    )


# --- the whole check against a JetStream of the test's own ---------------------------------


async def _verify_with_witnesses(dsn: str, nats: LocalNats, public_key: Path) -> int:
    args = argparse.Namespace(
        database_url=dsn, nats_url=nats.url, checkpoint_key=public_key, chains_only=False
    )
    return await asyncio.to_thread(audit_cli.main, args)


async def _published_orders(
    conn: asyncpg.Connection, bus: JetStreamContext, checkpointer: Checkpointer, count: int
) -> list[str]:
    """``count`` orders appended, relayed onto ``bus`` and checkpointed; their ids."""
    orders = [new_order() for _ in range(count)]
    for order in orders:
        await append_order(conn, order, _PATH)
    await drain(conn, bus)
    await checkpointer.checkpoint()
    return [order.order_id for order in orders]


@pytest.mark.asyncio
async def test_audit_verify_with_its_witnesses_passes_an_intact_store_and_says_what_it_checked(
    own_db: Any,
    own_conn: asyncpg.Connection,
    private_nats: LocalNats,
    bus: JetStreamContext,
    checkpointer: Checkpointer,
    public_key: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await _published_orders(own_conn, bus, checkpointer, 2)

    code = await _verify_with_witnesses(own_db.app_dsn, private_nats, public_key)

    out = capsys.readouterr().out
    assert code == 0, out
    assert "checked 2 streams, 6 events" in out
    assert "6 events checked against their copies on JetStream" in out
    assert "1 checkpoints read; 2 checkpointed stream heads found in the store" in out
    assert "hash chain intact" in out


@pytest.mark.asyncio
async def test_a_forged_event_with_a_second_copy_planted_on_jetstream_is_a_break(
    own_db: Any,
    own_conn: asyncpg.Connection,
    bus: JetStreamContext,
    checkpointer: Checkpointer,
) -> None:
    # Arrange: the genuine copy published; once JetStream's duplicate window has passed (here
    # shortened), a forged row and a matching copy under the same event id.
    (order_id,) = await _published_orders(own_conn, bus, checkpointer, 1)
    await bus.update_stream(ORDERS.evolve(duplicate_window=0.2))
    await asyncio.sleep(0.3)
    row = await own_conn.fetchrow(_LAST_ROW, order_id)
    forged = await _forge_last_event(own_db, own_conn, order_id)
    await bus.publish(
        subjects.event_subject(forged.event_type),
        forged.SerializeToString(deterministic=True),
        stream=ORDERS_STREAM,
        headers={
            subjects.MSG_ID: forged.event_id,
            subjects.ORDER_ID: order_id,
            subjects.STREAM_VERSION: str(forged.stream_version),
        },
    )

    # Act
    report = await audit.verify(own_conn, await anchors.published_copies(bus))

    # Assert: the later copy does not mask the forged row.
    assert report.breaks == [
        audit.Break(
            order_id,
            len(_PATH),
            row["position"],
            "JetStream holds different copies of this event",
        )
    ]


@pytest.mark.asyncio
async def test_a_row_marked_published_without_a_copy_on_jetstream_is_a_break(
    own_conn: asyncpg.Connection, bus: JetStreamContext, checkpointer: Checkpointer
) -> None:
    # Arrange: one order published; another only marked published, as the app role can.
    await _published_orders(own_conn, bus, checkpointer, 1)
    order = new_order()
    await append_order(own_conn, order, _PATH)
    positions = await own_conn.fetch(
        "SELECT o.position FROM outbox o JOIN order_events e USING (event_id) "
        "WHERE e.stream_id = $1",
        order.order_id,
    )
    await own_conn.execute(
        "SELECT mark_published($1::bigint[])", [row["position"] for row in positions]
    )

    # Act
    report = await audit.verify(own_conn, await anchors.published_copies(bus))

    # Assert
    assert [(b.stream_id, b.stream_version, b.problem) for b in report.breaks] == [
        (order.order_id, version, "marked published, but JetStream holds no copy of it")
        for version in range(1, len(_PATH) + 1)
    ]


@pytest.mark.asyncio
async def test_a_row_marked_published_after_the_copies_were_read_needs_no_copy_yet(
    own_conn: asyncpg.Connection, bus: JetStreamContext, checkpointer: Checkpointer
) -> None:
    await _published_orders(own_conn, bus, checkpointer, 1)
    copies = await anchors.published_copies(bus)
    read_at = await own_conn.fetchval("SELECT clock_timestamp()")
    # Published between the read of the copies and the read of the store.
    await _published_orders(own_conn, bus, checkpointer, 1)

    report = await audit.verify(own_conn, copies, witnesses_read_at=read_at)

    assert report.ok, report.breaks


@pytest.mark.asyncio
async def test_an_orders_stream_recreated_empty_is_a_break_that_says_so(
    own_db: Any,
    own_conn: asyncpg.Connection,
    private_nats: LocalNats,
    bus: JetStreamContext,
    checkpointer: Checkpointer,
    public_key: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await _published_orders(own_conn, bus, checkpointer, 1)
    await bus.delete_stream(ORDERS_STREAM)
    await ensure_jetstream(bus)

    code = await _verify_with_witnesses(own_db.app_dsn, private_nats, public_key)

    out = capsys.readouterr().out
    assert code == 1, out
    assert [line for line in out.splitlines() if line.startswith("BROKEN")] == [
        "BROKEN: the ORDERS stream on JetStream is empty, yet the store has 3 events marked "
        "published: the stream was deleted or recreated, and the published copies are lost"
    ]


@pytest.mark.asyncio
async def test_a_deleted_orders_stream_is_a_break_that_says_so(
    own_conn: asyncpg.Connection, bus: JetStreamContext, checkpointer: Checkpointer
) -> None:
    await _published_orders(own_conn, bus, checkpointer, 1)
    await bus.delete_stream(ORDERS_STREAM)

    report = await audit.verify(own_conn, await anchors.published_copies(bus))

    assert [b.problem for b in report.breaks] == [
        "the ORDERS stream on JetStream does not exist, yet the store has 3 events marked "
        "published: the stream was deleted or recreated, and the published copies are lost"
    ]


@pytest.mark.asyncio
async def test_an_event_appended_with_the_outbox_trigger_disabled_is_a_break(
    own_db: Any, own_conn: asyncpg.Connection
) -> None:
    order = new_order()
    owner = await asyncpg.connect(own_db.owner_dsn)
    try:
        await owner.execute("ALTER TABLE order_events DISABLE TRIGGER order_events_schedule")
        try:
            await append_order(owner, order, (states.NEW,))
        finally:
            await owner.execute("ALTER TABLE order_events ENABLE TRIGGER order_events_schedule")
    finally:
        await owner.close()

    report = await audit.verify(own_conn)

    assert [(b.stream_id, b.problem) for b in report.breaks] == [
        (order.order_id, "the event has no outbox row: it was never scheduled for publication")
    ]
