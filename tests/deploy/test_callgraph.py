"""Istio ALLOW rules and NetworkPolicies open exactly the edges the manifests use, the
manifests declare exactly the calls and backends the code uses, and whatever the policies
name that is no service must be listed with its reason."""

from __future__ import annotations

import copy
import dataclasses
import shutil
from pathlib import Path

import pytest

from brokermesh.mesh.manifest import ServiceManifest
from brokermesh.services.registry import MANIFESTS

from .callgraph import (
    INSTANCES,
    NAMESPACE_NAME,
    PEERS,
    PORT_RANGES,
    Edge,
    call_graph_problems,
    expected_edges,
)
from .codegraph import code_problems, package_dir, scan
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


# ---------------------------------------------------------------------- the code's call graph
@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda m: m.name)
def test_each_services_code_calls_and_uses_exactly_what_its_manifest_declares(
    manifest: ServiceManifest,
) -> None:
    graph = scan(package_dir(manifest), MANIFESTS)

    assert code_problems(manifest, graph) == []


def test_the_gateway_reaches_its_callees_through_the_services_its_routes_front() -> None:
    gateway = next(m for m in MANIFESTS if m.name == "gateway")

    graph = scan(package_dir(gateway), MANIFESTS)

    assert graph.callees == {"order-entry", "ledger"}
    assert graph.problems == []


def _copy_package(manifest_name: str, tmp_path: Path) -> tuple[ServiceManifest, Path]:
    manifest = next(m for m in MANIFESTS if m.name == manifest_name)
    folder = tmp_path / package_dir(manifest).name
    shutil.copytree(package_dir(manifest), folder, ignore=shutil.ignore_patterns("__pycache__"))
    return manifest, folder


def test_code_calling_a_service_its_manifest_does_not_declare_is_reported(
    tmp_path: Path,
) -> None:
    manifest, folder = _copy_package("router", tmp_path)
    (folder / "shortcut.py").write_text(
        '"""Asks risk directly."""\n\n\ndef risk_stub(clients, stub_class):\n'
        '    return clients.stub("risk", stub_class)\n'
    )

    problems = code_problems(manifest, scan(folder, MANIFESTS))

    assert problems == ["router: the code calls risk, which its manifest does not declare in calls"]


def test_a_declared_call_the_code_never_makes_is_reported(tmp_path: Path) -> None:
    manifest, folder = _copy_package("gateway", tmp_path)
    manifest_module = folder / "manifest.py"
    manifest_module.write_text(
        manifest_module.read_text().replace('    "brokermesh.trading.v1.OrderQueryService",\n', "")
    )

    problems = code_problems(manifest, scan(folder, MANIFESTS))

    assert problems == ["gateway: the manifest declares a call to ledger that its code never makes"]


def test_a_callee_chosen_at_run_time_without_a_known_indirection_is_reported(
    tmp_path: Path,
) -> None:
    manifest, folder = _copy_package("venue-gateway", tmp_path)
    (folder / "dynamic.py").write_text(
        '"""Picks its callee at run time."""\n\n\ndef any_stub(clients, name, stub_class):\n'
        "    return clients.stub(name, stub_class)\n"
    )

    problems = code_problems(manifest, scan(folder, MANIFESTS))

    assert problems == [
        "venue-gateway: venue_gateway/dynamic.py:5: cannot tell which service .stub(name) calls"
    ]


def test_a_grpc_channel_opened_around_the_client_factory_is_reported(tmp_path: Path) -> None:
    manifest, folder = _copy_package("trade-capture", tmp_path)
    (folder / "bypass.py").write_text(
        '"""Dials the ledger itself."""\n\nimport grpc\n\n\ndef dial():\n'
        '    return grpc.aio.insecure_channel("ledger:50057")\n'
    )

    problems = code_problems(manifest, scan(folder, MANIFESTS))

    assert len(problems) == 1
    assert "trade_capture/bypass.py:7: opens a gRPC channel with insecure_channel()" in problems[0]


def test_a_backend_the_code_uses_but_its_manifest_omits_is_reported(tmp_path: Path) -> None:
    manifest, folder = _copy_package("trade-capture", tmp_path)
    (folder / "quotes.py").write_text(
        '"""Reads quotes."""\n\n\ndef quotes_server(settings):\n    return settings.nats_url\n'
    )

    problems = code_problems(manifest, scan(folder, MANIFESTS))

    assert problems == [
        "trade-capture: the code reads the nats settings, but its manifest lacks Backend.NATS"
    ]


def test_a_session_dsn_read_by_a_service_that_is_no_session_client_is_reported(
    tmp_path: Path,
) -> None:
    manifest, folder = _copy_package("oms", tmp_path)
    (folder / "session.py").write_text(
        '"""Opens a session."""\n\n\ndef dsn(settings):\n    return settings.relay_dsn\n'
    )

    problems = code_problems(manifest, scan(folder, MANIFESTS))

    assert problems == [
        "oms: the code reads a session DSN of its own, but SESSION_CLIENTS lacks it"
    ]


