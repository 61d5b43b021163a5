"""Pure helpers: sample percentiles, Prometheus histogram quantiles and the blueprint verdict."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

#: The blueprint's pre-venue latency budget in milliseconds: segment -> (P95, P99).
BLUEPRINT_MS: dict[str, tuple[float, float]] = {
    "gateway_auth": (15.0, 35.0),
    "oms_validation": (20.0, 45.0),
    "pre_trade_risk": (20.0, 50.0),
    "routing": (10.0, 25.0),
    "total": (60.0, 140.0),
}

#: The pre-venue segments in path order, as reports list them; ``total`` spans them all.
SEGMENT_ORDER = ("gateway_auth", "oms_validation", "pre_trade_risk", "routing", "venue_handoff")


def in_path_order(segments: Mapping[str, T]) -> list[tuple[str, T]]:
    """``segments`` in path order, any unknown ones after, ``total`` last."""
    rank = {name: i for i, name in enumerate(SEGMENT_ORDER)}
    return sorted(
        segments.items(), key=lambda kv: (kv[0] == "total", rank.get(kv[0], len(rank)), kv[0])
    )


#: Cumulative buckets of one histogram series: (upper bound ``le``, cumulative count).
Buckets = Sequence[tuple[float, float]]


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``samples`` by linear interpolation; NaN when empty."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Count, mean, P50, P95, P99 and max of ``samples``."""
    if not samples:
        return {
            "count": 0,
            "mean": math.nan,
            "p50": math.nan,
            "p95": math.nan,
            "p99": math.nan,
            "max": math.nan,
        }
    return {
        "count": len(samples),
        "mean": sum(samples) / len(samples),
        "p50": percentile(samples, 0.50),
        "p95": percentile(samples, 0.95),
        "p99": percentile(samples, 0.99),
        "max": max(samples),
    }


def histogram_quantile(q: float, buckets: Buckets) -> float:
    """Prometheus' ``histogram_quantile``: linear interpolation inside the bucket holding
    rank ``q * total``; the lower edge of the first bucket is 0. Returns NaN without
    observations, and the highest finite bound when the rank falls into ``+Inf``."""
    ordered = sorted(buckets, key=lambda b: b[0])
    if not ordered or ordered[-1][1] <= 0:
        return math.nan
    total = ordered[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le


def bucket_delta(after: Buckets, before: Buckets) -> list[tuple[float, float]]:
    """Per-bound difference ``after - before`` of two scrapes of one histogram series."""
    earlier = dict(before)
    return [(le, count - earlier.get(le, 0.0)) for le, count in after]


def histogram_mean(sum_delta: float, count_delta: float) -> float:
    return sum_delta / count_delta if count_delta > 0 else math.nan


@dataclass(frozen=True, slots=True)
class Check:
    """One row of the verdict: a measured quantile against its budget."""

    segment: str
    quantile: str
    measured_ms: float
    budget_ms: float

    @property
    def ok(self) -> bool:
        """Within budget; a missing measurement (NaN) counts as a breach."""
        return not math.isnan(self.measured_ms) and self.measured_ms <= self.budget_ms


def verdict(
    measured_ms: Mapping[str, tuple[float, float]],
    budget_ms: Mapping[str, tuple[float, float]] = BLUEPRINT_MS,
) -> list[Check]:
    """A check per budgeted segment and quantile; ``measured_ms`` maps segment -> (P95, P99)."""
    checks = []
    for segment, (p95_budget, p99_budget) in budget_ms.items():
        p95, p99 = measured_ms.get(segment, (math.nan, math.nan))
        checks.append(Check(segment, "P95", p95, p95_budget))
        checks.append(Check(segment, "P99", p99, p99_budget))
    return checks


def exit_code(checks: Iterable[Check]) -> int:
    """0 when every check is within budget, 1 on any breach."""
    return 0 if all(check.ok for check in checks) else 1


def fmt_ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"
