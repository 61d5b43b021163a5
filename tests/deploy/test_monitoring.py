"""Prometheus scrapes every service, and each SLO has its rule with error-budget alerts."""

from __future__ import annotations

import re

from .render import Obj, find, of_kind

SLOS = {
    "order-path-availability": {"order_path_availability": 0.9995},
    "prevenue-latency": {"total_p95": 0.06, "total_p99": 0.14},
    "gateway-auth-latency": {"gateway_auth_p95": 0.015, "gateway_auth_p99": 0.035},
    "oms-validation-latency": {"oms_validation_p95": 0.02, "oms_validation_p99": 0.045},
    "pre-trade-risk-latency": {"pre_trade_risk_p95": 0.02, "pre_trade_risk_p99": 0.05},
    "routing-latency": {"routing_p95": 0.01, "routing_p99": 0.025},
}
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

    assert names == {f"slo-{name}" for name in SLOS}


def test_every_objective_alerts_at_50_75_and_90_percent_of_its_error_budget(
    rendered: dict[str, list[Obj]],
) -> None:
    for name, objectives in SLOS.items():
        rule = find(rendered["prod"], "PrometheusRule", f"slo-{name}")
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


def test_latency_objectives_count_requests_over_their_threshold_bucket(
    rendered: dict[str, list[Obj]],
) -> None:
    for name, objectives in SLOS.items():
        rule = find(rendered["prod"], "PrometheusRule", f"slo-{name}")
        for slo, threshold in objectives.items():
            if slo == "order_path_availability":
                continue
            segment = slo.rsplit("_", 1)[0]
            recorded = [
                r["expr"]
                for r in rules(rule)
                if r.get("record", "").startswith(f"brokermesh:slo_{slo}:")
            ]

            assert len(recorded) == 8, slo
            assert all(f'segment="{segment}",le="{threshold:g}"' in e for e in recorded), slo


def test_the_availability_objective_budget_is_five_in_ten_thousand(
    rendered: dict[str, list[Obj]],
) -> None:
    rule = find(rendered["prod"], "PrometheusRule", "slo-order-path-availability")
    spent = [r["expr"] for r in rules(rule) if "ErrorBudget" in r.get("alert", "")]

    assert all("/ 0.0005 >=" in expr for expr in spent)


def test_the_rules_use_the_platforms_metric_names(rendered: dict[str, list[Obj]]) -> None:
    text = "\n".join(
        r["expr"] for rule in of_kind(rendered["prod"], "PrometheusRule") for r in rules(rule)
    )

    for metric in METRICS:
        assert metric in text, metric
