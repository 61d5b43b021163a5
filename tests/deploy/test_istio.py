"""The mesh: STRICT mTLS that keeps kubelet probes working, deny-by-default authorization,
connection pools and outlier detection, backstop timeouts and the JWT-checked edge (the
timeouts' values are test_budget.py's)."""

from __future__ import annotations

import pytest

from brokermesh.mesh.manifest import Plane
from brokermesh.services.registry import MANIFESTS

from .budget import load_budget, ms
from .render import OVERLAYS, Obj, find, key, of_kind

SAFE_RETRY_ON = {"connect-failure", "refused-stream"}
#: Services that keep per-account state in memory, and the metadata order entry names the
#: account in; every call for one account must reach the same replica of each.
ACCOUNT_AFFINITY = frozenset({"oms", "risk"})
ACCOUNT_HEADER = "x-brokermesh-account"
NAMESPACES = ("brokermesh-control", "brokermesh-data", "brokermesh-nats")


def test_mutual_tls_is_strict_mesh_wide_and_nothing_relaxes_it(
    rendered: dict[str, list[Obj]],
) -> None:
    policies = list(of_kind(rendered["istio"], "PeerAuthentication"))

    assert [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in policies] == [
        ("istio-system", "default")
    ]
    assert policies[0]["spec"] == {"mtls": {"mode": "STRICT"}}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probe_rewriting_stays_on_so_grpc_probes_pass_under_strict_mtls(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    problems = []
    for deployment in of_kind(rendered[overlay], "Deployment"):
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        if annotations.get("sidecar.istio.io/rewriteAppHTTPProbers") != "true":
            problems.append(f"{key(deployment)} does not keep probe rewriting on")
        if annotations.get("sidecar.istio.io/inject") == "false":
            problems.append(f"{key(deployment)} opts out of the mesh")

    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_each_namespace_denies_what_no_allow_policy_admits(
    rendered: dict[str, list[Obj]], namespace: str
) -> None:
    policy = find(rendered["istio"], "AuthorizationPolicy", "allow-nothing", namespace)

    assert policy.get("spec") in ({}, None)


def test_every_allow_policy_in_the_planes_names_principals_and_ports(
    rendered: dict[str, list[Obj]],
) -> None:
    for overlay in OVERLAYS:
        for policy in of_kind(rendered[overlay], "AuthorizationPolicy"):
            if policy["metadata"]["name"] == "allow-nothing":
                continue
            if policy["spec"].get("action", "ALLOW") != "ALLOW":
                continue
            for rule in policy["spec"]["rules"]:
                assert all(s["source"].get("principals") for s in rule["from"]), key(policy)
                assert all(t["operation"].get("ports") for t in rule["to"]), key(policy)


def test_every_service_has_a_destination_rule_with_pools_and_outlier_detection(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = rendered["dev"]
    rules = {
        r["spec"]["host"]: r["spec"]["trafficPolicy"] for r in of_kind(objects, "DestinationRule")
    }
    for service in of_kind(objects, "Service"):
        host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
        if "app.kubernetes.io/name" not in service["metadata"].get("labels", {}):
            continue
        policy = rules.get(host)
        assert policy, f"no DestinationRule for {host}"
        assert policy["tls"] == {"mode": "ISTIO_MUTUAL"}
        assert policy["connectionPool"]["tcp"]["maxConnections"] > 0
        outliers = policy["outlierDetection"]
        assert outliers["baseEjectionTime"]
        # Envoy's own failures apart from the callee's answers, and no ejection on the 503 and
        # 504 that healthy pods return when a request's budget ran out upstream.
        assert outliers["splitExternalLocalOriginErrors"] is True, host
        assert outliers["consecutiveLocalOriginFailures"] > 0, host
        assert "consecutiveGatewayErrors" not in outliers, host


def test_every_called_service_has_a_timeout_and_only_safe_retries(
    rendered: dict[str, list[Obj]],
) -> None:
    called = {c for m in MANIFESTS for c in m.calls}
    routes = {
        vs["metadata"]["name"]: vs["spec"]["http"]
        for vs in of_kind(rendered["istio"], "VirtualService")
    }

    assert called <= set(routes)
    for name, http in routes.items():
        for route in http:
            retries = route["retries"]
            assert ms(route["timeout"]) >= 1, name
            assert retries["attempts"] <= 1, name
            assert ms(retries["perTryTimeout"]) <= ms(route["timeout"]), name
            assert set(retries["retryOn"].split(",")) <= SAFE_RETRY_ON, name


def test_the_rest_gateway_is_exposed_through_the_ingress_with_the_edge_timeout(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = rendered["istio"]
    gateway = next(m for m in MANIFESTS if dict(m.extra_ports).get("http"))
    route = find(objects, "VirtualService", "brokermesh-api")["spec"]
    destination = route["http"][0]["route"][0]["destination"]
    server = find(objects, "Gateway", "brokermesh-api")["spec"]["servers"][0]

    assert route["gateways"] == ["brokermesh-data/brokermesh-api"]
    assert destination == {
        "host": f"{gateway.name}.brokermesh-data.svc.cluster.local",
        "port": {"number": dict(gateway.extra_ports)["http"]},
    }
    assert ms(route["http"][0]["timeout"]) == load_budget().timeout_ms("brokermesh-api")
    assert server["port"]["protocol"] == "HTTPS"
    assert server["tls"]["credentialName"]


def test_the_ingress_requires_a_valid_token_of_the_brokermesh_issuer(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = rendered["istio"]
    authn = find(objects, "RequestAuthentication", "brokermesh-api-jwt", "istio-system")
    authz = find(objects, "AuthorizationPolicy", "brokermesh-api-require-jwt", "istio-system")
    rule = authn["spec"]["jwtRules"][0]
    deny = authz["spec"]["rules"][0]

    assert (
        authn["spec"]["selector"]
        == authz["spec"]["selector"]
        == {"matchLabels": {"istio": "ingressgateway"}}
    )
    assert rule["issuer"] == "https://auth.brokermesh.local"
    assert rule["audiences"] == ["brokermesh-api"]
    assert rule["jwksUri"].startswith("http") and ".svc.cluster.local" in rule["jwksUri"]
    assert authz["spec"]["action"] == "DENY"
    assert deny["from"][0]["source"]["notRequestPrincipals"] == ["https://auth.brokermesh.local/*"]
    assert "api.brokermesh.local" in deny["to"][0]["operation"]["hosts"]


def test_only_the_ingress_gateway_reaches_the_rest_gateways_http_port(
    rendered: dict[str, list[Obj]],
) -> None:
    policy = find(rendered["istio"], "AuthorizationPolicy", "gateway", "brokermesh-data")
    http_rules = [
        r for r in policy["spec"]["rules"] if r["to"][0]["operation"]["ports"] == ["8080"]
    ]

    assert [r["from"][0]["source"]["principals"] for r in http_rules] == [
        ["cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"]
    ]


def test_the_control_plane_admits_metrics_scrapes_and_the_operators_toolbox_only(
    rendered: dict[str, list[Obj]],
) -> None:
    control = {m.name for m in MANIFESTS if m.plane is Plane.CONTROL}
    policies = [
        p
        for p in of_kind(rendered["istio"], "AuthorizationPolicy")
        if p["metadata"]["namespace"] == "brokermesh-control"
    ]

    # control-plane admits the ops toolbox alone (test_operations.py).
    assert {p["metadata"]["name"] for p in policies} == {
        "allow-nothing",
        "allow-prometheus-scrape",
        "control-plane",
    }
    assert not any(m.calls and set(m.calls) & control for m in MANIFESTS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_oms_and_risk_route_every_call_for_one_account_to_the_same_replica(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    balancers = {
        r["metadata"]["name"]: r["spec"]["trafficPolicy"].get("loadBalancer", {})
        for r in of_kind(rendered[overlay], "DestinationRule")
    }

    for name, balancer in balancers.items():
        hashing = balancer.get("consistentHash")
        if name in ACCOUNT_AFFINITY:
            assert hashing and hashing["httpHeaderName"] == ACCOUNT_HEADER, name
            assert "simple" not in balancer, name
        else:
            assert hashing is None, f"{name} is pinned by {hashing} without per-account state"
    assert ACCOUNT_AFFINITY <= set(balancers)
