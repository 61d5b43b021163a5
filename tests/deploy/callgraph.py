"""Compares the call graph the manifests declare with what Istio and NetworkPolicies allow.

The manifests (``brokermesh.services.registry.MANIFESTS``) are the services' client
configuration, so they are the complete record of who talks to whom: gRPC ``calls``, FIX
``fix_peers`` and the NATS and PostgreSQL ``backends`` (``codegraph.py`` holds them to the
code). The functions here evaluate the rendered AuthorizationPolicies and NetworkPolicies the
way Istio and Kubernetes would (label selectors, namespace selectors, principals, ports) and
report every edge the code uses that the policies do not allow, and every edge the policies
allow that the code does not use.

Whatever the comparison cannot map to a service is refused unless :data:`PEERS` or
:data:`PORT_RANGES` list it, with the reason, in this one place: a principal or a pod selector
that is no service of the manifests and no listed peer (in another namespace or the same), a
namespace chosen by anything but its name, a path to the PostgreSQL instances for a service
that :data:`SESSION_CLIENTS` does not name, and a NetworkPolicy port range (``endPort``).
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
#: The label Kubernetes sets on every namespace, the only one a peer may choose namespaces by.
NAMESPACE_NAME = "kubernetes.io/metadata.name"
#: In :attr:`Peer.admitted_to`: any service of the manifests.
ANY_SERVICE = "*"


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
            DATA_NAMESPACE,
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


@dataclass(frozen=True)
class Peer:
    """A workload that no manifest describes but the policies may name, and why."""

    name: str
    namespace: str
    #: Its pods' labels; a NetworkPolicy must select it by exactly these.
    labels: Mapping[str, str]
    reason: str
    #: Its Istio identity, if it has one that ALLOW rules may name.
    principal: str = ""
    #: (callee, port) it may be admitted to; callee ANY_SERVICE is every service.
    admitted_to: frozenset[tuple[str, int]] = frozenset()
    #: Ports on which services may reach it.
    reached_on: frozenset[int] = frozenset()

    def admits(self, target: str, port: int, services: Iterable[str]) -> bool:
        """Whether this peer may be admitted to ``target`` on ``port``."""
        if (target, port) in self.admitted_to:
            return True
        return (ANY_SERVICE, port) in self.admitted_to and target in set(services)


#: Every peer outside the manifests that a policy may admit or let services reach.
PEERS: tuple[Peer, ...] = (
    Peer(
        "ingress-gateway",
        ISTIO_ROOT_NAMESPACE,
        {"istio": "ingressgateway"},
        "the only way in: it terminates TLS and checks the JWT before the REST gateway",
        principal="cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
        admitted_to=frozenset({("gateway", 8080)}),
    ),
    Peer(
        "prometheus",
        "monitoring",
        {"app.kubernetes.io/name": "prometheus"},
        "scrapes the services, the NATS exporter, PgBouncer and the PostgreSQL exporter",
        principal="cluster.local/ns/monitoring/sa/prometheus-k8s",
        admitted_to=frozenset(
            {(ANY_SERVICE, 9464), (NATS, 7777), (POSTGRES, 9127), (POSTGRES_INSTANCES, 9187)}
        ),
    ),
    Peer(
        "nack",
        "brokermesh-nats",
        {"app.kubernetes.io/name": "nack"},
        "the NATS controller applies the Stream and KeyValue resources to NATS",
        principal="cluster.local/ns/brokermesh-nats/sa/nack",
        admitted_to=frozenset({(NATS, 4222)}),
    ),
    Peer(
        "nats-routes",
        "brokermesh-nats",
        {"app.kubernetes.io/name": "nats", "app.kubernetes.io/component": "nats"},
        "the NATS servers route to each other to form the JetStream cluster",
        principal="cluster.local/ns/brokermesh-nats/sa/nats",
        admitted_to=frozenset({(NATS, 6222)}),
    ),
    Peer(
        "cnpg-operator",
        "cnpg-system",
        {"app.kubernetes.io/name": "cloudnative-pg"},
        "the CloudNativePG operator drives the instances through their instance manager",
        admitted_to=frozenset({(POSTGRES_INSTANCES, 8000)}),
    ),
    Peer(
        "pgbouncer",
        DATA_NAMESPACE,
        {"cnpg.io/poolerName": "brokermesh-pg-pooler-rw"},
        "the pooler opens the server connections the services' transactions run on",
        admitted_to=frozenset({(POSTGRES_INSTANCES, 5432)}),
    ),
    Peer(
        "postgres-replication",
        DATA_NAMESPACE,
        {"cnpg.io/cluster": "brokermesh-pg", "cnpg.io/podRole": "instance"},
        "the instances replicate from the primary and report status to each other",
        admitted_to=frozenset({(POSTGRES_INSTANCES, 5432), (POSTGRES_INSTANCES, 8000)}),
    ),
    Peer(
        "migration-job",
        DATA_NAMESPACE,
        {
            "app.kubernetes.io/name": "brokermesh-migrate",
            "app.kubernetes.io/component": "migration",
        },
        "migrates as the owner under a session advisory lock (tests/deploy/test_database.py)",
        admitted_to=frozenset({(POSTGRES_INSTANCES, 5432)}),
    ),
    Peer(
        "ops-toolbox",
        "brokermesh-control",
        {"app.kubernetes.io/name": "ops-toolbox"},
        "operators change the trading controls with `brokermesh control` from this pod",
        principal="cluster.local/ns/brokermesh-control/sa/ops",
        admitted_to=frozenset({("control-plane", 50070)}),
    ),
    Peer(
        "kube-dns",
        "kube-system",
        {"k8s-app": "kube-dns"},
        "every pod resolves the names of services and peers through it",
        reached_on=frozenset({53}),
    ),
    Peer(
        "istiod",
        ISTIO_ROOT_NAMESPACE,
        {"app": "istiod"},
        "every sidecar fetches its configuration and workload certificate",
        reached_on=frozenset({15012}),
    ),
    Peer(
        "opentelemetry-collector",
        "monitoring",
        {"app.kubernetes.io/name": "opentelemetry-collector"},
        "the services export spans over OTLP (BROKERMESH_OTLP_ENDPOINT)",
        reached_on=frozenset({4317}),
    ),
)

#: NetworkPolicies allowed a port range (``endPort``), by namespace/name, with the reason.
#: Every port a policy opens is a port of a known edge, so none is.
PORT_RANGES: dict[str, str] = {}


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
                NAMESPACE_NAME: name,
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
    objects: Iterable[Obj],
    services: Sequence[Workload],
    targets: Sequence[Workload],
    peers: Sequence[Peer] = PEERS,
) -> Analysis:
    """Edges that ALLOW AuthorizationPolicies open from ``services`` to ``targets``.

    Sources are recognised by principal. A principal of a listed peer must be admitted only
    where its entry says; any other principal, a rule that admits any source, any port or
    sources by namespace or IP is reported.
    """
    by_principal = {w.principal: w for w in services}
    peer_by_principal = {p.principal: p for p in peers if p.principal}
    service_names = [w.name for w in services]
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
                    if caller is not None:
                        for target in selected:
                            result.edges.update(Edge(caller.name, target.name, p) for p in ports)
                        continue
                    peer = peer_by_principal.get(principal)
                    if peer is None:
                        result.problems.append(
                            f"{name} admits {principal}, which is no service of the manifests "
                            "and no listed peer"
                        )
                        continue
                    result.problems.extend(
                        f"{name} admits {peer.name} to {target.name}:{port}, which its entry "
                        "in PEERS does not list"
                        for target in selected
                        for port in ports
                        if not peer.admits(target.name, port, service_names)
                    )
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
        ns_labels = namespaces.get(workload.namespace, {NAMESPACE_NAME: workload.namespace})
        if not selects(peer["namespaceSelector"], ns_labels):
            return False
    elif workload.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector"), workload.labels)


def _peer_namespace(peer: Mapping[str, Any], policy_namespace: str) -> str | None:
    """The one namespace a peer selects pods in; None if it chooses namespaces otherwise."""
    if "namespaceSelector" not in peer:
        return policy_namespace
    selector = peer["namespaceSelector"] or {}
    labels = selector.get("matchLabels") or {}
    if set(selector) == {"matchLabels"} and set(labels) == {NAMESPACE_NAME}:
        return str(labels[NAMESPACE_NAME])
    return None


def _listed_peer(peer: Mapping[str, Any], namespace: str, peers: Sequence[Peer]) -> Peer | None:
    """The listed peer a NetworkPolicy peer selects by exactly its namespace and labels."""
    pods = peer.get("podSelector") or {}
    if set(pods) != {"matchLabels"}:
        return None
    for candidate in peers:
        if candidate.namespace == namespace and dict(pods["matchLabels"]) == dict(candidate.labels):
            return candidate
    return None


def _ports(rule: Mapping[str, Any], workload: Workload | None = None) -> list[int] | None:
    ports = []
    for item in rule.get("ports", []):
        port = item.get("port")
        if port is None:
            return None
        if isinstance(port, str):
            ports.append(workload.ports.get(port, -1) if workload else -1)
        else:
            ports.append(int(port))
    return ports or None


def _port_range_problems(
    name: str, key: str, spec: Mapping[str, Any], port_ranges: Mapping[str, str]
) -> list[str]:
    if key in port_ranges:
        return []
    return [
        f"{name} opens the port range {item.get('port')}-{item['endPort']}, which PORT_RANGES "
        "does not list"
        for direction in ("ingress", "egress")
        for rule in spec.get(direction) or []
        for item in rule.get("ports") or []
        if "endPort" in item
    ]


def network_allowed(
    objects: Iterable[Obj],
    services: Sequence[Workload],
    targets: Sequence[Workload],
    manifests: Sequence[ServiceManifest],
    namespaces: Mapping[str, Mapping[str, str]],
    peers: Sequence[Peer] = PEERS,
    port_ranges: Mapping[str, str] = PORT_RANGES,
) -> NetworkAnalysis:
    """Edges NetworkPolicies open: ingress at the callee's pods, egress at the caller's.

    A peer must choose its namespace by name and select either services of the manifests
    or, by exactly its labels, a listed peer on the ports its entry names. Egress to an
    ipBlock is matched to a FIX peer that is not deployed (a real venue) by port; any other
    external egress of a service is reported.
    """
    by_name = {m.name: m for m in manifests}
    deployed = {w.name for w in services}
    result = NetworkAnalysis()
    for obj in objects:
        if obj.get("kind") != "NetworkPolicy":
            continue
        namespace = obj["metadata"]["namespace"]
        key = f"{namespace}/{obj['metadata']['name']}"
        name = f"NetworkPolicy {key}"
        spec = obj.get("spec") or {}
        result.problems.extend(_port_range_problems(name, key, spec, port_ranges))
        pod_selector = spec.get("podSelector")
        selected = [
            t for t in targets if t.namespace == namespace and selects(pod_selector, t.labels)
        ]
        callers = [
            s for s in services if s.namespace == namespace and selects(pod_selector, s.labels)
        ]

        for rule in spec.get("ingress", []) if selected else []:
            sources = rule.get("from")
            if not sources:
                result.problems.append(f"{name} admits any source")
                continue
            for peer in sources:
                if "ipBlock" in peer:
                    result.problems.append(f"{name} admits the ipBlock {peer['ipBlock']}")
                    continue
                peer_namespace = _peer_namespace(peer, namespace)
                if peer_namespace is None:
                    result.problems.append(
                        f"{name} admits pods of the namespaces {peer['namespaceSelector']}, "
                        "not of one namespace chosen by name"
                    )
                    continue
                listed = _listed_peer(peer, peer_namespace, peers)
                if listed is not None:
                    for target in selected:
                        ports = _ports(rule, target)
                        if ports is None:
                            result.problems.append(f"{name} admits {listed.name} on every port")
                            continue
                        result.problems.extend(
                            f"{name} admits {listed.name} to {target.name}:{port}, which its "
                            "entry in PEERS does not list"
                            for port in ports
                            if not listed.admits(target.name, port, deployed)
                        )
                    continue
                matched = [s for s in services if _peer_matches(peer, s, namespace, namespaces)]
                if not matched:
                    result.problems.append(
                        f"{name} admits {dict(peer)} from {peer_namespace}, which selects no "
                        "service of the manifests and no listed peer"
                    )
                for source in matched:
                    for target in selected:
                        ports = _ports(rule, target)
                        if ports is None:
                            result.problems.append(f"{name} admits {source.name} on every port")
                            continue
                        result.ingress.update(Edge(source.name, target.name, p) for p in ports)

        for rule in spec.get("egress", []) if callers else []:
            destinations = rule.get("to")
            if not destinations:
                result.problems.append(f"{name} lets {[c.name for c in callers]} reach anything")
                continue
            for peer in destinations:
                if "ipBlock" in peer:
                    _venue_egress(name, rule, peer, callers, by_name, deployed, result)
                    continue
                peer_namespace = _peer_namespace(peer, namespace)
                if peer_namespace is None:
                    result.problems.append(
                        f"{name} lets services reach the namespaces {peer['namespaceSelector']}, "
                        "not one namespace chosen by name"
                    )
                    continue
                # Backends come first: the NATS servers and the PostgreSQL pods are also
                # listed peers, as the sources of their own traffic.
                matched = [t for t in targets if _peer_matches(peer, t, namespace, namespaces)]
                listed = None if matched else _listed_peer(peer, peer_namespace, peers)
                if listed is not None:
                    ports = _ports(rule)
                    if ports is None:
                        result.problems.append(f"{name} lets services reach {listed.name} anyhow")
                        continue
                    result.problems.extend(
                        f"{name} lets services reach {listed.name}:{port}, which its entry in "
                        "PEERS does not list"
                        for port in ports
                        if port not in listed.reached_on
                    )
                    continue
                if not matched:
                    result.problems.append(
                        f"{name} lets services reach {dict(peer)} in {peer_namespace}, which "
                        "selects no service of the manifests, no backend and no listed peer"
                    )
                for dest in matched:
                    ports = _ports(rule, dest)
                    for caller in callers:
                        if ports is None:
                            result.problems.append(
                                f"{name} lets {caller.name} reach {dest.name} on every port"
                            )
                            continue
                        result.egress.update(Edge(caller.name, dest.name, p) for p in ports)
    return result


def _venue_egress(
    name: str,
    rule: Mapping[str, Any],
    peer: Mapping[str, Any],
    callers: Sequence[Workload],
    by_name: Mapping[str, ServiceManifest],
    deployed: set[str],
    result: NetworkAnalysis,
) -> None:
    """Egress to an ipBlock: a FIX peer that is not deployed, matched by its port."""
    for caller in callers:
        ports = [int(p["port"]) for p in rule.get("ports", []) if "port" in p]
        if not ports:
            result.problems.append(f"{name} lets {caller.name} reach {peer['ipBlock']} on any port")
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


# ---------------------------------------------------------------------- the comparison
def compare(expected: set[Edge], allowed: set[Edge], what: str) -> list[str]:
    """Messages for edges the code uses but ``what`` does not allow, and the reverse."""
    missing = [
        f"{what}: {e} is used by the code (manifests) but not allowed"
        for e in sorted(expected - allowed)
    ]
    extra = [f"{what}: {e} is allowed but no manifest uses it" for e in sorted(allowed - expected)]
    return missing + extra


def call_graph_problems(
    objects: Sequence[Obj],
    manifests: Sequence[ServiceManifest],
    *,
    peers: Sequence[Peer] = PEERS,
    port_ranges: Mapping[str, str] = PORT_RANGES,
) -> list[str]:
    """Every difference between the manifests' call graph and the rendered policies."""
    services = service_workloads(objects, manifests)
    targets = [*services, *(workload for workload, _ in BACKENDS.values()), INSTANCES]
    internal, external = expected_edges(manifests, (w.name for w in services))

    istio = istio_allowed(objects, services, targets, peers)
    network = network_allowed(
        objects, services, targets, manifests, namespace_labels(objects), peers, port_ranges
    )
    # PostgreSQL runs outside the mesh (its own TLS), so no AuthorizationPolicy guards it.
    in_mesh = {e for e in internal if e.callee not in OUTSIDE_MESH}
    return [
        *istio.problems,
        *network.problems,
        *compare(in_mesh, istio.edges, "Istio AuthorizationPolicy"),
        *compare(internal, network.ingress, "NetworkPolicy ingress"),
        *compare(internal | external, network.egress, "NetworkPolicy egress"),
    ]
