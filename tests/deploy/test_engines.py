"""The stateful engines come from operators: NATS (Helm chart values, nack resources that
mirror mesh/jetstream.py) and PostgreSQL (a CloudNativePG cluster behind a pooler)."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
import yaml

from brokermesh.mesh import jetstream

from .render import OVERLAYS, REPO, Obj, find, of_kind

NATS_VALUES = REPO / "k8s" / "engines" / "nats" / "values.yaml"
NACK_VALUES = REPO / "k8s" / "engines" / "nack" / "values.yaml"
NATS_URL = "nats://nats.brokermesh-nats.svc.cluster.local:4222"


def go_seconds(duration: str) -> float:
    """Seconds in a Go duration of whole hours, minutes or seconds (720h, 10m, 2m)."""
    return float(duration[:-1]) * {"h": 3600, "m": 60, "s": 1}[duration[-1]]


def test_nats_runs_as_a_three_server_jetstream_cluster_that_syncs_every_write() -> None:
    values = yaml.safe_load(NATS_VALUES.read_text())
    config = values["config"]

    assert config["cluster"] == {"enabled": True, "replicas": 3}
    assert config["jetstream"]["enabled"] is True
    assert config["jetstream"]["fileStore"]["enabled"] is True
    assert config["jetstream"]["fileStore"]["pvc"]["enabled"] is True
    assert config["jetstream"]["merge"]["sync_interval"] == "always"
    assert values["fullnameOverride"] == "nats"
    assert values["namespaceOverride"] == "brokermesh-nats"


def test_no_home_made_statefulset_is_deployed(rendered: dict[str, list[Obj]]) -> None:
    for overlay in OVERLAYS:
        assert not list(of_kind(rendered[overlay], "StatefulSet"))


def test_nack_reconciles_only_the_nats_namespace_as_the_principal_istio_admits(
    rendered: dict[str, list[Obj]],
) -> None:
    values = yaml.safe_load(NACK_VALUES.read_text())
    policy = find(rendered["istio"], "AuthorizationPolicy", "nats", "brokermesh-nats")
    principals = {
        p
        for rule in policy["spec"]["rules"]
        for s in rule["from"]
        for p in s["source"]["principals"]
    }

    assert values["namespaced"] is True
    assert values["jetstream"]["nats"]["url"] == NATS_URL
    assert f"cluster.local/ns/brokermesh-nats/sa/{values['serviceAccountName']}" in principals


@pytest.mark.parametrize("config", jetstream.STREAMS, ids=lambda c: c.name)
def test_each_stream_mirrors_its_definition_in_the_code(
    rendered: dict[str, list[Obj]], config: jetstream.StreamConfig
) -> None:
    stream = next(
        s["spec"] for s in of_kind(rendered["prod"], "Stream") if s["spec"]["name"] == config.name
    )

    assert sorted(stream["subjects"]) == sorted(config.subjects or [])
    assert stream["description"] == config.description
    assert stream["retention"] == str(config.retention.value)
    assert stream["storage"] == str(config.storage.value) == "file"
    assert go_seconds(stream["duplicateWindow"]) == config.duplicate_window
    assert go_seconds(stream.get("maxAge", "0s")) == (config.max_age or 0)
    assert stream["denyDelete"] is bool(config.deny_delete)
    assert stream["denyPurge"] is bool(config.deny_purge)
    assert stream["replicas"] == 3
    assert stream["servers"] == [NATS_URL]


def test_the_orders_stream_carries_order_events_and_risk_decisions(
    rendered: dict[str, list[Obj]],
) -> None:
    orders = find(rendered["prod"], "Stream", "orders", "brokermesh-nats")["spec"]

    assert orders["name"] == "ORDERS"
    assert sorted(orders["subjects"]) == ["risk.decisions.>", "trading.orders.>"]


@pytest.mark.parametrize("config", jetstream.BUCKETS, ids=lambda c: c.bucket)
def test_each_bucket_mirrors_its_definition_in_the_code(
    rendered: dict[str, list[Obj]], config: jetstream.KeyValueConfig
) -> None:
    bucket = next(
        b["spec"]
        for b in of_kind(rendered["prod"], "KeyValue")
        if b["spec"]["bucket"] == config.bucket
    )

    assert bucket["bucket"] == "controls"
    assert bucket["description"] == config.description
    assert bucket["history"] == config.history
    assert bucket["storage"] == str(config.storage.value) == "file"
    assert bucket["replicas"] == 3


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_postgres_is_a_three_instance_synchronous_cloudnativepg_cluster(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    cluster = find(rendered[overlay], "Cluster", "brokermesh-pg", "brokermesh-data")["spec"]
    pooler = find(rendered[overlay], "Pooler", "brokermesh-pg-pooler-rw", "brokermesh-data")

    assert cluster["instances"] == 3
    assert cluster["postgresql"]["synchronous"] == {
        "method": "any",
        "number": 1,
        "dataDurability": "required",
    }
    assert cluster["bootstrap"]["initdb"]["owner"] == "brokermesh_owner"
    assert pooler["spec"]["cluster"]["name"] == "brokermesh-pg"
    assert pooler["spec"]["type"] == "rw"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_reach_postgres_through_the_pooler_and_nats_through_its_service(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    for config in of_kind(rendered[overlay], "ConfigMap"):
        data = config.get("data", {})
        if "BROKERMESH_DATABASE_URL" in data:
            dsn = urlparse(data["BROKERMESH_DATABASE_URL"])
            assert dsn.hostname == "brokermesh-pg-pooler-rw.brokermesh-data.svc.cluster.local"
            assert (dsn.username, dsn.password, dsn.path) == ("brokermesh_app", None, "/brokermesh")
            assert "sslmode=require" in dsn.query
        if "BROKERMESH_NATS_URL" in data:
            assert data["BROKERMESH_NATS_URL"] == NATS_URL


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_services_database_password_is_the_managed_roles_not_the_owners(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    for deployment in of_kind(rendered[overlay], "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert env["name"] == "PGPASSWORD"
                    assert ref == {"name": "brokermesh-pg-service", "key": "password"}
