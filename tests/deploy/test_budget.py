"""The latency budget table is the one source of the mesh timeouts, the SLO thresholds and the
histogram buckets, and its deadlines are the ones the code sets."""

from __future__ import annotations

import copy
import importlib
import inspect
import pkgutil
from decimal import Decimal

import pytest
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool

from brokermesh.mesh import config, telemetry
from brokermesh.mesh.clients import ClientFactory, method_timeout_s
from brokermesh.mesh.config import ServiceSettings
from brokermesh.services.gateway.settings import GatewaySettings
from brokermesh.services.registry import MANIFESTS, by_name, clients_for

from .budget import (
    load_budget,
    ms,
    seconds,
    slo_rule_problems,
    virtual_service_problems,
)
from .render import OVERLAYS, Obj, find, of_kind


def served_methods(service: str) -> list[descriptor.MethodDescriptor]:
    """Every method the manifest ``service`` serves."""
    pool = descriptor_pool.Default()
    for grpc_service in by_name(service).serves:
        # The generated modules register their descriptors in the default pool on import.
        package = importlib.import_module(grpc_service.rpartition(".")[0])
        for module in pkgutil.iter_modules(package.__path__):
            if module.name.endswith("_pb2"):
                importlib.import_module(f"{package.__name__}.{module.name}")
    return [
        method
        for grpc_service in by_name(service).serves
        for method in pool.FindServiceByName(grpc_service).methods
    ]


def side_effecting_methods(service: str) -> set[str]:
    """Methods of the manifest ``service`` that change something (SubmitOrder is idempotent by
    its client order id, but a cut call still leaves the caller unsure; SendOrder is not)."""
    return {
        method.name
        for method in served_methods(service)
        if method.GetOptions().idempotency_level != descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS
    }


def gateway_environment(objects: list[Obj]) -> dict[str, str]:
    """The BROKERMESH_* variables the gateway's container gets from its ConfigMaps."""
    pod = find(objects, "Deployment", "gateway", "brokermesh-data")["spec"]["template"]
    env: dict[str, str] = {}
    for source in pod["spec"]["containers"][0].get("envFrom", []):
        name = source["configMapRef"]["name"]
        env.update(find(objects, "ConfigMap", name, "brokermesh-data")["data"])
    return env


def test_the_grpc_call_deadline_is_the_longest_timeout_a_routes_methods_declare() -> None:
    budget = load_budget()
    default_s = inspect.signature(ClientFactory).parameters["default_timeout_s"].default
    services = {m.name for m in MANIFESTS}

    factories = [clients_for(m, ServiceSettings()) for m in MANIFESTS if m.calls]
    longest_ms = {
        route: max(Decimal(str(method_timeout_s(m) or default_s)) * 1000 for m in methods)
        for route in budget.routes
        if route in services and (methods := served_methods(route))
    }

    # The client factory gives a call its method's declared timeout (the default when the
    # contract declares none), so a route's callers wait at most the longest of them.
    assert longest_ms == {route: budget.deadline_ms(route) for route in longest_ms}
    assert Decimal(str(default_s)) * 1000 == budget.deadlines_ms["grpc_call_ms"]
    # What each service's factory really uses (clients_for could pass another default).
    assert {Decimal(str(f._default_timeout_s)) * 1000 for f in factories} == {
        budget.deadlines_ms["grpc_call_ms"]
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateway_request_deadline_is_the_gateways_max_deadline(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    budget = load_budget()
    env = gateway_environment(rendered[overlay])

    settings = config.load(GatewaySettings, "gateway", environ=env)

    assert settings.max_deadline_ms == budget.deadlines_ms["gateway_request_ms"]
    assert ServiceSettings().max_deadline_ms == budget.deadlines_ms["gateway_request_ms"]


def test_every_virtual_service_times_out_after_its_callers_deadline_and_margin(
    rendered: dict[str, list[Obj]],
) -> None:
    problems = virtual_service_problems(rendered["istio"], load_budget())

    assert not problems, "\n".join(problems)


def test_the_backstop_margin_is_positive_so_the_caller_always_gives_up_first() -> None:
    budget = load_budget()

    assert budget.backstop_margin_ms > 0
    assert all(budget.timeout_ms(r) > budget.deadline_ms(r) for r in budget.routes)


def test_every_callee_with_side_effects_outlasts_its_callers_deadline(
    rendered: dict[str, list[Obj]],
) -> None:
    budget = load_budget()
    routes = {
        vs["metadata"]["name"]: vs["spec"]["http"]
        for vs in of_kind(rendered["istio"], "VirtualService")
    }
    callees = {callee for m in MANIFESTS for callee in m.calls}
    guarded = {c: side_effecting_methods(c) for c in callees if side_effecting_methods(c)}

    assert "SubmitOrder" in guarded.get("order-entry", set())
    assert "SendOrder" in guarded.get("venue-gateway", set())
    for callee in guarded:
        deadline = budget.deadlines_ms["grpc_call_ms"]
        assert all(ms(route["timeout"]) > deadline for route in routes[callee]), callee


def test_a_timeout_below_its_callers_deadline_is_reported(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = copy.deepcopy(rendered["istio"])
    route = find(objects, "VirtualService", "venue-gateway")["spec"]["http"][0]
    route["timeout"] = "0.05s"

    problems = virtual_service_problems(objects, load_budget())

    assert problems == [
        "VirtualService venue-gateway: timeout 0.05s is not 1250 ms (the grpc_call_ms deadline "
        "1000 ms + the 250 ms backstop margin)",
        "VirtualService venue-gateway: perTryTimeout 1250 ms differs from the timeout, so a try "
        "could be cut before its caller's deadline",
    ]


def test_the_slo_rules_use_the_budgets_thresholds_and_objective(
    rendered: dict[str, list[Obj]],
) -> None:
    problems = slo_rule_problems(rendered["prod"], load_budget())

    assert not problems, "\n".join(problems)


def test_an_slo_rule_with_another_threshold_is_reported(rendered: dict[str, list[Obj]]) -> None:
    objects = copy.deepcopy(rendered["prod"])
    rule = find(objects, "PrometheusRule", "slo-routing-latency")
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            if "expr" in r:
                r["expr"] = r["expr"].replace('le="0.025"', 'le="0.03"')

    problems = slo_rule_problems(objects, load_budget())

    assert problems == [
        'PrometheusRule slo-routing-latency: routing_p99 does not count segment="routing",'
        'le="0.025"'
    ]


def test_the_latency_histogram_has_a_bucket_at_every_threshold() -> None:
    buckets = {seconds(Decimal(str(b)) * 1000) for b in telemetry.LATENCY_BUCKETS_S}

    for objective in load_budget().objectives:
        for threshold in objective.thresholds_ms.values():
            assert seconds(threshold) in buckets, (objective.segment, threshold)
