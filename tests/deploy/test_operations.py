"""Operators reach the control plane from the ops toolbox, through one ALLOW rule and one
NetworkPolicy, and from nowhere else."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from brokermesh.cli import build_parser
from brokermesh.mesh.manifest import Plane
from brokermesh.services.registry import MANIFESTS

from .callgraph import PEERS, Workload, _peer_matches, namespace_labels
from .render import OVERLAYS, Obj, find, of_kind

NAMESPACE = "brokermesh-control"
TOOLBOX = "ops-toolbox"
CONTROL_PLANE = next(m for m in MANIFESTS if m.plane is Plane.CONTROL)
CONTROL_API = "/brokermesh.control.v1.ControlPlaneService/*"
UID = 10001


def toolbox(objects: list[Obj]) -> tuple[Obj, Obj]:
    """The toolbox's pod template and its one container."""
    template = find(objects, "Deployment", TOOLBOX, NAMESPACE)["spec"]["template"]
    (container,) = template["spec"]["containers"]
    return template, container


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_toolbox_is_the_listed_operator_peer(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    template, _ = toolbox(rendered[overlay])
    peer = next(p for p in PEERS if p.name == TOOLBOX)
    account = template["spec"]["serviceAccountName"]

    assert peer.namespace == NAMESPACE
    assert peer.labels.items() <= template["metadata"]["labels"].items()
    assert peer.principal == f"cluster.local/ns/{NAMESPACE}/sa/{account}"
    assert peer.admitted_to == {(CONTROL_PLANE.name, CONTROL_PLANE.grpc_port)}
    assert find(rendered[overlay], "ServiceAccount", account, NAMESPACE)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_toolbox_probes_the_control_plane_with_the_brokermesh_cli(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    _, container = toolbox(rendered[overlay])
    argv = container["readinessProbe"]["exec"]["command"]

    args = build_parser().parse_args(argv[1:])

    assert argv[0] == "brokermesh"
    assert args.action == "show"
    assert args.address == (
        f"{CONTROL_PLANE.name}.{NAMESPACE}.svc.cluster.local:{CONTROL_PLANE.grpc_port}"
    )
    assert find(rendered[overlay], "Service", CONTROL_PLANE.name, NAMESPACE)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_toolbox_serves_nothing_and_runs_hardened(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    template, container = toolbox(rendered[overlay])
    pod = template["spec"]
    sc = container["securityContext"]
    images = {
        c["image"]
        for d in of_kind(rendered[overlay], "Deployment")
        for c in d["spec"]["template"]["spec"]["containers"]
    }

    assert not container.get("ports")
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert sc["runAsUser"] == UID and sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert len(images) == 1 and container["imagePullPolicy"] == "Always"


def test_the_toolbox_idles_until_sigterm_and_then_exits_cleanly(
    rendered: dict[str, list[Obj]],
) -> None:
    _, container = toolbox(rendered["prod"])
    command = [sys.executable, *container["command"][1:]]
    process = subprocess.Popen(command)
    try:
        time.sleep(0.5)
        assert process.poll() is None, "the toolbox exited on its own"

        process.send_signal(signal.SIGTERM)

        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_control_plane_admits_the_toolbox_alone_to_its_api(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    policy = find(objects, "AuthorizationPolicy", CONTROL_PLANE.name, NAMESPACE)["spec"]
    peer = next(p for p in PEERS if p.name == TOOLBOX)

    assert policy["selector"] == {"matchLabels": {"app.kubernetes.io/name": CONTROL_PLANE.name}}
    assert policy["rules"] == [
        {
            "from": [{"source": {"principals": [peer.principal]}}],
            "to": [
                {"operation": {"ports": [str(CONTROL_PLANE.grpc_port)], "paths": [CONTROL_API]}}
            ],
        }
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_network_lets_the_toolbox_and_no_other_pod_reach_the_control_plane(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    namespaces = namespace_labels(objects)
    peer = next(p for p in PEERS if p.name == TOOLBOX)
    control = find(objects, "NetworkPolicy", CONTROL_PLANE.name, NAMESPACE)["spec"]
    egress = find(objects, "NetworkPolicy", TOOLBOX, NAMESPACE)["spec"]
    control_pod = Workload(CONTROL_PLANE.name, NAMESPACE, control["podSelector"]["matchLabels"])

    assert [(peer, rule["ports"]) for rule in control["ingress"] for peer in rule["from"]] == [
        (
            {"podSelector": {"matchLabels": dict(peer.labels)}},
            [{"protocol": "TCP", "port": CONTROL_PLANE.grpc_port}],
        )
    ]
    assert not egress.get("ingress") and "Ingress" in egress["policyTypes"]
    assert [
        (_peer_matches(peer, control_pod, NAMESPACE, namespaces), rule["ports"])
        for rule in egress["egress"]
        for peer in rule["to"]
    ] == [(True, [{"protocol": "TCP", "port": CONTROL_PLANE.grpc_port}])]
