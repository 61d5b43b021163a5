"""PostgreSQL roles: the services connect as brokermesh_app, which owns nothing, and only the
migration Job connects as the database owner, reaching nothing but PostgreSQL and DNS.

Migration 0003 grants brokermesh_app SELECT/INSERT on order_events and a trigger refuses
UPDATE/DELETE; an owner could disable that trigger, so the role the services use must not own
the database or anything in it (docs/deployment.md, "Database roles").
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Iterator
from importlib.metadata import entry_points
from urllib.parse import parse_qs, urlparse

import pytest

from brokermesh.cli import build_parser
from brokermesh.cli import migrate as migrate_cli
from brokermesh.mesh import config
from brokermesh.mesh.manifest import Backend
from brokermesh.services.ledger.manifest import MANIFEST as LEDGER
from brokermesh.services.ledger.service import LedgerSettings
from brokermesh.services.registry import MANIFESTS

from .callgraph import (
    INSTANCES,
    SESSION_CLIENTS,
    Workload,
    _peer_matches,
    namespace_labels,
    selects,
)
from .render import OVERLAYS, Obj, find, key, of_kind

NAMESPACE = "brokermesh-data"
CLUSTER = "brokermesh-pg"
OWNER, APP = "brokermesh_owner", "brokermesh_app"
#: CloudNativePG generates <cluster>-app for the initdb owner; the services' Secret is ours.
OWNER_SECRET, APP_SECRET = f"{CLUSTER}-app", "brokermesh-pg-service"
JOB = "brokermesh-migrate"
RW_HOST = f"{CLUSTER}-rw.{NAMESPACE}.svc.cluster.local"
POOLER_HOST = f"{CLUSTER}-pooler-rw.{NAMESPACE}.svc.cluster.local"
#: Settings that carry a DSN; the ledger's relay has its own (LedgerSettings.relay_database_url).
RELAY_DSN_SETTING = "BROKERMESH_LEDGER_RELAY_DATABASE_URL"
DSN_SETTINGS = ("BROKERMESH_DATABASE_URL", RELAY_DSN_SETTING)
UID = 10001
#: Egress every pod of the namespace gets from network/namespace-defaults.yaml.
KUBE_DNS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}
ISTIOD = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "istio-system"}},
    "podSelector": {"matchLabels": {"app": "istiod"}},
}
INSTANCES_PEER = {
    "podSelector": {"matchLabels": {"cnpg.io/cluster": CLUSTER, "cnpg.io/podRole": "instance"}}
}


# ---------------------------------------------------------------------- helpers
def pod_templates(objects: Iterable[Obj]) -> Iterator[tuple[Obj, Obj]]:
    """(workload, pod template) of everything that runs pods."""
    for obj in objects:
        kind = obj.get("kind")
        if kind in {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}:
            yield obj, obj["spec"]["template"]
        elif kind == "CronJob":
            yield obj, obj["spec"]["jobTemplate"]["spec"]["template"]
        elif kind == "Pod":
            yield obj, obj


def secret_names(template: Obj) -> set[str]:
    """Every Secret a pod template reads: env, envFrom and volumes (projected included)."""
    spec = template["spec"]
    names = set()
    for c in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        for env in c.get("env", []):
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                names.add(ref["name"])
        for source in c.get("envFrom", []):
            if "secretRef" in source:
                names.add(source["secretRef"]["name"])
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            names.add(volume["secret"]["secretName"])
        for source in (volume.get("projected") or {}).get("sources", []):
            if "secret" in source:
                names.add(source["secret"]["name"])
    return names


def readers(objects: list[Obj], secret: str) -> set[tuple[str, str]]:
    """(kind, name) of the workloads whose pods read ``secret``."""
    return {
        (obj["kind"], obj["metadata"]["name"])
        for obj, template in pod_templates(objects)
        if obj["metadata"].get("namespace") == NAMESPACE and secret in secret_names(template)
    }


def postgres_services() -> set[tuple[str, str]]:
    return {("Deployment", m.name) for m in MANIFESTS if Backend.POSTGRES in m.backends}


def job_argv(container: Obj) -> list[str]:
    """The container's command and args with Kubernetes' $(VAR) expansion of its env values."""
    values = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    argv = [*container.get("command", []), *container.get("args", [])]
    return [re.sub(r"\$\((\w+)\)", lambda m: values.get(m[1], m[0]), a) for a in argv]


def job_workload(objects: list[Obj]) -> Workload:
    template = find(objects, "Job", JOB, NAMESPACE)["spec"]["template"]
    return Workload(
        JOB,
        NAMESPACE,
        template["metadata"].get("labels", {}),
        template["spec"].get("serviceAccountName", "default"),
    )


def job_network(objects: list[Obj]) -> tuple[list[str], set[tuple[str, str, int]]]:
    """What the NetworkPolicies selecting the Job's pods allow: (ingress rules, egress).

    Egress is a set of (peer as JSON, protocol, port); a rule without peers or ports, which
    would open everything or every port, is reported among the ingress-style problems.
    """
    labels = job_workload(objects).labels
    problems: list[str] = []
    egress: set[tuple[str, str, int]] = set()
    for policy in of_kind(objects, "NetworkPolicy"):
        spec = policy.get("spec") or {}
        if policy["metadata"]["namespace"] != NAMESPACE or not selects(
            spec.get("podSelector"), labels
        ):
            continue
        for rule in spec.get("ingress", []):
            problems.append(f"{key(policy)} admits {rule.get('from', 'anything')} to the Job")
        for rule in spec.get("egress", []):
            if not rule.get("to") or not rule.get("ports"):
                problems.append(
                    f"{key(policy)} lets the Job reach {rule.get('to', 'anything')}"
                    f" on {rule.get('ports', 'every port')}"
                )
                continue
            for peer in rule["to"]:
                for port in rule["ports"]:
                    egress.add(
                        (
                            json.dumps(peer, sort_keys=True),
                            port.get("protocol", "TCP"),
                            int(port["port"]),
                        )
                    )
    return problems, egress


def admitted_ports(objects: list[Obj], policy_name: str, workload: Workload) -> set[int]:
    """Ports on which NetworkPolicy ``policy_name`` admits ``workload``'s pods."""
    policy = find(objects, "NetworkPolicy", policy_name, NAMESPACE)
    namespaces = namespace_labels(objects)
    return {
        int(port["port"])
        for rule in policy["spec"].get("ingress", [])
        if any(
            _peer_matches(peer, workload, NAMESPACE, namespaces) for peer in rule.get("from", [])
        )
        for port in rule.get("ports", [])
    }


