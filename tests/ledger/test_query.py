"""OrderQueryService over real gRPC: the ledger App in-process, and the ledger as a process."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from brokermesh.domain.events import fold
from brokermesh.mesh import server
from brokermesh.services.ledger import projection
from brokermesh.services.ledger.manifest import MANIFEST
from brokermesh.services.ledger.service import LedgerApp, LedgerSettings
from brokermesh.trading.v1.order_query_pb2 import (
    GetOrderRequest,
    ListOrdersRequest,
    OrderView,
)
from brokermesh.trading.v1.order_query_pb2_grpc import OrderQueryServiceStub
from tests.processes import free_port

from .support import FILLED_PATH, append_order, lifecycle, new_order

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


@asynccontextmanager
async def _start(settings: LedgerSettings) -> AsyncIterator[OrderQueryServiceStub]:
    app = LedgerApp(settings)
    running = await server.start(MANIFEST, settings, app)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield OrderQueryServiceStub(channel)
    finally:
        await channel.close()
        await server.stop(running, app, grace_s=1)


@pytest_asyncio.fixture
async def ledger(
    postgres: Any, nats_server: Any, tmp_path: Path
) -> AsyncIterator[OrderQueryServiceStub]:
    """The ledger App on a free port, relaying to the real NATS."""
    settings = LedgerSettings(
        port=0,
        database_url=postgres.app_dsn,
        nats_url=nats_server.url,
        data_dir=tmp_path,
        relay_poll_interval_ms=100,
    )
    async with _start(settings) as stub:
        yield stub


async def _wait_for_state(
    stub: OrderQueryServiceStub, order_id: str, state: int, *, timeout_s: float = 15.0
) -> OrderView:
    """Poll GetOrder until the order reaches ``state``; NOT_FOUND counts as not yet."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                response = await stub.GetOrder(GetOrderRequest(order_id=order_id), timeout=2)
                if response.order.state == state:
                    return response.order
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            await asyncio.sleep(0.05)


async def test_get_order_returns_the_projected_view(
    ledger: OrderQueryServiceStub,
    conn: asyncpg.Connection,
) -> None:
    order = new_order()
    appended = await append_order(conn, order, FILLED_PATH)

    view = await _wait_for_state(ledger, order.order_id, appended[-1].state)

    assert view == fold(appended)


async def test_get_order_of_an_unknown_order_is_not_found_naming_it(
    ledger: OrderQueryServiceStub,
) -> None:
    order_id = f"ORD-19990101-{secrets.randbelow(10**8):08d}"

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ledger.GetOrder(GetOrderRequest(order_id=order_id), timeout=5)

    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert order_id in (raised.value.details() or "")


async def test_get_order_with_a_malformed_id_is_an_invalid_argument(
    ledger: OrderQueryServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ledger.GetOrder(GetOrderRequest(order_id="12345"), timeout=5)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_list_orders_returns_an_accounts_orders_newest_first(
    ledger: OrderQueryServiceStub,
    conn: asyncpg.Connection,
) -> None:
    account_id = f"ACC-{secrets.token_hex(6).upper()}"
    base = datetime.now(UTC) - timedelta(hours=1)
    orders = [
        new_order(account_id=account_id, accepted_at=base + timedelta(seconds=i)) for i in range(3)
    ]
    for order in orders:
        await append_order(conn, order, FILLED_PATH)
    for order in orders:
        await _wait_for_state(ledger, order.order_id, FILLED_PATH[-1])

    page = await ledger.ListOrders(ListOrdersRequest(account_id=account_id, page_size=2))
    everything = await ledger.ListOrders(ListOrdersRequest(account_id=account_id))

    newest_first = [o.order_id for o in reversed(orders)]
    assert [v.order.order_id for v in page.orders] == newest_first[:2]
    assert [v.order.order_id for v in everything.orders] == newest_first


async def test_queries_are_served_while_nats_is_down(
    postgres: Any,
    conn: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    order = new_order()
    built = lifecycle(order, FILLED_PATH)
    async with conn.transaction():
        await projection.project(conn, built)
    settings = LedgerSettings(
        port=0,
        database_url=postgres.app_dsn,
        nats_url=f"nats://127.0.0.1:{free_port()}",
        data_dir=tmp_path,
    )

    try:
        async with _start(settings) as stub:
            response = await stub.GetOrder(GetOrderRequest(order_id=order.order_id), timeout=5)
            assert response.order == fold(built)
    finally:
        await conn.execute("DELETE FROM order_views WHERE order_id = $1", order.order_id)


async def test_the_ledger_process_relays_projects_and_serves(
    postgres: Any,
    nats_server: Any,
    conn: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "BROKERMESH_PORT": str(port),
        "BROKERMESH_DATABASE_URL": postgres.app_dsn,
        "BROKERMESH_NATS_URL": nats_server.url,
        "BROKERMESH_DATA_DIR": str(tmp_path),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "brokermesh.services.ledger",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        await _wait_until_serving(channel)
        order = new_order()
        appended = await append_order(conn, order, FILLED_PATH)

        view = await _wait_for_state(
            OrderQueryServiceStub(channel), order.order_id, appended[-1].state
        )

        assert view == fold(appended)
    finally:
        await channel.close()
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 0, stderr.decode()[-2000:]


async def _wait_until_serving(channel: grpc.aio.Channel, *, timeout_s: float = 20.0) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
