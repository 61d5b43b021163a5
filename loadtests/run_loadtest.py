"""Run the locust scenarios headless against a platform and judge the pre-venue latency
against the blueprint table.

Before and after the run it scrapes every service's Prometheus histograms; the deltas give
server-side P95/P99 per segment (histogram interpolation). Locust's own figures are whole
milliseconds, so the locustfile also records sub-millisecond client timings. Exits 1 when a
budget is breached. ``--start-platform`` starts (and stops) ``brokermesh up`` itself.

The offered load is fixed (``--rate`` orders per second over ``--users`` users, each
starting requests at Poisson-distributed intervals net of the response time), so a slow
platform shows up as latency, not as a politely lower request rate.

Usage: python -m loadtests.run_loadtest [--start-platform] [--rate 15] [--users 15]
[--duration 60]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from loadtests import metrics, report
from loadtests.harness import Endpoints, Platform, mint_token, provision
from loadtests.stats import BLUEPRINT_MS, Check, exit_code, in_path_order, summarize, verdict

REPO = Path(__file__).resolve().parent.parent
NAMES = (metrics.SEGMENT_METRIC, metrics.HTTP_METRIC, metrics.GRPC_METRIC)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-offset", type=int, default=7000)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="platform data dir (default: a temporary dir with --start-platform)",
    )
    parser.add_argument("--start-platform", action="store_true")
    parser.add_argument("--users", type=int, default=15)
    parser.add_argument(
        "--rate", type=float, default=15.0, help="orders per second offered, all users together"
    )
    parser.add_argument("--spawn-rate", type=float, default=10.0)
    parser.add_argument("--duration", type=int, default=60, help="seconds")
    return parser.parse_args(argv)


def run_locust(endpoints: Endpoints, args: argparse.Namespace, stem: str) -> Path:
    """Run locust headless in a subprocess; return the CSV of its own sub-ms samples."""
    samples = report.RESULTS_DIR / f"{stem}-samples.csv"
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        LOADTEST_TOKEN=mint_token(endpoints),
        LOADTEST_GRPC=endpoints.grpc_address("order-entry"),
        LOADTEST_SAMPLES=str(samples),
        LOADTEST_USER_RATE=str(args.rate / args.users),
    )
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(REPO / "loadtests" / "locustfile.py"),
        "--headless",
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.spawn_rate),
        "--run-time",
        f"{args.duration}s",
        "--host",
        endpoints.gateway_url,
        "--only-summary",
        "--stop-timeout",
        "10",
        "--exit-code-on-error",
        "0",
        "--csv",
        str(report.RESULTS_DIR / f"{stem}-locust"),
    ]
    subprocess.run(cmd, env=env, cwd=REPO, check=True)
    return samples


def client_summary(samples: Path) -> dict[str, dict[str, float]]:
    """Sub-ms client latencies (ms) per user kind, and the error count."""
    by_kind: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    with samples.open() as handle:
        for row in csv.DictReader(handle):
            by_kind.setdefault(row["kind"], []).append(float(row["latency_s"]) * 1000)
            errors[row["kind"]] = errors.get(row["kind"], 0) + (row["ok"] != "1")
    return {kind: {**summarize(v), "errors": errors[kind]} for kind, v in by_kind.items()}


def server_figures(before: metrics.Scrape, after: metrics.Scrape) -> dict[str, Any]:
    return {
        "segments": metrics.window(before, after, metrics.SEGMENT_METRIC, "segment"),
        "http": metrics.window(before, after, metrics.HTTP_METRIC, "route"),
        "grpc": metrics.window(before, after, metrics.GRPC_METRIC, "service,method"),
    }


def judge(server: dict[str, Any]) -> list[Check]:
    # "total" is the gateway's own segment: receipt until order entry answers an order
    # whose NewOrderSingle has left; shed, refused and blocked requests are not in it.
    measured = {seg: (q["p95"], q["p99"]) for seg, q in server["segments"].items()}
    return verdict(measured, BLUEPRINT_MS)


def render(
    args: argparse.Namespace, server: dict[str, Any], client: dict[str, Any], checks: list[Check]
) -> str:
    seg_rows = [
        (name, int(q["count"]), q["mean"], q["p50"], q["p95"], q["p99"])
        for name, q in in_path_order(server["segments"])
    ]
    client_rows = [
        (kind, int(s["count"]), s["errors"], s["mean"], s["p50"], s["p95"], s["p99"], s["max"])
        for kind, s in sorted(client.items())
    ]
    return (
        "\n\n".join(
            [
                f"# Load test: {args.rate:g} orders/s offered by {args.users} users, "
                f"{args.duration} s",
                "## Verdict against the blueprint (server-side, histogram interpolation)",
                report.verdict_table(checks),
                "## Server-side segments (ms)",
                report.md_table(["segment", "count", "mean", "P50", "P95", "P99"], seg_rows),
                "## Client-side latency (ms, perf_counter in the locust users)",
                report.md_table(
                    ["user", "count", "errors", "mean", "P50", "P95", "P99", "max"], client_rows
                ),
            ]
        )
        + "\n"
    )


def run(args: argparse.Namespace, endpoints: Endpoints) -> int:
    provision(endpoints)
    stem = f"loadtest-{report.timestamp()}"
    urls = endpoints.all_metrics_urls()
    before = metrics.scrape(urls, NAMES)
    samples = run_locust(endpoints, args, stem)
    after = metrics.scrape(urls, NAMES)
    server = server_figures(before, after)
    client = client_summary(samples)
    checks = judge(server)
    markdown = render(args, server, client, checks)
    print(markdown)
    data = {
        "users": args.users,
        "offered_rate": args.rate,
        "duration_s": args.duration,
        "server": server,
        "client": client,
        "verdict": [
            {
                "segment": c.segment,
                "quantile": c.quantile,
                "measured_ms": c.measured_ms,
                "budget_ms": c.budget_ms,
                "ok": c.ok,
            }
            for c in checks
        ],
    }
    print(f"wrote {report.write(stem, data, markdown)}")
    return exit_code(checks)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.start_platform:
        data_dir = (args.data_dir or Path(".brokermesh")).resolve()
        return run(args, Endpoints(data_dir, args.port_offset))
    with tempfile.TemporaryDirectory(prefix="bm-loadtest-") as tmp:
        endpoints = Endpoints(args.data_dir or Path(tmp), args.port_offset)
        platform = Platform(endpoints, report.RESULTS_DIR / "platform-loadtest.log")
        try:
            platform.start()
            return run(args, endpoints)
        finally:
            platform.stop()


if __name__ == "__main__":
    sys.exit(main())
