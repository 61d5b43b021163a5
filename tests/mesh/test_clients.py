"""The client factory: retries from the contracts, the call graph, budgets and ids downstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2
from opentelemetry import trace

from brokermesh.common.v1 import common_pb2
from brokermesh.control.v1 import control_pb2
from brokermesh.control.v1.control_pb2_grpc import ControlPlaneServiceStub
from brokermesh.mesh import deadlines, errors
from brokermesh.mesh.clients import (
    ClientFactory,
    method_timeout_s,
    outgoing_metadata,
    service_config,
)
from brokermesh.mesh.logging import correlation_id_var
from brokermesh.mesh.manifest import Plane, ServiceManifest
from brokermesh.trading.v1 import order_entry_pb2, order_pb2, order_query_pb2, venue_pb2
from brokermesh.trading.v1.order_query_pb2_grpc import OrderQueryServiceStub
from brokermesh.trading.v1.venue_pb2_grpc import VenueGatewayServiceStub

from .support import (
    CONTROLS,
    MANIFEST,
    ORDER_ID,
    QUERY,
    VENUES,
    WIRE_SLACK_S,
    ProbeApp,
    Served,
    get_order,
    serving,
    trailers,
)

pytestmark = pytest.mark.timeout(30)

ENTRY = order_entry_pb2.DESCRIPTOR.services_by_name["OrderEntryService"].full_name
CALLER = ServiceManifest(
    name="caller", plane=Plane.DATA, grpc_port=0, serves=MANIFEST.serves, calls=("probe",)
)


def _factory(served: Served) -> ClientFactory:
    return ClientFactory(CALLER, {"probe": served.address}, serves={"probe": MANIFEST.serves})


def _about(budget_s: float | None, timeout_s: float) -> bool:
    """Whether a handler's budget is what a ``timeout_s`` call gives it: a little less for the
    time in flight, or a little more where the grpc-timeout header rounded it up."""
    return budget_s is not None and timeout_s - 0.2 < budget_s <= timeout_s * 1.01 + WIRE_SLACK_S


def _declared_s(service: str, method: str) -> float:
    """The timeout the contract declares for ``service``/``method``."""
    found = method_timeout_s(
        descriptor_pool.Default().FindServiceByName(service).methods_by_name[method]
    )
    assert found is not None, f"{service}/{method} declares no timeout"
    return found


def _market_order() -> order_pb2.Order:
    return order_pb2.Order(
        order_id=ORDER_ID,
        client_order_id="C-1",
        account_id="ACC-1",
        advisor_id="ADV-1",
        symbol="AAPL",
        side=common_pb2.SIDE_BUY,
        quantity=10,
        order_type=common_pb2.ORDER_TYPE_MARKET,
        time_in_force=common_pb2.TIME_IN_FORCE_DAY,
    )


def _methods(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"][0]["method"]: entry for entry in config["methodConfig"]}


@pytest_asyncio.fixture
async def callee() -> AsyncIterator[tuple[ProbeApp, Served]]:
    """The probe as the service being called, with a cap that never hides the caller's budget."""
    app = ProbeApp()
    async with serving(app, max_deadline_ms=60_000) as served:
        yield app, served


