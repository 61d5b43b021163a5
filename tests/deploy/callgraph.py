"""Compares the call graph the manifests declare with what Istio and NetworkPolicies allow.

The manifests (``brokermesh.services.registry.MANIFESTS``) are the services' client
configuration, so they are the complete record of who talks to whom: gRPC ``calls``, FIX
``fix_peers`` and the NATS and PostgreSQL ``backends``. The functions here evaluate the
rendered AuthorizationPolicies and NetworkPolicies the way Istio and Kubernetes would (label
selectors, namespace selectors, principals, ports) and report every edge the code uses that
the policies do not allow, and every edge the policies allow that the code does not use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from brokermesh.mesh.manifest import Backend, ServiceManifest

Obj = dict[str, Any]

#: Pseudo-callees standing for the backends' pods, which no manifest describes.
NATS = "nats"
POSTGRES = "postgres"
POSTGRES_INSTANCES = "postgres-instances"
ISTIO_ROOT_NAMESPACE = "istio-system"
DATA_NAMESPACE = "brokermesh-data"


@dataclass(frozen=True, order=True)
class Edge:
    """``caller`` may open connections to ``callee`` on ``port``."""

    caller: str
    callee: str
    port: int

    def __str__(self) -> str:
        return f"{self.caller} -> {self.callee}:{self.port}"


@dataclass(frozen=True)
class Workload:
    """Pods of one service (or backend) as policies see them."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    service_account: str = ""
    ports: Mapping[str, int] = field(default_factory=dict)

    @property
    def principal(self) -> str:
        return f"cluster.local/ns/{self.namespace}/sa/{self.service_account}"


#: The backends' pods, labelled as the NATS Helm chart and CloudNativePG label them; the
#: services reach PostgreSQL through the PgBouncer pooler.
BACKENDS: dict[Backend, tuple[Workload, int]] = {
    Backend.NATS: (
        Workload(
            NATS,
            "brokermesh-nats",
            {"app.kubernetes.io/name": "nats", "app.kubernetes.io/component": "nats"},
        ),
        4222,
    ),
    Backend.POSTGRES: (
        Workload(
            POSTGRES,
            "brokermesh-data",
            {"cnpg.io/poolerName": "brokermesh-pg-pooler-rw", "cnpg.io/podRole": "pooler"},
        ),
        5432,
    ),
}

#: The PostgreSQL instances themselves; the brokermesh-pg-rw service leads to the primary.
INSTANCES = Workload(
    POSTGRES_INSTANCES,
    DATA_NAMESPACE,
    {"cnpg.io/cluster": "brokermesh-pg", "cnpg.io/podRole": "instance"},
)
INSTANCES_PORT = 5432

#: Services that reach the PostgreSQL instances directly instead of through the pooler, and
#: why. Any other service's path to the instances is reported.
SESSION_CLIENTS: dict[str, str] = {
    "ledger": (
        "the outbox relay LISTENs and holds a session advisory lock so that one ledger relays "
        "at a time; PgBouncer in transaction mode can carry neither "
        "(BROKERMESH_LEDGER_RELAY_DATABASE_URL)"
    ),
}

#: Callees outside the mesh (no sidecar, their own TLS), which no AuthorizationPolicy guards.
OUTSIDE_MESH = frozenset({POSTGRES, POSTGRES_INSTANCES})


@dataclass
class Analysis:
    """What the policies allow, and what they do that the comparison cannot express."""

    edges: set[Edge] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------- the code's edges
def fix_port(manifest: ServiceManifest) -> int:
    """The port a FIX peer accepts sessions on (its ``extra_ports["fix"]``)."""
    return dict(manifest.extra_ports)["fix"]


def expected_edges(
    manifests: Sequence[ServiceManifest], deployed: Iterable[str]
) -> tuple[set[Edge], set[Edge]]:
    """Edges of the deployed services: (in-cluster, leaving the cluster).

    A FIX peer that is not deployed (a real venue in prod) is reached outside the cluster;
    every other callee must be deployed, and an edge to a missing one stays in-cluster so
    that the comparison reports it.
    """
    by_name = {m.name: m for m in manifests}
    present = set(deployed)
    internal: set[Edge] = set()
    external: set[Edge] = set()
    for m in manifests:
        if m.name not in present:
            continue
        for callee in m.calls:
            internal.add(Edge(m.name, callee, by_name[callee].grpc_port))
        for peer in m.fix_peers:
            edge = Edge(m.name, peer, fix_port(by_name[peer]))
            (internal if peer in present else external).add(edge)
        for backend in m.backends:
            workload, port = BACKENDS[backend]
            internal.add(Edge(m.name, workload.name, port))
        if Backend.POSTGRES in m.backends and m.name in SESSION_CLIENTS:
            internal.add(Edge(m.name, INSTANCES.name, INSTANCES_PORT))
    return internal, external


