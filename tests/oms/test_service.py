"""The OMS process over gRPC, against the real PostgreSQL and NATS of the test harness."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import nats
import pytest
import pytest_asyncio

from brokermesh.common.v1 import common_pb2
from brokermesh.domain.exposure import ACCOUNT_HEADER
from brokermesh.events.v1 import order_events_pb2
from brokermesh.platform.migrate import apply_migrations
from brokermesh.trading.v1 import order_pb2, order_query_pb2, validation_pb2, validation_pb2_grpc
from tests.processes import ServiceProcess, eventually

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

PASS = common_pb2.DECISION_RESULT_PASS
FAIL = common_pb2.DECISION_RESULT_FAIL
S = order_pb2
Stub = validation_pb2_grpc.OrderValidationServiceStub


def order(**fields: Any) -> order_pb2.Order:
    """The blueprint's order (ACC-987654 BUY 100 AAPL LIMIT 189.50 DAY) with ``fields`` changed."""
    values: dict[str, Any] = {
        "order_id": "ORD-20260316-00001234",
        "client_order_id": "CO-332819",
        "account_id": "ACC-987654",
        "advisor_id": "ADV-1207",
        "symbol": "AAPL",
        "side": common_pb2.SIDE_BUY,
        "quantity": 100,
        "order_type": common_pb2.ORDER_TYPE_LIMIT,
        "limit_price": "189.50",
        "time_in_force": common_pb2.TIME_IN_FORCE_DAY,
    }
    values.update(fields)
    return order_pb2.Order(**values)


async def validate(stub: Stub, o: order_pb2.Order) -> validation_pb2.ValidateOrderResponse:
    return await stub.ValidateOrder(validation_pb2.ValidateOrderRequest(order=o), timeout=5)


def failed(response: validation_pb2.ValidateOrderResponse) -> dict[str, str]:
    return {d.policy: d.reason for d in response.decisions if d.result == FAIL}


@pytest.fixture(scope="module")
def oms(
    postgres: Any,
    nats_server: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceProcess]:
    """The OMS on the session's migrated database and NATS."""
    process = ServiceProcess(
        "brokermesh.services.oms",
        tmp_path_factory.mktemp("oms"),
        {"BROKERMESH_DATABASE_URL": postgres.app_dsn, "BROKERMESH_NATS_URL": nats_server.url},
    )
    try:
        process.start()
        yield process
    finally:
        process.stop()


@pytest_asyncio.fixture
async def stub(oms: ServiceProcess) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(oms.address) as channel:
        yield Stub(channel)


async def test_blueprint_order_passes_every_check(stub: Stub) -> None:
    response = await validate(stub, order())

    assert response.passed
    assert [d.policy for d in response.decisions] == [
        "account_status",
        "trading_permissions",
        "symbol_eligibility",
        "restricted_list",
        "order_type_sanity",
        "buying_power",
    ]
    assert all(d.result == PASS for d in response.decisions)


async def test_frozen_account_is_refused_with_the_reason(stub: Stub) -> None:
    response = await validate(stub, order(account_id="ACC-987656"))

    assert not response.passed
    assert failed(response) == {
        "account_status": "account ACC-987656 is FROZEN: no trading allowed",
    }


async def test_restricted_symbol_is_refused_with_the_reason(stub: Stub) -> None:
    firm_wide = await validate(stub, order(symbol="BMSH", limit_price="20.00"))
    for_account = await validate(
        stub,
        order(account_id="ACC-555001", advisor_id="ADV-2001", symbol="TSLA", limit_price="175.60"),
    )

    assert not firm_wide.passed
    assert failed(firm_wide)["restricted_list"] == (
        "BMSH is restricted firm-wide: issuer is the firm: employee trading blackout"
    )
    assert failed(for_account) == {
        "restricted_list": "TSLA is restricted for ACC-555001: client is an affiliated person "
        "of the issuer",
    }


async def test_small_account_buy_fails_with_the_shortfall(stub: Stub) -> None:
    response = await validate(stub, order(account_id="ACC-987655"))

    assert failed(response) == {
        "buying_power": "buy notional $18,950.00 exceeds available $2,000.00 (cash $2,000.00 "
        "less $0.00 committed to open buys): shortfall $16,950.00",
    }


async def test_call_routed_on_its_own_account_is_answered(stub: Stub) -> None:
    response = await stub.ValidateOrder(
        validation_pb2.ValidateOrderRequest(order=order()),
        metadata=((ACCOUNT_HEADER, "ACC-987654"),),
        timeout=5,
    )

    assert response.passed