# -- service config --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "method", "retried"),
    [
        (VENUES, "SendOrder", False),
        (VENUES, "ListVenues", True),
        (ENTRY, "SubmitOrder", True),
        (QUERY, "GetOrder", True),
    ],
)
def test_only_idempotent_or_side_effect_free_methods_get_a_retry_policy(
    service: str, method: str, retried: bool
) -> None:
    entry = _methods(service_config((service,)))[method]

    assert ("retryPolicy" in entry) is retried
    if retried:
        assert entry["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]


def test_every_method_of_every_service_gets_an_entry_without_a_timeout() -> None:
    config = service_config((QUERY, VENUES), max_attempts=5)

    entries = config["methodConfig"]
    assert [(e["name"][0]["service"], e["name"][0]["method"]) for e in entries] == [
        (QUERY, "GetOrder"),
        (QUERY, "ListOrders"),
        (VENUES, "SendOrder"),
        (VENUES, "QueryOrderStatus"),
        (VENUES, "ListVenues"),
    ]
    assert all("timeout" not in entry for entry in entries)
    assert {e["retryPolicy"]["maxAttempts"] for e in entries if "retryPolicy" in e} == {5}


# -- the call graph --------------------------------------------------------------------------


def test_the_factory_refuses_a_callee_the_manifest_does_not_declare() -> None:
    factory = ClientFactory(CALLER, {"ledger": "127.0.0.1:1"}, serves={"ledger": (QUERY,)})

    with pytest.raises(errors.ConfigError, match="caller does not declare a call to ledger") as e:
        factory.stub("ledger", OrderQueryServiceStub)

    assert e.value.field == "calls"


@pytest.mark.asyncio
async def test_the_factory_shares_one_channel_per_callee_until_closed(
    callee: tuple[ProbeApp, Served],
) -> None:
    factory = _factory(callee[1])

    first = factory.channel("probe")
    again = factory.channel("probe")
    await factory.close()
    reopened = factory.channel("probe")
    await factory.close()

    assert first is again
    assert reopened is not first


# -- retries on the wire ---------------------------------------------------------------------


def _unavailable_once() -> Any:
    calls = 0

    async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise errors.Unavailable("warming up")
        return venue_pb2.ListVenuesResponse(venues=[venue_pb2.VenueStatus(venue="SIMX")])

    return behaviour


@pytest.mark.asyncio
async def test_a_side_effect_free_call_is_retried_after_unavailable(
    callee: tuple[ProbeApp, Served],
) -> None:
    app, served = callee
    app.behaviours["ListVenues"] = _unavailable_once()
    factory = _factory(served)

    response = await factory.stub("probe", VenueGatewayServiceStub).ListVenues(
        venue_pb2.ListVenuesRequest()
    )
    await factory.close()

    assert [v.venue for v in response.venues] == ["SIMX"]
    assert [seen.method for seen in app.seen] == ["ListVenues", "ListVenues"]


@pytest.mark.asyncio
async def test_a_call_with_side_effects_is_not_retried(callee: tuple[ProbeApp, Served]) -> None:
    app, served = callee
    app.behaviours["SendOrder"] = _unavailable_once()
    factory = _factory(served)
    request = venue_pb2.SendOrderRequest(order=_market_order(), venue="SIMX")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await factory.stub("probe", VenueGatewayServiceStub).SendOrder(request)
    await factory.close()

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert [seen.method for seen in app.seen] == ["SendOrder"]


# -- budgets ---------------------------------------------------------------------------------


def test_the_contracts_declare_different_timeouts_for_different_methods() -> None:
    assert _declared_s(CONTROLS, "GetTradingControls") < _declared_s(CONTROLS, "ListControlChanges")


def test_a_method_outside_the_contracts_declares_no_timeout() -> None:
    check = health_pb2.DESCRIPTOR.services_by_name["Health"].methods_by_name["Check"]

    assert method_timeout_s(check) is None


@pytest.mark.asyncio
@pytest.mark.parametrize("method", ["GetTradingControls", "ListControlChanges"])
async def test_outside_a_request_a_call_gets_the_timeout_its_method_declares(
    callee: tuple[ProbeApp, Served], method: str
) -> None:
    app, served = callee
    factory = _factory(served)
    requests = {
        "GetTradingControls": control_pb2.GetTradingControlsRequest(),
        "ListControlChanges": control_pb2.ListControlChangesRequest(),
    }

    await getattr(factory.stub("probe", ControlPlaneServiceStub), method)(requests[method])
    await factory.close()

    assert _about(app.seen[0].time_remaining_s, _declared_s(CONTROLS, method))


@pytest.mark.asyncio
@pytest.mark.parametrize("timeout_s", [0.3, 4.0], ids=["shorter", "longer"])
async def test_an_explicit_timeout_replaces_the_declared_one(
    callee: tuple[ProbeApp, Served], timeout_s: float
) -> None:
    app, served = callee
    factory = _factory(served)

    await factory.stub("probe", OrderQueryServiceStub).GetOrder(get_order(), timeout=timeout_s)
    await factory.close()

    assert _about(app.seen[0].time_remaining_s, timeout_s)
    assert not _about(timeout_s, _declared_s(QUERY, "GetOrder"))


def _calling_probe(
    factory: ClientFactory, budgets: list[float | None], timeout_s: float | None
) -> Any:
    """A caller handler that notes its own budget, then asks the probe for the same order."""

    async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
        budgets.append(deadlines.remaining_s())
        stub = factory.stub("probe", OrderQueryServiceStub)
        return await stub.GetOrder(
            order_query_pb2.GetOrderRequest(order_id=request.order_id), timeout=timeout_s
        )

    return behaviour


async def _through_caller(
    served: Served,
    *,
    max_deadline_ms: int = 2_000,
    downstream_timeout_s: float | None = None,
    **call: Any,
) -> tuple[list[float | None], Any]:
    """Call the callee through a caller service built on the factory; returns the caller's
    budgets and the caller's answer (or its error)."""
    factory = _factory(served)
    budgets: list[float | None] = []
    caller = ProbeApp(GetOrder=_calling_probe(factory, budgets, downstream_timeout_s))
    try:
        async with serving(caller, manifest=CALLER, max_deadline_ms=max_deadline_ms) as front:
            try:
                return budgets, await front.query.GetOrder(get_order(), **call)
            except grpc.aio.AioRpcError as exc:
                return budgets, exc
    finally:
        await factory.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("downstream_timeout_s", [None, 4.0], ids=["declared", "explicit"])
async def test_a_downstream_call_gets_no_more_than_the_callers_remaining_budget(
    callee: tuple[ProbeApp, Served], downstream_timeout_s: float | None
) -> None:
    app, served = callee

    budgets, _ = await _through_caller(
        served, max_deadline_ms=400, downstream_timeout_s=downstream_timeout_s
    )

    caller_budget, callee_budget = budgets[0], app.seen[0].time_remaining_s
    assert caller_budget is not None and callee_budget is not None
    assert 0.0 < callee_budget <= caller_budget + WIRE_SLACK_S
    assert caller_budget <= 0.4


# -- failures downstream ---------------------------------------------------------------------


def _raising(error: Exception) -> Any:
    async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
        raise error

    return behaviour


_CODE = grpc.StatusCode


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("raised", "status", "message", "stable_code"),
    [
        (
            errors.InvalidArgument("venue: must be 4 letters", field="venue"),
            _CODE.INTERNAL,
            "probe failed (INVALID_ARGUMENT)",
            "DEPENDENCY_INVALID_ARGUMENT",
        ),
        (
            errors.MeshError("pool at 10.0.0.7 exhausted", field="pool"),
            _CODE.INTERNAL,
            "probe failed (INTERNAL)",
            "DEPENDENCY_INTERNAL",
        ),
        (
            errors.PermissionDenied("caller sa/oms is not allowed", field="caller"),
            _CODE.INTERNAL,
            "probe failed (PERMISSION_DENIED)",
            "DEPENDENCY_PERMISSION_DENIED",
        ),
        (
            errors.NotFound("no account ACC-1", field="account_id"),
            _CODE.FAILED_PRECONDITION,
            "probe: no account ACC-1",
            "DEPENDENCY_NOT_FOUND",
        ),
        (
            errors.FailedPrecondition("trading is halted", field="venue", code="HALTED"),
            _CODE.FAILED_PRECONDITION,
            "probe: trading is halted",
            "HALTED",
        ),
        (
            errors.Unavailable("cannot reach 10.0.0.7:5432", field="database"),
            _CODE.UNAVAILABLE,
            "probe is unavailable",
            "DEPENDENCY_UNAVAILABLE",
        ),
        (
            errors.DeadlineExceeded("query ran 2 s", field="query"),
            _CODE.DEADLINE_EXCEEDED,
            "probe did not answer within the deadline",
            "DEPENDENCY_DEADLINE_EXCEEDED",
        ),
    ],
    ids=lambda value: value.name if isinstance(value, grpc.StatusCode) else None,
)
async def test_a_dependency_failure_a_handler_lets_through_is_mapped_and_names_it(
    callee: tuple[ProbeApp, Served],
    raised: errors.MeshError,
    status: grpc.StatusCode,
    message: str,
    stable_code: str,
) -> None:
    app, served = callee
    app.behaviours["GetOrder"] = _raising(raised)

    _, answer = await _through_caller(served, timeout=5)

    assert isinstance(answer, grpc.aio.AioRpcError)
    assert (answer.code(), answer.details()) == (status, message)
    assert trailers(answer)["x-error-code"] == stable_code
    assert "x-error-field" not in trailers(answer)


