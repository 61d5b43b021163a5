"""The risk process over gRPC, against the real PostgreSQL and NATS of the test harness."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient

from brokermesh.common.v1 import common_pb2
from brokermesh.control.v1 import control_pb2
from brokermesh.domain.exposure import ACCOUNT_HEADER
from brokermesh.mesh import controls as mesh_controls
from brokermesh.trading.v1 import market_data_pb2, order_pb2, risk_pb2, risk_pb2_grpc
from tests.processes import ServiceProcess, eventually

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

PASS = common_pb2.DECISION_RESULT_PASS
FAIL = common_pb2.DECISION_RESULT_FAIL
Stub = risk_pb2_grpc.PreTradeRiskServiceStub


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


def failed(response: risk_pb2.EvaluateOrderResponse) -> dict[str, str]:
    return {d.policy: d.reason for d in response.decisions if d.result == FAIL}


@pytest.fixture(scope="module")
def risk(
    postgres: Any,
    nats_server: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceProcess]:
    """The risk service on the session's migrated database and NATS."""
    process = ServiceProcess(
        "brokermesh.services.risk",
        tmp_path_factory.mktemp("risk"),
        {"BROKERMESH_DATABASE_URL": postgres.app_dsn, "BROKERMESH_NATS_URL": nats_server.url},
    )
    try:
        process.start()
        yield process
    finally:
        process.stop()


@pytest_asyncio.fixture
async def stub(risk: ServiceProcess) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(risk.address) as channel:
        yield Stub(channel)


@pytest_asyncio.fixture
async def nc(nats_server: Any) -> AsyncIterator[NatsClient]:
    client = await nats.connect(nats_server.url)
    try:
        yield client
    finally:
        await client.close()


async def evaluate(stub: Stub, o: order_pb2.Order) -> risk_pb2.EvaluateOrderResponse:
    return await stub.EvaluateOrder(risk_pb2.EvaluateOrderRequest(order=o), timeout=5)


async def test_blueprint_order_is_approved_by_every_policy(stub: Stub) -> None:
    response = await evaluate(stub, order())

    assert response.approved
    assert [(d.policy, d.result) for d in response.decisions] == [
        ("max_notional", PASS),
        ("max_quantity", PASS),
        ("price_collar", PASS),
        ("concentration", PASS),
    ]
    assert response.decisions[0].reason == (
        "notional $18,950.00 within max_order_notional $1,000,000.00"
    )


async def test_call_routed_on_another_account_is_invalid_argument(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.EvaluateOrder(
            risk_pb2.EvaluateOrderRequest(order=order()),
            metadata=((ACCOUNT_HEADER, "ACC-555001"),),
            timeout=5,
        )

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == (
        "x-brokermesh-account 'ACC-555001' does not match the order's account ACC-987654"
    )


async def test_order_above_max_notional_is_blocked_with_the_figures(stub: Stub) -> None:
    response = await evaluate(stub, order(quantity=6000))

    assert not response.approved
    assert failed(response)["max_notional"] == (
        "notional $1,137,000.00 exceeds max_order_notional $1,000,000.00"
    )


async def test_limit_order_priced_at_zero_is_refused_by_every_policy(stub: Stub) -> None:
    response = await evaluate(stub, order(limit_price="0.00"))

    assert not response.approved
    assert set(failed(response).values()) == {"limit price '0.00' is not a positive number"}
    assert len(response.decisions) == 4


async def test_reduced_mode_halves_the_limits_and_says_so(stub: Stub, nc: NatsClient) -> None:
    kv = await nc.jetstream().key_value(mesh_controls.BUCKET)
    # 3,000 x 189.50 = 568,500: inside the firm's 1,000,000, outside half of it.
    big = order(quantity=3000)

    async def check() -> risk_pb2.EvaluateOrderResponse:
        return await evaluate(stub, big)

    normal = await check()
    try:
        await kv.put(mesh_controls.KEY, _controls(control_pb2.DEGRADATION_MODE_REDUCED))
        reduced = await eventually(check, lambda r: not r.approved)
    finally:
        await kv.put(mesh_controls.KEY, _controls(control_pb2.DEGRADATION_MODE_NORMAL))
    restored = await eventually(check, lambda r: r.approved)

    assert normal.approved
    assert failed(reduced) == {
        "max_notional": "notional $568,500.00 exceeds max_order_notional $500,000.00 "
        "(REDUCED mode: conservative limits, halved)",
    }
    assert restored.approved


async def test_last_price_from_a_venue_quote_moves_the_collar(stub: Stub, nc: NatsClient) -> None:
    # MSFT's reference price is 415.20; a trade at 300.00 makes a 415.20 limit far off.
    msft = order(symbol="MSFT", limit_price="415.20", quantity=10)
    quote = market_data_pb2.Quote(
        venue="XNAS",
        symbol="MSFT",
        bid_price="299.99",
        bid_size=100,
        ask_price="300.01",
        ask_size=100,
        last_price="300.00",
    )

    before = await evaluate(stub, msft)
    await nc.publish("marketdata.quotes.XNAS.MSFT", quote.SerializeToString())
    after = await eventually(lambda: evaluate(stub, msft), lambda r: not r.approved)

    assert before.approved
    assert failed(after) == {
        "price_collar": "limit 415.20 is 3840.00 bps from last 300.00, outside the 500 bps collar",
    }


def _controls(mode: int) -> bytes:
    return control_pb2.TradingControls(
        mode=mode,  # type: ignore[arg-type]
        reason="risk tests",
        updated_by=common_pb2.Actor(type=common_pb2.ACTOR_TYPE_OPERATOR, id="ops-risk-test"),
    ).SerializeToString()