async def test_call_routed_on_another_account_is_invalid_argument(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ValidateOrder(
            validation_pb2.ValidateOrderRequest(order=order()),
            metadata=((ACCOUNT_HEADER, "ACC-987655"),),
            timeout=5,
        )

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == (
        "x-brokermesh-account 'ACC-987655' does not match the order's account ACC-987654"
    )


async def test_request_breaking_the_contract_is_invalid_argument(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await validate(stub, order(quantity=0))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# Commitments: an isolated database and stream, so the events published here reach no one else.

OPEN_ORDER = "ORD-20260316-00000001"
NEW_ORDER = "ORD-20260316-00000002"
SMALL_ACCOUNT = "ACC-987655"  # 2,000.00 cash


def event(
    order_id: str,
    version: int,
    state: int,
    detail: str,
    *,
    quantity: int,
) -> order_events_pb2.OrderEvent:
    """An event of a limit buy of AAPL at 189.50 by the small account."""
    message = order_events_pb2.OrderEvent(
        event_type="Order",
        event_id=str(uuid.uuid4()),
        order_id=order_id,
        account_id=SMALL_ACCOUNT,
        symbol="AAPL",
        side=common_pb2.SIDE_BUY,
        quantity=quantity,
        order_type=common_pb2.ORDER_TYPE_LIMIT,
        limit_price="189.50",
        stream_version=version,
        state=state,  # type: ignore[arg-type]
    )
    getattr(message, detail).SetInParent()
    return message


@pytest_asyncio.fixture
async def isolated(
    fresh_database: Any, nats_server: Any, tmp_path: Path
) -> AsyncIterator[tuple[Stub, Any, str]]:
    """An OMS on a fresh database holding one open order, following a stream of its own."""
    await apply_migrations(fresh_database.owner_dsn)
    await _insert_open_order(fresh_database.owner_dsn)
    prefix = f"omstest{uuid.uuid4().hex[:8]}"
    stream = prefix.upper()
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream(timeout=5)
    await js.add_stream(name=stream, subjects=[f"{prefix}.orders.>"])
    process = ServiceProcess(
        "brokermesh.services.oms",
        tmp_path,
        {
            "BROKERMESH_DATABASE_URL": fresh_database.app_dsn,
            "BROKERMESH_NATS_URL": nats_server.url,
            "BROKERMESH_OMS_ORDERS_STREAM": stream,
            "BROKERMESH_OMS_ORDERS_SUBJECT": f"{prefix}.orders.>",
        },
    )
    try:
        process.start()
        async with grpc.aio.insecure_channel(process.address) as channel:
            yield Stub(channel), js, prefix
    finally:
        process.stop()
        await js.delete_stream(stream)
        await nc.close()


async def _insert_open_order(owner_dsn: str) -> None:
    # A routed buy of 5 AAPL at 189.50: 947.50 of the account's 2,000.00 is committed.
    view = order_query_pb2.OrderView(
        order=order(order_id=OPEN_ORDER, account_id=SMALL_ACCOUNT, quantity=5),
        state=S.ORDER_STATE_ROUTED,
        leaves_quantity=5,
        stream_version=4,
    )
    conn = await asyncpg.connect(owner_dsn)
    try:
        await conn.execute(
            "INSERT INTO order_views (order_id, account_id, state, stream_version, accepted_at,"
            " view) VALUES ($1, $2, 'ROUTED', 4, now(), $3)",
            OPEN_ORDER,
            SMALL_ACCOUNT,
            view.SerializeToString(),
        )
    finally:
        await conn.close()


async def test_open_orders_and_their_events_hold_buying_power(
    isolated: tuple[Stub, Any, str],
) -> None:
    stub, js, prefix = isolated
    six = order(order_id="ORD-20260316-00000009", account_id=SMALL_ACCOUNT, quantity=6)

    async def check() -> validation_pb2.ValidateOrderResponse:
        return await validate(stub, six)

    # 6 x 189.50 = 1,137.00 does not fit beside the open order's 947.50.
    held = await check()
    await js.publish(
        f"{prefix}.orders.cancelled",
        event(OPEN_ORDER, 5, S.ORDER_STATE_CANCELLED, "cancelled", quantity=5).SerializeToString(),
    )
    released = await eventually(check, lambda r: r.passed)
    for version, (state, detail) in enumerate(
        [
            (S.ORDER_STATE_NEW, "accepted"),
            (S.ORDER_STATE_VALIDATED, "validated"),
            (S.ORDER_STATE_RISK_APPROVED, "risk_approved"),
        ],
        start=1,
    ):
        await js.publish(
            f"{prefix}.orders.{detail}",
            event(NEW_ORDER, version, state, detail, quantity=5).SerializeToString(),
        )
    held_again = await eventually(check, lambda r: not r.passed)

    assert failed(held)["buying_power"] == (
        "buy notional $1,137.00 exceeds available $1,052.50 (cash $2,000.00 less $947.50 "
        "committed to open buys): shortfall $84.50"
    )
    assert released.passed
    assert "less $947.50 committed to open buys" in failed(held_again)["buying_power"]
