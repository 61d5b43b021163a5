"""The server pipeline over real gRPC: validation, error mapping, the deadline cap and ids."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import grpc
import nats
import protovalidate
import pytest
from google.rpc import error_details_pb2, status_pb2
from prometheus_client import REGISTRY

from brokermesh.common.v1 import common_pb2
from brokermesh.mesh import errors
from brokermesh.mesh.pipeline import violation_field
from brokermesh.trading.v1 import order_entry_pb2, order_query_pb2
from tests.conftest import NatsServer, PostgresServer

from .support import MANIFEST, WIRE_SLACK_S, ProbeApp, get_order, serving, trailers

pytestmark = pytest.mark.timeout(30)

_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def _raising(error: Exception) -> Any:
    async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
        raise error

    return behaviour


def _sleeping(seconds: float) -> Any:
    async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await asyncio.sleep(seconds)
        return order_query_pb2.GetOrderResponse()

    return behaviour


async def _failure(app: ProbeApp, request: Any = None, **settings: Any) -> grpc.aio.AioRpcError:
    async with serving(app, **settings) as served:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await served.query.GetOrder(request or get_order(), timeout=5)
    return caught.value


# -- contract validation ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_request_breaking_its_contract_is_invalid_argument_naming_the_field() -> None:
    app = ProbeApp()

    error = await _failure(app, order_query_pb2.GetOrderRequest(order_id="42"))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("order_id: ")
    assert trailers(error)["x-error-field"] == "order_id"
    assert trailers(error)["x-error-code"] == "INVALID_ARGUMENT"
    assert app.seen == []


@pytest.mark.asyncio
async def test_invalid_argument_details_list_every_violated_field() -> None:
    request = order_query_pb2.ListOrdersRequest(account_id="acc 1", page_size=501)

    async with serving(ProbeApp()) as served:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await served.query.ListOrders(request, timeout=5)

    status = status_pb2.Status.FromString(trailers(caught.value)["grpc-status-details-bin"])
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert [v.field for v in bad_request.field_violations] == ["account_id", "page_size"]
    assert status.message == caught.value.details()


def test_a_message_level_rule_is_reported_under_the_field_it_guards() -> None:
    request = order_entry_pb2.SubmitOrderRequest(
        account_id="ACC-1",
        symbol="AAPL",
        side=common_pb2.SIDE_BUY,
        quantity=10,
        order_type=common_pb2.ORDER_TYPE_MARKET,
        limit_price="189.50",
        time_in_force=common_pb2.TIME_IN_FORCE_DAY,
        advisor_id="ADV-1",
        client_order_id="C-1",
    )

    violations = protovalidate.Validator().collect_violations(request)

    assert [violation_field(v) for v in violations] == ["limit_price"]


# -- error mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error_class", "status"),
    [
        (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NotFound, grpc.StatusCode.NOT_FOUND),
        (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
        (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
        (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
        (errors.Aborted, grpc.StatusCode.ABORTED),
        (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
        (errors.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
        (errors.MeshError, grpc.StatusCode.INTERNAL),
    ],
)
@pytest.mark.asyncio
async def test_a_mesh_error_aborts_with_its_status_message_code_and_field(
    error_class: type[errors.MeshError], status: grpc.StatusCode
) -> None:
    raised = error_class("order ORD-1 cannot do that", field="order_id", code="WHY_NOT")

    error = await _failure(ProbeApp(GetOrder=_raising(raised)))

    assert error.code() == status
    assert error.details() == "order ORD-1 cannot do that"
    assert trailers(error)["x-error-code"] == "WHY_NOT"
    assert trailers(error)["x-error-field"] == "order_id"


@pytest.mark.asyncio
async def test_a_mesh_error_without_a_field_carries_its_class_name_and_no_field() -> None:
    error = await _failure(ProbeApp(GetOrder=_raising(errors.NotFound("no such order"))))

    assert trailers(error)["x-error-code"] == "NotFound"
    assert "x-error-field" not in trailers(error)


@pytest.mark.asyncio
async def test_an_unexpected_exception_is_internal_and_its_message_stays_inside() -> None:
    error = await _failure(ProbeApp(GetOrder=_raising(RuntimeError("password=hunter2"))))

    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == "internal error"


@pytest.mark.asyncio
async def test_each_call_is_counted_by_method_and_final_code() -> None:
    labels = {"service": MANIFEST.name, "method": "GetOrder", "code": "NOT_FOUND"}
    before = REGISTRY.get_sample_value("brokermesh_grpc_server_handled_total", labels) or 0.0

    await _failure(ProbeApp(GetOrder=_raising(errors.NotFound("gone"))))

    after = REGISTRY.get_sample_value("brokermesh_grpc_server_handled_total", labels)
    assert after == before + 1


# -- the deadline cap ------------------------------------------------------------------------


@pytest.mark.parametrize("timeout_s", [None, 60.0], ids=["no-deadline", "long-deadline"])
@pytest.mark.asyncio
async def test_the_handler_budget_is_capped_at_max_deadline(timeout_s: float | None) -> None:
    app = ProbeApp()

    async with serving(app, max_deadline_ms=300) as served:
        await served.query.GetOrder(get_order(), timeout=timeout_s)

    remaining = app.seen[0].remaining_s
    assert remaining is not None
    assert 0.2 < remaining <= 0.3


@pytest.mark.asyncio
async def test_a_caller_deadline_shorter_than_the_cap_is_kept() -> None:
    app = ProbeApp()

    async with serving(app, max_deadline_ms=5_000) as served:
        await served.query.GetOrder(get_order(), timeout=0.25)

    remaining = app.seen[0].remaining_s
    assert remaining is not None
    assert 0.0 < remaining <= 0.25 + WIRE_SLACK_S


@pytest.mark.asyncio
async def test_a_handler_that_outruns_the_capped_budget_is_deadline_exceeded() -> None:
    started = time.monotonic()

    error = await _failure(ProbeApp(GetOrder=_sleeping(10)), max_deadline_ms=100)

    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 3


@pytest.mark.asyncio
async def test_a_database_timeout_in_a_handler_is_unavailable_naming_postgresql(
    postgres: PostgresServer,
) -> None:
    connection = await asyncpg.connect(postgres.app_dsn, timeout=10)

    async def slow_query(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await connection.fetch("SELECT pg_sleep(5)", timeout=0.05)
        return order_query_pb2.GetOrderResponse()

    try:
        error = await _failure(ProbeApp(GetOrder=slow_query), max_deadline_ms=5_000)
    finally:
        await connection.close(timeout=5)

    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details() == "PostgreSQL did not answer in time"
    assert trailers(error)["x-error-code"] == "DEPENDENCY_TIMEOUT"


@pytest.mark.asyncio
async def test_a_nats_request_timeout_in_a_handler_is_unavailable_naming_nats(
    nats_server: NatsServer,
) -> None:
    client = await nats.connect(nats_server.url, connect_timeout=5)
    await client.subscribe("probe.silent")  # a responder that never answers

    async def unanswered(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await client.request("probe.silent", b"", timeout=0.05)
        return order_query_pb2.GetOrderResponse()

    try:
        error = await _failure(ProbeApp(GetOrder=unanswered), max_deadline_ms=5_000)
    finally:
        await client.close()

    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details() == "NATS did not answer in time"


@pytest.mark.asyncio
async def test_a_timeout_of_the_handlers_own_is_unavailable_not_deadline_exceeded() -> None:
    async def impatient(request: Any, context: grpc.aio.ServicerContext) -> Any:
        async with asyncio.timeout(0.01):
            await asyncio.Event().wait()
        return order_query_pb2.GetOrderResponse()

    error = await _failure(ProbeApp(GetOrder=impatient), max_deadline_ms=5_000)

    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details() == "a dependency did not answer in time"


# -- ids -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_callers_correlation_id_is_adopted() -> None:
    app = ProbeApp()

    async with serving(app) as served:
        await served.query.GetOrder(
            get_order(), timeout=5, metadata=(("x-correlation-id", "corr-7"),)
        )

    assert app.seen[0].correlation_id == "corr-7"


@pytest.mark.asyncio
async def test_a_call_without_a_correlation_id_gets_a_fresh_one() -> None:
    app = ProbeApp()

    async with serving(app) as served:
        await served.query.GetOrder(get_order(), timeout=5)
        await served.query.GetOrder(get_order(), timeout=5)

    first, second = (uuid.UUID(seen.correlation_id) for seen in app.seen)
    assert first != second


@pytest.mark.asyncio
async def test_the_callers_trace_is_continued_by_the_handler(tracing: None) -> None:
    app = ProbeApp()
    traceparent = f"00-{_TRACE_ID}-00f067aa0ba902b7-01"

    async with serving(app) as served:
        await served.query.GetOrder(
            get_order(), timeout=5, metadata=(("traceparent", traceparent),)
        )

    assert app.seen[0].trace_id == _TRACE_ID
