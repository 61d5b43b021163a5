"""The live projection into order_views, and its agreement with ``brokermesh replay``."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import asyncpg
import pytest
from nats.js.client import JetStreamContext

from brokermesh.cli import replay as replay_cli
from brokermesh.domain import states
from brokermesh.domain.events import fold
from brokermesh.services.ledger import projection, replay
from brokermesh.trading.v1.order_query_pb2 import OrderView

from .support import (
    BLOCKED_PATH,
    CANCELLED_PATH,
    FILLED_PATH,
    REJECTED_PATH,
    append_order,
    drain,
    lifecycle,
    new_order,
)

pytestmark = pytest.mark.timeout(60)

_VIEWS = "SELECT order_id, account_id, state, stream_version, accepted_at, view FROM order_views"


async def _views(conn: asyncpg.Connection) -> dict[str, tuple[object, ...]]:
    return {row["order_id"]: tuple(row.values()) for row in await conn.fetch(_VIEWS)}


@pytest.mark.asyncio
async def test_the_live_projection_holds_what_the_fold_of_the_stream_gives(
    conn: asyncpg.Connection,
    js: JetStreamContext,
) -> None:
    order = new_order()
    appended = await append_order(conn, order, FILLED_PATH)

    await drain(conn, js)

    row = await conn.fetchrow("SELECT * FROM order_views WHERE order_id = $1", order.order_id)
    assert row is not None
    view = OrderView.FromString(row["view"])
    assert view == fold(appended)
    assert (row["state"], row["stream_version"], row["account_id"]) == (
        "FILLED",
        len(appended),
        order.account_id,
    )
    assert (view.cumulative_quantity, view.leaves_quantity, view.venue) == (100, 0, "SIMX")
    assert view.average_price == "189.450000"
    assert [change.event_type for change in view.history][-1] == "OrderFilled"


@pytest.mark.asyncio
async def test_live_projection_equals_replay_byte_for_byte(
    own_conn: asyncpg.Connection, js: JetStreamContext
) -> None:
    for path in (FILLED_PATH, BLOCKED_PATH, REJECTED_PATH, CANCELLED_PATH, (states.NEW,)):
        await append_order(own_conn, new_order(), path)
    await drain(own_conn, js)
    live = await _views(own_conn)

    diff = await replay.compare(own_conn)
    report = await replay.rebuild(own_conn)

    assert diff.ok, diff
    assert (report.streams, report.events, report.deleted) == (5, 6 + 3 + 2 + 6 + 1, 5)
    assert await _views(own_conn) == live


@pytest.mark.asyncio
async def test_projecting_an_event_twice_changes_nothing(conn: asyncpg.Connection) -> None:
    built = lifecycle(new_order(), FILLED_PATH)

    async with conn.transaction():
        first = await projection.project(conn, built[:4])
        again = await projection.project(conn, built)
        stored = await conn.fetchval(
            "SELECT view FROM order_views WHERE order_id = $1", built[0].order_id
        )
        await conn.execute("DELETE FROM order_views WHERE order_id = $1", built[0].order_id)

    assert (first, again) == (4, 2)
    assert OrderView.FromString(stored) == fold(built)


@pytest.mark.asyncio
async def test_projection_refuses_an_event_that_skips_a_version(
    conn: asyncpg.Connection,
) -> None:
    built = lifecycle(new_order(), FILLED_PATH)

    with pytest.raises(projection.ProjectionGap, match="version 1 but the next event is version 3"):
        async with conn.transaction():
            await projection.project(conn, built[:1])
            await projection.project(conn, built[2:3])

    gone = await conn.fetchval(
        "SELECT count(*) FROM order_views WHERE order_id = $1", built[0].order_id
    )
    assert gone == 0


@pytest.mark.asyncio
async def test_replay_check_reports_views_that_differ_are_missing_or_extra(
    own_conn: asyncpg.Connection, js: JetStreamContext
) -> None:
    edited, lagging = new_order(), new_order()
    await append_order(own_conn, edited, FILLED_PATH)
    await drain(own_conn, js)
    await append_order(own_conn, lagging, FILLED_PATH)
    await own_conn.execute(
        "UPDATE order_views SET view = $2 WHERE order_id = $1",
        edited.order_id,
        OrderView().SerializeToString(),
    )
    stray = lifecycle(new_order(), (states.NEW,))
    async with own_conn.transaction():
        await projection.project(own_conn, stray)

    diff = await replay.compare(own_conn)
    await replay.rebuild(own_conn)

    assert (diff.different, diff.missing, diff.extra) == (
        [edited.order_id],
        [lagging.order_id],
        [stray[0].order_id],
    )
    assert (await replay.compare(own_conn)).ok


@pytest.mark.asyncio
async def test_replay_command_rebuilds_as_the_app_role_and_prints_counts(
    own_db: Any, own_conn: asyncpg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    await append_order(own_conn, new_order(), FILLED_PATH)
    await append_order(own_conn, new_order(), REJECTED_PATH)
    rebuild = argparse.Namespace(database_url=own_db.app_dsn, check=False)
    check = argparse.Namespace(database_url=own_db.app_dsn, check=True)

    # The command runs its own event loop, so it gets a thread of its own here.
    rebuilt = await asyncio.to_thread(replay_cli.main, rebuild)
    checked = await asyncio.to_thread(replay_cli.main, check)

    out = capsys.readouterr().out
    assert (rebuilt, checked) == (0, 0), out
    assert "rebuilt 2 order views from 8 events (0 views replaced)" in out
    assert "compared 2 streams with the live order views" in out
    assert "live views match the event store" in out


@pytest.mark.asyncio
async def test_replay_refuses_an_illegal_stream_and_leaves_the_views_alone(
    own_db: Any,
    own_conn: asyncpg.Connection,
    js: JetStreamContext,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await append_order(own_conn, new_order(), FILLED_PATH)
    await drain(own_conn, js)
    before = await _views(own_conn)
    # VALIDATED -> REJECTED is not in the transition table; the store itself does not check.
    await append_order(own_conn, new_order(), (states.NEW, states.VALIDATED, states.REJECTED))
    args = argparse.Namespace(database_url=own_db.app_dsn, check=False)

    code = await asyncio.to_thread(replay_cli.main, args)

    assert code == 2
    assert "VALIDATED -> REJECTED" in capsys.readouterr().err
    assert await _views(own_conn) == before


def test_replay_register_adds_the_command_with_its_defaults() -> None:
    parser = argparse.ArgumentParser()
    replay_cli.register(parser.add_subparsers())

    args = parser.parse_args(["replay", "--database-url", "postgresql://x@h/db"])

    assert args.func is replay_cli.main
    assert replay_cli.database_url(args) == "postgresql://x@h/db"
    assert not args.check
