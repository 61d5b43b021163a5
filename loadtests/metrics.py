"""Scrape the services' Prometheus endpoints and turn histogram scrapes into quantiles."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from loadtests.stats import bucket_delta, histogram_mean, histogram_quantile

SEGMENT_METRIC = "brokermesh_prevenue_segment_seconds"
GRPC_METRIC = "brokermesh_grpc_server_handling_seconds"
HTTP_METRIC = "brokermesh_http_request_duration_seconds"

#: A series key: the sorted label pairs, without ``le``.
SeriesKey = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Series:
    """One histogram series of one scrape."""

    buckets: list[tuple[float, float]] = field(default_factory=list)
    sum: float = 0.0
    count: float = 0.0


Scrape = dict[str, dict[SeriesKey, Series]]


def parse(text: str, names: tuple[str, ...]) -> Scrape:
    """The histograms called ``names`` in the exposition ``text``, by name and series."""
    found: Scrape = {name: {} for name in names}
    for family in text_string_to_metric_families(text):
        if family.name not in found:
            continue
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k != "le"}
            series = found[family.name].setdefault(tuple(sorted(labels.items())), Series())
            if sample.name.endswith("_bucket"):
                series.buckets.append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_sum"):
                series.sum = sample.value
            elif sample.name.endswith("_count"):
                series.count = sample.value
    return found


def scrape(urls: list[str], names: tuple[str, ...]) -> Scrape:
    """Scrape every URL and merge the histograms (series keys carry their labels)."""
    merged: Scrape = {name: {} for name in names}
    with httpx.Client(timeout=5.0) as client:
        for url in urls:
            try:
                text = client.get(url).text
            except httpx.HTTPError:
                continue
            for name, series in parse(text, names).items():
                merged[name].update(series)
    return merged


def delta(after: Series, before: Series | None) -> Series:
    """``after - before`` of one series (``before`` None: the service started meanwhile)."""
    if before is None:
        return after
    return Series(
        bucket_delta(after.buckets, before.buckets),
        after.sum - before.sum,
        after.count - before.count,
    )


def quantiles(series: Series) -> dict[str, float]:
    """Count, mean, P50/P95/P99 of a (delta) series, in milliseconds."""
    return {
        "count": series.count,
        "mean": histogram_mean(series.sum, series.count) * 1000,
        "p50": histogram_quantile(0.50, series.buckets) * 1000,
        "p95": histogram_quantile(0.95, series.buckets) * 1000,
        "p99": histogram_quantile(0.99, series.buckets) * 1000,
    }


def window(before: Scrape, after: Scrape, name: str, label: str) -> dict[str, dict[str, float]]:
    """Quantiles of metric ``name`` between two scrapes, keyed by the value(s) of ``label``
    (comma-separated label names join their values with '/')."""
    labels = label.split(",")
    out: dict[str, dict[str, float]] = {}
    for key, series in after.get(name, {}).items():
        values = dict(key)
        ident = "/".join(values.get(lab, "") for lab in labels)
        q = quantiles(delta(series, before.get(name, {}).get(key)))
        if q["count"] > 0 and not math.isnan(q["p50"]):
            out[ident] = q
    return out
