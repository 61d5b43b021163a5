"""Every service runs as its manifest says: its own Deployment, Service and ServiceAccount,
its ports, probes, settings, resources, hardened security context and scaling rules."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from brokermesh.mesh.config import parse_upstreams
from brokermesh.mesh.manifest import Backend, Plane, ServiceManifest
from brokermesh.services.registry import MANIFESTS

from .render import OVERLAYS, Obj, find, of_kind

NAMESPACE = {Plane.CONTROL: "brokermesh-control", Plane.DATA: "brokermesh-data"}
DEV_ONLY = {"venue-xnas", "venue-arca"}
#: Deployments that run no service: the operators' toolbox (test_operations.py).
TOOLBOXES = {"ops-toolbox"}
IMAGE = "ghcr.io/brokermesh/brokermesh"
UID = 10001
METRICS_PORT = 9464


def deployed(overlay: str) -> list[ServiceManifest]:
    """The manifests an overlay runs: all of them in dev, all but the simulators in prod."""
    return [m for m in MANIFESTS if overlay == "dev" or m.name not in DEV_ONLY]


def cases() -> list[Any]:
    return [
        pytest.param(overlay, m, id=f"{overlay}-{m.name}")
        for overlay in OVERLAYS
        for m in deployed(overlay)
    ]


def container(objects: list[Obj], m: ServiceManifest) -> Obj:
    deployment = find(objects, "Deployment", m.name, NAMESPACE[m.plane])
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def settings(objects: list[Obj], m: ServiceManifest) -> dict[str, str]:
    """The BROKERMESH_* environment a service's container gets from its ConfigMaps."""
    env: dict[str, str] = {}
    for source in container(objects, m).get("envFrom", []):
        name = source["configMapRef"]["name"]
        config = find(objects, "ConfigMap", name, NAMESPACE[m.plane])
        env.update(config["data"])
    for item in container(objects, m).get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "configMapKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["configMapKeyRef"]
            env[item["name"]] = find(objects, "ConfigMap", ref["name"], NAMESPACE[m.plane])["data"][
                ref["key"]
            ]
    return env


@pytest.mark.parametrize(("overlay", "m"), cases())
def test_each_service_has_its_own_deployment_service_and_service_account(
    rendered: dict[str, list[Obj]], overlay: str, m: ServiceManifest
) -> None:
    objects, ns = rendered[overlay], NAMESPACE[m.plane]
    deployment = find(objects, "Deployment", m.name, ns)
    service = find(objects, "Service", m.name, ns)
    account = find(objects, "ServiceAccount", m.name, ns)
    pod = deployment["spec"]["template"]

    assert pod["spec"]["serviceAccountName"] == m.name
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert account.get("automountServiceAccountToken") is False
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert container(objects, m)["args"] == [m.entry_module]


def test_the_simulated_venues_run_only_in_dev(rendered: dict[str, list[Obj]]) -> None:
    def names(overlay: str) -> set[str]:
        return {o["metadata"]["name"] for o in of_kind(rendered[overlay], "Deployment")}

    assert DEV_ONLY <= names("dev")
    assert not DEV_ONLY & names("prod")
    assert names("prod") - TOOLBOXES == {m.name for m in deployed("prod")}


@pytest.mark.parametrize(("overlay", "m"), cases())
def test_ports_follow_the_manifest(
    rendered: dict[str, list[Obj]], overlay: str, m: ServiceManifest
) -> None:
    objects = rendered[overlay]
    expected = {"grpc": m.grpc_port, "metrics": METRICS_PORT, **dict(m.extra_ports)}
    ports = {p["name"]: p["containerPort"] for p in container(objects, m)["ports"]}
    service = find(objects, "Service", m.name, NAMESPACE[m.plane])
    service_ports = {p["targetPort"]: p["port"] for p in service["spec"]["ports"]}

    assert ports == expected
    assert service_ports == expected
    assert {p["name"] for p in service["spec"]["ports"]} >= {"grpc", "http-metrics"}


@pytest.mark.parametrize(("overlay", "m"), cases())
def test_probes_are_native_grpc_health_checks_on_the_grpc_port(
    rendered: dict[str, list[Obj]], overlay: str, m: ServiceManifest
) -> None:
    c = container(rendered[overlay], m)

    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"] == {"port": m.grpc_port}, probe


