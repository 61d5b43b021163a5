"""Histogram quantiles from Prometheus buckets, percentiles and the blueprint verdict."""

from __future__ import annotations

import math

import pytest

from loadtests.metrics import delta as series_delta
from loadtests.metrics import parse, quantiles
from loadtests.run_loadtest import judge
from loadtests.stats import (
    BLUEPRINT_MS,
    bucket_delta,
    exit_code,
    histogram_quantile,
    in_path_order,
    percentile,
    verdict,
)

BUCKETS = [(0.001, 10.0), (0.002, 60.0), (0.005, 90.0), (0.01, 100.0), (math.inf, 100.0)]


def test_histogram_quantile_interpolates_inside_the_bucket() -> None:
    # rank 50 lies in (0.001, 0.002] holding 10..60: 0.001 + 0.001 * 40/50
    assert histogram_quantile(0.5, BUCKETS) == pytest.approx(0.0018)
    # rank 95 lies in (0.005, 0.01] holding 90..100
    assert histogram_quantile(0.95, BUCKETS) == pytest.approx(0.0075)


def test_histogram_quantile_first_bucket_starts_at_zero() -> None:
    assert histogram_quantile(0.05, BUCKETS) == pytest.approx(0.0005)


def test_histogram_quantile_in_inf_bucket_returns_highest_finite_bound() -> None:
    buckets = [(0.001, 1.0), (0.01, 2.0), (math.inf, 10.0)]
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.01)


def test_histogram_quantile_without_observations_is_nan() -> None:
    assert math.isnan(histogram_quantile(0.99, [(0.001, 0.0), (math.inf, 0.0)]))


def test_bucket_delta_subtracts_the_earlier_scrape() -> None:
    before = [(0.001, 5.0), (math.inf, 7.0)]
    after = [(0.001, 15.0), (math.inf, 27.0)]
    assert bucket_delta(after, before) == [(0.001, 10.0), (math.inf, 20.0)]


def test_parse_and_quantiles_from_exposition_text() -> None:
    text = "\n".join(
        [
            "# TYPE brokermesh_prevenue_segment_seconds histogram",
            *(
                f'brokermesh_prevenue_segment_seconds_bucket{{le="{le}",segment="routing"}} {c}'
                for le, c in (
                    ("0.001", 10),
                    ("0.002", 60),
                    ("0.005", 90),
                    ("0.01", 100),
                    ("+Inf", 100),
                )
            ),
            'brokermesh_prevenue_segment_seconds_sum{segment="routing"} 0.2',
            'brokermesh_prevenue_segment_seconds_count{segment="routing"} 100',
            "",
        ]
    )
    scrape = parse(text, ("brokermesh_prevenue_segment_seconds",))
    series = scrape["brokermesh_prevenue_segment_seconds"][(("segment", "routing"),)]
    q = quantiles(series_delta(series, None))
    assert q["count"] == 100
    assert q["mean"] == pytest.approx(2.0)
    assert q["p50"] == pytest.approx(1.8)


def test_percentile_interpolates_between_samples() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == pytest.approx(2.5)
    assert math.isnan(percentile([], 0.5))


def test_verdict_within_budget_exits_zero() -> None:
    measured = {seg: (p95 / 2, p99 / 2) for seg, (p95, p99) in BLUEPRINT_MS.items()}
    checks = verdict(measured)
    assert all(check.ok for check in checks)
    assert exit_code(checks) == 0


def test_a_breach_yields_a_non_zero_exit_code() -> None:
    measured = {seg: (p95 / 2, p99 / 2) for seg, (p95, p99) in BLUEPRINT_MS.items()}
    measured["routing"] = (10.5, 20.0)  # P95 budget is 10 ms
    checks = verdict(measured)
    assert [c.segment + c.quantile for c in checks if not c.ok] == ["routingP95"]
    assert exit_code(checks) == 1


def test_a_missing_segment_counts_as_a_breach() -> None:
    assert exit_code(verdict({})) == 1


def test_segments_are_listed_in_path_order_with_the_total_last() -> None:
    measured = {"total": 4, "routing": 3, "gateway_auth": 0, "extra": 9, "venue_handoff": 5}

    assert [name for name, _ in in_path_order(measured)] == [
        "gateway_auth",
        "routing",
        "venue_handoff",
        "extra",
        "total",
    ]


def _window(p95_ms: float, p99_ms: float) -> dict[str, float]:
    return {"count": 10.0, "mean": p95_ms, "p50": p95_ms, "p95": p95_ms, "p99": p99_ms}


def test_the_verdict_judges_the_total_the_gateway_records_not_its_http_histogram() -> None:
    within = {name: _window(1.0, 2.0) for name in BLUEPRINT_MS if name != "total"}
    # Fast 429s could pull the route's HTTP percentiles under budget; they must not count.
    http = {"/v1/orders": _window(1.0, 2.0)}

    slow_total = judge({"segments": {**within, "total": _window(61.0, 90.0)}, "http": http})
    no_total = judge({"segments": within, "http": http})

    assert exit_code(slow_total) == 1
    assert [c.quantile for c in slow_total if not c.ok] == ["P95"]
    assert exit_code(no_total) == 1