# ---------------------------------------------------------------------- what cannot be mapped
def test_a_principal_that_is_no_service_and_no_listed_peer_is_reported(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = copy.deepcopy(rendered["prod"])
    policy = find(objects, "AuthorizationPolicy", "oms", "brokermesh-data")
    policy["spec"]["rules"][0]["from"][0]["source"]["principals"].append(
        "cluster.local/ns/foreign/sa/intruder"
    )

    problems = call_graph_problems(objects, MANIFESTS)

    assert problems == [
        "AuthorizationPolicy brokermesh-data/oms admits cluster.local/ns/foreign/sa/intruder, "
        "which is no service of the manifests and no listed peer"
    ]


def test_a_listed_peer_admitted_beyond_its_entry_is_reported(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = copy.deepcopy(rendered["prod"])
    policy = find(objects, "AuthorizationPolicy", "oms", "brokermesh-data")
    prometheus = next(p for p in PEERS if p.name == "prometheus")
    policy["spec"]["rules"][0]["from"][0]["source"]["principals"].append(prometheus.principal)

    problems = call_graph_problems(objects, MANIFESTS)

    assert problems == [
        "AuthorizationPolicy brokermesh-data/oms admits prometheus to oms:50052, which its "
        "entry in PEERS does not list"
    ]


def test_network_ingress_from_another_namespace_is_reported(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = copy.deepcopy(rendered["prod"])
    policy = find(objects, "NetworkPolicy", "oms", "brokermesh-data")
    foreign = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME: "foreign"}}}
    policy["spec"]["ingress"][0]["from"].append(foreign)

    problems = call_graph_problems(objects, MANIFESTS)

    assert problems == [
        f"NetworkPolicy brokermesh-data/oms admits {foreign} from foreign, which selects no "
        "service of the manifests and no listed peer"
    ]


def test_network_ingress_from_namespaces_chosen_by_label_is_reported(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = copy.deepcopy(rendered["prod"])
    policy = find(objects, "NetworkPolicy", "oms", "brokermesh-data")
    policy["spec"]["ingress"][0]["from"].append(
        {"namespaceSelector": {"matchLabels": {"team": "trading"}}}
    )

    problems = call_graph_problems(objects, MANIFESTS)

    assert problems == [
        "NetworkPolicy brokermesh-data/oms admits pods of the namespaces "
        "{'matchLabels': {'team': 'trading'}}, not of one namespace chosen by name"
    ]


def test_network_ingress_from_unknown_pods_of_the_same_namespace_is_reported(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = copy.deepcopy(rendered["prod"])
    policy = find(objects, "NetworkPolicy", "oms", "brokermesh-data")
    debug = {"podSelector": {"matchLabels": {"app": "debug"}}}
    policy["spec"]["ingress"][0]["from"].append(debug)

    problems = call_graph_problems(objects, MANIFESTS)

    assert problems == [
        f"NetworkPolicy brokermesh-data/oms admits {debug} from brokermesh-data, which selects "
        "no service of the manifests and no listed peer"
    ]


def test_egress_straight_to_the_postgres_instances_is_reported(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = copy.deepcopy(rendered["prod"])
    policy = find(objects, "NetworkPolicy", "oms", "brokermesh-data")
    policy["spec"]["egress"].append(
        {
            "to": [{"podSelector": {"matchLabels": dict(INSTANCES.labels)}}],
            "ports": [{"protocol": "TCP", "port": 5432}],
        }
    )

    problems = call_graph_problems(objects, MANIFESTS)

    assert problems == [
        "NetworkPolicy egress: oms -> postgres-instances:5432 is allowed but no manifest uses it"
    ]


def test_a_port_range_is_reported_unless_listed(rendered: dict[str, list[Obj]]) -> None:
    objects = copy.deepcopy(rendered["prod"])
    policy = find(objects, "NetworkPolicy", "oms", "brokermesh-data")
    policy["spec"]["ingress"][0]["ports"][0]["endPort"] = 50060

    reported = call_graph_problems(objects, MANIFESTS)
    listed = call_graph_problems(
        objects, MANIFESTS, port_ranges={"brokermesh-data/oms": "a test listing the range"}
    )

    assert reported == [
        "NetworkPolicy brokermesh-data/oms opens the port range 50052-50060, which "
        "PORT_RANGES does not list"
    ]
    assert listed == []


def test_every_listed_peer_says_why_and_can_be_matched() -> None:
    for peer in PEERS:
        assert len(peer.reason.split()) >= 6, peer.name
        assert peer.labels, peer.name
        assert peer.admitted_to or peer.reached_on, f"{peer.name} is listed for nothing"
    assert len({p.name for p in PEERS}) == len(PEERS)
    assert all(len(reason.split()) >= 6 for reason in PORT_RANGES.values())
