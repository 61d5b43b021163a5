"""Renders the per-service Kubernetes and Istio files from the service manifests.

Each service's ServiceAccount, Service, Deployment and, for the stateless data-plane
services, PodDisruptionBudget and HorizontalPodAutoscaler follow from its manifest
(``services/*/manifest.py``): name, plane, ports, backends, whether it may scale out. So do
the DestinationRules. This writes them::

    python tools/gen_deploy.py            # k8s/base/services/*.yaml, the dev venue
                                          # simulators, istio/traffic/destination-rules.yaml
    python tools/gen_deploy.py --check    # exit 1 naming every file that differs

Edit a manifest, or the rules below, and run it again; never edit the generated files by
hand (tests/deploy/test_generated.py fails when they differ from what this renders).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from brokermesh.mesh.manifest import Backend, Plane, ServiceManifest
from brokermesh.services.gateway.settings import PUBLIC_KEY_FILE
from brokermesh.services.ledger.checkpoints import PRIVATE_KEY_FILE as CHECKPOINT_KEY_FILE
from brokermesh.services.registry import MANIFESTS
from brokermesh.services.venue_sim.manifest import MANIFESTS as SIMULATORS

REPO = Path(__file__).resolve().parents[1]
Obj = dict[str, Any]

NAMESPACES = {Plane.CONTROL: "brokermesh-control", Plane.DATA: "brokermesh-data"}
UID = 10001
METRICS_PORT = 9464
DATA_DIR = "/var/lib/brokermesh"
#: Service port name and appProtocol of each extra port purpose a manifest may declare.
PORT_PROTOCOLS = {"http": ("http", "http"), "fix": ("tcp-fix", "tcp")}


class MountedKey(NamedTuple):
    """A key file a service reads from a Secret; its ConfigMap points the setting at it."""

    volume: str
    secret: str
    folder: str
    file: str


#: Per service, the keys it reads: the gateway the public key that verifies bearer tokens
#: (BROKERMESH_GATEWAY_JWT_PUBLIC_KEY_PATH), the ledger the private key it signs audit
#: checkpoints with (BROKERMESH_LEDGER_CHECKPOINT_KEY_PATH). Every replica must use the same
#: checkpoint key, so it cannot be generated into a pod's own data directory.
MOUNTED_KEYS = {
    "gateway": MountedKey(
        "jwt-signing-key", "brokermesh-jwt-signing-key", "/etc/brokermesh/jwt", PUBLIC_KEY_FILE
    ),
    "ledger": MountedKey(
        "checkpoint-signing-key",
        "brokermesh-checkpoint-signing-key",
        "/etc/brokermesh/checkpoints",
        CHECKPOINT_KEY_FILE,
    ),
}
#: Services that keep per-account state in memory: every call for one account goes to one
#: replica, hashed on the metadata order entry names the account in.
ACCOUNT_AFFINITY = ("oms", "risk")
ACCOUNT_HEADER = "x-brokermesh-account"

SKIP_IMAGE_DIGEST = (
    "CKV_K8S_43=Committed overlays name the image by its version tag with imagePullPolicy Always "
    "because its digest exists only once the image is pushed; make release-pin writes the "
    "pushed digest into an overlay"
)
SKIP_SECRET_ENV = (
    "CKV_K8S_35=PGPASSWORD comes from the brokermesh-pg-service Secret, the password of the "
    "CNPG managed role brokermesh_app; asyncpg reads a password only from the DSN, PGPASSWORD "
    "or a pgpass file, and it ignores a pgpass file with group access, which a Secret volume "
    "under fsGroup has"
)

SERVICES_HEADER = (
    "{name}: {plane} plane, {ports}.\n"
    "Rendered by tools/gen_deploy.py from services/{package}/manifest.py: edit the manifest\n"
    "(or the generator) and run it again, never this file."
)
SIMULATORS_HEADER = (
    "Simulated venues (dev only), rendered by tools/gen_deploy.py from\n"
    "services/venue_sim/manifest.py: edit the manifest (or the generator) and run it again,\n"
    "never this file."
)
SCALING_COMMENT = "Stateless hot-path service: scales out on CPU, keeps one pod through drains."
DESTINATION_RULES_HEADER = """\
One DestinationRule per service, rendered by tools/gen_deploy.py from the manifests: edit
the generator and run it again, never this file. mTLS, connection pools, load balancing
and outlier detection.

