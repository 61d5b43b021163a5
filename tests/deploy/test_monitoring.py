"""Prometheus scrapes every service, and each SLO has its rule with error-budget alerts (their
thresholds are the latency budget's: test_budget.py)."""

from __future__ import annotations

import re

import yaml

from brokermesh.mesh.manifest import Backend

from .budget import load_budget
from .callgraph import BACKENDS
from .render import REPO, Obj, find, key, of_kind

NATS_VALUES = REPO / "k8s" / "engines" / "nats" / "values.yaml"


def slos() -> dict[str, list[str]]:
    """The SLO names (``<segment>_<percentile>``, ``order_path_availability``) by rule name,
    from the latency budget table."""
    budget = load_budget()
    result = {o.rule: [f"{o.segment}_{p}" for p in o.thresholds_ms] for o in budget.objectives}
    for name, (rule, _) in budget.availability.items():
        result[rule] = [f"{name}_availability"]
    return result


METRICS = (
    "brokermesh_grpc_server_handled_total",
    "brokermesh_grpc_server_handling_seconds_bucket",
    "brokermesh_http_requests_total",
    "brokermesh_http_request_duration_seconds_bucket",
    "brokermesh_prevenue_segment_seconds_bucket",
)


def rules(rule: Obj) -> list[Obj]:
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_every_brokermesh_service_is_scraped_on_its_metrics_port(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = rendered["dev"]
    monitors = {m["metadata"]["namespace"]: m for m in of_kind(objects, "ServiceMonitor")}
    for service in of_kind(objects, "Service"):
        labels = service["metadata"].get("labels", {})
        if labels.get("app.kubernetes.io/part-of") != "brokermesh":
            continue
        monitor = monitors[service["metadata"]["namespace"]]["spec"]
        endpoint = monitor["endpoints"][0]

        assert monitor["selector"]["matchLabels"].items() <= labels.items()
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert endpoint["honorLabels"] is True
        assert endpoint["scheme"] == "https" and endpoint["tlsConfig"]["certFile"]


def test_there_is_one_prometheus_rule_per_slo(rendered: dict[str, list[Obj]]) -> None:
    names = {r["metadata"]["name"] for r in of_kind(rendered["prod"], "PrometheusRule")}

    assert names == set(slos())


def test_every_objective_alerts_at_50_75_and_90_percent_of_its_error_budget(
    rendered: dict[str, list[Obj]],
) -> None:
    for name, objectives in slos().items():
        rule = find(rendered["prod"], "PrometheusRule", name)
        alerts = {r["alert"]: r for r in rules(rule) if "alert" in r}
        for slo in objectives:
            spent = {
                a for a, r in alerts.items() if r["labels"].get("slo") == slo and "ErrorBudget" in a
            }
            thresholds = sorted(
                int(m[1]) for a in spent if (m := re.search(r"ErrorBudget(\d+)PercentSpent", a))
            )
            assert thresholds == [50, 75, 90], (name, slo)
            freeze = [
                r
                for r in alerts.values()
                if r["labels"].get("slo") == slo
                and r["labels"].get("error_budget_policy") == "freeze"
            ]
            assert len(freeze) == 1 and "ErrorBudget90" in freeze[0]["alert"]


def test_every_objective_records_its_error_ratio_over_eight_windows(
    rendered: dict[str, list[Obj]],
) -> None:
    for name, objectives in slos().items():
        rule = find(rendered["prod"], "PrometheusRule", name)
        for slo in objectives:
            recorded = [
                r for r in rules(rule) if r.get("record", "").startswith(f"brokermesh:slo_{slo}:")
            ]

            assert len(recorded) == 8, slo


def test_the_rules_use_the_platforms_metric_names(rendered: dict[str, list[Obj]]) -> None:
    text = "\n".join(
        r["expr"] for rule in of_kind(rendered["prod"], "PrometheusRule") for r in rules(rule)
    )

    for metric in METRICS:
        assert metric in text, metric


def test_every_monitor_and_rule_carries_the_label_prometheus_selects(
    rendered: dict[str, list[Obj]],
) -> None:
    kinds = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    unlabelled = [
        key(o)
        for o in rendered["prod"]
        if o["kind"] in kinds
        and o["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") != "brokermesh"
    ]

    assert not unlabelled


def test_nats_metrics_are_scraped_over_mutual_tls_like_every_service(
    rendered: dict[str, list[Obj]],
) -> None:
    values = yaml.safe_load(NATS_VALUES.read_text())["promExporter"]
    objects = rendered["prod"]
    nats, _ = BACKENDS[Backend.NATS]
    service = find(objects, "Service", "nats-metrics", nats.namespace)
    monitor = find(objects, "ServiceMonitor", "brokermesh", nats.namespace)["spec"]
    services_monitor = find(objects, "ServiceMonitor", "brokermesh", "brokermesh-data")["spec"]
    (port,) = service["spec"]["ports"]

    assert values["enabled"] is True and values["podMonitor"]["enabled"] is False
    assert service["spec"]["selector"] == dict(nats.labels)
    assert port["targetPort"] == values["port"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["endpoints"] == services_monitor["endpoints"]
    assert monitor["endpoints"][0]["port"] == port["name"]