# ---------------------------------------------------------------------- roles
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_database_owner_is_not_the_role_the_services_connect_as(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    cluster = find(objects, "Cluster", CLUSTER, NAMESPACE)["spec"]
    users = {
        urlparse(value).username
        for c in of_kind(objects, "ConfigMap")
        for name, value in c.get("data", {}).items()
        if name in DSN_SETTINGS
    }

    assert cluster["bootstrap"]["initdb"]["owner"] == OWNER
    assert users == {APP}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_services_role_is_managed_with_login_and_nothing_more(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    cluster = find(objects, "Cluster", CLUSTER, NAMESPACE)["spec"]
    roles = {r["name"]: r for r in cluster.get("managed", {}).get("roles", [])}

    assert APP in roles, f"{APP} is not a managed role of {CLUSTER}"
    role = roles[APP]
    assert role.get("ensure", "present") == "present"
    assert role.get("login") is True
    for attribute in ("superuser", "createdb", "createrole", "replication", "bypassrls"):
        assert role.get(attribute, False) is False, attribute
    # Membership in the owner (or any role) would hand the owner's rights back.
    assert not role.get("inRoles"), role.get("inRoles")
    assert role.get("passwordSecret") == {"name": APP_SECRET}
    assert not role.get("disablePassword")
    # Referenced only: its value is created in the cluster, never committed.
    assert not [s for s in of_kind(objects, "Secret") if s["metadata"]["name"] == APP_SECRET]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_migration_job_reads_the_owner_secret(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objects = rendered[overlay]

    assert readers(objects, OWNER_SECRET) == {("Job", JOB)}
    assert readers(objects, APP_SECRET) == postgres_services()


def test_a_service_reading_the_owner_secret_is_noticed(rendered: dict[str, list[Obj]]) -> None:
    objects = copy.deepcopy(rendered["prod"])
    oms = find(objects, "Deployment", "oms", NAMESPACE)["spec"]["template"]["spec"]
    next(e for e in oms["containers"][0]["env"] if e["name"] == "PGPASSWORD")["valueFrom"][
        "secretKeyRef"
    ]["name"] = OWNER_SECRET

    assert readers(objects, OWNER_SECRET) == {("Job", JOB), ("Deployment", "oms")}
    assert ("Deployment", "oms") not in readers(objects, APP_SECRET)


# ---------------------------------------------------------------------- the migration Job
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_migration_job_runs_migrate_as_the_owner_on_the_primary(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    pod = find(objects, "Job", JOB, NAMESPACE)["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1 and not pod.get("initContainers")
    container = pod["containers"][0]
    argv = job_argv(container)
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    secrets = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container.get("env", [])
        if "secretKeyRef" in (e.get("valueFrom") or {})
    }
    service_images = {
        c["image"]
        for d in of_kind(objects, "Deployment")
        for c in d["spec"]["template"]["spec"]["containers"]
    }

    assert not any("$(" in a for a in argv), f"unresolved variable in {argv}"
    assert argv[0] == "brokermesh" and scripts.get("brokermesh") == "brokermesh.cli:main"
    args = build_parser().parse_args(argv[1:])  # exits (fails) on a flag migrate lacks
    assert args.func is migrate_cli.run
    dsn = urlparse(args.dsn)
    assert (dsn.username, dsn.password, dsn.hostname, dsn.port, dsn.path) == (
        OWNER,
        None,
        RW_HOST,
        5432,
        "/brokermesh",
    )
    assert parse_qs(dsn.query).get("sslmode") == ["require"]
    assert secrets == {"PGPASSWORD": {"name": OWNER_SECRET, "key": "password"}}
    assert {container["image"]} == service_images
    assert container["imagePullPolicy"] == "Always"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_migration_job_is_hardened_and_cleans_up_after_itself(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    job = find(objects, "Job", JOB, NAMESPACE)["spec"]
    template = job["template"]
    pod = template["spec"]
    container = pod["containers"][0]
    sc = container["securityContext"]
    account = find(objects, "ServiceAccount", pod["serviceAccountName"], NAMESPACE)

    assert pod["serviceAccountName"] == JOB
    assert JOB not in {m.name for m in MANIFESTS}
    assert pod["automountServiceAccountToken"] is False
    assert account.get("automountServiceAccountToken") is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == UID
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == UID
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    for bound in ("requests", "limits"):
        assert set(container["resources"][bound]) == {"cpu", "memory"}
    assert 0 < job["backoffLimit"] <= 10
    assert job["ttlSecondsAfterFinished"] > 0
    assert pod["restartPolicy"] in {"Never", "OnFailure"}
    # A sidecar would outlive the migration and keep the Job from completing.
    assert template["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_migration_job_reaches_postgres_and_dns_and_nothing_reaches_it(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    problems, egress = job_network(rendered[overlay])
    dumps = json.dumps

    assert not problems, "\n".join(problems)
    assert egress == {
        (dumps(INSTANCES_PEER, sort_keys=True), "TCP", 5432),
        (dumps(KUBE_DNS, sort_keys=True), "UDP", 53),
        (dumps(KUBE_DNS, sort_keys=True), "TCP", 53),
        # namespace-wide (every pod); the Job has no sidecar that would use it
        (dumps(ISTIOD, sort_keys=True), "TCP", 15012),
    }


def test_a_wider_migration_egress_is_noticed(rendered: dict[str, list[Obj]]) -> None:
    objects = copy.deepcopy(rendered["prod"])
    policy = find(objects, "NetworkPolicy", JOB, NAMESPACE)
    policy["spec"]["egress"].append(
        {"to": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": 4222}]}
    )
    policy["spec"]["ingress"] = [{"from": [{"podSelector": {}}]}]

    problems, egress = job_network(objects)

    assert (json.dumps({"podSelector": {}}), "TCP", 4222) in egress
    assert problems == [
        f"NetworkPolicy/{NAMESPACE}/{JOB} admits [{{'podSelector': {{}}}}] to the Job"
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_postgres_admits_the_migration_job_directly_and_the_pooler_does_not(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    job = job_workload(objects)

    # Its session advisory lock needs a real session: the rw service, not PgBouncer.
    assert admitted_ports(objects, f"{CLUSTER}-instances", job) == {5432}
    assert admitted_ports(objects, f"{CLUSTER}-pooler-rw", job) == set()


# ---------------------------------------------------------------------- the ledger's relay
def load_ledger(env: dict[str, str]) -> LedgerSettings:
    """The ledger's settings as its process builds them from the environment ``env``."""
    return config.load(
        LedgerSettings, LEDGER.name, environ=env, defaults={"port": LEDGER.grpc_port}
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ledger_relay_has_a_session_on_the_primary_and_queries_use_the_pooler(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    env = next(
        c["data"]
        for c in of_kind(rendered[overlay], "ConfigMap")
        if c.get("data", {}).get("BROKERMESH_SERVICE") == LEDGER.name
    )

    settings = load_ledger(env)

    relay = urlparse(settings.relay_dsn)
    assert (relay.username, relay.password, relay.hostname, relay.port, relay.path) == (
        APP,
        None,
        RW_HOST,
        5432,
        "/brokermesh",
    )
    assert parse_qs(relay.query).get("sslmode") == ["require"]
    assert urlparse(settings.database_url).hostname == POOLER_HOST


def test_without_a_relay_dsn_the_relay_uses_the_database_url() -> None:
    dsn = "postgresql://brokermesh_app@db.example:5432/brokermesh"

    settings = load_ledger({"BROKERMESH_DATABASE_URL": dsn})

    assert settings.relay_dsn == dsn


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_postgres_admits_the_session_clients_directly_and_no_other_service(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    services = [
        Workload(d["metadata"]["name"], NAMESPACE, d["spec"]["template"]["metadata"]["labels"])
        for d in of_kind(objects, "Deployment")
        if d["metadata"]["namespace"] == NAMESPACE
    ]

    admitted = {
        s.name for s in services if admitted_ports(objects, f"{CLUSTER}-instances", s) == {5432}
    }

    assert admitted == set(SESSION_CLIENTS) == {"ledger"}
    policy = find(objects, "NetworkPolicy", f"{CLUSTER}-instances", NAMESPACE)
    assert policy["spec"]["podSelector"]["matchLabels"] == dict(INSTANCES.labels)