Load balancing: least request, except for the services that keep per-account provisional
holds in memory (oms, risk). Every call for one account must reach the same replica of
those, so they hash on the gRPC metadata x-brokermesh-account that order entry sends;
Maglev keeps most accounts in place when replicas come and go (docs/deployment.md,
"Account affinity").

Outlier detection ejects a pod that fails on its own, not one that is slow under load:
- splitExternalLocalOriginErrors counts Envoy's local failures (connect failure, reset,
  its own timeout) apart from the callee's answers; five in a row eject the pod. The mesh
  timeouts are backstops above the callers' deadlines (virtual-services.yaml), so a caller
  cancels a slow call before Envoy times it out, and a slow pod collects no such failures.
- consecutive5xxErrors counts the callee's own 5xx answers (gRPC statuses map to them).
  There is no consecutiveGatewayErrors: it counts 503 and 504, which a healthy pod returns
  for UNAVAILABLE and DEADLINE_EXCEEDED when the request's budget ran out upstream, and
  three of those in a row under load would eject healthy pods and load the rest further.
- At most half of a service's pods are ejected, and none while fewer than half are healthy."""


# ---------------------------------------------------------------------- YAML
class _Dumper(yaml.SafeDumper):
    """Block style with indented sequences, and multi-line strings as literal blocks."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _comment(text: str) -> str:
    return "".join(f"# {line}".rstrip() + "\n" for line in text.splitlines())


def dump(documents: Iterable[tuple[str, Obj]]) -> str:
    """A YAML stream of (comment, object) pairs, each comment above its document."""
    parts = [
        _comment(comment) + yaml.dump(obj, Dumper=_Dumper, sort_keys=False, width=100)
        for comment, obj in documents
    ]
    return "---\n".join(parts)


# ---------------------------------------------------------------------- one service
def _labels(m: ServiceManifest) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": m.name,
        "app.kubernetes.io/part-of": "brokermesh",
        "app.kubernetes.io/component": f"{m.plane.value}-plane",
        "app": m.name,
        "version": "v1",
    }


def _metadata(m: ServiceManifest) -> Obj:
    return {"name": m.name, "namespace": NAMESPACES[m.plane], "labels": _labels(m)}


def _selector(m: ServiceManifest) -> Obj:
    return {"matchLabels": {"app.kubernetes.io/name": m.name}}


def _extra_ports(m: ServiceManifest) -> list[tuple[str, int, str, str]]:
    """(container port name, port, Service port name, appProtocol) of each extra port."""
    result = []
    for purpose, port in m.extra_ports:
        if purpose not in PORT_PROTOCOLS:
            raise ValueError(
                f"{m.name}: extra port {purpose!r} has no protocol in PORT_PROTOCOLS "
                f"(known: {', '.join(sorted(PORT_PROTOCOLS))})"
            )
        service_name, app_protocol = PORT_PROTOCOLS[purpose]
        result.append((purpose, port, service_name, app_protocol))
    return result


def _service(m: ServiceManifest) -> Obj:
    ports = [
        {
            "name": "grpc",
            "port": m.grpc_port,
            "targetPort": "grpc",
            "protocol": "TCP",
            "appProtocol": "grpc",
        },
        {
            "name": "http-metrics",
            "port": METRICS_PORT,
            "targetPort": "metrics",
            "protocol": "TCP",
            "appProtocol": "http",
        },
    ]
    ports += [
        {
            "name": service_name,
            "port": port,
            "targetPort": purpose,
            "protocol": "TCP",
            "appProtocol": app_protocol,
        }
        for purpose, port, service_name, app_protocol in _extra_ports(m)
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(m),
        "spec": {"type": "ClusterIP", "selector": _selector(m)["matchLabels"], "ports": ports},
    }


def _security_context() -> Obj:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _probe(port: int, period_s: int, failures: int) -> Obj:
    return {
        "grpc": {"port": port},
        "periodSeconds": period_s,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    }


def _env(m: ServiceManifest) -> list[Obj]:
    env: list[Obj] = []
    if m.fix_peers:
        # VenueGatewaySettings.venue_fix_ports: each overlay says where its venues are.
        env.append(
            {
                "name": "BROKERMESH_VENUE_FIX_PORTS",
                "valueFrom": {
                    "configMapKeyRef": {"name": "venue-fix-endpoints", "key": "endpoints"}
                },
            }
        )
    if Backend.POSTGRES in m.backends:
        env.append(
            {
                "name": "PGPASSWORD",
                "valueFrom": {"secretKeyRef": {"name": "brokermesh-pg-service", "key": "password"}},
            }
        )
    return env


def _container(m: ServiceManifest) -> Obj:
    ports = [
        {"name": "grpc", "containerPort": m.grpc_port, "protocol": "TCP"},
        {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
    ]
    ports += [
        {"name": purpose, "containerPort": port, "protocol": "TCP"}
        for purpose, port, _, _ in _extra_ports(m)
    ]
    mounts: list[Obj] = [
        {"name": "data", "mountPath": DATA_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if key := MOUNTED_KEYS.get(m.name):
        mounts.append({"name": key.volume, "mountPath": key.folder, "readOnly": True})
    container: Obj = {
        "name": m.name,
        "image": "brokermesh",
        "imagePullPolicy": "Always",
        "args": [m.entry_module],
        "ports": ports,
        "envFrom": [
            {"configMapRef": {"name": "brokermesh-common"}},
            {"configMapRef": {"name": f"{m.name}-config"}},
        ],
    }
    if env := _env(m):
        container["env"] = env
    container.update(
        {
            "resources": {
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"cpu": "1", "memory": "512Mi"},
            },
            "startupProbe": _probe(m.grpc_port, 2, 30),
            "readinessProbe": _probe(m.grpc_port, 5, 3),
            "livenessProbe": _probe(m.grpc_port, 10, 3),
            "securityContext": _security_context(),
            "volumeMounts": mounts,
        }
    )
    return container


def _volumes(m: ServiceManifest) -> list[Obj]:
    volumes: list[Obj] = [
        {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
    ]
    if key := MOUNTED_KEYS.get(m.name):
        volumes.append(
            {
                "name": key.volume,
                "secret": {
                    "secretName": key.secret,
                    "defaultMode": 0o440,
                    "items": [{"key": key.file, "path": key.file}],
                },
            }
        )
    return volumes


def _scales_out(m: ServiceManifest) -> bool:
    """Whether an HPA owns the replica count (stateless data-plane services)."""
    return m.stateless and m.plane is Plane.DATA


def _deployment(m: ServiceManifest) -> Obj:
    annotations = {"checkov.io/skip1": SKIP_IMAGE_DIGEST}
    if Backend.POSTGRES in m.backends:
        annotations["checkov.io/skip2"] = SKIP_SECRET_ENV
    spec: Obj = {} if _scales_out(m) else {"replicas": 1}
    # A stateful service (venue-gateway's FIX sessions) must never run twice at once.
    strategy = (
        {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
        if m.stateless
        else {"type": "Recreate"}
    )
    spread = [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": _selector(m),
        }
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]
    spec.update(
        {
            "revisionHistoryLimit": 5,
            "selector": _selector(m),
            "strategy": strategy,
            "template": {
                "metadata": {
                    "labels": _labels(m),
                    "annotations": {
                        "kubectl.kubernetes.io/default-container": m.name,
                        "sidecar.istio.io/rewriteAppHTTPProbers": "true",
                        "proxy.istio.io/config": "holdApplicationUntilProxyStarts: true\n",
                    },
                },
                "spec": {
                    "serviceAccountName": m.name,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": UID,
                        "runAsGroup": UID,
                        "fsGroup": UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "topologySpreadConstraints": spread,
                    "containers": [_container(m)],
                    "volumes": _volumes(m),
                },
            },
        }
    )
    metadata = _metadata(m) | {"annotations": annotations}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}


def _scaling(m: ServiceManifest) -> list[tuple[str, Obj]]:
    if not _scales_out(m):
        return []
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(m),
        "spec": {"maxUnavailable": 1, "selector": _selector(m)},
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(m),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": m.name},
            "minReplicas": 2,
            "maxReplicas": 6,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 60},
                    },
                }
            ],
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Pods", "value": 2, "periodSeconds": 30}],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": 300,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                },
            },
        },
    }
    return [(SCALING_COMMENT, pdb), ("", hpa)]


def service_documents(m: ServiceManifest) -> list[tuple[str, Obj]]:
    """The (comment, object) pairs that run one service."""
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(m),
        "automountServiceAccountToken": False,
    }
    return [("", account), ("", _service(m)), ("", _deployment(m)), *_scaling(m)]


def _package(m: ServiceManifest) -> str:
    return m.entry_module.removeprefix("brokermesh.services.")


def render_service(m: ServiceManifest) -> str:
    """The file k8s/base/services/<name>.yaml of one service."""
    ports = ", ".join(
        [f"gRPC {m.grpc_port}", *(f"{purpose} {port}" for purpose, port in m.extra_ports)]
    )
    header = SERVICES_HEADER.format(
        name=m.name, plane=m.plane.value, ports=ports, package=_package(m)
    )
    documents = service_documents(m)
    documents[0] = (header, documents[0][1])
    return dump(documents)


def render_simulators(simulators: Sequence[ServiceManifest]) -> str:
    """The dev overlay's file of the simulated venues' workloads."""
    documents = [d for m in simulators for d in service_documents(m)]
    documents[0] = (SIMULATORS_HEADER, documents[0][1])
    return dump(documents)


# ---------------------------------------------------------------------- DestinationRules
def _destination_rule(m: ServiceManifest) -> Obj:
    balancer: Obj = (
        {"consistentHash": {"httpHeaderName": ACCOUNT_HEADER, "maglev": {"tableSize": 65537}}}
        if m.name in ACCOUNT_AFFINITY
        else {"simple": "LEAST_REQUEST"}
    )
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": _metadata(m),
        "spec": {
            "host": f"{m.name}.{NAMESPACES[m.plane]}.svc.cluster.local",
            "trafficPolicy": {
                "tls": {"mode": "ISTIO_MUTUAL"},
                "loadBalancer": balancer,
                "connectionPool": {
                    "tcp": {
                        "maxConnections": 512,
                        "connectTimeout": "0.25s",
                        "tcpKeepalive": {"time": "60s", "interval": "10s"},
                    },
                    "http": {
                        "http2MaxRequests": 2048,
                        "maxRequestsPerConnection": 0,
                        "maxRetries": 16,
                        "idleTimeout": "300s",
                    },
                },
                "outlierDetection": {
                    "splitExternalLocalOriginErrors": True,
                    "consecutiveLocalOriginFailures": 5,
                    "consecutive5xxErrors": 5,
                    "interval": "5s",
                    "baseEjectionTime": "30s",
                    "maxEjectionPercent": 50,
                    "minHealthPercent": 50,
                },
            },
        },
    }


def render_destination_rules(manifests: Sequence[ServiceManifest]) -> str:
    """istio/traffic/destination-rules.yaml: one DestinationRule per deployed service."""
    documents = [("", _destination_rule(m)) for m in manifests]
    documents[0] = (DESTINATION_RULES_HEADER, documents[0][1])
    return dump(documents)


# ---------------------------------------------------------------------- the files
def outputs(
    manifests: Sequence[ServiceManifest] = MANIFESTS,
    simulators: Sequence[ServiceManifest] = SIMULATORS,
    root: Path = REPO,
) -> dict[Path, str]:
    """Every generated file under ``root`` and the text it must hold."""
    dev_only = {m.name for m in simulators}
    deployed = [m for m in manifests if m.name not in dev_only]
    files = {
        root / "k8s" / "base" / "services" / f"{m.name}.yaml": render_service(m) for m in deployed
    }
    files[root / "k8s" / "overlays" / "dev" / "venue-sims" / "workloads.yaml"] = render_simulators(
        [m for m in manifests if m.name in dev_only]
    )
    files[root / "istio" / "traffic" / "destination-rules.yaml"] = render_destination_rules(
        deployed
    )
    return files


def stale(files: Mapping[Path, str]) -> list[Path]:
    """The files whose text on disk differs from what they must hold (or that are missing)."""
    return [p for p, text in files.items() if not p.is_file() or p.read_text() != text]


def main(argv: Sequence[str] | None = None) -> int:
    """Write the generated files, or with --check report those that differ (exit 1)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 on drift")
    parser.add_argument("--root", type=Path, default=REPO, help="the repository (default: this)")
    args = parser.parse_args(argv)

    files = outputs(root=args.root)
    differing = stale(files)
    if args.check:
        for path in differing:
            print(f"gen_deploy: {path} differs from what the manifests render", file=sys.stderr)
        return 1 if differing else 0
    for path in differing:
        path.write_text(files[path])
        print(f"gen_deploy: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