@pytest.mark.parametrize(("overlay", "m"), cases())
def test_settings_follow_the_manifest(
    rendered: dict[str, list[Obj]], overlay: str, m: ServiceManifest
) -> None:
    objects = rendered[overlay]
    env = settings(objects, m)
    by_name = {x.name: x for x in MANIFESTS}
    upstreams = parse_upstreams(env.get("BROKERMESH_UPSTREAMS", ""))
    secrets = [
        e["valueFrom"]["secretKeyRef"]
        for e in container(objects, m).get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    ]

    assert env["BROKERMESH_SERVICE"] == m.name
    assert env["BROKERMESH_PORT"] == str(m.grpc_port)
    assert env["BROKERMESH_HOST"] == "0.0.0.0"
    assert env["BROKERMESH_METRICS_PORT"] == str(METRICS_PORT)
    assert sorted(upstreams) == sorted(m.calls)
    for callee, address in upstreams.items():
        host, _, port = address.rpartition(":")
        target = by_name[callee]
        assert (host, int(port)) == (
            f"{callee}.{NAMESPACE[target.plane]}.svc.cluster.local",
            target.grpc_port,
        )
    assert ("BROKERMESH_NATS_URL" in env) == (Backend.NATS in m.backends)
    assert ("BROKERMESH_DATABASE_URL" in env) == (Backend.POSTGRES in m.backends)
    assert bool(secrets) == (Backend.POSTGRES in m.backends)
    for purpose, port in m.extra_ports:
        assert env[f"BROKERMESH_{m.name.upper().replace('-', '_')}_{purpose.upper()}_PORT"] == str(
            port
        )


def test_the_gateway_listens_on_all_interfaces(rendered: dict[str, list[Obj]]) -> None:
    gateway = next(m for m in MANIFESTS if m.name == "gateway")
    for overlay in OVERLAYS:
        assert settings(rendered[overlay], gateway)["BROKERMESH_GATEWAY_HTTP_HOST"] == "0.0.0.0"


@pytest.mark.parametrize(
    ("service", "setting", "secret"),
    [
        ("gateway", "BROKERMESH_GATEWAY_JWT_PUBLIC_KEY_PATH", "brokermesh-jwt-signing-key"),
        (
            "ledger",
            "BROKERMESH_LEDGER_CHECKPOINT_KEY_PATH",
            "brokermesh-checkpoint-signing-key",
        ),
    ],
)
def test_a_key_setting_points_at_the_file_its_secret_mounts(
    rendered: dict[str, list[Obj]], service: str, setting: str, secret: str
) -> None:
    manifest = next(m for m in MANIFESTS if m.name == service)
    for overlay in OVERLAYS:
        objects = rendered[overlay]
        pod = find(objects, "Deployment", service, "brokermesh-data")["spec"]["template"]
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        mounts = {v["mountPath"]: v["name"] for v in container(objects, manifest)["volumeMounts"]}

        folder, _, file = settings(objects, manifest)[setting].rpartition("/")

        assert volumes[mounts[folder]]["secret"]["secretName"] == secret
        assert [i["path"] for i in volumes[mounts[folder]]["secret"]["items"]] == [file]


