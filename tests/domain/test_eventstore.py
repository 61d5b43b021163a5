"""The event store: the hash chain, optimistic concurrency and idempotency claims on PostgreSQL.

That the application role cannot UPDATE or DELETE ``order_events`` is tested with the
migrations (tests/platform/test_migrate.py); the audit of an edited chain in tests/ledger.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import grpc
import pytest

from brokermesh.domain import eventstore, states
from brokermesh.domain.eventstore import GENESIS, ConcurrencyConflict, StreamHead, chain_hash
from brokermesh.events.v1.order_events_pb2 import OrderEvent

from .support import FILLED_PATH, lifecycle, new_order

_ACCEPTED = (states.NEW, states.VALIDATED)
_FIELDS: dict[str, Any] = {
    "prev_hash": GENESIS,
    "event_id": "9c1d7a4e-0c6b-4c59-9f0e-3b1f1d7f5a10",
    "stream_id": "ORD-20260316-00000001",
    "stream_version": 1,
    "event_type": "OrderAccepted",
    "event_version": "1.0",
    "payload": b"\x08\x01",
}
_CHANGED: dict[str, Any] = {
    "prev_hash": b"\x01" * 32,
    "event_id": "9c1d7a4e-0c6b-4c59-9f0e-3b1f1d7f5a11",
    "stream_id": "ORD-20260316-00000002",
    "stream_version": 2,
    "event_type": "OrderValidated",
    "event_version": "1.1",
    "payload": b"\x08\x02",
}


async def _outbox_count(conn: asyncpg.Connection, built: list[OrderEvent]) -> int:
    ids = [event.event_id for event in built]
    count = await conn.fetchval("SELECT count(*) FROM outbox WHERE event_id = ANY($1::uuid[])", ids)
    return int(count)


def _recomputed(record: eventstore.StoredEvent) -> bytes:
    """The hash a stored row should carry, computed from its own columns."""
    return chain_hash(
        record.prev_hash,
        str(record.event_id),
        record.stream_id,
        record.stream_version,
        record.event_type,
        record.event_version,
        record.payload,
    )


async def _append(
    conn: asyncpg.Connection, head: StreamHead, built: list[OrderEvent]
) -> StreamHead:
    async with conn.transaction():
        return await eventstore.append(conn, head, built)


async def _open(conn: asyncpg.Connection, built: list[OrderEvent], key: str) -> StreamHead | None:
    return await eventstore.open_stream(
        conn, built, account_id=built[0].account_id, client_order_id=key
    )


# -- the hash chain --------------------------------------------------------------------------


def test_chain_hash_is_a_deterministic_sha256() -> None:
    first = chain_hash(**_FIELDS)

    assert first == chain_hash(**_FIELDS)
    assert len(first) == 32


@pytest.mark.parametrize("field", list(_FIELDS))
def test_changing_any_one_input_changes_the_hash(field: str) -> None:
    changed = {**_FIELDS, field: _CHANGED[field]}

    assert chain_hash(**changed) != chain_hash(**_FIELDS)


def test_length_prefixes_keep_text_from_moving_between_adjacent_fields() -> None:
    joined = {**_FIELDS, "event_type": "OrderAcceptedv", "event_version": "1.0"}
    split = {**_FIELDS, "event_type": "OrderAccepted", "event_version": "v1.0"}

    assert chain_hash(**joined) != chain_hash(**split)


# -- appending -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_appended_stream_reads_back_in_order_with_every_hash_linked(
    conn: asyncpg.Connection,
) -> None:
    order = new_order()
    built = lifecycle(order, FILLED_PATH)

    head = await _append(conn, StreamHead(), built)
    stored = await eventstore.read_stream(conn, order.order_id)

    assert [record.event() for record in stored] == built
    assert [record.prev_hash for record in stored] == [GENESIS] + [r.hash for r in stored[:-1]]
    assert [record.hash for record in stored] == [_recomputed(record) for record in stored]
    assert eventstore.head_of(stored) == head == StreamHead(len(FILLED_PATH), stored[-1].hash)


@pytest.mark.asyncio
async def test_a_later_append_continues_the_chain_from_the_returned_head(
    conn: asyncpg.Connection,
) -> None:
    order = new_order()
    built = lifecycle(order, FILLED_PATH)

    head = await _append(conn, StreamHead(), built[:2])
    head = await _append(conn, head, built[2:])
    stored = await eventstore.read_stream(conn, order.order_id)

    assert [r.stream_version for r in stored] == list(range(1, len(FILLED_PATH) + 1))
    assert stored[2].prev_hash == stored[1].hash
    assert head.hash == stored[-1].hash


@pytest.mark.asyncio
async def test_every_appended_event_is_scheduled_in_the_outbox(conn: asyncpg.Connection) -> None:
    built = lifecycle(new_order(), _ACCEPTED)

    await _append(conn, StreamHead(), built)

    assert await _outbox_count(conn, built) == len(built)


@pytest.mark.asyncio
async def test_appending_at_a_version_already_used_is_a_concurrency_conflict(
    conn: asyncpg.Connection,
) -> None:
    order = new_order()
    first = await _append(conn, StreamHead(), lifecycle(order, (states.NEW,)))
    await _append(conn, first, lifecycle(order, (states.VALIDATED,), first_version=2))
    late = lifecycle(order, (states.REJECTED,), first_version=2)

    with pytest.raises(ConcurrencyConflict) as caught:
        await _append(conn, first, late)

    assert (caught.value.stream_id, caught.value.version) == (order.order_id, 2)
    assert (caught.value.status, caught.value.code) == (
        grpc.StatusCode.ABORTED,
        "CONCURRENCY_CONFLICT",
    )
    stored = await eventstore.read_stream(conn, order.order_id)
    assert [r.event_type for r in stored] == ["OrderAccepted", "OrderValidated"]
    assert await _outbox_count(conn, late) == 0


@pytest.mark.asyncio
async def test_of_two_writers_racing_from_one_head_exactly_one_wins(
    conn: asyncpg.Connection, rival: asyncpg.Connection
) -> None:
    order = new_order()
    head = await _append(conn, StreamHead(), lifecycle(order, (states.NEW,)))
    validated = lifecycle(order, (states.VALIDATED,), first_version=2)
    rejected = lifecycle(order, (states.REJECTED,), first_version=2)

    results = await asyncio.gather(
        _append(conn, head, validated), _append(rival, head, rejected), return_exceptions=True
    )

    assert sorted(type(result).__name__ for result in results) == [
        "ConcurrencyConflict",
        "StreamHead",
    ]
    assert len(await eventstore.read_stream(conn, order.order_id)) == 2


@pytest.mark.asyncio
async def test_append_refuses_events_whose_versions_do_not_follow_the_head(
    conn: asyncpg.Connection,
) -> None:
    order = new_order()
    gapped = lifecycle(order, _ACCEPTED, first_version=2)

    with pytest.raises(ValueError, match="has version 2, expected 1"):
        await _append(conn, StreamHead(), gapped)

    assert await eventstore.read_stream(conn, order.order_id) == []


@pytest.mark.asyncio
async def test_append_refuses_an_event_id_not_in_canonical_form(conn: asyncpg.Connection) -> None:
    built = lifecycle(new_order(), (states.NEW,))
    built[0].event_id = built[0].event_id.upper()

    with pytest.raises(ValueError, match="canonical lower-case UUID"):
        await _append(conn, StreamHead(), built)


# -- opening a stream with its idempotency key -----------------------------------------------


@pytest.mark.asyncio
async def test_opening_a_stream_claims_its_key_for_the_order(conn: asyncpg.Connection) -> None:
    order = new_order()
    built = lifecycle(order, _ACCEPTED)

    head = await _open(conn, built, order.client_order_id)

    claimed = await conn.fetchval(
        "SELECT order_id FROM order_requests WHERE account_id = $1 AND client_order_id = $2",
        order.account_id,
        order.client_order_id,
    )
    stored = await eventstore.read_stream(conn, order.order_id)
    assert head == eventstore.head_of(stored)
    assert claimed == order.order_id
    assert await _outbox_count(conn, built) == len(built)


@pytest.mark.asyncio
async def test_a_repeated_key_writes_nothing_and_the_claim_keeps_the_original_order(
    conn: asyncpg.Connection,
) -> None:
    original, repeat = new_order(), new_order()
    key = original.client_order_id
    await _open(conn, lifecycle(original, _ACCEPTED), key)
    repeated = lifecycle(repeat, _ACCEPTED)

    head = await _open(conn, repeated, key)

    claimed = await conn.fetchval(
        "SELECT order_id FROM order_requests WHERE account_id = $1 AND client_order_id = $2",
        original.account_id,
        key,
    )
    assert head is None
    assert claimed == original.order_id
    assert await eventstore.read_stream(conn, repeat.order_id) == []
    assert await _outbox_count(conn, repeated) == 0


@pytest.mark.asyncio
async def test_two_racing_opens_of_one_key_claim_it_once(
    conn: asyncpg.Connection, rival: asyncpg.Connection
) -> None:
    first, second = new_order(), new_order()
    key = f"C-{uuid.uuid4().hex[:12]}"

    heads = await asyncio.gather(
        _open(conn, lifecycle(first, _ACCEPTED), key),
        _open(rival, lifecycle(second, _ACCEPTED), key),
    )

    assert sorted(head is None for head in heads) == [False, True]
    streams = [await eventstore.read_stream(conn, o.order_id) for o in (first, second)]
    assert sorted(len(stream) for stream in streams) == [0, 2]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE order_requests SET order_id = 'ORD-20260316-99999999' WHERE order_id = $1",
        "DELETE FROM order_requests WHERE order_id = $1",
    ],
    ids=["update", "delete"],
)
async def test_the_application_role_cannot_rewrite_or_drop_an_idempotency_claim(
    conn: asyncpg.Connection, statement: str
) -> None:
    order = new_order()
    await _open(conn, lifecycle(order, _ACCEPTED), order.client_order_id)

    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        await conn.execute(statement, order.order_id)