@pytest.mark.asyncio
async def test_a_direct_call_keeps_the_callees_status_for_the_handler_to_act_on(
    callee: tuple[ProbeApp, Served],
) -> None:
    app, served = callee
    app.behaviours["SendOrder"] = _raising(
        errors.FailedPrecondition("unknown venue SIMX", field="venue")
    )
    factory = _factory(served)
    request = venue_pb2.SendOrderRequest(order=_market_order(), venue="SIMX")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await factory.stub("probe", VenueGatewayServiceStub).SendOrder(request)
    await factory.close()

    assert isinstance(caught.value, errors.DependencyError)
    assert caught.value.dependency == "probe"
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.details() == "unknown venue SIMX"
    assert trailers(caught.value)["x-error-field"] == "venue"


def test_every_channel_throttles_its_retries() -> None:
    config = service_config((QUERY,))

    assert config["retryThrottling"] == {"maxTokens": 10, "tokenRatio": 0.1}


@pytest.mark.asyncio
async def test_retries_stop_once_a_callee_keeps_failing(callee: tuple[ProbeApp, Served]) -> None:
    app, served = callee
    app.behaviours["ListVenues"] = _raising(errors.Unavailable("down"))
    factory = _factory(served)
    stub = factory.stub("probe", VenueGatewayServiceStub)
    calls = 10

    codes = []
    for _ in range(calls):
        try:
            await stub.ListVenues(venue_pb2.ListVenuesRequest())
        except grpc.aio.AioRpcError as exc:
            codes.append(exc.code())
    await factory.close()

    assert codes == [grpc.StatusCode.UNAVAILABLE] * calls
    # Unthrottled, each call would make all 3 attempts: 30.
    assert calls <= len(app.seen) < 2 * calls


# -- ids downstream --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_correlation_and_trace_ids_follow_the_call_downstream(
    callee: tuple[ProbeApp, Served], tracing: None
) -> None:
    app, served = callee
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    await _through_caller(
        served, timeout=5, metadata=(("x-correlation-id", "corr-42"), ("traceparent", traceparent))
    )

    assert app.seen[0].correlation_id == "corr-42"
    assert app.seen[0].trace_id == "0af7651916cd43dd8448eb211c80319c"


def test_outgoing_metadata_carries_extras_then_trace_context_then_the_correlation_id(
    tracing: None,
) -> None:
    token = correlation_id_var.set("corr-9")
    try:
        with trace.get_tracer(__name__).start_as_current_span("outgoing"):
            metadata = outgoing_metadata((("x-extra", "1"),))
    finally:
        correlation_id_var.reset(token)

    keys = [key for key, _ in metadata]
    assert keys == ["x-extra", "traceparent", "x-correlation-id"]
    assert metadata[-1] == ("x-correlation-id", "corr-9")


def test_outgoing_metadata_outside_a_request_has_no_correlation_id() -> None:
    assert all(key != "x-correlation-id" for key, _ in outgoing_metadata())
