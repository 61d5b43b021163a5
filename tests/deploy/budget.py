"""The latency budget table (k8s/latency-budget.yaml) and what the deployment must say to agree.

The table holds the objectives, the deadlines the callers set and the backstop margin; every
timeout and threshold elsewhere is derived from it here, and the functions below report each
place (a VirtualService, an SLO rule) that says something else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import yaml

from .render import REPO, Obj, find, of_kind

BUDGET_FILE = REPO / "k8s" / "latency-budget.yaml"
PERCENTILES = ("p95", "p99")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_MS = {"ms": Decimal(1), "s": Decimal(1000), "m": Decimal(60_000), "h": Decimal(3_600_000)}


def ms(duration: str) -> Decimal:
    """Milliseconds in an Istio duration such as 0.045s, 45ms or 2s; ValueError otherwise."""
    match = _DURATION.fullmatch(duration)
    if not match:
        raise ValueError(f"not a duration: {duration!r}")
    return (Decimal(match[1]) * _UNIT_MS[match[2]]).normalize()


def seconds(milliseconds: Decimal | int) -> str:
    """A millisecond count as Prometheus writes its bucket bound, e.g. 20 -> "0.02"."""
    return f"{(Decimal(milliseconds) / 1000).normalize():f}"


@dataclass(frozen=True)
class Objective:
    """A latency objective of one pre-venue segment."""

    segment: str
    rule: str
    thresholds_ms: Mapping[str, int]


@dataclass(frozen=True)
class Budget:
    """The parsed table."""

    objectives: tuple[Objective, ...]
    availability: Mapping[str, tuple[str, Decimal]]
    deadlines_ms: Mapping[str, int]
    backstop_margin_ms: int
    routes: Mapping[str, str]

    def deadline_ms(self, route: str) -> int:
        """The deadline of the callers of the VirtualService ``route``."""
        return self.deadlines_ms[self.routes[route]]

    def timeout_ms(self, route: str) -> int:
        """The mesh timeout of ``route``: its callers' deadline plus the backstop margin."""
        return self.deadline_ms(route) + self.backstop_margin_ms


def load_budget() -> Budget:
    """The table in k8s/latency-budget.yaml; ValueError naming what is malformed."""
    raw: dict[str, Any] = yaml.safe_load(BUDGET_FILE.read_text())
    objectives = tuple(
        Objective(segment, spec["rule"], {p: int(spec[f"{p}_ms"]) for p in PERCENTILES})
        for segment, spec in raw["objectives"].items()
    )
    availability = {
        name: (spec["rule"], Decimal(str(spec["objective"])))
        for name, spec in raw["availability"].items()
    }
    deadlines = {name: int(value) for name, value in raw["deadlines"].items()}
    routes = {name: spec["deadline"] for name, spec in raw["routes"].items()}
    unknown = sorted(set(routes.values()) - set(deadlines))
    if unknown:
        raise ValueError(f"{BUDGET_FILE}: routes name unknown deadlines {unknown}")
    return Budget(objectives, availability, deadlines, int(raw["backstop_margin_ms"]), routes)


def virtual_service_problems(objects: Iterable[Obj], budget: Budget) -> list[str]:
    """Every VirtualService whose routes' timeouts are not the ones the budget derives."""
    services = {vs["metadata"]["name"]: vs for vs in of_kind(objects, "VirtualService")}
    problems = [
        f"VirtualService {name} has no entry in {BUDGET_FILE.name}"
        for name in sorted(set(services) - set(budget.routes))
    ]
    problems += [
        f"{BUDGET_FILE.name} routes {name}, which no VirtualService carries"
        for name in sorted(set(budget.routes) - set(services))
    ]
    for name in sorted(set(services) & set(budget.routes)):
        expected = budget.timeout_ms(name)
        for route in services[name]["spec"]["http"]:
            timeout = ms(route["timeout"])
            per_try = ms(route.get("retries", {}).get("perTryTimeout", route["timeout"]))
            if timeout != expected:
                problems.append(
                    f"VirtualService {name}: timeout {route['timeout']} is not {expected} ms "
                    f"(the {budget.routes[name]} deadline {budget.deadline_ms(name)} ms + the "
                    f"{budget.backstop_margin_ms} ms backstop margin)"
                )
            if per_try != timeout:
                problems.append(
                    f"VirtualService {name}: perTryTimeout {per_try:f} ms differs from the "
                    f"timeout, so a try could be cut before its caller's deadline"
                )
    return problems


def slo_rule_problems(objects: list[Obj], budget: Budget) -> list[str]:
    """Every SLO rule whose thresholds or objective are not the budget's."""
    problems: list[str] = []
    for objective in budget.objectives:
        try:
            rule = find(objects, "PrometheusRule", objective.rule)
        except KeyError as exc:
            problems.append(str(exc))
            continue
        rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
        for percentile, threshold in objective.thresholds_ms.items():
            slo = f"{objective.segment}_{percentile}"
            bound = f'segment="{objective.segment}",le="{seconds(threshold)}"'
            recorded = [
                r["expr"] for r in rules if r.get("record", "").startswith(f"brokermesh:slo_{slo}:")
            ]
            if not recorded or any(bound not in expr for expr in recorded):
                problems.append(f"PrometheusRule {objective.rule}: {slo} does not count {bound}")
            stated = f"{percentile.upper()} < {threshold} ms"
            summaries = [
                r["annotations"]["summary"]
                for r in rules
                if r.get("labels", {}).get("slo") == slo and "summary" in r.get("annotations", {})
            ]
            if not summaries or any(stated not in s for s in summaries):
                problems.append(
                    f"PrometheusRule {objective.rule}: {slo} alerts do not say {stated}"
                )
    for name, (rule_name, target) in budget.availability.items():
        try:
            rule = find(objects, "PrometheusRule", rule_name)
        except KeyError as exc:
            problems.append(str(exc))
            continue
        allowance = f"/ {(1 - target).normalize():f} >="
        spent = [
            r["expr"]
            for group in rule["spec"]["groups"]
            for r in group["rules"]
            if "ErrorBudget" in r.get("alert", "")
        ]
        if not spent or any(allowance not in expr for expr in spent):
            problems.append(
                f"PrometheusRule {rule_name}: {name} budget alerts do not use {allowance}"
            )
    return problems
