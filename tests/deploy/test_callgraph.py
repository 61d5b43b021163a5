"""Istio ALLOW rules and NetworkPolicies open exactly the edges the manifests use."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from brokermesh.mesh.manifest import ServiceManifest
from brokermesh.services.registry import MANIFESTS

from .callgraph import INSTANCES, Edge, call_graph_problems, expected_edges
from .render import OVERLAYS, Obj, find


def _replace(
    manifests: tuple[ServiceManifest, ...], name: str, **changes: object
) -> tuple[ServiceManifest, ...]:
    return tuple(dataclasses.replace(m, **changes) if m.name == name else m for m in manifests)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_policies_allow_exactly_the_call_graph_of_the_manifests(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    problems = call_graph_problems(rendered[overlay], MANIFESTS)

    assert not problems, "\n".join(problems)


def test_the_manifests_call_graph_is_not_empty() -> None:
    internal, _ = expected_edges(MANIFESTS, (m.name for m in MANIFESTS))

    assert Edge("order-entry", "oms", 50052) in internal
    assert Edge("venue-gateway", "venue-xnas", 9881) in internal


def test_prod_reaches_the_venues_outside_the_cluster(rendered: dict[str, list[Obj]]) -> None:
    deployed = {o["metadata"]["name"] for o in rendered["prod"] if o["kind"] == "Deployment"}
    _, external = expected_edges(MANIFESTS, deployed)

    assert {e.callee for e in external} == {"venue-xnas", "venue-arca"}
    assert not deployed & {"venue-xnas", "venue-arca"}


def test_a_removed_allow_rule_is_reported_as_a_missing_edge(rendered: dict[str, list[Obj]]) -> None:
    objects = copy.deepcopy(rendered["dev"])
    policy = find(objects, "AuthorizationPolicy", "oms", "brokermesh-data")
    objects.remove(policy)

    problems = call_graph_problems(objects, MANIFESTS)

    assert problems == [
        "Istio AuthorizationPolicy: order-entry -> oms:50052 is used by the "
        "code (manifests) but not allowed"
    ]


def test_a_removed_network_rule_is_reported_as_a_missing_edge(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = copy.deepcopy(rendered["prod"])
    policy = find(objects, "NetworkPolicy", "router", "brokermesh-data")
    policy["spec"]["ingress"] = []

    problems = call_graph_problems(objects, MANIFESTS)

    assert problems == [
        "NetworkPolicy ingress: order-entry -> router:50054 is used by the "
        "code (manifests) but not allowed"
    ]


def test_a_call_added_to_a_manifest_is_reported_as_an_edge_without_a_rule(
    rendered: dict[str, list[Obj]],
) -> None:
    manifests = _replace(MANIFESTS, "router", calls=("venue-gateway", "risk"))

    problems = call_graph_problems(rendered["prod"], manifests)

    edge = "router -> risk:50053 is used by the code (manifests) but not allowed"
    assert problems == [
        f"Istio AuthorizationPolicy: {edge}",
        f"NetworkPolicy ingress: {edge}",
        f"NetworkPolicy egress: {edge}",
    ]


def test_a_call_removed_from_a_manifest_is_reported_as_an_unused_rule(
    rendered: dict[str, list[Obj]],
) -> None:
    manifests = _replace(MANIFESTS, "gateway", calls=("order-entry",))

    problems = call_graph_problems(rendered["prod"], manifests)

    edge = "gateway -> ledger:50057 is allowed but no manifest uses it"
    assert problems == [
        f"Istio AuthorizationPolicy: {edge}",
        f"NetworkPolicy ingress: {edge}",
        f"NetworkPolicy egress: {edge}",
    ]


def test_a_backend_dropped_from_a_manifest_is_reported_as_an_unused_rule(
    rendered: dict[str, list[Obj]],
) -> None:
    manifests = _replace(MANIFESTS, "router", backends=())

    problems = call_graph_problems(rendered["prod"], manifests)

    edge = "router -> nats:4222 is allowed but no manifest uses it"
    assert problems == [
        f"Istio AuthorizationPolicy: {edge}",
        f"NetworkPolicy ingress: {edge}",
        f"NetworkPolicy egress: {edge}",
    ]


def test_a_rule_admitting_any_source_is_reported(rendered: dict[str, list[Obj]]) -> None:
    objects = copy.deepcopy(rendered["prod"])
    policy = find(objects, "AuthorizationPolicy", "ledger", "brokermesh-data")
    policy["spec"]["rules"].append({"to": [{"operation": {"ports": ["50057"]}}]})

    problems = call_graph_problems(objects, MANIFESTS)

    assert problems == ["AuthorizationPolicy brokermesh-data/ledger admits any source"]


def test_venue_egress_on_a_port_no_fix_peer_uses_is_reported(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = copy.deepcopy(rendered["prod"])
    policy = find(objects, "NetworkPolicy", "venue-gateway-fix", "brokermesh-data")
    policy["spec"]["egress"][0]["ports"][0]["port"] = 443

    problems = call_graph_problems(objects, MANIFESTS)

    assert any("192.0.2.0/28:443, which is no FIX peer" in p for p in problems)
    assert any("venue-gateway -> venue-xnas:9881 is used by the code" in p for p in problems)


def test_the_ledger_relays_session_is_the_only_edge_to_the_postgres_instances() -> None:
    internal, _ = expected_edges(MANIFESTS, (m.name for m in MANIFESTS))

    assert {e for e in internal if e.callee == INSTANCES.name} == {
        Edge("ledger", INSTANCES.name, 5432)
    }


def test_a_relay_without_its_path_to_the_instances_is_reported(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = copy.deepcopy(rendered["prod"])
    policy = find(objects, "NetworkPolicy", "ledger", "brokermesh-data")
    policy["spec"]["egress"] = [
        rule
        for rule in policy["spec"]["egress"]
        if rule["to"][0].get("podSelector", {}).get("matchLabels") != dict(INSTANCES.labels)
    ]

    problems = call_graph_problems(objects, MANIFESTS)

    assert problems == [
        "NetworkPolicy egress: ledger -> postgres-instances:5432 is used by the "
        "code (manifests) but not allowed"
    ]


def test_another_service_admitted_to_the_instances_is_reported(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = copy.deepcopy(rendered["prod"])
    policy = find(objects, "NetworkPolicy", "brokermesh-pg-instances", "brokermesh-data")
    policy["spec"]["ingress"][0]["from"].append(
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "oms"}}}
    )

    problems = call_graph_problems(objects, MANIFESTS)

    assert problems == [
        "NetworkPolicy ingress: oms -> postgres-instances:5432 is allowed but no manifest uses it"
    ]
