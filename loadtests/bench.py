"""`make bench`: the pre-venue path under fixed open-loop arrival rates, beside bare baselines.

Starts ``brokermesh up --port-offset 7000`` in a temporary data dir, then for each rate
(25, 50, 100, 250, 500 orders/s) POSTs /v1/orders open loop with aiohttp (HTTP/1.1 keep-alive
pool), measuring client latency from each request's scheduled start, the server-side
segments (the pre-venue total among them) from the Prometheus histograms, throughput and
the platform's CPU time per order (psutil, whole process tree incl. PostgreSQL and NATS).
The same rates drive three baselines: (a) a bare grpc.aio echo chain with the same six RPC
hops (client->edge->entry->oms,risk,router at once->venue), (b) a durable asyncpg insert
(fsync, synchronous_commit on) into the platform's PostgreSQL, (c) a JetStream publish to
the platform's NATS (sync_interval always). Writes results/bench-<ts>.json/.md and
results/latest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from loadtests import baselines, metrics, report
from loadtests.harness import (
    Endpoints,
    Platform,
    cpu_by_label,
    cpu_delta,
    cpu_snapshot,
    mint_token,
    platform_processes,
    process_label,
    provision,
)
from loadtests.openloop import LoopResult, Operation, open_loop
from loadtests.orders import order_specs, rest_body
from loadtests.stats import in_path_order, summarize

RATES = (25, 50, 100, 250, 500)
NAMES = (metrics.SEGMENT_METRIC, metrics.HTTP_METRIC, metrics.GRPC_METRIC)
#: Ours, hop by hop: (label, gRPC service/method, order-entry segment = client-side RTT,
#: echo server standing in for it).
HOPS = (
    ("gateway -> order-entry", "order-entry/SubmitOrder", None, "entry"),
    ("order-entry -> oms", "oms/ValidateOrder", "oms_validation", "oms"),
    ("order-entry -> risk", "risk/EvaluateOrder", "pre_trade_risk", "risk"),
    ("order-entry -> router", "router/RouteOrder", "routing", "router"),
    ("order-entry -> venue-gateway", "venue-gateway/SendOrder", "venue_handoff", "venue"),
)
ECHO_BASE_PORT = 18700


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-offset", type=int, default=7000)
    parser.add_argument("--rates", default=",".join(map(str, RATES)))
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per rate (ours)")
    parser.add_argument(
        "--baseline-duration", type=float, default=8.0, help="seconds per rate and baseline"
    )
    return parser.parse_args(argv)


def phase_figures(result: LoopResult, cpu_s: float) -> dict[str, Any]:
    """Client latency (ms), throughput and CPU ms per successful operation of one phase."""
    per_op = max(result.ok, 1)
    return {
        "rate": result.rate,
        "sent": result.sent,
        "ok": result.ok,
        "errors": result.sent - result.ok,
        "throughput": result.throughput,
        "latency_ms": summarize([x * 1000 for x in result.latencies]),
        "server_cpu_ms_per_op": cpu_s * 1000 / per_op,
        "client_cpu_ms_per_op": result.client_cpu_s * 1000 / per_op,
        "max_schedule_lag_ms": result.max_lag * 1000,
    }


async def measured(
    rate: float, duration: float, op: Operation, procs: Callable[[], list[psutil.Process]]
) -> dict[str, Any]:
    """One open-loop phase with the CPU time of ``procs()`` around it."""
    before = cpu_snapshot(procs())
    result = await open_loop(rate, duration, op)
    return phase_figures(result, cpu_delta(before, cpu_snapshot(procs())))


def rest_operation(session: aiohttp.ClientSession, url: str, token: str) -> Operation:
    specs = order_specs()
    headers = {"Authorization": f"Bearer {token}"}

    async def op(_: int) -> bool:
        body = rest_body(*next(specs), prefix="bench")
        try:
            async with session.post(url, json=body, headers=headers) as response:
                payload = await response.read()
                OUTCOMES[outcome(response.status, payload)] += 1
                return response.status in (200, 201)
        except Exception as exc:
            OUTCOMES[type(exc).__name__] += 1
            raise

    return op


def outcome(http_status: int, payload: bytes) -> str:
    """``"201 ROUTED"``: the HTTP status and, when the body carries one, the order's state,
    so a report shows how many orders went the whole way to a venue."""
    try:
        state = json.loads(payload).get("status")
    except (ValueError, AttributeError):
        state = None
    return f"{http_status} {state}" if isinstance(state, str) else str(http_status)


#: "HTTP status [order state]" or exception name -> count, per phase of ours.
OUTCOMES: Counter[str] = Counter()
SETTLE_S = 5.0


async def bench_ours(
    endpoints: Endpoints, platform_pid: int, rates: list[int], duration: float
) -> dict[int, Any]:
    connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=15)
    urls = endpoints.all_metrics_urls()
    out: dict[int, Any] = {}

    def procs() -> list[psutil.Process]:
        return platform_processes(platform_pid, endpoints.data_dir)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        op = rest_operation(session, endpoints.gateway_url + "/v1/orders", mint_token(endpoints))
        await open_loop(50, 2.0, op)  # warm-up: connections, caches, JIT-free but lazy paths
        for rate in rates:
            await asyncio.sleep(SETTLE_S)  # let a previous overload drain
            OUTCOMES.clear()
            before = metrics.scrape(urls, NAMES)
            tree = procs()
            labels = {proc.pid: process_label(proc) for proc in tree}
            cpu_before = cpu_snapshot(tree)
            figures = await measured(rate, duration, op, procs)
            cpu_after = cpu_snapshot(tree)
            after = metrics.scrape(urls, NAMES)
            per_op = 1000 / max(figures["ok"], 1)
            figures["cpu_ms_per_op_by_process"] = {
                label: cpu_s * per_op
                for label, cpu_s in cpu_by_label(cpu_before, cpu_after, labels).items()
            }
            figures["server"] = {
                "segments": metrics.window(before, after, metrics.SEGMENT_METRIC, "segment"),
                "http": metrics.window(before, after, metrics.HTTP_METRIC, "route"),
                "grpc": metrics.window(before, after, metrics.GRPC_METRIC, "service,method"),
            }
            figures["outcomes"] = dict(OUTCOMES)
            out[rate] = figures
            print(f"ours @{rate}/s: {_line(figures)}", flush=True)
    return out


def _line(fig: dict[str, Any]) -> str:
    lat = fig["latency_ms"]
    return (
        f"p50 {lat['p50']:.2f} p95 {lat['p95']:.2f} p99 {lat['p99']:.2f} ms, "
        f"{fig['throughput']:.0f}/s, {fig['errors']} errors, "
        f"{fig['server_cpu_ms_per_op']:.2f} CPU ms/op"
    )


def _named(tree: list[psutil.Process], word: str) -> list[psutil.Process]:
    out = []
    for proc in tree:
        try:
            if word in proc.name():
                out.append(proc)
        except psutil.Error:
            continue
    return out


async def run_rates(
    name: str,
    rates: list[int],
    duration: float,
    op: Operation,
    procs: Callable[[], list[psutil.Process]],
    after: Callable[[], Awaitable[dict[str, Any]]] | None = None,
) -> dict[int, Any]:
    await open_loop(50, 1.0, op)  # warm-up
    if after is not None:
        await after()
    out = {}
    for rate in rates:
        await asyncio.sleep(1.0)
        out[rate] = await measured(rate, duration, op, procs)
        if after is not None:
            out[rate]["echo_stats"] = _echo_stats(await after())
        print(f"{name} @{rate}/s: {_line(out[rate])}", flush=True)
    return out


def _echo_stats(raw: dict[str, Any]) -> dict[str, Any]:
    """P50/P95/P99 (ms) of each echo server's handling and of entry's child round trips."""
    stats = {name: summarize([x * 1000 for x in data["handling"]]) for name, data in raw.items()}
    rtt = {
        addr: summarize([x * 1000 for x in xs]) for addr, xs in raw["entry"]["child_rtt"].items()
    }
    return {"handling": stats, "entry_child_rtt": rtt}


async def bench_baselines(
    endpoints: Endpoints, platform_pid: int, rates: list[int], duration: float
) -> dict[str, Any]:
    def tree() -> list[psutil.Process]:
        return platform_processes(platform_pid, endpoints.data_dir)

    out: dict[str, Any] = {}
    async with baselines.echo_chain(ECHO_BASE_PORT) as (op, stats, pids):
        echo_procs = [psutil.Process(p) for p in pids]
        out["grpc_echo_chain"] = await run_rates(
            "echo chain", rates, duration, op, lambda: echo_procs, stats
        )
    async with baselines.pg_insert(endpoints.layout.owner_dsn) as (op, settings):
        out["asyncpg_insert"] = await run_rates(
            "asyncpg insert", rates, duration, op, lambda: _named(tree(), "postgres")
        )
        out["asyncpg_settings"] = settings
    async with baselines.js_publish(endpoints.layout.nats_url) as op:
        out["jetstream_publish"] = await run_rates(
            "jetstream publish", rates, duration, op, lambda: _named(tree(), "nats")
        )
    return out


# ---- Markdown -------------------------------------------------------------------------

SYSTEMS = (
    ("ours (REST /v1/orders)", None),
    ("bare gRPC echo chain", "grpc_echo_chain"),
    ("bare asyncpg insert", "asyncpg_insert"),
    ("bare JetStream publish", "jetstream_publish"),
)


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) and not math.isnan(a) else math.nan


def summary_table(ours: dict[int, Any], base: dict[str, Any]) -> str:
    rows = []
    for rate, mine in ours.items():
        for label, key in SYSTEMS:
            fig = mine if key is None else base[key][rate]
            lat = fig["latency_ms"]
            ratio = (
                "-"
                if key is None
                else f"{_ratio(mine['latency_ms']['p50'], lat['p50']):.1f}x / "
                f"{_ratio(mine['latency_ms']['p99'], lat['p99']):.1f}x"
            )
            rows.append(
                (
                    rate,
                    label,
                    lat["p50"],
                    lat["p95"],
                    lat["p99"],
                    fig["throughput"],
                    fig["errors"],
                    fig["server_cpu_ms_per_op"],
                    fig["client_cpu_ms_per_op"],
                    ratio,
                )
            )
    return report.md_table(
        [
            "rate/s",
            "system",
            "P50 ms",
            "P95 ms",
            "P99 ms",
            "achieved/s",
            "errors",
            "server CPU ms/op",
            "client CPU ms/op",
            "ours/this P50 / P99",
        ],
        rows,
    )


def segment_table(ours: dict[int, Any]) -> str:
    rows = []
    for rate, fig in ours.items():
        server = fig["server"]
        for name, q in in_path_order(server["segments"]):
            rows.append((rate, name, q["mean"], q["p50"], q["p95"], q["p99"]))
    return report.md_table(["rate/s", "segment", "mean ms", "P50", "P95", "P99"], rows)


def breakdown_table(ours: dict[int, Any]) -> str:
    """Where the time goes, by means (which add up, unlike quantiles)."""
    rows = []
    for rate, fig in ours.items():
        srv = fig["server"]
        seg = {k: v["mean"] for k, v in srv["segments"].items()}
        total = seg.get("total", math.nan)
        submit = srv["grpc"].get("order-entry/SubmitOrder", {}).get("mean", math.nan)
        # OMS, risk and the router are asked at once: the slowest of them is on the path.
        decisions = max(seg.get(k, 0.0) for k in ("oms_validation", "pre_trade_risk", "routing"))
        calls = decisions + seg.get("venue_handoff", 0.0)
        rows.append(
            (
                rate,
                fig["latency_ms"]["mean"],
                total,
                seg.get("gateway_auth", math.nan),
                total - seg.get("gateway_auth", 0.0) - submit,
                submit - calls,
                seg.get("oms_validation", math.nan),
                seg.get("pre_trade_risk", math.nan),
                seg.get("routing", math.nan),
                decisions,
                seg.get("venue_handoff", math.nan),
                str(fig.get("outcomes", {})),
            )
        )
    return report.md_table(
        [
            "rate/s",
            "client mean",
            "pre-venue total",
            "gateway_auth",
            "gateway rest + hop to OE",
            "OE local (ids, DB commit, misc)",
            "oms call",
            "risk call",
            "router call",
            "slowest of the three (at once)",
            "venue hand-off",
            "outcomes",
        ],
        rows,
    )


def cpu_table(ours: dict[int, Any]) -> str:
    """CPU milliseconds per accepted order, by platform process, heaviest first."""
    rates = list(ours)
    totals: dict[str, float] = {}
    for fig in ours.values():
        for label, ms in fig.get("cpu_ms_per_op_by_process", {}).items():
            totals[label] = totals.get(label, 0.0) + ms
    rows = [
        (label, *(ours[r].get("cpu_ms_per_op_by_process", {}).get(label, 0.0) for r in rates))
        for label in sorted(totals, key=totals.__getitem__, reverse=True)
    ]
    rows.append(
        (
            "all",
            *(sum(ours[r].get("cpu_ms_per_op_by_process", {}).values()) for r in rates),
        )
    )
    return report.md_table(["process", *(f"{r}/s" for r in rates)], rows)


def hop_table(ours: dict[int, Any], echo: dict[int, Any]) -> str:
    rows = []
    for rate, fig in ours.items():
        stats = echo[rate]["echo_stats"]
        rtts = list(stats["entry_child_rtt"].values())
        for label, method, segment, echo_name in HOPS:
            ours_srv = fig["server"]["grpc"].get(method, {}).get("p50", math.nan)
            echo_srv = stats["handling"][echo_name]["p50"]
            ours_rtt = (
                fig["server"]["segments"].get(segment, {}).get("p50", math.nan)
                if segment
                else math.nan
            )
            idx = baselines_leaf_index(echo_name)
            echo_rtt = rtts[idx]["p50"] if idx is not None else math.nan
            rows.append(
                (
                    rate,
                    label,
                    ours_srv,
                    echo_srv,
                    _ratio(ours_srv, echo_srv),
                    ours_rtt,
                    echo_rtt,
                    _ratio(ours_rtt, echo_rtt),
                )
            )
    return report.md_table(
        [
            "rate/s",
            "hop",
            "ours server P50",
            "echo server P50",
            "ratio",
            "ours call RTT P50",
            "echo call RTT P50",
            "ratio",
        ],
        rows,
    )


def baselines_leaf_index(name: str) -> int | None:
    from loadtests.echo_chain import LEAVES

    return LEAVES.index(name) if name in LEAVES else None


HOP_NOTE = """Process hops of the pre-venue path (6 RPCs, 6 server processes):
1. client -> gateway (HTTP/1.1 + JSON, JWT check) 2. gateway -> order-entry (gRPC)
3. order-entry -> oms ValidateOrder 4. -> risk EvaluateOrder 5. -> router RouteOrder
(3-5 at once) 6. order-entry -> venue-gateway SendOrder (returns once the NewOrderSingle is
handed to the FIX engine). Order-entry also takes an order number (sequence block) and
appends the order's events to PostgreSQL (fsync'd commit) before the venue hand-off.
The echo chain mirrors the RPC shape: client -> edge -> entry -> (oms, risk, router at
once) -> venue, all gRPC (the first hop is gRPC, not HTTP), no database, raw-bytes payload
of the same size.
"Server P50" is the callee's handling time; "call RTT" is the caller-measured round trip
(ours: order-entry's segment histograms; echo: entry's own timer). Server-side figures are
Prometheus histogram interpolations (bucket bounds 0.5, 1, 2, 3, 5, 7.5, 10 ms ...).
The pre-venue total is the gateway's segment from receipt to order entry's answer, over
the orders handed to a venue only (shed, refused and blocked requests are not in it).
CPU/op: ours = the whole `brokermesh up` process tree (11 services, PostgreSQL, NATS) per
order; echo = the six echo processes; asyncpg = the PostgreSQL processes; JetStream = the
nats-server. Client CPU is the bench process itself, which shares the 2 cores."""


def render(args: argparse.Namespace, ours: dict[int, Any], base: dict[str, Any]) -> str:
    return (
        "\n\n".join(
            [
                "# Pre-venue benchmark (open loop, REST)",
                f"Machine: {psutil.cpu_count()} cores. {args.duration:.0f} s per rate for ours, "
                f"{args.baseline_duration:.0f} s per rate and baseline. Latency is measured from "
                "each request's scheduled start (client-side, perf_counter), over the orders "
                "accepted; errors count the rest (shed with 429 OVERLOADED once the platform is "
                "full, or failed), by outcome in the breakdown below.",
                f"PostgreSQL settings in the insert baseline: {base.get('asyncpg_settings')}",
                "## Ours vs baselines",
                summary_table(ours, base),
                "## Ours, server-side segments (Prometheus histograms)",
                segment_table(ours),
                "## Where the time goes (means, ms)",
                breakdown_table(ours),
                "## Where the CPU goes (ms per accepted order, by process)",
                cpu_table(ours),
                "## Per gRPC hop at P50 (ms): ours vs bare echo",
                hop_table(ours, base["grpc_echo_chain"]),
                "## Notes",
                HOP_NOTE,
            ]
        )
        + "\n"
    )


async def run(args: argparse.Namespace, endpoints: Endpoints, pid: int) -> dict[str, Any]:
    rates = [int(r) for r in args.rates.split(",")]
    ours = await bench_ours(endpoints, pid, rates, args.duration)
    base = await bench_baselines(endpoints, pid, rates, args.baseline_duration)
    return {"ours": ours, "baselines": base}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stem = f"bench-{report.timestamp()}"
    with tempfile.TemporaryDirectory(prefix="bm-bench-") as tmp:
        endpoints = Endpoints(Path(tmp), args.port_offset)
        platform = Platform(endpoints, report.RESULTS_DIR / "platform-bench.log")
        try:
            platform.start()
            provision(endpoints)
            data = asyncio.run(run(args, endpoints, platform.pid))
        finally:
            platform.stop()
    markdown = render(args, data["ours"], data["baselines"])
    print(markdown)
    print(f"wrote {report.write(stem, data, markdown, latest=True)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
