"""The OMS keeps answering from memory while PostgreSQL and NATS are down, and catches up.

The servers here are the test's own (not the session's), because the test stops them.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
import nats
import pytest

from brokermesh.common.v1 import common_pb2
from brokermesh.events.v1 import order_events_pb2
from brokermesh.platform.layout import APP_ROLE, OWNER_ROLE
from brokermesh.platform.migrate import apply_migrations
from brokermesh.platform.nats import LocalNats
from brokermesh.platform.postgres import LocalPostgres
from brokermesh.trading.v1 import order_pb2, validation_pb2, validation_pb2_grpc
from tests.orderstream import limit_buy
from tests.processes import ServiceProcess, eventually, free_port

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(300)]

ACCOUNT = "ACC-987655"  # 2,000.00 cash
FAIL = common_pb2.DECISION_RESULT_FAIL


@dataclass
class Platform:
    postgres: LocalPostgres
    nats: LocalNats


@pytest.fixture
def platform() -> Iterator[Platform]:
    """A PostgreSQL cluster and a nats-server of this test's own, migrated and with streams."""
    # Outside pytest's tmp tree: PostgreSQL runs as its own user when the tests run as root.
    base = Path(tempfile.mkdtemp(prefix="brokermesh-oms-resilience-"))
    postgres = LocalPostgres(base / "postgres", port=free_port())
    server = LocalNats(base / "nats", port=free_port(), monitor_port=free_port())
    try:
        postgres.start()
        server.start()
        asyncio.run(_prepare(postgres, server))
        yield Platform(postgres, server)
    finally:
        server.stop()
        postgres.stop()
        shutil.rmtree(base, ignore_errors=True)


async def _prepare(postgres: LocalPostgres, server: LocalNats) -> None:
    await postgres.ensure_database()
    await apply_migrations(postgres.dsn(OWNER_ROLE))
    await server.ensure_assets()


def order(quantity: int) -> order_pb2.Order:
    return limit_buy("ORD-20260316-00000009", quantity, ACCOUNT)


def approval(
    order_id: str,
    version: int,
    state: int,
    detail: str,
) -> order_events_pb2.OrderEvent:
    """An event of a limit buy of 5 AAPL at 189.50 (947.50) by the small account."""
    event = order_events_pb2.OrderEvent(
        event_type="Order",
        event_id=str(uuid.uuid4()),
        order_id=order_id,
        account_id=ACCOUNT,
        symbol="AAPL",
        side=common_pb2.SIDE_BUY,
        quantity=5,
        order_type=common_pb2.ORDER_TYPE_LIMIT,
        limit_price="189.50",
        stream_version=version,
        state=state,  # type: ignore[arg-type]
    )
    getattr(event, detail).SetInParent()
    return event


async def publish_approved(url: str, order_id: str) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=5)
        for version, (state, detail) in enumerate(
            [
                (order_pb2.ORDER_STATE_NEW, "accepted"),
                (order_pb2.ORDER_STATE_VALIDATED, "validated"),
                (order_pb2.ORDER_STATE_RISK_APPROVED, "risk_approved"),
            ],
            start=1,
        ):
            await js.publish(
                f"trading.orders.{detail}",
                approval(order_id, version, state, detail).SerializeToString(),
            )
    finally:
        await nc.close()


async def set_cash(postgres: LocalPostgres, cash: str) -> None:
    conn = await asyncpg.connect(postgres.dsn(OWNER_ROLE))
    try:
        await conn.execute(
            "UPDATE accounts SET cash = $1::numeric WHERE account_id = $2", cash, ACCOUNT
        )
    finally:
        await conn.close()


async def test_oms_serves_from_memory_while_postgres_and_nats_are_down_then_catches_up(
    platform: Platform,
    tmp_path: Path,
) -> None:
    process = ServiceProcess(
        "brokermesh.services.oms",
        tmp_path,
        {
            "BROKERMESH_DATABASE_URL": platform.postgres.dsn(APP_ROLE),
            "BROKERMESH_NATS_URL": platform.nats.url,
            "BROKERMESH_OMS_REFRESH_INTERVAL_S": "0.5",
        },
    )
    try:
        await asyncio.to_thread(process.start)
        async with grpc.aio.insecure_channel(process.address) as channel:
            stub = validation_pb2_grpc.OrderValidationServiceStub(channel)

            async def five() -> validation_pb2.ValidateOrderResponse:
                return await stub.ValidateOrder(
                    validation_pb2.ValidateOrderRequest(order=order(5)), timeout=5
                )

            # One approved order of 947.50 leaves 1,052.50: a second one still fits.
            await publish_approved(platform.nats.url, "ORD-20260316-00000001")
            before = await eventually(five, lambda r: "available $1,052.50" in _reason(r))

            await asyncio.to_thread(platform.nats.stop)
            await asyncio.to_thread(platform.postgres.stop)
            during = await five()

            await asyncio.to_thread(platform.postgres.start)
            await set_cash(platform.postgres, "1500.00")
            refreshed = await eventually(five, lambda r: not r.passed, timeout_s=20)
            await asyncio.to_thread(platform.nats.start)
            await set_cash(platform.postgres, "100000.00")
            await publish_approved(platform.nats.url, "ORD-20260316-00000002")
            caught_up = await eventually(
                five, lambda r: "available $98,105.00" in _reason(r), timeout_s=30
            )
    finally:
        process.stop()

    # Cash 2,000.00 less the first order's 947.50; the same with both servers down; cash cut
    # to 1,500.00 once PostgreSQL is back; then 100,000.00 less both orders once NATS is.
    assert _reason(before) == "buy notional $947.50 within available $1,052.50"
    assert _reason(during) == _reason(before)
    assert _reason(refreshed).startswith("buy notional $947.50 exceeds available $552.50")
    assert _reason(caught_up) == "buy notional $947.50 within available $98,105.00"


def _reason(response: validation_pb2.ValidateOrderResponse) -> str:
    return next(d.reason for d in response.decisions if d.policy == "buying_power")
