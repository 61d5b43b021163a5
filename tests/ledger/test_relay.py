"""The outbox relay against the real PostgreSQL and NATS JetStream."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import nats
import pytest
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext

from brokermesh.domain import eventstore, states
from brokermesh.services.ledger import projection, relay, subjects

from .support import (
    FILLED_PATH,
    append_order,
    drain,
    lifecycle,
    new_order,
    next_sequence,
    read_messages,
)

pytestmark = pytest.mark.timeout(60)


def _headers(msg: Msg) -> dict[str, str]:
    return msg.headers or {}


async def _published(conn: asyncpg.Connection, event_ids: list[str]) -> list[bool]:
    rows = await conn.fetch(
        "SELECT event_id::text AS event_id, published_at IS NOT NULL AS done FROM outbox "
        "WHERE event_id = ANY($1::uuid[])",
        event_ids,
    )
    done = {row["event_id"]: row["done"] for row in rows}
    return [done[event_id] for event_id in event_ids]


@pytest.mark.asyncio
async def test_relay_publishes_an_orders_events_in_order_with_event_ids_as_msg_ids(
    conn: asyncpg.Connection,
    js: JetStreamContext,
) -> None:
    order = new_order()
    start = await next_sequence(js)
    appended = await append_order(conn, order, FILLED_PATH)

    await drain(conn, js)

    messages = await read_messages(js, "trading.orders.>", start, {order.order_id}, len(appended))
    assert [m.subject for m in messages] == [
        "trading.orders.accepted",
        "trading.orders.validated",
        "trading.orders.risk_approved",
        "trading.orders.routed",
        "trading.orders.partially_filled",
        "trading.orders.filled",
    ]
    assert [_headers(m)[subjects.MSG_ID] for m in messages] == [e.event_id for e in appended]
    assert [m.data for m in messages] == [e.SerializeToString(deterministic=True) for e in appended]
    for message, event in zip(messages, appended, strict=True):
        assert _headers(message)[subjects.EVENT_TYPE] == event.event_type
        assert _headers(message)[subjects.ORDER_ID] == order.order_id
        trace_id = subjects.traceparent_trace_id(_headers(message)[subjects.TRACEPARENT])
        assert trace_id == order.trace_id
    assert await _published(conn, [e.event_id for e in appended]) == [True] * len(appended)


@pytest.mark.asyncio
async def test_risk_decisions_are_also_published_on_risk_decisions(
    conn: asyncpg.Connection,
    js: JetStreamContext,
) -> None:
    approved, blocked = new_order(), new_order()
    start = await next_sequence(js)
    approved_events = await append_order(conn, approved, FILLED_PATH)
    blocked_events = await append_order(
        conn, blocked, (states.NEW, states.VALIDATED, states.BLOCKED)
    )

    await drain(conn, js)

    messages = await read_messages(
        js, "risk.decisions.>", start, {approved.order_id, blocked.order_id}, 2
    )
    by_order = {_headers(m)[subjects.ORDER_ID]: m for m in messages}
    assert by_order[approved.order_id].subject == "risk.decisions.pass"
    assert _headers(by_order[approved.order_id])[subjects.MSG_ID] == (
        f"{approved_events[2].event_id}:risk"
    )
    assert by_order[blocked.order_id].subject == "risk.decisions.fail"
    assert _headers(by_order[blocked.order_id])[subjects.MSG_ID] == (
        f"{blocked_events[2].event_id}:risk"
    )


@pytest.mark.asyncio
async def test_publishing_an_event_again_is_reported_as_a_duplicate(
    postgres: Any,
    conn: asyncpg.Connection,
    js: JetStreamContext,
) -> None:
    order = new_order()
    appended = await append_order(conn, order, FILLED_PATH)
    await drain(conn, js)
    view_before = await conn.fetchval(
        "SELECT view FROM order_views WHERE order_id = $1", order.order_id
    )

    # Forget the marks, as a relay that crashed between the ack and the commit would; only
    # the owner can, since the application role may move published_at forward alone.
    owner = await asyncpg.connect(postgres.owner_dsn)
    try:
        await owner.execute(
            "UPDATE outbox SET published_at = NULL WHERE event_id = ANY($1::uuid[])",
            [e.event_id for e in appended],
        )
    finally:
        await owner.close()
    result = await relay.publish_pending(conn, js, limit=256)

    # Six events plus the risk copy of the approval: JetStream already stored all seven.
    assert result.published >= len(appended)
    assert result.duplicates >= len(appended) + 1
    ack = await js.publish(
        "trading.orders.accepted",
        appended[0].SerializeToString(),
        headers={subjects.MSG_ID: appended[0].event_id},
    )
    assert ack.duplicate
    view_after = await conn.fetchval(
        "SELECT view FROM order_views WHERE order_id = $1", order.order_id
    )
    assert view_after == view_before


@pytest.mark.asyncio
async def test_a_transaction_that_commits_late_is_still_published(
    postgres: Any,
    conn: asyncpg.Connection,
    js: JetStreamContext,
) -> None:
    early, late = new_order(), new_order()
    start = await next_sequence(js)
    holder = await asyncpg.connect(postgres.app_dsn)
    try:
        # The late transaction takes the lower outbox position first and stays open...
        held = holder.transaction()
        await held.start()
        await eventstore.append(holder, eventstore.StreamHead(), lifecycle(late, (states.NEW,)))
        late_position = await holder.fetchval(
            "SELECT max(o.position) FROM outbox o JOIN order_events e USING (event_id) "
            "WHERE e.stream_id = $1",
            late.order_id,
        )
        # ...while another one, with a higher position, commits and gets published.
        early_events = await append_order(conn, early, (states.NEW,))
        await drain(conn, js)
        early_position = await conn.fetchval(
            "SELECT position FROM outbox WHERE event_id = $1::uuid", early_events[0].event_id
        )
        assert late_position < early_position
        assert await _published(conn, [early_events[0].event_id]) == [True]

        await held.commit()
    finally:
        await holder.close()

    await drain(conn, js)

    messages = await read_messages(
        js, "trading.orders.>", start, {early.order_id, late.order_id}, 2
    )
    assert [_headers(m)[subjects.ORDER_ID] for m in messages] == [early.order_id, late.order_id]
    late_event_id = _headers(messages[1])[subjects.MSG_ID]
    assert await _published(conn, [late_event_id]) == [True]
    views = await conn.fetchval(
        "SELECT count(*) FROM order_views WHERE order_id = ANY($1)", [early.order_id, late.order_id]
    )
    assert views == 2


@pytest.mark.asyncio
async def test_a_failed_publication_leaves_the_rows_for_a_later_pass(
    nats_server: Any,
    conn: asyncpg.Connection,
    js: JetStreamContext,
) -> None:
    await drain(conn, js)
    order = new_order()
    appended = await append_order(conn, order, FILLED_PATH)
    closed = await nats.connect(nats_server.url)
    await closed.close()

    failed = await relay.publish_pending(conn, closed.jetstream(), limit=256, timeout_s=1)

    assert failed.stalled
    assert failed.published == 0
    assert await _published(conn, [e.event_id for e in appended]) == [False] * len(appended)
    start = await next_sequence(js)
    await drain(conn, js)
    messages = await read_messages(js, "trading.orders.>", start, {order.order_id}, len(appended))
    assert [_headers(m)[subjects.MSG_ID] for m in messages] == [e.event_id for e in appended]


@pytest.mark.asyncio
async def test_an_order_the_projection_refuses_is_held_back_without_blocking_others(
    own_conn: asyncpg.Connection, js: JetStreamContext
) -> None:
    bad, good = new_order(), new_order()
    # VALIDATED -> REJECTED is not in the transition table; the store itself does not check.
    illegal = (states.NEW, states.VALIDATED, states.REJECTED)
    bad_events = await append_order(own_conn, bad, illegal)
    good_events = await append_order(own_conn, good, FILLED_PATH)

    result = await relay.publish_pending(own_conn, js, limit=256)
    again = await relay.publish_pending(own_conn, js, limit=256, skip=result.held)

    assert list(result.held) == [bad.order_id]
    assert "VALIDATED -> REJECTED" in result.held[bad.order_id]
    assert (result.held_rows, result.stalled) == (1, False)
    assert again.read == 0
    assert await _published(own_conn, [e.event_id for e in bad_events]) == [True, True, False]
    assert all(await _published(own_conn, [e.event_id for e in good_events]))


@pytest.mark.asyncio
async def test_a_view_rewritten_between_read_and_commit_marks_and_stores_nothing(
    own_conn: asyncpg.Connection, js: JetStreamContext
) -> None:
    # Arrange: the relay has read an order's rows and its (absent) view...
    order = new_order()
    appended = await append_order(own_conn, order, (states.NEW, states.VALIDATED))
    found = await relay.pending(own_conn, 256)
    mine = [row for row in found.rows if row.stream_id == order.order_id]
    folded = projection.fold(found.views, [row.event() for row in mine])
    # ...when a replay writes that view first.
    async with own_conn.transaction():
        await projection.project(own_conn, appended)

    # Act / Assert
    with pytest.raises(projection.ViewsMoved, match="changed since the relay read them"):
        await projection.commit(own_conn, [row.position for row in mine], folded)
    assert await _published(own_conn, [e.event_id for e in appended]) == [False, False]


@pytest.mark.asyncio
async def test_a_pass_commits_the_marks_and_the_views_together(
    own_conn: asyncpg.Connection, js: JetStreamContext
) -> None:
    order = new_order()
    appended = await append_order(own_conn, order, FILLED_PATH)

    await drain(own_conn, js)

    stored = await own_conn.fetchrow(
        "SELECT state, stream_version FROM order_views WHERE order_id = $1", order.order_id
    )
    assert (stored["state"], stored["stream_version"]) == ("FILLED", len(appended))
    assert all(await _published(own_conn, [e.event_id for e in appended]))


def test_rounds_publish_each_order_one_version_at_a_time() -> None:
    rows = [
        relay.OutboxRow(position, f"e{position}", stream, version, "OrderAccepted", b"")
        for position, stream, version in [
            (1, "A", 1),
            (2, "B", 1),
            (3, "A", 2),
            (4, "A", 3),
            (5, "C", 1),
            (6, "B", 2),
        ]
    ]

    rounds = relay.rounds(rows)

    assert [[r.position for r in batch] for batch in rounds] == [[1, 2, 5], [3, 6], [4]]


@pytest.mark.asyncio
async def test_the_relay_wakes_on_notify_and_publishes_without_being_asked(
    postgres: Any,
    nc: nats.NATS,
    js: JetStreamContext,
    conn: asyncpg.Connection,
) -> None:
    await drain(conn, js)
    outbox_relay = relay.OutboxRelay(
        postgres.app_dsn,
        nc,
        js,
        poll_interval_s=30,
    )
    task = asyncio.create_task(outbox_relay.run(), name="test-outbox-relay")
    try:
        await asyncio.sleep(0.5)
        order = new_order()
        appended = await append_order(conn, order, FILLED_PATH)

        # The poll interval is 30 s, so only the NOTIFY can get this done in time.
        async with asyncio.timeout(10):
            # Polling the table: PostgreSQL offers nothing to wait on for an UPDATE.
            while not all(await _published(conn, [e.event_id for e in appended])):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    state = await conn.fetchval("SELECT state FROM order_views WHERE order_id = $1", order.order_id)
    assert state == "FILLED"
