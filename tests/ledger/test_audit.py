"""``brokermesh audit verify`` on an intact event store and on one whose history was edited."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from brokermesh.cli import audit as audit_cli
from brokermesh.domain import states

from .support import append_order, new_order

pytestmark = pytest.mark.timeout(60)

_DISABLE = "ALTER TABLE order_events DISABLE TRIGGER order_events_append_only"
_ENABLE = "ALTER TABLE order_events ENABLE TRIGGER order_events_append_only"


async def _append(dsn: str) -> tuple[str, int, int]:
    """A new three-event stream; returns its order id, and version and position of event 2."""
    conn = await asyncpg.connect(dsn)
    try:
        order = new_order()
        await append_order(conn, order, (states.NEW, states.VALIDATED, states.RISK_APPROVED))
        position = await conn.fetchval(
            "SELECT position FROM order_events WHERE stream_id = $1 AND stream_version = 2",
            order.order_id,
        )
    finally:
        await conn.close()
    return order.order_id, 2, position


async def _as_owner(dsn: str, *statements: tuple[str, tuple[Any, ...]]) -> list[Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return [await conn.fetchval(sql, *args) for sql, args in statements]
    finally:
        await conn.close()


@pytest.fixture
def tampered(postgres: Any) -> Iterator[tuple[str, int, int]]:
    """A stream whose second event had one payload byte flipped by the owner, with the
    append-only trigger disabled for the edit and enabled again; restored afterwards so
    that later tests see an intact store."""
    order_id, version, position = asyncio.run(_append(postgres.app_dsn))
    (original, *_) = asyncio.run(
        _as_owner(
            postgres.owner_dsn,
            ("SELECT payload FROM order_events WHERE position = $1", (position,)),
            (_DISABLE, ()),
            (
                "UPDATE order_events SET payload = set_byte(payload, 7, get_byte(payload, 7) # 1) "
                "WHERE position = $1",
                (position,),
            ),
            (_ENABLE, ()),
        )
    )
    try:
        yield order_id, version, position
    finally:
        asyncio.run(
            _as_owner(
                postgres.owner_dsn,
                (_DISABLE, ()),
                ("UPDATE order_events SET payload = $2 WHERE position = $1", (position, original)),
                (_ENABLE, ()),
            )
        )


def _verify(dsn: str) -> int:
    return audit_cli.main(argparse.Namespace(database_url=dsn))


def test_audit_verify_passes_on_an_intact_store(
    postgres: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    asyncio.run(_append(postgres.app_dsn))

    code = _verify(postgres.app_dsn)

    out = capsys.readouterr().out
    assert code == 0, out
    assert "hash chain intact" in out
    assert "BROKEN" not in out


def test_audit_verify_reports_the_row_whose_payload_was_edited(
    postgres: Any,
    tampered: tuple[str, int, int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    order_id, version, position = tampered

    code = _verify(postgres.app_dsn)

    out = capsys.readouterr().out
    broken = [line for line in out.splitlines() if line.startswith("BROKEN")]
    assert code == 1, out
    assert broken == [
        f"BROKEN stream {order_id} version {version} position {position}: "
        "hash does not match the event's contents"
    ]


def test_the_append_only_trigger_refuses_the_edit_while_enabled(postgres: Any) -> None:
    _, _, position = asyncio.run(_append(postgres.app_dsn))

    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        asyncio.run(
            _as_owner(
                postgres.owner_dsn,
                (
                    "UPDATE order_events SET payload = payload || '\\x00'::bytea WHERE position = $1",
                    (position,),
                ),
            )
        )


def test_audit_register_adds_audit_verify() -> None:
    parser = argparse.ArgumentParser()
    audit_cli.register(parser.add_subparsers())

    args = parser.parse_args(["audit", "verify", "--database-url", "postgresql://x@h/db"])

    assert args.func is audit_cli.main
    assert args.database_url == "postgresql://x@h/db"
