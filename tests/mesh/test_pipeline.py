"""The server pipeline over real gRPC: validation, error mapping, deadlines, ids, final codes."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import nats
import protovalidate
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from brokermesh._buf.validate import validate_pb2
from brokermesh.common.v1 import common_pb2
from brokermesh.mesh import errors
from brokermesh.mesh.logging import annotate
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


@pytest.mark.asyncio
async def test_an_overlong_correlation_id_is_replaced_by_a_fresh_one() -> None:
    app = ProbeApp()

    async with serving(app) as served:
        await served.query.GetOrder(
            get_order(), timeout=5, metadata=(("x-correlation-id", "c" * 129),)
        )

    assert uuid.UUID(app.seen[0].correlation_id)


# -- the final code that is counted and logged -----------------------------------------------


def _handled(code: str) -> float:
    labels = {"service": MANIFEST.name, "method": "GetOrder", "code": code}
    return REGISTRY.get_sample_value("brokermesh_grpc_server_handled_total", labels) or 0.0


def _logged_codes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        str(getattr(record, "code", ""))
        for record in caplog.records
        if record.name == "brokermesh.mesh.pipeline" and getattr(record, "method", "")
    ]


@pytest.mark.asyncio
async def test_a_call_the_handler_aborts_itself_is_counted_and_logged_with_its_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def aborting(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such order")

    caplog.set_level(logging.INFO, logger="brokermesh.mesh.pipeline")
    before = _handled("NOT_FOUND")

    error = await _failure(ProbeApp(GetOrder=aborting))

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert _handled("NOT_FOUND") == before + 1
    assert _logged_codes(caplog) == ["NOT_FOUND"]


@pytest.mark.asyncio
async def test_a_code_the_handler_sets_before_returning_is_the_one_counted() -> None:
    async def conflicting(request: Any, context: grpc.aio.ServicerContext) -> Any:
        context.set_code(grpc.StatusCode.ALREADY_EXISTS)
        context.set_details("order exists")
        return order_query_pb2.GetOrderResponse()

    before = _handled("ALREADY_EXISTS")

    error = await _failure(ProbeApp(GetOrder=conflicting))

    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert _handled("ALREADY_EXISTS") == before + 1


@pytest.mark.asyncio
async def test_a_call_the_caller_cancels_is_counted_and_logged_as_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="brokermesh.mesh.pipeline")
    app = ProbeApp(GetOrder=_sleeping(10))
    before = _handled("CANCELLED")

    async with serving(app, max_deadline_ms=60_000) as served:
        call = served.query.GetOrder(get_order(), timeout=30)
        await app.arrived.wait()
        call.cancel()
        for _ in range(200):
            if _handled("CANCELLED") > before:
                break
            await asyncio.sleep(0.01)

    assert _handled("CANCELLED") == before + 1
    assert _logged_codes(caplog) == ["CANCELLED"]


# -- rules that cannot be evaluated ----------------------------------------------------------


def _message_with_a_rule(name: str, expression: str) -> type[Message]:
    """A message type whose int64 field ``n`` carries the CEL ``expression`` as its rule."""
    package = f"probe.rules.{name.lower()}"
    file = descriptor_pb2.FileDescriptorProto(
        name=f"probe/rules/{name.lower()}.proto",
        package=package,
        syntax="proto3",
        dependency=["buf/validate/validate.proto"],
    )
    message = file.message_type.add(name=name)
    field = message.field.add(
        name="n",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    field.options.Extensions[validate_pb2.field].cel.add(
        id=f"{name.lower()}.n", message="n is wrong", expression=expression
    )
    pool = descriptor_pool.Default()
    try:
        descriptor = pool.FindMessageTypeByName(f"{package}.{name}")
    except KeyError:
        pool.AddSerializedFile(file.SerializeToString())
        descriptor = pool.FindMessageTypeByName(f"{package}.{name}")
    return message_factory.GetMessageClass(descriptor)


class _RawApp(ProbeApp):
    """The probe, plus whatever generic handlers a test gives it."""

    def __init__(self, *handlers: grpc.GenericRpcHandler) -> None:
        super().__init__()
        self.handlers = handlers

    def register(self, server: grpc.aio.Server) -> None:
        super().register(server)
        server.add_generic_rpc_handlers(self.handlers)


@pytest.mark.parametrize(
    ("name", "expression"),
    [("Uncompilable", "this +"), ("Unevaluable", "1 / this > 0")],
)
@pytest.mark.asyncio
async def test_rules_that_cannot_be_evaluated_are_internal_and_logged(
    name: str, expression: str, caplog: pytest.LogCaptureFixture
) -> None:
    message_class = _message_with_a_rule(name, expression)
    ran: list[Message] = []

    async def check(request: Message, context: grpc.aio.ServicerContext) -> Message:
        ran.append(request)
        return request

    handler = grpc.method_handlers_generic_handler(
        "probe.rules.Checker",
        {
            "Check": grpc.unary_unary_rpc_method_handler(
                check,
                request_deserializer=message_class.FromString,
                response_serializer=message_class.SerializeToString,
            )
        },
    )
    caplog.set_level(logging.INFO, logger="brokermesh.mesh.pipeline")

    async with serving(_RawApp(handler)) as served:
        call = served.channel.unary_unary(
            "/probe.rules.Checker/Check",
            request_serializer=message_class.SerializeToString,
            response_deserializer=message_class.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(message_class(n=0), timeout=5)

    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert ran == []
    assert any(
        record.levelno == logging.ERROR and f"probe.rules.{name.lower()}.{name}" in record.message
        for record in caplog.records
    )


# -- streaming methods -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_streaming_method_of_a_service_of_ours_is_refused_without_running() -> None:
    ran: list[bytes] = []

    async def ticks(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        ran.append(request)
        yield b"tick"

    handler = grpc.method_handlers_generic_handler(
        "probe.stream.Ticker", {"Watch": grpc.unary_stream_rpc_method_handler(ticks)}
    )

    async with serving(_RawApp(handler)) as served:
        call = served.channel.unary_stream("/probe.stream.Ticker/Watch")(b"from-now", timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()

    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert ran == []


def _logged_fields(caplog: pytest.LogCaptureFixture, field: str) -> list[object]:
    return [
        getattr(record, field, None)
        for record in caplog.records
        if record.name == "brokermesh.mesh.pipeline" and getattr(record, "method", "")
    ]


@pytest.mark.asyncio
async def test_fields_a_handler_annotates_land_on_its_calls_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def annotating(request: Any, context: grpc.aio.ServicerContext) -> Any:
        annotate(state="FILLED")
        return order_query_pb2.GetOrderResponse()

    caplog.set_level(logging.INFO, logger="brokermesh.mesh.pipeline")

    async with serving(ProbeApp(GetOrder=annotating)) as served:
        await served.query.GetOrder(get_order(), timeout=5)

    assert _logged_fields(caplog, "state") == ["FILLED"]


@pytest.mark.asyncio
async def test_annotated_fields_do_not_carry_over_to_the_next_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    async def first_call_annotates(request: Any, context: grpc.aio.ServicerContext) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            annotate(state="FILLED")
        return order_query_pb2.GetOrderResponse()

    caplog.set_level(logging.INFO, logger="brokermesh.mesh.pipeline")

    async with serving(ProbeApp(GetOrder=first_call_annotates)) as served:
        await served.query.GetOrder(get_order(), timeout=5)
        await served.query.GetOrder(get_order(), timeout=5)

    assert _logged_fields(caplog, "state") == ["FILLED", None]


@pytest.mark.asyncio
async def test_calls_beyond_the_in_flight_limit_are_shed_at_once_while_health_still_answers() -> (
    None
):
    release = asyncio.Event()

    async def held(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await release.wait()
        return order_query_pb2.GetOrderResponse()

    before = _handled("RESOURCE_EXHAUSTED")
    async with serving(ProbeApp(GetOrder=held), max_in_flight=1) as served:
        first = asyncio.ensure_future(served.query.GetOrder(get_order(), timeout=5))
        await asyncio.sleep(0.2)

        with pytest.raises(grpc.aio.AioRpcError) as shed:
            await served.query.GetOrder(get_order(), timeout=5)
        health = await health_pb2_grpc.HealthStub(served.channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        release.set()
        await first

    assert shed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "serving 1 calls already" in (shed.value.details() or "")
    assert _handled("RESOURCE_EXHAUSTED") == before + 1
    assert health.status == health_pb2.HealthCheckResponse.SERVING
