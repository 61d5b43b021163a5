"""``brokermesh audit verify`` on an intact event store and on one whose history was edited."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import asyncpg
import pytest

from brokermesh.cli import audit as audit_cli
from brokermesh.domain import states

from .support import append_order, new_order

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
    return await asyncio.to_thread(audit_cli.main, argparse.Namespace(database_url=dsn))


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


def test_audit_register_adds_audit_verify() -> None:
    parser = argparse.ArgumentParser()
    audit_cli.register(parser.add_subparsers())

    args = parser.parse_args(["audit", "verify", "--database-url", "postgresql://x@h/db"])

    assert args.func is audit_cli.main
    assert args.database_url == "postgresql://x@h/db"