# ---------------------------------------------------------------------- rendered workloads
def service_workloads(
    objects: Iterable[Obj], manifests: Sequence[ServiceManifest]
) -> list[Workload]:
    """The rendered Deployments that run a manifest's service."""
    names = {m.name for m in manifests}
    workloads = []
    for obj in objects:
        if obj.get("kind") != "Deployment":
            continue
        template = obj["spec"]["template"]
        labels = template["metadata"].get("labels", {})
        name = labels.get("app.kubernetes.io/name", obj["metadata"]["name"])
        if name not in names:
            continue
        ports = {
            p["name"]: p["containerPort"]
            for c in template["spec"]["containers"]
            for p in c.get("ports", [])
            if "name" in p
        }
        workloads.append(
            Workload(
                name,
                obj["metadata"]["namespace"],
                labels,
                template["spec"].get("serviceAccountName", "default"),
                ports,
            )
        )
    return workloads


def namespace_labels(objects: Iterable[Obj]) -> dict[str, dict[str, str]]:
    """Labels of the rendered namespaces, with the one Kubernetes sets on every namespace."""
    result = {}
    for obj in objects:
        if obj.get("kind") == "Namespace":
            name = obj["metadata"]["name"]
            result[name] = {
                **obj["metadata"].get("labels", {}),
                "kubernetes.io/metadata.name": name,
            }
    return result


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a Kubernetes label selector matches ``labels`` (None or {} matches all)."""
    if not selector:
        return True
    for k, v in selector.get("matchLabels", {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions", []):
        k, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": k in labels and labels[k] in values,
            "NotIn": labels.get(k) not in values,
            "Exists": k in labels,
            "DoesNotExist": k not in labels,
        }[op]
        if not ok:
            return False
    return True


# ---------------------------------------------------------------------- Istio
def istio_allowed(
    objects: Iterable[Obj], services: Sequence[Workload], targets: Sequence[Workload]
) -> Analysis:
    """Edges that ALLOW AuthorizationPolicies open from ``services`` to ``targets``.

    Sources are recognised by principal; principals of anything else (Prometheus, the
    ingress gateway, nack) are not service edges and are left to the other tests. A rule
    that admits any source, any port or sources by namespace or IP is reported.
    """
    by_principal = {w.principal: w for w in services}
    result = Analysis()
    for obj in objects:
        if obj.get("kind") != "AuthorizationPolicy":
            continue
        spec = obj.get("spec") or {}
        if spec.get("action", "ALLOW") != "ALLOW":
            continue
        namespace = obj["metadata"]["namespace"]
        name = f"AuthorizationPolicy {namespace}/{obj['metadata']['name']}"
        selector = spec.get("selector") or {}
        selected = [
            t
            for t in targets
            if namespace in (t.namespace, ISTIO_ROOT_NAMESPACE) and selects(selector, t.labels)
        ]
        if not selected:
            continue
        for rule in spec.get("rules", []):
            ports = [
                int(p)
                for to in rule.get("to", [])
                for p in (to.get("operation") or {}).get("ports", [])
            ]
            sources = rule.get("from", [])
            if not sources:
                result.problems.append(f"{name} admits any source")
                continue
            if not ports:
                result.problems.append(f"{name} admits its sources on every port")
                continue
            for source in (s.get("source") or {} for s in sources):
                loose = sorted(set(source) - {"principals", "requestPrincipals"})
                if loose or not source.get("principals"):
                    result.problems.append(f"{name} admits sources by {loose or 'no principal'}")
                    continue
                for principal in source["principals"]:
                    if "*" in principal:
                        result.problems.append(f"{name} admits the principal pattern {principal}")
                        continue
                    caller = by_principal.get(principal)
                    if caller is None:
                        continue
                    for target in selected:
                        result.edges.update(Edge(caller.name, target.name, p) for p in ports)
    return result


# ---------------------------------------------------------------------- NetworkPolicy
@dataclass
class NetworkAnalysis:
    """Edges NetworkPolicies open, seen from each end, and what cannot be compared."""

    ingress: set[Edge] = field(default_factory=set)
    egress: set[Edge] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def _peer_matches(
    peer: Mapping[str, Any],
    workload: Workload,
    policy_namespace: str,
    namespaces: Mapping[str, Mapping[str, str]],
) -> bool:
    if "namespaceSelector" in peer:
        ns_labels = namespaces.get(
            workload.namespace, {"kubernetes.io/metadata.name": workload.namespace}
        )
        if not selects(peer["namespaceSelector"], ns_labels):
            return False
    elif workload.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector"), workload.labels)


def _ports(rule: Mapping[str, Any], workload: Workload) -> list[int] | None:
    ports = []
    for item in rule.get("ports", []):
        port = item.get("port")
        if port is None:
            return None
        ports.append(workload.ports.get(port, -1) if isinstance(port, str) else int(port))
    return ports or None


def network_allowed(
    objects: Iterable[Obj],
    services: Sequence[Workload],
    targets: Sequence[Workload],
    manifests: Sequence[ServiceManifest],
    namespaces: Mapping[str, Mapping[str, str]],
) -> NetworkAnalysis:
    """Edges NetworkPolicies open: ingress at the callee's pods, egress at the caller's.

    Egress to an ipBlock is matched to a FIX peer that is not deployed (a real venue) by
    port; any other external egress of a service is reported.
    """
    by_name = {m.name: m for m in manifests}
    deployed = {w.name for w in services}
    result = NetworkAnalysis()
    for obj in objects:
        if obj.get("kind") != "NetworkPolicy":
            continue
        namespace = obj["metadata"]["namespace"]
        name = f"NetworkPolicy {namespace}/{obj['metadata']['name']}"
        spec = obj.get("spec") or {}
        pod_selector = spec.get("podSelector")
        selected = [
            t for t in targets if t.namespace == namespace and selects(pod_selector, t.labels)
        ]
        callers = [
            s for s in services if s.namespace == namespace and selects(pod_selector, s.labels)
        ]

        for rule in spec.get("ingress", []) if selected else []:
            peers = rule.get("from")
            if not peers:
                result.problems.append(f"{name} admits any source")
                continue
            for peer in peers:
                if "ipBlock" in peer:
                    result.problems.append(f"{name} admits the ipBlock {peer['ipBlock']}")
                    continue
                for source in (
                    s for s in services if _peer_matches(peer, s, namespace, namespaces)
                ):
                    for target in selected:
                        ports = _ports(rule, target)
                        if ports is None:
                            result.problems.append(f"{name} admits {source.name} on every port")
                            continue
                        result.ingress.update(Edge(source.name, target.name, p) for p in ports)

        for rule in spec.get("egress", []) if callers else []:
            peers = rule.get("to")
            if not peers:
                result.problems.append(f"{name} lets {[c.name for c in callers]} reach anything")
                continue
            for peer in peers:
                if "ipBlock" in peer:
                    for caller in callers:
                        ports = [int(p["port"]) for p in rule.get("ports", []) if "port" in p]
                        if not ports:
                            result.problems.append(
                                f"{name} lets {caller.name} reach {peer['ipBlock']} on any port"
                            )
                        for port in ports:
                            venues = [
                                p
                                for p in by_name[caller.name].fix_peers
                                if p not in deployed and fix_port(by_name[p]) == port
                            ]
                            if not venues:
                                result.problems.append(
                                    f"{name} lets {caller.name} reach {peer['ipBlock']['cidr']}"
                                    f":{port}, which is no FIX peer of its manifest"
                                )
                            result.egress.update(Edge(caller.name, v, port) for v in venues)
                    continue
                for dest in (t for t in targets if _peer_matches(peer, t, namespace, namespaces)):
                    ports = _ports(rule, dest)
                    for caller in callers:
                        if ports is None:
                            result.problems.append(
                                f"{name} lets {caller.name} reach {dest.name} on every port"
                            )
                            continue
                        result.egress.update(Edge(caller.name, dest.name, p) for p in ports)
    return result


# ---------------------------------------------------------------------- the comparison
def compare(expected: set[Edge], allowed: set[Edge], what: str) -> list[str]:
    """Messages for edges the code uses but ``what`` does not allow, and the reverse."""
    missing = [
        f"{what}: {e} is used by the code (manifests) but not allowed"
        for e in sorted(expected - allowed)
    ]
    extra = [f"{what}: {e} is allowed but no manifest uses it" for e in sorted(allowed - expected)]
    return missing + extra


def call_graph_problems(objects: Sequence[Obj], manifests: Sequence[ServiceManifest]) -> list[str]:
    """Every difference between the manifests' call graph and the rendered policies."""
    services = service_workloads(objects, manifests)
    targets = [*services, *(workload for workload, _ in BACKENDS.values()), INSTANCES]
    internal, external = expected_edges(manifests, (w.name for w in services))

    istio = istio_allowed(objects, services, targets)
    network = network_allowed(objects, services, targets, manifests, namespace_labels(objects))
    # PostgreSQL runs outside the mesh (its own TLS), so no AuthorizationPolicy guards it.
    in_mesh = {e for e in internal if e.callee not in OUTSIDE_MESH}
    return [
        *istio.problems,
        *network.problems,
        *compare(in_mesh, istio.edges, "Istio AuthorizationPolicy"),
        *compare(internal, network.ingress, "NetworkPolicy ingress"),
        *compare(internal | external, network.egress, "NetworkPolicy egress"),
    ]