def test_services_only_verify_the_jetstream_assets_the_operator_owns(
    rendered: dict[str, list[Obj]],
) -> None:
    for overlay in OVERLAYS:
        for name in ("ledger", "control-plane"):
            manifest = next(m for m in MANIFESTS if m.name == name)
            prefix = f"BROKERMESH_{name.upper().replace('-', '_')}_"

            assert settings(rendered[overlay], manifest)[f"{prefix}JETSTREAM_ASSETS"] == "verify"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_venue_gateway_has_a_fix_endpoint_for_every_fix_peer(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    venue_gateway = next(m for m in MANIFESTS if m.fix_peers)
    endpoints = parse_upstreams(
        settings(rendered[overlay], venue_gateway)["BROKERMESH_VENUE_FIX_PORTS"]
    )

    assert sorted(endpoints) == sorted(venue_gateway.fix_peers)


def test_prod_fix_endpoints_lie_inside_the_egress_allowance(rendered: dict[str, list[Obj]]) -> None:
    venue_gateway = next(m for m in MANIFESTS if m.fix_peers)
    endpoints = parse_upstreams(
        settings(rendered["prod"], venue_gateway)["BROKERMESH_VENUE_FIX_PORTS"]
    )
    policy = find(rendered["prod"], "NetworkPolicy", "venue-gateway-fix", "brokermesh-data")
    allowed = [
        (ipaddress.ip_network(peer["ipBlock"]["cidr"]), port["port"])
        for rule in policy["spec"]["egress"]
        for peer in rule["to"]
        for port in rule["ports"]
    ]

    for venue, address in endpoints.items():
        host, _, port = address.rpartition(":")
        assert any(ipaddress.ip_address(host) in net and int(port) == p for net, p in allowed), (
            f"{venue} at {address} is outside the egress policy"
        )


@pytest.mark.parametrize(("overlay", "m"), cases())
def test_containers_run_unprivileged_on_a_read_only_root_filesystem(
    rendered: dict[str, list[Obj]], overlay: str, m: ServiceManifest
) -> None:
    objects = rendered[overlay]
    pod = find(objects, "Deployment", m.name, NAMESPACE[m.plane])["spec"]["template"]["spec"]
    c = container(objects, m)
    sc = c["securityContext"]
    env = settings(objects, m)
    mounts = {v["mountPath"]: v["name"] for v in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == UID
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == UID
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "emptyDir" in volumes[mounts[env["BROKERMESH_DATA_DIR"]]]


@pytest.mark.parametrize(("overlay", "m"), cases())
def test_resources_are_requested_and_limited(
    rendered: dict[str, list[Obj]], overlay: str, m: ServiceManifest
) -> None:
    resources = container(rendered[overlay], m)["resources"]

    for bound in ("requests", "limits"):
        assert set(resources[bound]) == {"cpu", "memory"}


@pytest.mark.parametrize(("overlay", "m"), cases())
def test_pods_spread_over_zones_and_nodes(
    rendered: dict[str, list[Obj]], overlay: str, m: ServiceManifest
) -> None:
    pod = find(rendered[overlay], "Deployment", m.name, NAMESPACE[m.plane])["spec"]["template"]
    constraints = pod["spec"]["topologySpreadConstraints"]

    assert {c["topologyKey"] for c in constraints} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    for c in constraints:
        assert c["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


@pytest.mark.parametrize(("overlay", "m"), cases())
def test_images_are_the_one_brokermesh_image_pulled_always(
    rendered: dict[str, list[Obj]], overlay: str, m: ServiceManifest
) -> None:
    c = container(rendered[overlay], m)
    name, _, tag = c["image"].rpartition(":")

    assert name == IMAGE
    assert tag and tag != "latest"
    assert c["imagePullPolicy"] == "Always"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_hpas_and_pdbs_cover_exactly_the_stateless_data_plane_services(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    hot = {m.name for m in deployed(overlay) if m.stateless and m.plane is Plane.DATA}
    hpas = {
        o["spec"]["scaleTargetRef"]["name"] for o in of_kind(objects, "HorizontalPodAutoscaler")
    }
    pdbs = {o["metadata"]["name"] for o in of_kind(objects, "PodDisruptionBudget")}

    assert hpas == hot
    assert pdbs == hot
    for name in hot:
        assert "replicas" not in find(objects, "Deployment", name)["spec"], (
            f"{name}: the HPA owns the replica count"
        )


def test_prod_runs_at_least_three_replicas_of_each_hot_path_service(
    rendered: dict[str, list[Obj]],
) -> None:
    for hpa in of_kind(rendered["prod"], "HorizontalPodAutoscaler"):
        assert hpa["spec"]["minReplicas"] >= 3
        assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_value_is_committed(rendered: dict[str, list[Obj]], overlay: str) -> None:
    assert not list(of_kind(rendered[overlay], "Secret"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_control_plane_shares_its_namespace_with_the_operators_toolbox_only(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    by_namespace = {
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in of_kind(rendered[overlay], "Deployment")
    }

    assert {name for ns, name in by_namespace if ns == "brokermesh-control"} == {
        m.name for m in MANIFESTS if m.plane is Plane.CONTROL
    } | TOOLBOXES
