"""``brokermesh trace ORDER_ID``: the spans of one order's trace, with their durations.

Without an OTLP endpoint every service appends its finished spans to
``<data dir>/<service>/traces/<service>.jsonl``. This command finds the
order's trace id in the event store (every event carries it), gathers that
trace's spans from all services' files and prints them as a tree in time
order.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from brokermesh.cli.replay import add_database_url, database_url
from brokermesh.platform.layout import default_data_dir

_TRACE_OF_ORDER = """
SELECT payload FROM order_events WHERE stream_id = $1 ORDER BY stream_version LIMIT 1
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``trace`` command to the ``brokermesh`` parser."""
    parser = subparsers.add_parser("trace", help="show the spans of one order's trace")
    parser.add_argument("order_id", help="platform order id, ORD-YYYYMMDD-NNNNNNNN")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the platform's data directory (default: ./.brokermesh)",
    )
    add_database_url(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Print the order's spans; 1 when the order or its spans cannot be found."""
    trace_id = asyncio.run(_trace_id(database_url(args), args.order_id))
    if not trace_id:
        print(f"no order {args.order_id} in the event store", file=sys.stderr)
        return 1

    spans = load_spans(args.data_dir or default_data_dir(), trace_id)
    if not spans:
        print(f"trace {trace_id}: no spans recorded locally (is OTLP export on?)", file=sys.stderr)
        return 1
    print(f"order {args.order_id}  trace {trace_id}")
    for line in render(spans):
        print(line)
    return 0


async def _trace_id(dsn: str, order_id: str) -> str:
    import asyncpg

    from brokermesh.events.v1.order_events_pb2 import OrderEvent

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        payload = await conn.fetchval(_TRACE_OF_ORDER, order_id)
    finally:
        await conn.close()
    return OrderEvent.FromString(payload).trace_id if payload else ""


def load_spans(data_dir: Path, trace_id: str) -> list[dict[str, Any]]:
    """Every locally recorded span of ``trace_id``, from all services' span files."""
    spans = []
    for path in sorted(data_dir.glob("*/traces/*.jsonl")):
        with path.open("rb") as lines:
            for line in lines:
                if trace_id.encode() in line:
                    span = orjson.loads(line)
                    if span["trace_id"] == trace_id:
                        spans.append(span)
    return spans


def render(spans: list[dict[str, Any]]) -> list[str]:
    """Lines of a span tree: offset from the trace start, duration, service and name."""
    children: dict[str, list[dict[str, Any]]] = defaultdict(list)
    ids = {span["span_id"] for span in spans}
    for span in spans:
        parent = span["parent_id"] if span["parent_id"] in ids else ""
        children[parent].append(span)
    start = min(span["start_ns"] for span in spans)

    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for span in sorted(children[parent], key=lambda s: s["start_ns"]):
            offset_ms = (span["start_ns"] - start) / 1e6
            duration_ms = (span["end_ns"] - span["start_ns"]) / 1e6
            lines.append(
                f"{offset_ms:9.3f} ms {duration_ms:9.3f} ms  {'  ' * depth}"
                f"{span['service']}: {span['name']}"
            )
            walk(span["span_id"], depth + 1)

    walk("", 0)
    return lines
